#!/usr/bin/env bash
# Install (pinned, into .venv) and grade the bundled example courses from the source papers.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"
exec tocsin demo "$@"

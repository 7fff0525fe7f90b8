"""YAML text to Python data with libyaml's C parser when PyYAML was built with it (the pinned wheel is).

The packaged tables (vocabulary, criteria, drugs, column dictionary, prophylaxis) are read at the start of every
process: with the pure-Python ``safe_load`` that was ~0.25 s of each batch worker's start, nine times what the C
parser takes for the same objects (it builds the same safe types from the same tags). User files keep
``yaml.safe_load`` where their error messages are shown as they are.
"""

from __future__ import annotations

from typing import Any

import yaml

_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, parsed by libyaml when available (raises ``yaml.YAMLError`` alike)."""
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader, C or Python

"""Adapters around the core: files in, JSON/terminal out."""

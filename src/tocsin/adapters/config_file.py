"""Load a grading configuration file (TOML or YAML) into :class:`tocsin.config.GradingConfig`.

Only the values a centre changes need to be in the file; everything else keeps its documented default.
Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml
from pydantic import ValidationError

from tocsin.config import GradingConfig


class ConfigFileError(ValueError):
    """The configuration file cannot be read or has invalid values."""


def load_config(path: Path) -> GradingConfig:
    if not path.exists():
        raise ConfigFileError(f"{path}: no such configuration file")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigFileError(f"{path}: cannot be parsed ({exc})") from exc
    data = data or {}
    data.setdefault("name", path.stem)
    try:
        return GradingConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigFileError(f"{path}: {problems}") from exc

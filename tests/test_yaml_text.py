"""The packaged tables parse to the same Python objects with libyaml as with PyYAML's own safe loader."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml

from tocsin.yaml_text import parse_yaml


def _packaged_yaml() -> list[str]:
    root = resources.files("tocsin.data")
    found = [f"{p.name}" for p in root.iterdir() if p.name.endswith(".yaml")]
    for folder in ("criteria", "packs"):
        found += [f"{folder}/{p.name}" for p in root.joinpath(folder).iterdir() if p.name.endswith(".yaml")]
    return sorted(found)


@pytest.mark.parametrize("name", _packaged_yaml())
def test_parse_yaml_equals_safe_load_on_every_packaged_file(name: str) -> None:
    text = resources.files("tocsin.data").joinpath(name).read_text(encoding="utf-8")
    assert parse_yaml(text) == yaml.safe_load(text)


def test_parse_yaml_refuses_unsafe_tags_and_bad_yaml_like_safe_load() -> None:
    with pytest.raises(yaml.YAMLError):
        parse_yaml("!!python/object/apply:os.system ['true']")
    with pytest.raises(yaml.YAMLError):
        parse_yaml("a: [1, 2")

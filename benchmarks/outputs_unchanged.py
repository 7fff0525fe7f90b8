"""Check that a speed change left every output unchanged: write the outputs of a checkout, compare two sets.

The fourth session rewrote each grader for speed under one rule: every output stays the same, down to dtypes,
column order, row order and null vs NaN. This is the check it used.

    python benchmarks/outputs_unchanged.py write /tmp/before      # on the starting code
    python benchmarks/outputs_unchanged.py write /tmp/after       # on the changed code
    python benchmarks/outputs_unchanged.py compare /tmp/before /tmp/after

``write`` runs ``tocsin batch`` on a 300-patient synthetic cohort (ASTCT 2019 with evidence and the cohort tables,
Lee 2014, and the ``fever_gone_cytokines_falling`` resolution, in chunks of 120 so that chunking is exercised)
and ``tocsin grade --json`` on every example course, with the ``tocsin`` this interpreter imports.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
RESOLUTION_CONFIG = '[episodes]\ncrs_resolution = "fever_gone_cytokines_falling"\n'


def _tocsin(*args: str, stdout: Path | None = None) -> None:
    # Run from the checkout's root, so that an example's path in the output (``input_problems[].file``) is the
    # same relative path in every checkout and worktree compared.
    command = [sys.executable, "-m", "tocsin.cli", *args]
    if stdout is None:
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    else:
        with stdout.open("w") as out:
            subprocess.run(command, check=False, stdout=out, cwd=ROOT)  # a refused example exits 2: its output counts


def write(out: Path) -> None:
    """The outputs of this checkout under ``out``."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=False)
    inputs = out / "_inputs"
    _tocsin("synth", "--patients", "300", "--seed", "5", "--out", str(inputs))
    config = inputs / "resolution.toml"
    config.write_text(RESOLUTION_CONFIG)
    events = str(inputs / "events.parquet")
    _tocsin("batch", events, "--out", str(out / "astct"), "--chunk-patients", "120", "--evidence", "--cohort")
    _tocsin("batch", events, "--out", str(out / "lee"), "--chunk-patients", "120", "--crs-scale", "lee2014")
    _tocsin("batch", events, "--out", str(out / "resolution"), "--chunk-patients", "120", "--config", str(config))
    for example in sorted((ROOT / "examples").glob("*.csv")):
        _tocsin("grade", str(example.relative_to(ROOT)), "--json", stdout=out / f"{example.name}.json")


def _outputs(root: Path) -> dict[Path, list[Path]]:
    """Every output under ``root``: a table (a folder of ``part-*.parquet`` files, its parts in order) or a file.
    A table is compared as the stack of its parts, so that a change in how many chunks go into a part (the
    eleventh session wrote the per-patient tables once per 16 chunks) is not a difference."""
    outputs: dict[Path, list[Path]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        is_part = path.suffix == ".parquet" and path.name.startswith("part-")
        outputs.setdefault(path.parent.relative_to(root) if is_part else path.relative_to(root), []).append(path)
    return outputs


def _same(a: list[Path], b: list[Path]) -> bool:
    if a[0].suffix == ".parquet":
        x, y = pl.read_parquet(a), pl.read_parquet(b)
        return x.schema == y.schema and x.equals(y)
    if a[0].suffix == ".json":
        return json.loads(a[0].read_text() or "null") == json.loads(b[0].read_text() or "null")
    return a[0].read_bytes() == b[0].read_bytes()


def compare(before: Path, after: Path) -> int:
    """Print every table or file that differs, is missing or is new; the number of such outputs."""
    old, new = _outputs(before), _outputs(after)
    problems = [f"missing {f}" for f in sorted(old.keys() - new.keys())]
    problems += [f"new {f}" for f in sorted(new.keys() - old.keys())]
    problems += [f"differs {f}" for f in sorted(old.keys() & new.keys()) if not _same(old[f], new[f])]
    for line in problems:
        print(line)
    print(f"{len(old)} tables and files compared ({sum(map(len, old.values()))} files), {len(problems)} problems")
    return len(problems)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("write").add_argument("out", type=Path)
    both = commands.add_parser("compare")
    both.add_argument("before", type=Path)
    both.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "write":
        write(args.out)
    else:
        sys.exit(1 if compare(args.before, args.after) else 0)


if __name__ == "__main__":
    main()

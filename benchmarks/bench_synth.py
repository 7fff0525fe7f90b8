"""Time the synthetic cohort generator.

Usage: python benchmarks/bench_synth.py [N_PATIENTS ...] [--seed S] [--repeat R]

Prints, per cohort size, the best wall-clock and CPU time of R runs, the events per patient and the
in-memory size of the events frame.
"""

from __future__ import annotations

import argparse

from timing import best_of

from tocsin.synth import generate_cohort


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patients", nargs="*", type=int, default=[10_000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for n in args.patients:
        timing = best_of(lambda: generate_cohort(n, args.seed), args.repeat)  # noqa: B023
        events = timing.value.events
        print(
            f"{n:>7,} patients: best {timing.wall:6.2f} s wall, {timing.cpu:6.2f} s CPU "
            f"(worst {timing.worst_wall:.2f} s); {events.height:,} events = {events.height / n:,.0f}/patient; "
            f"{events.estimated_size('mb'):,.0f} MB"
        )


if __name__ == "__main__":
    main()

"""The timing every benchmark script reports: the best wall-clock and CPU seconds of a few runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Timing:
    """Best (and worst) wall-clock seconds, best CPU seconds, and what the last run returned."""

    wall: float
    cpu: float
    worst_wall: float
    value: Any


def best_of(run: Callable[[], Any], repeat: int) -> Timing:
    """Run ``run`` ``repeat`` times (at least once) and keep the best wall-clock and CPU time."""
    walls, cpus, value = [], [], None
    for _ in range(max(repeat, 1)):
        wall, cpu = time.perf_counter(), time.process_time()
        value = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return Timing(min(walls), min(cpus), max(walls), value)

"""The benches' timer: the median of repeated calls, after one untimed call."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ns(call: Callable[[], object], calls: int) -> float:
    """The median wall time of ``calls`` calls of ``call``, in nanoseconds (a first call warms caches)."""
    call()
    times = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - started)
    return statistics.median(times)

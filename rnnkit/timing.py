"""Timing helpers of the benchmarks (``rnnkit bench``, ``rnnkit bench lm``, benchmarks/)."""
from __future__ import annotations

import math
import time

__all__ = ["interleaved_times"]


def interleaved_times(functions: dict, repeats: int, min_time: float = 0.05) -> dict:
    """Seconds per call of each function in every repeat, run interleaved (rotating order)
    after warm-up: ``{name: [seconds, ...]}``.

    Warm-up is two calls of each function (the first call of a kernel packs weights,
    faults in its buffers, builds primitive caches); the second, timed, sets how many calls
    one repeat makes: enough to last about ``min_time`` seconds, at least one. A repeat of a
    single call of a few milliseconds measured mostly how busy the machine was at that
    moment (the same entry moved by 20 % between runs); a batch of calls averages that out.
    """
    calls = {}
    for name, f in functions.items():
        f()
        start = time.perf_counter()
        f()
        calls[name] = max(1, math.ceil(min_time / max(time.perf_counter() - start, 1e-9)))
    times = {name: [] for name in functions}
    names = list(functions)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            f, n = functions[name], calls[name]
            start = time.perf_counter()
            for _ in range(n):
                f()
            times[name].append((time.perf_counter() - start) / n)
    return times

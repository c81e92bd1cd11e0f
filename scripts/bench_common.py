"""Timing helper shared by the PyTorch benchmark scripts."""

import statistics
import time


def median_time(runs, f):
    """Median seconds of `runs` calls of `f` after one warm-up call."""
    f()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)

"""Timing helpers shared by the PyTorch benchmark scripts: the device named by `BENCH_DEVICE`
(`cpu` by default, `cuda:0` for a GPU, as the Rust benchmarks read it), and medians that wait
for the device's queued work before reading the clock."""

import os
import statistics
import time

import torch


def device():
    """The device named by `BENCH_DEVICE`; `cpu` when it is unset."""
    return torch.device(os.environ.get("BENCH_DEVICE", "cpu"))


def sync(dev):
    """Waits for the work queued on `dev` (a no-op on the CPU)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def median_time(runs, f, dev=torch.device("cpu")):
    """Median seconds of `runs` calls of `f` after one warm-up call, each timed to the end of
    its work on `dev`."""
    f()
    sync(dev)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        sync(dev)
        times.append(time.perf_counter() - t)
    return statistics.median(times)

"""Per-layer convolution speed, convscope beside PyTorch in one run.

Starts the Rust benchmark as a server (`cargo build --release --example bench_conv` first) and
times each layer's shape through convscope's CPU kernel and PyTorch's conv2d in turn, with the
same thread count, ROUNDS times over all layers; each side's figure for a layer is the median
over the rounds of each turn's median. Taking turns layer by layer, a slow spell of a shared
machine lands on both sides rather than on one (each side rests between turns and warms up before timing, see `PAUSE` and `WARM`).
Prints GFLOP/s for both, the ratio
ours/PyTorch, and each layer's share of the machine's matrix-multiply rate.

    python scripts/bench_conv_torch.py [RUNS] [THREADS] [ROUNDS]
"""

import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from bench_common import median_time

BINARY = "target/release/examples/bench_conv"
# Seconds each side rests after its turn: OpenMP's threads (PyTorch's) keep spinning for a
# while after their last parallel region, and would take the cores from the other side's turn.
PAUSE = 0.3
# Seconds each side runs its layer before timing it (the binary's `WARM_SECONDS`): after a
# pause the cores run slower for a while.
WARM = 0.3


def warm(f):
    start = time.perf_counter()
    while time.perf_counter() - start < WARM:
        f()


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    torch.set_num_threads(threads)
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    server = subprocess.Popen([BINARY, "--serve"], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)

    def ask(request):
        server.stdin.write(request + "\n")
        server.stdin.flush()
        return float(server.stdout.readline())

    cases = []
    for line in server.stdout:
        if not line.strip():
            break
        cases.append(json.loads(line))
    ours = [[] for _ in cases]
    theirs = [[] for _ in cases]
    with torch.no_grad():
        tensors = [(torch.randn(*c["input"]), torch.randn(*c["weight"])) for c in cases]
        for _ in range(rounds):
            for i, c in enumerate(cases):
                x, w = tensors[i]
                ours[i].append(ask(f"{i} {runs}"))
                time.sleep(PAUSE)
                conv = lambda: F.conv2d(x, w, None, c["stride"], c["padding"])
                warm(conv)
                theirs[i].append(median_time(runs, conv))
                time.sleep(PAUSE)
    peak = ask(f"matmul {runs}")
    server.stdin.close()
    server.wait()
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch_peak = 2 * n ** 3 / median_time(runs, lambda: a @ b) / 1e9
    print(f"{'model':<9} {'layer':<22} {'batch':>5} {'input':>12} {'kernel':>16} "
          f"{'ours':>6} {'torch':>6} {'ours/torch':>10} {'of peak':>7}")
    ratios = []
    for c, o, t in zip(cases, ours, theirs):
        o, t = statistics.median(o), statistics.median(t)
        gf = lambda s: c["flops"] / s / 1e9
        ratios.append(t / o)
        co, ci, kh, kw = c["weight"]
        kernel = f"{kh}x{kw}/{c['stride']} {ci}->{co}"
        n, ch, h, wd = c["input"]
        print(f"{c['model']:<9} {c['layer']:<22} {n:>5} {f'{ch}x{h}x{wd}':>12} "
              f"{kernel:>16} {gf(o):>6.0f} {gf(t):>6.0f} {t / o:>10.2f} {gf(o) / peak:>7.0%}")
    print(f"matmul 2048x2048: convscope/gemm {peak:.0f} GFLOP/s, PyTorch {torch_peak:.0f} GFLOP/s")
    print(f"ours/torch over {len(ratios)} layers ({rounds} rounds): median "
          f"{statistics.median(ratios):.2f}, min {min(ratios):.2f}, max {max(ratios):.2f}, "
          f"{sum(r >= 0.8 for r in ratios)} at 0.8 or more")


if __name__ == "__main__":
    main()

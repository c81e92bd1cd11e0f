"""Per-layer convolution speed, convscope beside PyTorch in one run.

Runs the Rust benchmark (`cargo build --release --example bench_conv` first), times PyTorch's
conv2d on the same shapes with the same thread count, and prints GFLOP/s for convscope's CPU
kernel, candle's conv2d and PyTorch, the ratio ours/PyTorch, and each layer's share of the
machine's matrix-multiply rate.

    python scripts/bench_conv_torch.py [RUNS] [THREADS]
"""

import json
import os
import statistics
import subprocess
import sys

import torch
import torch.nn.functional as F
from bench_common import median_time

BINARY = "target/release/examples/bench_conv"


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    torch.set_num_threads(threads)
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run([BINARY, str(runs), "--json"], env=env, check=True,
                         capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    peak = next(r["matmul_gflops"] for r in rows if "matmul_gflops" in r)
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch_peak = 2 * n ** 3 / median_time(runs, lambda: a @ b) / 1e9
    print(f"{'model':<9} {'layer':<22} {'batch':>5} {'input':>12} {'kernel':>16} "
          f"{'ours':>6} {'candle':>6} {'torch':>6} {'ours/torch':>10} {'of peak':>7}")
    ratios = []
    with torch.no_grad():
        for r in rows:
            if "layer" not in r:
                continue
            x = torch.randn(*r["input"])
            w = torch.randn(*r["weight"])
            t = median_time(runs, lambda: F.conv2d(x, w, None, r["stride"], r["padding"]))
            gf = lambda s: r["flops"] / s / 1e9
            ours, theirs = gf(r["ours_s"]), gf(t)
            ratios.append(ours / theirs)
            co, ci, kh, kw = r["weight"]
            kernel = f"{kh}x{kw}/{r['stride']} {ci}->{co}"
            c, h, wd = r["input"][1:]
            print(f"{r['model']:<9} {r['layer']:<22} {r['batch']:>5} {f'{c}x{h}x{wd}':>12} "
                  f"{kernel:>16} {ours:>6.0f} {gf(r['candle_s']):>6.0f} {theirs:>6.0f} "
                  f"{ours / theirs:>10.2f} {ours / peak:>7.0%}")
    print(f"matmul 2048x2048: convscope/gemm {peak:.0f} GFLOP/s, PyTorch {torch_peak:.0f} GFLOP/s")
    print(f"ours/torch over {len(ratios)} layers: median {statistics.median(ratios):.2f}, "
          f"min {min(ratios):.2f}, max {max(ratios):.2f}")


if __name__ == "__main__":
    main()

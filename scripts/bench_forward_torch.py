"""PyTorch side of `cargo run --release --example bench_forward`: the same models (`BENCH_MODELS`,
comma-separated torchvision names; VGG16 and ResNet50 by default), input, device (`BENCH_DEVICE`,
`cpu` by default) and thread count (2 by default, the development machine's cores), medians of
several runs.

    python scripts/bench_forward_torch.py [RUNS] [THREADS]
"""

import os
import sys

import torch
import torchvision
from bench_common import device, median_time


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    dev = device()
    n = 2048
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    t = median_time(runs, lambda: a @ b, dev)
    print(f"matmul {n}x{n}: median {t * 1e3:.1f} ms, {2 * n ** 3 / t / 1e9:.0f} GFLOP/s")
    x = torch.randn(1, 3, 224, 224, device=dev)
    names = [n for n in os.environ.get("BENCH_MODELS", "vgg16,resnet50").split(",") if n]
    for name in names:
        model = getattr(torchvision.models, name)().eval().to(dev)
        with torch.no_grad():
            t = median_time(runs, lambda: model(x), dev)
        print(f"{name} forward 1x3x224x224 on {dev}: median {t * 1e3:.1f} ms over {runs} runs")
        if dev.type == "cuda" and torch.backends.cudnn.allow_tf32:
            # PyTorch's default lets cuDNN's convolutions round to TF32; convscope computes in
            # f32 throughout, as PyTorch does with this off.
            torch.backends.cudnn.allow_tf32 = False
            with torch.no_grad():
                t = median_time(runs, lambda: model(x), dev)
            torch.backends.cudnn.allow_tf32 = True
            print(f"{name} forward 1x3x224x224 on {dev}, TF32 off: median {t * 1e3:.1f} ms")


if __name__ == "__main__":
    main()

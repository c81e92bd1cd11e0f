"""PyTorch side of `cargo run --release --example bench_filters`: Chollet's classic loop, one
filter at a time, on VGG16 up to features.17 (block 4's first conv), 40 steps at 150x150, on
`BENCH_DEVICE` (`cpu` by default), 2 threads by default; wall time and peak memory (the process's
RSS; on a GPU also the peak of PyTorch's device allocations).

    python scripts/bench_filters_torch.py [CHANNELS] [THREADS]
"""

import resource
import sys
import time

import torch
import torchvision

from bench_common import device, sync


def main():
    channels = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    dev = device()
    model = torchvision.models.vgg16().eval().to(dev)
    prefix = model.features[:18]  # up to and including features.17
    for p in prefix.parameters():
        p.requires_grad_(False)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    for c in range(channels):
        x = (torch.rand(1, 3, 150, 150, device=dev) * 20 + 128).requires_grad_(True)
        for _ in range(40):
            loss = prefix(x)[:, c].mean()
            (g,) = torch.autograd.grad(loss, x)
            g = g / (g.pow(2).mean().sqrt() + 1e-5)
            with torch.no_grad():
                x += g
    sync(dev)
    secs = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    on_device = (f"; peak on {dev} {torch.cuda.max_memory_allocated(dev) / 2**20:.0f} MiB"
                 if dev.type == "cuda" else "")
    print(f"torch vgg16 features.17 on {dev}, {channels} channels one at a time, 40 steps at 150px: {secs:.1f} s "
          f"({secs / channels:.2f} s per channel); peak RSS {peak:.0f} MiB (model alone {before:.0f} MiB){on_device}")


if __name__ == "__main__":
    main()

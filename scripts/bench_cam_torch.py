"""pytorch-grad-cam side of `cargo run --release --example bench_cam`: time to the first
Grad-CAM and to a map for another class (pytorch-grad-cam recomputes everything), VGG16 and
ResNet50 (or the torchvision names in `BENCH_MODELS`, comma-separated) at 224x224 with random
weights, at the layer pytorch-grad-cam's README suggests for each family, on `BENCH_DEVICE` (`cpu`
by default), 2 threads by default, medians.

    python scripts/bench_cam_torch.py [RUNS] [THREADS]
"""

import os
import statistics
import sys
import time

import torch
import torchvision
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from bench_common import device, sync


def target_layer(model):
    """pytorch-grad-cam's suggestion: the last residual stage of a ResNet, RegNet's trunk output,
    the last module of `features` for the rest."""
    if hasattr(model, "layer4"):
        return model.layer4[-1]
    if hasattr(model, "trunk_output"):
        return model.trunk_output
    return model.features[-1]


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    dev = device()
    x = torch.randn(1, 3, 224, 224, device=dev)
    names = [n for n in os.environ.get("BENCH_MODELS", "vgg16,resnet50").split(",") if n]
    for name in names:
        model = getattr(torchvision.models, name)().eval().to(dev)
        times = []
        with GradCAM(model=model, target_layers=[target_layer(model)]) as cam:
            for run in range(runs + 1):
                t = time.perf_counter()
                cam(input_tensor=x, targets=[ClassifierOutputTarget(run)])
                sync(dev)
                if run > 0:
                    times.append(time.perf_counter() - t)
        print(f"{name} pytorch-grad-cam Grad-CAM on {dev}: median {statistics.median(times) * 1e3:.1f} ms per map "
              f"(first map and class switch alike) over {runs} runs")


if __name__ == "__main__":
    main()

"""pytorch-grad-cam side of `cargo run --release --example bench_cam`: time to the first
Grad-CAM and to a map for another class (pytorch-grad-cam recomputes everything), VGG16 and
ResNet50 at 224x224 with random weights, 2 threads by default, medians.

    python scripts/bench_cam_torch.py [RUNS] [THREADS]
"""

import statistics
import sys
import time

import torch
import torchvision
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    x = torch.randn(1, 3, 224, 224)
    for name, layer in [("vgg16", lambda m: m.features[-1]), ("resnet50", lambda m: m.layer4[-1])]:
        model = getattr(torchvision.models, name)().eval()
        times = []
        with GradCAM(model=model, target_layers=[layer(model)]) as cam:
            for run in range(runs + 1):
                t = time.perf_counter()
                cam(input_tensor=x, targets=[ClassifierOutputTarget(run)])
                if run > 0:
                    times.append(time.perf_counter() - t)
        print(f"{name} pytorch-grad-cam Grad-CAM: median {statistics.median(times) * 1e3:.1f} ms per map "
              f"(first map and class switch alike) over {runs} runs")


if __name__ == "__main__":
    main()

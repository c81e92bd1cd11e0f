"""Where the forward pass spends its time, convscope beside PyTorch, by kind of layer.

Runs the Rust benchmark (`cargo build --release --example bench_layers` first) for the models in
`BENCH_MODELS` (torchvision names), times every leaf module of the same torchvision models on
the input it receives in a forward pass (same thread count), groups both by the same kinds
(convolutions split into full, grouped, depthwise and pointwise) and prints milliseconds,
GFLOP/s of the convolutions and the ratio. Steps that are not modules in PyTorch (residual
additions, the gate's multiply, ConvNeXt's layer scale and permutes) are timed on convscope's
side only; the whole-model forward of both is printed as well.

    BENCH_MODELS=efficientnet_b0,convnext_tiny python scripts/bench_layers_torch.py [RUNS] [THREADS]
"""

import collections
import json
import os
import subprocess
import sys

import torch
import torchvision
from torch import nn
from bench_common import median_time

BINARY = "target/release/examples/bench_layers"

KINDS = {
    nn.BatchNorm2d: "batchnorm", nn.ReLU: "relu", nn.ReLU6: "relu6", nn.SiLU: "silu",
    nn.GELU: "gelu", nn.Sigmoid: "sigmoid", nn.Hardsigmoid: "hardsigmoid",
    nn.Hardswish: "hardswish", nn.AdaptiveAvgPool2d: "adaptiveavgpool", nn.Linear: "linear",
    nn.MaxPool2d: "maxpool", nn.AvgPool2d: "avgpool", nn.Dropout: "dropout", nn.Flatten: "flatten",
    nn.LayerNorm: "layernorm", torchvision.models.convnext.LayerNorm2d: "layernorm",
}


def category(module, inputs=None):
    """The kind bench_layers sums a module's time under, None for modules it has no node for. A
    Linear over channels-last pixels (ConvNeXt's) is convscope's pointwise convolution."""
    if isinstance(module, nn.Linear) and inputs is not None and inputs[0].dim() == 4:
        return "conv pointwise"
    if isinstance(module, nn.Conv2d):
        co, cg, kh, kw = module.weight.shape
        if module.groups > 1 and module.groups == module.in_channels == co:
            return f"conv depthwise {kh}x{kw}"
        if module.groups > 1:
            return "conv grouped"
        return "conv pointwise" if kh * kw == 1 else f"conv {kh}x{kw}"
    return next((k for t, k in KINDS.items() if type(module) is t), None)


def flops(module, out):
    if isinstance(module, nn.Conv2d):
        _, cg, kh, kw = module.weight.shape
        return 2.0 * out.numel() * cg * kh * kw
    if isinstance(module, nn.Linear):
        return 2.0 * module.weight.numel() * out.shape[0]
    return 0.0


def torch_kinds(name, runs):
    model = getattr(torchvision.models, name)().eval()
    x = torch.randn(1, 3, 224, 224)
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, i, o)))
             for m in model.modules() if category(m) is not None]
    with torch.no_grad():
        model(x)
        for h in hooks:
            h.remove()
        kinds = collections.defaultdict(lambda: [0.0, 0.0, 0])
        for module, inputs, out in seen:
            t = median_time(runs, lambda: module(*inputs))
            k = kinds[category(module, inputs)]
            k[0] += t
            k[1] += flops(module, out)
            k[2] += 1
        whole = median_time(runs, lambda: model(x))
    return kinds, whole


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    torch.set_num_threads(threads)
    names = os.environ.get("BENCH_MODELS", "efficientnet_b0,convnext_tiny")
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), BENCH_MODELS=names)
    out = subprocess.run([BINARY, str(runs), "--json"], env=env, check=True,
                         capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    for name in [n for n in names.split(",") if n]:
        ours = collections.defaultdict(lambda: [0.0, 0.0, 0])
        whole_ours = next(r["forward_s"] for r in rows if r.get("forward") == name)
        for r in rows:
            if r.get("model") == name:
                k = ours[r["category"]]
                k[0] += r["seconds"]
                k[1] += r["flops"]
                k[2] += 1
        theirs, whole = torch_kinds(name, runs)
        print(f"{name}: whole forward {whole_ours * 1e3:.1f} ms, PyTorch {whole * 1e3:.1f} ms "
              f"({whole_ours / whole:.2f}x)")
        print(f"  {'kind':<22} {'nodes':>5} {'ours ms':>8} {'torch ms':>8} {'ratio':>6} "
              f"{'ours GF/s':>9} {'torch GF/s':>10}")
        for kind in sorted(ours, key=lambda k: -ours[k][0]):
            t, f, n = ours[kind]
            tt, tf, _ = theirs.get(kind, [None, 0.0, 0])
            ratio = f"{t / tt:6.2f}" if tt else "     -"
            rates = (f"{f / t / 1e9:>9.1f} {tf / tt / 1e9:>10.1f}" if f and tt else "")
            print(f"  {kind:<22} {n:>5} {t * 1e3:>8.2f} "
                  f"{(f'{tt * 1e3:8.2f}' if tt else '       -')} {ratio} {rates}")


if __name__ == "__main__":
    main()

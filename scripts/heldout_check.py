"""Held-out check: one architecture of every family at full size, against PyTorch, with weights
and photos that the test fixtures never saw.

Weights: torchvision's own initialisation under a seed the fixtures do not use, at full width,
with batch norm's running statistics drawn at random (so that folding them is exercised), saved
as a plain .pth state dict. Photos: scikit-image's bundled ones (Chelsea the cat, the astronaut,
the coffee cup, the rocket), centre-cropped square and resized to the model's input in Python
and saved as PNG, so that convscope's `--crop resize` reads them unchanged and both sides see the
same pixels. For every model and photo:

- `convscope predict --json`: all logits against PyTorch's, the largest difference relative to
  the largest logit, and whether the top-5 classes agree;
- `convscope cam --npy`: Grad-CAM at the family's default layer for the top class, at the layer's
  resolution before upsampling, against the same map computed in PyTorch with hooks (the ReLU of
  the gradient-weighted channel sum, min-max normalised as pytorch-grad-cam does) in float64,
  largest difference. Random
  weights can leave a map with little contrast, which min-max normalisation magnifies along with
  float32 rounding: a map passes within 1e-3 of the float64 one, or within twice the difference
  of PyTorch's own float32 map.

With `--timm`, the models are timm's (TIMM_ARCHS, or those named), saved as timm's save_for_hf
writes them (a folder with model.safetensors and config.json), and convscope opens the folder.

With `--onnx` (or `--onnx-dynamo`) each model is exported by torch.onnx.export (the TorchScript or
the dynamo exporter, at opset 17 or 18 unless `--opset=N` says otherwise) and convscope opens the .onnx file instead, with Grad-CAM at the layer its
state dict's family names (so `--layer` is checked to mean the same module from both).

    pip install torch torchvision scikit-image onnx onnxscript
    cargo build --release
    python scripts/heldout_check.py [--onnx | --onnx-dynamo] [--opset=N] [ARCH ...]
    pip install timm; python scripts/heldout_check.py --timm [ARCH ...]

Prints one line per model and photo and exits non-zero when a difference passes the tolerance.
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torchvision
from photos import PHOTOS, square_photo

BINARY = "target/release/convscope"
ARCHS = ["alexnet", "vgg11_bn", "resnet50", "resnext50_32x4d", "wide_resnet50_2",
         "squeezenet1_1", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0",
         "efficientnet_v2_s", "convnext_tiny", "densenet121", "regnet_y_400mf", "regnet_x_400mf",
         "mnasnet1_0", "shufflenet_v2_x1_0", "googlenet", "inception_v3"]
TIMM_ARCHS = ["resnet50d", "resnet26d", "efficientnet_b0", "efficientnetv2_rw_s",
              "mobilenetv3_large_100", "mobilenetv3_small_100", "convnext_tiny", "convnext_atto",
              "regnety_004", "regnetx_002", "densenet121"]
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
SEED = 20261127
LOGIT_TOLERANCE = 1e-4
CAM_TOLERANCE = 1e-3


def make_model(arch, timm=False):
    torch.manual_seed(SEED)
    if timm:
        import timm as timm_models
        model = timm_models.create_model(arch, pretrained=False).eval()
    else:
        kwargs = ({"aux_logits": False, "init_weights": True}
                  if arch in ("googlenet", "inception_v3") else {})
        model = getattr(torchvision.models, arch)(**kwargs).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0.0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
        if timm and getattr(m, "has_skip", False):
            # Residual branches damped, as trained networks' are: the 40 blocks of a random
            # EfficientNetV2 otherwise grow activations to 6e4, where PyTorch's own float32
            # logits differ from float64 by 14%.
            last_norm = [n for n in m.modules() if isinstance(n, torch.nn.BatchNorm2d)][-1]
            last_norm.weight.data *= 0.2
    return model


def photo(name, size, folder):
    path, pixels = square_photo(name, size, folder)
    x = torch.from_numpy(pixels / 255.0).permute(2, 0, 1)
    x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    return path, x[None]


def module_for(model, layer):
    """The torch module whose output is convscope's node `layer`: the module of that path, or,
    for a step named inside a module's forward (ResNet's `relu3`, ConvNeXt's `add`), the module
    it ends. DenseNet's `relu` follows `features` in `DenseNet.forward` and is applied in place,
    so a hook on `features` keeps its output."""
    if layer == "relu" and type(model).__name__ == "DenseNet":  # torchvision's or timm's
        return model.features, "features (ReLU'd in place)"
    try:
        return model.get_submodule(layer), layer
    except AttributeError:
        parent = layer.rsplit(".", 1)[0]
        return model.get_submodule(parent), parent


def torch_gradcam(model, x, layer, cls):
    module, used = module_for(model, layer)
    kept = {}
    handle = module.register_forward_hook(lambda m, i, o: kept.update(a=o))
    x = x.clone().requires_grad_(False)
    out = model(x)
    handle.remove()
    a = kept["a"]
    (g,) = torch.autograd.grad(out[0, cls], a)
    cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1))[0].detach().numpy()
    # pytorch-grad-cam's scale_cam_image: its 1e-7 matters for the tiny maps of random weights.
    cam = cam - cam.min()
    return cam / (1e-7 + cam.max()), used


def run(args):
    result = subprocess.run([BINARY, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"convscope {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def export_onnx(model, size, path, dynamo, opset):
    x = torch.zeros(1, 3, size, size)
    torch.onnx.export(model, (x,), path, dynamo=dynamo,
                      opset_version=opset or (18 if dynamo else 17), external_data=False)


def main():
    args = sys.argv[1:]
    onnx = next((a for a in args if a in ("--onnx", "--onnx-dynamo")), None)
    timm = "--timm" in args
    opset = next((int(a.split("=")[1]) for a in args if a.startswith("--opset=")), None)
    archs = [a for a in args if not a.startswith("--")] or (TIMM_ARCHS if timm else ARCHS)
    torch.set_num_threads(2)
    failures = 0
    with tempfile.TemporaryDirectory() as folder:
        for arch in archs:
            model = make_model(arch, timm)
            size = 299 if arch == "inception_v3" else 224
            if timm:
                # The size the config.json names, which convscope then runs at.
                size = model.pretrained_cfg["input_size"][1]
            ckpt = os.path.join(folder, f"{arch}_heldout.pth")
            if timm:
                from timm.models import save_for_hf
                ckpt = os.path.join(folder, f"{arch}_heldout")
                save_for_hf(model, ckpt, safe_serialization=True)
            else:
                torch.save(model.state_dict(), ckpt)
            layer_args = []
            if onnx:
                # The family's CAM layer, by its module path, for the .onnx file.
                path, _ = photo(PHOTOS[0], size, folder)
                layer = json.loads(run(["cam", "--json", "--crop", "resize", "-o",
                                        os.path.join(folder, "cam.png"), ckpt, path]))["layer"]
                # Its module's path (a step inside a module's forward has no name of its own in
                # an export); DenseNet's functional ReLU after `features` is `relu` in both.
                module = module_for(model, layer)[1]
                layer_args = ["--layer", layer if "in place" in module else module]
                ckpt = os.path.join(folder, f"{arch}_heldout.onnx")
                export_onnx(model, size, ckpt, onnx == "--onnx-dynamo", opset)
            for name in PHOTOS:
                path, x = photo(name, size, folder)
                ours = json.loads(run(["predict", "--json", "--crop", "resize", ckpt, path]))
                with torch.no_grad():
                    theirs = model(x)[0]
                logits = torch.tensor(ours["logits"])
                logit_err = float((logits - theirs).abs().max() / theirs.abs().max())
                top_same = logits.topk(5).indices.tolist() == theirs.topk(5).indices.tolist()
                cls = int(theirs.argmax())
                npy = os.path.join(folder, "cam.npy")
                cam = json.loads(run(["cam", "--json", "--crop", "resize", "--class", str(cls),
                                      "--npy", npy, "-o", os.path.join(folder, "cam.png"),
                                      *layer_args, ckpt, path]))
                ours_map = np.load(npy)
                exact, used = torch_gradcam(model.double(), x.double(), cam["layer"], cls)
                float32, _ = torch_gradcam(model.float(), x, cam["layer"], cls)
                cam_err = (float(np.abs(ours_map - exact).max())
                           if ours_map.shape == exact.shape else float("inf"))
                torch_err = float(np.abs(float32 - exact).max())
                ok = logit_err < LOGIT_TOLERANCE and (cam_err < CAM_TOLERANCE
                                                      or cam_err <= 2 * torch_err)
                failures += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {arch:<20} {name:<10} logits {logit_err:.1e} "
                      f"top-5 {'same' if top_same else 'differs'}  Grad-CAM at {cam['layer']} "
                      f"(torch {used}) {cam_err:.1e}, PyTorch float32 {torch_err:.1e}", flush=True)
    print(f"{failures} of {len(archs) * len(PHOTOS)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

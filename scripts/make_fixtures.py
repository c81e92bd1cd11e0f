"""Makes the PyTorch parity fixtures in tests/fixtures/ (needs torch, torchvision, safetensors).

Reduced-width VGG16 and ResNet50 built from torchvision's own classes and blocks, so the state
dict names are torchvision's; random weights and batch-norm statistics from a fixed seed. For
each model: the checkpoint (safetensors; VGG also as a zip .pth, and as a nested DataParallel
.pth), and the expected outputs: logits, intermediate outputs by module path, and input/layer
gradients of one logit and of the ResNet stem.

    python scripts/make_fixtures.py
"""

import os

import torch
import torch.nn as nn
from safetensors.torch import save_file
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.models.vgg import VGG, make_layers

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
H, W = 64, 80
CLASSES = 10


def randomise_bn(model, gen):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = 1.0 + 0.2 * torch.randn(c, generator=gen)
            m.bias.data = 0.1 * torch.randn(c, generator=gen)
            m.running_mean.data = 0.1 * torch.randn(c, generator=gen)
            m.running_var.data = 1.0 + 0.5 * torch.rand(c, generator=gen)


def small_vgg16():
    cfg = [4, 4, "M", 8, 8, "M", 16, 16, 16, "M", 32, 32, 32, "M", 32, 32, 32, "M"]
    model = VGG(make_layers(cfg, batch_norm=False), num_classes=CLASSES)
    hidden = 16
    model.classifier = nn.Sequential(
        nn.Linear(32 * 7 * 7, hidden), nn.ReLU(True), nn.Dropout(),
        nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(),
        nn.Linear(hidden, CLASSES),
    )
    return model


def small_resnet50(groups=1):
    """ResNet-50's blocks at a sixteenth of the width (with `groups` > 1: ResNeXt-50's, with that
    many groups of 4 channels in the first stage)."""
    model = ResNet(Bottleneck, [3, 4, 6, 3], num_classes=CLASSES, groups=groups)
    # torchvision's own stage builder at a sixteenth of the width.
    model.inplanes = 4
    model.conv1 = nn.Conv2d(3, 4, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(4)
    model.layer1 = model._make_layer(Bottleneck, 4, 3)
    model.layer2 = model._make_layer(Bottleneck, 8, 4, stride=2)
    model.layer3 = model._make_layer(Bottleneck, 16, 6, stride=2)
    model.layer4 = model._make_layer(Bottleneck, 32, 3, stride=2)
    model.fc = nn.Linear(32 * Bottleneck.expansion, CLASSES)
    return model


# The layers the CAM and metric fixtures take their maps at, per reduced model.
CAM_LAYERS = {"vgg16_small": ["features.16", "features.23"], "resnet50_small": ["layer2", "layer3"]}


def fixture_models():
    """The reduced VGG16 and ResNet50 as their fixture checkpoints hold them, each with its
    fixture input and its top two classes on it: (name, model, input, classes)."""
    from safetensors.torch import load_file
    for name, make in [("vgg16_small", small_vgg16), ("resnet50_small", small_resnet50)]:
        model = make()
        missing, unexpected = model.load_state_dict(
            load_file(os.path.join(OUT, f"{name}.safetensors")), strict=False)
        assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), \
            (missing, unexpected)
        model.eval()
        x = load_file(os.path.join(OUT, f"{name}_expected.safetensors"))["input"]
        with torch.no_grad():
            classes = model(x)[0].argsort(descending=True)[:2].tolist()
        yield name, model, x, classes


def capture(model, names, x):
    outs = {}
    modules = dict(model.named_modules())
    hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: outs.__setitem__(n, o)) for n in names]
    logits = model(x)
    for h in hooks:
        h.remove()
    return logits, outs


def layer_gradient(model, layer, x, cls):
    """d logits[0, cls] / d (output of `layer`), and d logits[0, cls] / d input."""
    x = x.clone().requires_grad_(True)
    keep = {}

    def hook(m, i, o):
        o.retain_grad()
        keep["a"] = o

    h = dict(model.named_modules())[layer].register_forward_hook(hook)
    logits = model(x)
    h.remove()
    logits[0, cls].backward()
    return keep["a"].grad.detach(), x.grad.detach()


def fixture(name, model, layers, grad_layer, gen, prepare=None, size=(H, W)):
    """Saves `model`'s checkpoint and expected outputs for an input of `size`; `prepare(model)`
    runs after the batch norms are randomised, before anything is computed."""
    randomise_bn(model, gen)
    if prepare is not None:
        prepare(model)
    model.eval()
    sd = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(sd, os.path.join(OUT, f"{name}.safetensors"))
    x = torch.randn(1, 3, *size, generator=gen)
    with torch.no_grad():
        logits, outs = capture(model, layers, x)
    cls = int(logits[0].argmax())
    g_layer, g_input = layer_gradient(model, grad_layer, x, cls)
    expected = {"input": x, "logits": logits, "class": torch.tensor([cls], dtype=torch.int64),
                f"grad_layer.{grad_layer}": g_layer, "grad_input": g_input}
    for n, o in outs.items():
        expected[f"out.{n}"] = o
    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(OUT, f"{name}_expected.safetensors"))
    return model, sd


def stem_gradient(model, gen):
    """Gradient through conv1, bn1, relu and the padded, overlapping max pool."""
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    x = torch.randn(2, 3, 33, 47, generator=gen).requires_grad_(True)
    y = stem(x)
    cot = torch.randn(y.shape, generator=gen)
    (y * cot).sum().backward()
    # An input with many exact ties in the pool windows: gradients must go to the first maximum.
    xt = torch.zeros(1, 3, 16, 16)
    xt[..., ::3, ::2] = 1.0
    xt.requires_grad_(True)
    pool = nn.MaxPool2d(3, 2, 1)
    yt = pool(xt)
    cot_t = torch.randn(yt.shape, generator=gen)
    (yt * cot_t).sum().backward()
    save_file({"input": x.detach(), "output": y.detach(), "cotangent": cot, "grad_input": x.grad,
               "ties_input": xt.detach(), "ties_output": yt.detach(), "ties_cotangent": cot_t,
               "ties_grad": xt.grad},
              os.path.join(OUT, "resnet50_small_stem.safetensors"))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    vgg, vgg_sd = fixture("vgg16_small", small_vgg16(),
                          ["features.4", "features.16", "features.23", "avgpool"], "features.23", gen)
    torch.save(vgg_sd, os.path.join(OUT, "vgg16_small.pth"))
    nested = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in vgg_sd.items()}}
    torch.save(nested, os.path.join(OUT, "vgg16_small_nested.pth"))
    resnet, _ = fixture("resnet50_small", small_resnet50(),
                        ["maxpool", "layer1", "layer3.2", "layer4", "avgpool"], "layer4", gen)
    stem_gradient(resnet, gen)
    cmyk_jpeg()


def cmyk_jpeg():
    """A small CMYK JPEG (Pillow), for the hostile-input tests: decoders often lack CMYK."""
    from PIL import Image
    im = Image.new("CMYK", (40, 32), (0, 128, 255, 20))
    for x in range(10, 30):
        for y in range(8, 24):
            im.putpixel((x, y), (200, 10, 30, 0))
    im.save(os.path.join(OUT, "cmyk.jpg"), quality=90)


if __name__ == "__main__":
    main()

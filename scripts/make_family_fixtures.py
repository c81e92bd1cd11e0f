"""Makes the PyTorch parity fixtures of the architecture families beyond VGG and ResNet in
tests/fixtures/ (needs torch, torchvision, safetensors), with the helpers of make_fixtures.py.

Each model is torchvision's own class with narrowed modules at the same paths, so the state dict
names are torchvision's; random weights from a fixed seed. For each: the checkpoint
(safetensors) and the expected logits, two intermediate outputs by module path, and the
gradients of the top logit w.r.t. a layer and the input; then pytorch-grad-cam's Grad-CAM maps
(pip install grad-cam) for the top two classes, at `features[-1]` (AlexNet: features.11, since
its last pool is 1x1 at the fixture's 64x80 input), in family_cam_expected.safetensors under
`{model}/{layer}/gradcam/{class}`.

    python scripts/make_family_fixtures.py
"""

import os

import torch
import torch.nn as nn
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from safetensors.torch import load_file, save_file
from torchvision.models.alexnet import AlexNet
from functools import partial

from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.densenet import DenseNet
from torchvision.models.efficientnet import (EfficientNet, FusedMBConvConfig, MBConvConfig,
                                             _efficientnet_conf)
from torchvision.models.googlenet import BasicConv2d, GoogLeNet, Inception
from torchvision.models.inception import BasicConv2d as InceptionConv, Inception3
from torchvision.models.mnasnet import MNASNet
from torchvision.models.mobilenetv2 import MobileNetV2
from torchvision.models.regnet import BlockParams, RegNet
from torchvision.models.shufflenetv2 import ShuffleNetV2
from torchvision.models.mobilenetv3 import mobilenet_v3_large, mobilenet_v3_small
from torchvision.models.squeezenet import Fire, SqueezeNet

import make_fixtures
from make_fixtures import CLASSES, OUT


def round_to_half(model):
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())


def fixture(name, model, layers, grad_layer, gen, size=(make_fixtures.H, make_fixtures.W)):
    """make_fixtures.fixture with every weight and buffer rounded to float16 first, and the
    checkpoint stored in float16 (half the size; the expected outputs are computed in float32
    from the same rounded values, so parity is unaffected)."""
    model, sd = make_fixtures.fixture(name, model, layers, grad_layer, gen, prepare=round_to_half,
                                      size=size)
    save_file({k: v.half() if v.is_floating_point() else v for k, v in sd.items()},
              os.path.join(OUT, f"{name}.safetensors"))
    return model, sd


def small_alexnet():
    model = AlexNet(num_classes=CLASSES)
    w = [8, 16, 16, 16, 16]
    model.features = nn.Sequential(
        nn.Conv2d(3, w[0], kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(w[0], w[1], kernel_size=5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(w[1], w[2], kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(w[2], w[3], kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(w[3], w[4], kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )
    hidden = 16
    model.classifier = nn.Sequential(
        nn.Dropout(), nn.Linear(w[4] * 6 * 6, hidden), nn.ReLU(inplace=True),
        nn.Dropout(), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, CLASSES),
    )
    return model


def small_squeezenet(version, gen):
    model = SqueezeNet(version, num_classes=CLASSES)
    pool = lambda: nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
    if version == "1_0":
        stem = nn.Conv2d(3, 12, kernel_size=7, stride=2)
        fires = [Fire(12, 4, 8, 8), Fire(16, 4, 8, 8), Fire(16, 4, 16, 16), pool(),
                 Fire(32, 4, 16, 16), Fire(32, 6, 24, 24), Fire(48, 6, 24, 24), Fire(48, 8, 32, 32),
                 pool(), Fire(64, 8, 32, 32)]
    else:
        stem = nn.Conv2d(3, 8, kernel_size=3, stride=2)
        fires = [Fire(8, 4, 8, 8), Fire(16, 4, 8, 8), pool(), Fire(16, 4, 16, 16),
                 Fire(32, 4, 16, 16), pool(), Fire(32, 6, 24, 24), Fire(48, 6, 24, 24),
                 Fire(48, 8, 32, 32), Fire(64, 8, 32, 32)]
    model.features = nn.Sequential(stem, nn.ReLU(inplace=True), pool(), *fires)
    final = nn.Conv2d(64, CLASSES, kernel_size=1)
    # A positive bias keeps the ReLU after the class scores open, so logits and gradients are
    # not all zero with random weights.
    final.bias.data = 1.0 + 0.1 * torch.randn(CLASSES, generator=gen)
    model.classifier[1] = final
    return model


def grad_cam_maps(name, model, layer, out):
    model.eval()
    x = load_file(os.path.join(OUT, f"{name}_expected.safetensors"))["input"]
    with torch.no_grad():
        classes = model(x)[0].argsort(descending=True)[:2].tolist()
    target = dict(model.named_modules())[layer]
    with GradCAM(model=model, target_layers=[target]) as cam:
        for c in classes:
            m = cam(input_tensor=x, targets=[ClassifierOutputTarget(c)])[0]
            out[f"{name}/{layer}/gradcam/{c}"] = torch.from_numpy(m).contiguous()


def small_googlenet():
    """GoogLeNet's modules at narrow widths (no auxiliary heads: theirs are fixed at 2048 and
    1024 features)."""
    model = GoogLeNet(num_classes=CLASSES, aux_logits=False, transform_input=False)
    model.conv1 = BasicConv2d(3, 8, kernel_size=7, stride=2, padding=3)
    model.conv2 = BasicConv2d(8, 8, kernel_size=1)
    model.conv3 = BasicConv2d(8, 16, kernel_size=3, padding=1)
    widths = [(4, 4, 8, 2, 4, 4), (8, 4, 8, 2, 4, 4), (8, 4, 8, 2, 4, 4), (8, 4, 8, 2, 4, 4),
              (8, 4, 8, 2, 4, 4), (8, 4, 8, 2, 4, 4), (8, 4, 12, 2, 4, 4), (8, 4, 12, 2, 4, 4),
              (12, 8, 12, 4, 8, 8)]
    names = ["inception3a", "inception3b", "inception4a", "inception4b", "inception4c",
             "inception4d", "inception4e", "inception5a", "inception5b"]
    cin = 16
    for name, w in zip(names, widths):
        setattr(model, name, Inception(cin, *w))
        cin = w[0] + w[2] + w[4] + w[5]
    model.fc = nn.Linear(cin, CLASSES)
    return model


def small_inception_v3():
    """Inception v3 with every BasicConv2d at a sixteenth of its width (at least 4): each is
    rebuilt with its own kernel, stride and padding the first time it runs, on the narrowed
    input it then gets."""
    model = Inception3(num_classes=CLASSES, aux_logits=False, transform_input=False,
                       init_weights=False)

    def narrow(module, args):
        if getattr(module, "narrowed", False):
            return
        c = module.conv
        out = max(4, c.out_channels // 16)
        module.conv = nn.Conv2d(args[0].shape[1], out, c.kernel_size, c.stride, c.padding,
                                bias=False)
        module.bn = nn.BatchNorm2d(out, eps=0.001).eval()
        module.narrowed = True

    for m in model.modules():
        if isinstance(m, InceptionConv):
            m.register_forward_pre_hook(narrow)
    model.fc = nn.Identity()
    model.eval()
    with torch.no_grad():
        features = model(torch.zeros(1, 3, 80, 80)).shape[1]
    model.fc = nn.Linear(features, CLASSES)
    return model


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(4321)
    maps = {}
    alexnet, _ = fixture("alexnet_small", small_alexnet(), ["features.5", "features.11"],
                         "features.12", gen)
    grad_cam_maps("alexnet_small", alexnet, "features.11", maps)
    for version, layers in [("1_0", ["features.5", "features.12"]),
                            ("1_1", ["features.4", "features.12"])]:
        name = f"squeezenet{version}_small"
        model, _ = fixture(name, small_squeezenet(version, gen), layers, "features.12", gen)
        grad_cam_maps(name, model, "features.12", maps)
    # torchvision's own class at a quarter of the width (the last layer keeps its 1280).
    mobilenet = MobileNetV2(num_classes=CLASSES, width_mult=0.25)
    mobilenet, _ = fixture("mobilenet_v2_small", mobilenet, ["features.4", "features.18"],
                           "features.14", gen)
    grad_cam_maps("mobilenet_v2_small", mobilenet, "features.18", maps)
    # torchvision's own builders with a width multiplier.
    for name, make, width, layers, grad, last in [
        ("mobilenet_v3_small_small", mobilenet_v3_small, 0.25, ["features.4", "features.12"],
         "features.9", "features.12"),
        ("mobilenet_v3_large_small", mobilenet_v3_large, 0.25, ["features.6", "features.16"],
         "features.13", "features.16"),
    ]:
        model = make(num_classes=CLASSES, width_mult=width)
        model, _ = fixture(name, model, layers, grad, gen)
        grad_cam_maps(name, model, last, maps)
    # EfficientNet-B0's block counts at a quarter of its width, and V2-S's block counts (fused and
    # depthwise blocks) at small widths and expansion ratios, with a narrow last conv.
    setting, _ = _efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=1.0)
    b0 = EfficientNet(setting, 0.2, num_classes=CLASSES)
    v2s = EfficientNet(
        [FusedMBConvConfig(1, 3, 1, 8, 8, 2), FusedMBConvConfig(2, 3, 2, 8, 8, 4),
         FusedMBConvConfig(2, 3, 2, 8, 16, 4), MBConvConfig(2, 3, 2, 16, 16, 6),
         MBConvConfig(2, 3, 1, 16, 24, 9), MBConvConfig(2, 3, 2, 24, 32, 15)],
        0.2, num_classes=CLASSES, norm_layer=partial(nn.BatchNorm2d, eps=1e-3), last_channel=128)
    for name, model, layers, grad, last in [
        ("efficientnet_b0_small", b0, ["features.3", "features.8"], "features.6", "features.8"),
        ("efficientnet_v2_s_small", v2s, ["features.2", "features.7"], "features.5", "features.7"),
    ]:
        model, _ = fixture(name, model, layers, grad, gen)
        grad_cam_maps(name, model, last, maps)
    # ConvNeXt-T's block counts at a twelfth of its widths; layer scales and layer norms
    # randomised (torchvision starts them at 1e-6 and at 1/0, which would hide mistakes).
    convnext = ConvNeXt([CNBlockConfig(8, 16, 3), CNBlockConfig(16, 32, 3), CNBlockConfig(32, 64, 9),
                         CNBlockConfig(64, None, 3)], num_classes=CLASSES)
    for name, p in convnext.named_parameters():
        if name.endswith("layer_scale"):
            p.data = 0.5 + 0.2 * torch.randn(p.shape, generator=gen)
    for m in convnext.modules():
        if isinstance(m, nn.LayerNorm):
            m.weight.data = 1.0 + 0.2 * torch.randn(m.weight.shape, generator=gen)
            m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=gen)
    convnext, _ = fixture("convnext_tiny_small", convnext, ["features.3", "features.7"],
                          "features.5", gen)
    grad_cam_maps("convnext_tiny_small", convnext, "features.7", maps)
    # DenseNet-121's layers per block with growth 4, bottleneck 8 and 8 initial channels. Maps
    # at denseblock4: features.norm5 (features[-1]) is followed by an in-place ReLU in
    # DenseNet.forward, which rewrites the activations pytorch-grad-cam keeps.
    densenet = DenseNet(growth_rate=4, block_config=(6, 12, 24, 16), num_init_features=8,
                        bn_size=2, num_classes=CLASSES)
    densenet, _ = fixture("densenet121_small", densenet,
                          ["features.denseblock2", "features.transition3"],
                          "features.denseblock4", gen)
    grad_cam_maps("densenet121_small", densenet, "features.denseblock4", maps)
    resnext = make_fixtures.small_resnet50(groups=4)
    resnext, _ = fixture("resnext50_small", resnext, ["layer1", "layer3"], "layer4", gen)
    grad_cam_maps("resnext50_small", resnext, "layer4", maps)
    # RegNetY-400MF's blocks per stage with narrow widths (groups of 8, SE).
    params = BlockParams(depths=[1, 3, 6, 6], widths=[8, 16, 24, 32], group_widths=[8, 8, 8, 8],
                         bottleneck_multipliers=[1.0] * 4, strides=[2] * 4, se_ratio=0.25)
    regnet = RegNet(params, num_classes=CLASSES, stem_width=8)
    regnet, _ = fixture("regnet_y_small", regnet, ["trunk_output.block2", "trunk_output.block4"],
                        "trunk_output.block3", gen)
    grad_cam_maps("regnet_y_small", regnet, "trunk_output", maps)
    mnasnet = MNASNet(alpha=0.25, num_classes=CLASSES)
    mnasnet, _ = fixture("mnasnet_small", mnasnet, ["layers.9", "layers.13"], "layers.12", gen)
    grad_cam_maps("mnasnet_small", mnasnet, "layers.13", maps)
    shufflenet = ShuffleNetV2([4, 8, 4], [8, 16, 32, 64, 128], num_classes=CLASSES)
    shufflenet, _ = fixture("shufflenet_v2_small", shufflenet, ["stage2", "stage4"], "stage3", gen)
    grad_cam_maps("shufflenet_v2_small", shufflenet, "conv5", maps)
    googlenet, _ = fixture("googlenet_small", small_googlenet(), ["inception3b", "inception5b"],
                           "inception4c", gen)
    grad_cam_maps("googlenet_small", googlenet, "inception5b", maps)
    # At 80x80: Inception v3 needs 75x75 at least.
    inception, _ = fixture("inception_v3_small", small_inception_v3(), ["Mixed_5d", "Mixed_6e"],
                           "Mixed_7a", gen, size=(80, 80))
    grad_cam_maps("inception_v3_small", inception, "Mixed_7c", maps)
    save_file(maps, os.path.join(OUT, "family_cam_expected.safetensors"))
    mlp_head()


def mlp_head():
    """A fine-tuned ResNet whose fc is a Sequential of two Linear layers (Dropout, Linear, ReLU,
    Dropout, Linear: the Linear layers at fc.1 and fc.4)."""
    gen = torch.Generator().manual_seed(999)
    model = make_fixtures.small_resnet50()
    model.fc = nn.Sequential(nn.Dropout(0.2), nn.Linear(128, 16), nn.ReLU(), nn.Dropout(0.2),
                             nn.Linear(16, CLASSES))
    fixture("resnet50_mlp_head_small", model, ["layer4", "fc.2"], "fc.1", gen)


if __name__ == "__main__":
    main()

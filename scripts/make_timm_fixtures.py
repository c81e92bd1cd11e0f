"""Makes the parity fixtures of timm's models in tests/fixtures/ (needs torch, timm, safetensors,
grad-cam), with the helpers of make_fixtures.py and make_family_fixtures.py.

Each model is timm's own class at narrow widths, so the state dict names are timm's; random
weights from a fixed seed, rounded to float16. For each: the checkpoint, the expected logits, two
intermediate outputs by module path, the gradients of the top logit w.r.t. a layer and the input,
and pytorch-grad-cam's Grad-CAM maps for the top two classes at the family's `[-1]` layer (in
timm_cam_expected.safetensors under `{model}/{layer}/gradcam/{class}`). Also a timm/Hugging Face
style folder (model.safetensors + config.json as timm's `save_pretrained` writes it) for the
config tests.

    python scripts/make_timm_fixtures.py
"""

import json
import os

import timm
import torch
from safetensors.torch import save_file
from timm.layers import BatchNormAct2d
from timm.models import efficientnet, mobilenetv3
from timm.models.convnext import ConvNeXt
from timm.models.regnet import RegNet, RegNetCfg
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

from make_family_fixtures import fixture, grad_cam_maps
import make_fixtures
from make_fixtures import CLASSES, OUT


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(2468)
    maps = {}
    # resnet50d's layout (deep stem, avg-down shortcuts) with fewer blocks at narrow widths.
    resnet_d = ResNet(Bottleneck, [1, 2, 2, 1], num_classes=CLASSES, channels=(4, 8, 12, 16),
                      stem_width=8, stem_type="deep", avg_down=True)
    resnet_d, _ = fixture("timm_resnet_d_small", resnet_d, ["maxpool", "layer3"], "layer3", gen)
    grad_cam_maps("timm_resnet_d_small", resnet_d, "layer4", maps)
    # resnet18's basic blocks with timm's tiered deep stem and plain shortcuts.
    resnet_t = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=CLASSES, channels=(8, 8, 16, 16),
                      stem_width=8, stem_type="deep_tiered")
    resnet_t, _ = fixture("timm_resnet_tiered_small", resnet_t, ["layer1", "layer3"], "layer2",
                          gen)
    grad_cam_maps("timm_resnet_tiered_small", resnet_t, "layer4", maps)
    # ConvNeXt-T's layout at narrow widths, with the channels-last MLP and with timm's conv_mlp
    # (the atto-nano variants'); layer scales and norms randomised (timm starts them at 1e-6 and
    # 1/0, which would hide mistakes).
    for name, model in [
        ("timm_convnext_small", ConvNeXt(depths=(1, 1, 3, 1), dims=(8, 16, 24, 32),
                                         num_classes=CLASSES)),
        ("timm_convnext_conv_mlp_small", ConvNeXt(depths=(1, 1, 2, 1), dims=(8, 8, 16, 16),
                                                  conv_mlp=True, num_classes=CLASSES)),
    ]:
        for p, t in model.named_parameters():
            if p.endswith("gamma"):
                t.data = 0.5 + 0.2 * torch.randn(t.shape, generator=gen)
            elif ".norm." in p or p.startswith("stem.1") or "downsample.0" in p:
                if p.endswith("weight"):
                    t.data = 1.0 + 0.2 * torch.randn(t.shape, generator=gen)
                else:
                    t.data = 0.1 * torch.randn(t.shape, generator=gen)
        model, _ = fixture(name, model, ["stages.1", "stages.2.blocks.1"], "stages.2", gen)
        grad_cam_maps(name, model, "stages.3", maps)
    # A RegNetY (SE, groups of 8) and a RegNetX at narrow widths.
    for name, cfg in [
        ("timm_regnety_small", RegNetCfg(depth=6, w0=8, wa=8.0, wm=1.5, group_size=8,
                                         se_ratio=0.25, stem_width=8)),
        ("timm_regnetx_small", RegNetCfg(depth=6, w0=8, wa=6.0, wm=1.5, group_size=4,
                                         stem_width=8)),
    ]:
        model = RegNet(cfg, num_classes=CLASSES)
        assert hasattr(model, "s4"), name
        model, _ = fixture(name, model, ["s2", "s3.b1"], "s3", gen)
        grad_cam_maps(name, model, "s4", maps)
    # timm's own builders at narrow widths (EfficientNet-B0's and V2-S's with fewer blocks, V2's
    # edge-residual blocks included; MobileNetV3 large and small at an eighth, half the blocks), with a narrow head.
    for name, make, layers, grad, last in [
        ("timm_efficientnet_b0_small",
         lambda: efficientnet._gen_efficientnet("efficientnet_b0", channel_multiplier=0.125,
                                                depth_multiplier=0.5, num_classes=CLASSES),
         ["blocks.2", "blocks.5.1"], "blocks.4", "bn2"),
        ("timm_efficientnetv2_small",
         lambda: efficientnet._gen_efficientnetv2_s("efficientnetv2_rw_s", rw=True,
                                                    channel_multiplier=0.125,
                                                    depth_multiplier=0.3, num_classes=CLASSES),
         ["blocks.1", "blocks.4"], "blocks.3", "bn2"),
        ("timm_mobilenetv3_large_small",
         lambda: mobilenetv3._gen_mobilenet_v3("mobilenetv3_large_100", 0.125, 0.5,
                                               num_classes=CLASSES),
         ["blocks.2", "blocks.5"], "blocks.4", "blocks"),
        ("timm_mobilenetv3_small_small",
         lambda: mobilenetv3._gen_mobilenet_v3("mobilenetv3_small_100", 0.125, 0.5,
                                               num_classes=CLASSES),
         ["blocks.1", "blocks.4"], "blocks.3", "blocks"),
    ]:
        model, _ = fixture(name, narrow_head(make()), layers, grad, gen)
        grad_cam_maps(name, model, last, maps)
    save_file(maps, os.path.join(OUT, "timm_cam_expected.safetensors"))
    hub_folder(gen)


def narrow_head(model):
    """The builder's model with a 64-wide head conv (timm keeps 1280 whatever the multiplier)."""
    width = 64
    head = model.conv_head
    model.conv_head = torch.nn.Conv2d(head.in_channels, width, 1, bias=head.bias is not None)
    if isinstance(getattr(model, "bn2", None), BatchNormAct2d):
        model.bn2 = BatchNormAct2d(width, act_layer=type(model.bn2.act))
    model.classifier = torch.nn.Linear(width, CLASSES)
    return model


def hub_folder(gen):
    """timm_hub_small/: a three-class fine-tune of the deep-stem ResNet as timm's save_for_hf
    writes it (model.safetensors, config.json with its own input size, mean, std and class
    names), a photo-sized PNG of exactly that input size, and the logits timm gives for it."""
    from PIL import Image
    from timm.models import save_for_hf

    model = timm.create_model("resnet50d", num_classes=3, layers=(1, 1, 1, 1),
                              channels=(4, 8, 8, 8), stem_width=8)
    make_fixtures.randomise_bn(model, gen)
    model.eval()
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    folder = os.path.join(OUT, "timm_hub_small")
    save_for_hf(model, folder, safe_serialization="both",
                model_config={"label_names": ["n001", "n002", "n003"],
                              "label_descriptions": {"n001": "cat", "n002": "dog",
                                                     "n003": "fox"}},
                data_config={"input_size": (3, 48, 64), "mean": mean, "std": std})
    os.remove(os.path.join(folder, "pytorch_model.bin"))
    pixels = torch.randint(0, 256, (48, 64, 3), generator=gen, dtype=torch.uint8)
    Image.fromarray(pixels.numpy()).save(os.path.join(OUT, "timm_hub_small.png"))
    x = (pixels.permute(2, 0, 1).float() / 255 - torch.tensor(mean)[:, None, None]) \
        / torch.tensor(std)[:, None, None]
    with torch.no_grad():
        logits = model(x[None])
    save_file({"logits": logits}, os.path.join(OUT, "timm_hub_small_expected.safetensors"))


if __name__ == "__main__":
    main()

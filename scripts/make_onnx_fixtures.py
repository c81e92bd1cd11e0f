"""Makes the ONNX fixtures in tests/fixtures/ (needs torch, torchvision, safetensors, onnx,
onnxruntime): the reduced-width ResNet-50, EfficientNet-B0 and MobileNetV3-small of
make_fixtures.py / make_family_fixtures.py, with the weights of their committed checkpoints,
exported by torch.onnx.export (the TorchScript exporter for the first two, ResNet with its batch
norms kept, the dynamo exporter for the third), so that the tests can hold a model opened from .onnx to the same expected
outputs and gradients as the one opened from its state dict. Each export is checked against
PyTorch with onnxruntime before it is written.

    python scripts/make_onnx_fixtures.py
"""

import os

import numpy as np
import onnxruntime
import torch
from safetensors.torch import load_file
from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf
from torchvision.models.mobilenetv3 import mobilenet_v3_small

import make_fixtures
from make_fixtures import CLASSES, OUT


def load(model, name):
    sd = {k: v.float() if v.is_floating_point() else v
          for k, v in load_file(os.path.join(OUT, f"{name}.safetensors")).items()}
    model.load_state_dict(sd)
    return model.eval()


def export(model, name, dynamo, keep_batch_norm=False):
    exp = load_file(os.path.join(OUT, f"{name}_expected.safetensors"))
    x = exp["input"]
    path = os.path.join(OUT, f"{name}.onnx")
    with torch.no_grad():
        torch.onnx.export(model, (x,), path, dynamo=dynamo, opset_version=18 if dynamo else 17,
                          input_names=["image"], output_names=["logits"], external_data=False,
                          **({"training": torch.onnx.TrainingMode.PRESERVE} if keep_batch_norm
                             else {}))
        want = model(x).numpy()
    got = onnxruntime.InferenceSession(path).run(None, {"image": x.numpy()})[0]
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err < 1e-5, f"{name}: onnxruntime differs from PyTorch by {err}"
    assert np.abs(want - exp["logits"].numpy()).max() < 1e-4, f"{name}: not the fixture's model"
    print(f"{path}: {os.path.getsize(path)} bytes, onnxruntime within {err:.1e} of PyTorch")


def main():
    # ResNet with its BatchNormalization nodes kept (the exporters fold them into the
    # convolutions otherwise).
    export(load(make_fixtures.small_resnet50(), "resnet50_small"), "resnet50_small", False,
           keep_batch_norm=True)
    setting, _ = _efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=1.0)
    b0 = EfficientNet(setting, 0.2, num_classes=CLASSES)
    export(load(b0, "efficientnet_b0_small"), "efficientnet_b0_small", False)
    mnv3 = mobilenet_v3_small(num_classes=CLASSES, width_mult=0.25)
    export(load(mnv3, "mobilenet_v3_small_small"), "mobilenet_v3_small_small", True)


if __name__ == "__main__":
    main()

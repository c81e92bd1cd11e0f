"""Makes tests/fixtures/cam_expected.safetensors with pytorch-grad-cam 1.5.x (pip install grad-cam).

For the reduced VGG16 and ResNet50 fixtures (scripts/make_fixtures.py) and the same input: the
final maps (ReLU, min-max, cv2 bilinear upsampling to the input, min-max again) of Grad-CAM,
Grad-CAM++, HiResCAM, XGrad-CAM, LayerCAM, Eigen-CAM and Score-CAM, at two layers per model, for
the top two classes. Keys: `{model}/{layer}/{method}/{class}`. Eigen-CAM's SVD sign is arbitrary, so
its map is also stored with the opposite sign, under `eigencam_flipped`.

    python scripts/make_cam_fixtures.py
"""

import os

import torch
from safetensors.torch import save_file
from pytorch_grad_cam import (EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM,
                             XGradCAM)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from make_fixtures import CAM_LAYERS, OUT, fixture_models


class FlippedEigenCAM(EigenCAM):
    def get_cam_image(self, *args, **kwargs):
        return -super().get_cam_image(*args, **kwargs)


METHODS = {"gradcam": GradCAM, "gradcamplusplus": GradCAMPlusPlus, "hirescam": HiResCAM,
           "xgradcam": XGradCAM, "layercam": LayerCAM, "eigencam": EigenCAM,
           "eigencam_flipped": FlippedEigenCAM, "scorecam": ScoreCAM}


def main():
    out = {}
    for name, model, x, classes in fixture_models():
        layers = CAM_LAYERS[name]
        modules = dict(model.named_modules())
        for layer in layers:
            for key, method in METHODS.items():
                with method(model=model, target_layers=[modules[layer]]) as cam:
                    for c in classes:
                        m = cam(input_tensor=x, targets=[ClassifierOutputTarget(c)])[0]
                        out[f"{name}/{layer}/{key}/{c}"] = torch.from_numpy(m).contiguous()
    save_file(out, os.path.join(OUT, "cam_expected.safetensors"))


if __name__ == "__main__":
    main()

"""Makes tests/fixtures/metric_expected.safetensors with pytorch-grad-cam 1.5.x: its confidence
metrics on the reduced VGG16 and ResNet50 fixtures (scripts/make_fixtures.py), for the test of
convscope's `metrics::confidence`.

For each model, two layers, Grad-CAM and Grad-CAM++, and the top two classes: pytorch-grad-cam's
map (the input the metric multiplies), the class's probability before and after
multiplying the input by the map (`CamMultImageConfidenceChange`), `DropInConfidence` and
`IncreaseInConfidence`, all with `ClassifierOutputSoftmaxTarget`; for Grad-CAM also ROAD's
scores after removing the most (`morf`) and least (`lerf`) relevant pixels at the percentiles
10..90, with the noiseless linear imputer (`NoisyLinearImputer(noise=0)`), and the infilled
input at the 50th (first layer and class of each model). Keys `{model}/{layer}/{method}/{class}/{map|before|after|drop|increase|morf|
lerf|morf_50_input|lerf_50_input}`.

    python scripts/make_metric_fixtures.py
"""

import os

import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.metrics.cam_mult_image import (CamMultImageConfidenceChange,
                                                     DropInConfidence, IncreaseInConfidence)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget
from pytorch_grad_cam.metrics.perturbation_confidence import (PerturbationConfidenceMetric,
                                                              RemoveLeastRelevantFirst,
                                                              RemoveMostRelevantFirst)
from pytorch_grad_cam.metrics.road import NoisyLinearImputer
from safetensors.torch import save_file

from make_fixtures import CAM_LAYERS, OUT, fixture_models


PERCENTILES = [10, 20, 30, 40, 50, 60, 70, 80, 90]


def main():
    out = {}
    for name, model, x, classes in fixture_models():
        layers = CAM_LAYERS[name]
        modules = dict(model.named_modules())
        for layer in layers:
            for key, method in {"gradcam": GradCAM, "gradcamplusplus": GradCAMPlusPlus}.items():
                with method(model=model, target_layers=[modules[layer]]) as cam:
                    for c in classes:
                        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(c)])
                        targets = [ClassifierOutputSoftmaxTarget(c)]
                        drop = DropInConfidence()(x, maps, targets, model)
                        increase = IncreaseInConfidence()(x, maps, targets, model)
                        after = CamMultImageConfidenceChange()(x, maps, targets, model,
                                                               return_diff=False)
                        with torch.no_grad():
                            before = torch.softmax(model(x), dim=-1)[0, c]
                        base = f"{name}/{layer}/{key}/{c}"
                        out[f"{base}/map"] = torch.from_numpy(maps[0]).contiguous()
                        out[f"{base}/before"] = before.reshape(1)
                        out[f"{base}/after"] = torch.tensor([float(after[0])])
                        out[f"{base}/drop"] = torch.tensor([float(drop[0])])
                        if key == "gradcam":
                            for name_, remove in (("morf", RemoveMostRelevantFirst),
                                                  ("lerf", RemoveLeastRelevantFirst)):
                                scores = [
                                    float(PerturbationConfidenceMetric(
                                        remove(p, NoisyLinearImputer(noise=0)))(
                                        x, maps, targets, model, return_diff=False)[0])
                                    for p in PERCENTILES]
                                out[f"{base}/{name_}"] = torch.tensor(scores)
                                # The infilled input itself at the 50th percentile (the
                                # random fixture models' probabilities barely move), once per
                                # model.
                                if (layer, c) != (layers[0], classes[0]):
                                    continue
                                out[f"{base}/{name_}_50_input"] = remove(
                                    50, NoisyLinearImputer(noise=0))(
                                    x[0], torch.from_numpy(maps[0])).contiguous()
                        out[f"{base}/increase"] = torch.tensor([float(increase[0])])
    save_file(out, os.path.join(OUT, "metric_expected.safetensors"))


if __name__ == "__main__":
    main()

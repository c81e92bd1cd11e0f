"""Makes tests/fixtures/overlay_expected.safetensors with pytorch-grad-cam 1.5.x and OpenCV
(pip install grad-cam opencv-python-headless): what `show_cam_on_image` draws, for the overlay
test of tests/cam_parity.rs.

- `jet`: OpenCV's COLORMAP_JET as RGB, 256 x 3 (what `cv2.applyColorMap` looks values up in);
- `image` (H, W, 3, uint8) and `mask` (H, W, float32 in 0..1, a smooth blob with noise, its ends
  exactly 0 and 1);
- `overlay_{w}` for image weights 0.5 and 0.7: `show_cam_on_image(image / 255, mask,
  use_rgb=True, image_weight=w)`.

    python scripts/make_overlay_fixtures.py
"""

import os

import cv2
import numpy as np
import torch
from pytorch_grad_cam.utils.image import show_cam_on_image
from safetensors.torch import save_file

from make_fixtures import OUT


def main():
    rng = np.random.default_rng(31)
    h, w = 37, 53
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    blob = np.exp(-(((yy - 12) / 9.0) ** 2 + ((xx - 30) / 14.0) ** 2))
    mask = (blob + 0.05 * rng.random((h, w))).astype(np.float32)
    mask = (mask - mask.min()) / (mask.max() - mask.min())
    jet = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0, ::-1]
    out = {"jet": torch.from_numpy(jet.copy()), "image": torch.from_numpy(image),
           "mask": torch.from_numpy(mask)}
    for weight in (0.5, 0.7):
        drawn = show_cam_on_image(np.float32(image) / 255, mask, use_rgb=True,
                                  image_weight=weight)
        out[f"overlay_{weight}"] = torch.from_numpy(drawn)
    save_file(out, os.path.join(OUT, "overlay_expected.safetensors"))


if __name__ == "__main__":
    main()

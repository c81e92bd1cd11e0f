"""The held-out checks' photos: scikit-image's bundled ones (Chelsea the cat, the astronaut, the
coffee cup, the rocket), centre-cropped square and resized in Python, saved as PNG so that
convscope's `--crop resize` reads them unchanged and both sides see the same pixels."""

import os

import numpy as np
import skimage.data
from PIL import Image

PHOTOS = ["chelsea", "astronaut", "coffee", "rocket"]


def square_photo(name, size, folder):
    """The photo `name` at `size`x`size`: its PNG's path and its pixels, (size, size, 3) float32
    in 0-255."""
    img = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    path = os.path.join(folder, f"{name}_{size}.png")
    img.save(path)
    return path, np.asarray(img, dtype=np.float32)

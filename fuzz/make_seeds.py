"""Writes the fuzzers' seed inputs into fuzz/seeds/ (needs torch, safetensors and Pillow).
The model.toml seeds are written by hand; this makes the binary ones, and copies the small ONNX
test fixtures.

    python fuzz/make_seeds.py
"""

import io
import os
import zipfile

import torch
from PIL import Image
from safetensors.torch import save

SEEDS = os.path.join(os.path.dirname(__file__), "seeds")


def write(target, name, data):
    os.makedirs(os.path.join(SEEDS, target), exist_ok=True)
    with open(os.path.join(SEEDS, target, name), "wb") as f:
        f.write(data)


def main():
    torch.manual_seed(0)
    t = {"features.0.weight": torch.randn(4, 3, 3, 3), "features.0.bias": torch.zeros(4),
         "classifier.6.weight": torch.randn(2, 4)}
    # The checkpoint target's first byte picks the mode: even = a file, odd = a pickle in a zip.
    write("checkpoint", "safetensors.bin", b"\x00" + save(t))
    buf = io.BytesIO()
    torch.save(t, buf)
    pth = buf.getvalue()
    write("checkpoint", "pth.bin", b"\x00" + pth)
    z = zipfile.ZipFile(io.BytesIO(pth))
    pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
    write("checkpoint", "pickle.bin", b"\x01" + z.read(pkl))
    for protocol in (4, 5):
        buf = io.BytesIO()
        torch.save(t, buf, pickle_protocol=protocol)
        z = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
        pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
        write("checkpoint", f"pickle_protocol{protocol}.bin", b"\x01" + z.read(pkl))
    buf = io.BytesIO()
    torch.save({"state_dict": {"module.conv1.weight": torch.randn(2, 3, 1, 1)}, "epoch": 3}, buf)
    write("checkpoint", "nested_pth.bin", b"\x00" + buf.getvalue())

    im = Image.new("RGB", (12, 10), (200, 30, 40))
    for fmt, ext in [("PNG", "png"), ("JPEG", "jpg"), ("GIF", "gif"), ("BMP", "bmp"),
                     ("TIFF", "tiff"), ("WEBP", "webp")]:
        buf = io.BytesIO()
        im.save(buf, fmt)
        write("image", f"seed.{ext}", buf.getvalue())
    buf = io.BytesIO()
    Image.new("I;16", (9, 9)).save(buf, "PNG")
    write("image", "gray16.png", buf.getvalue())

    # Six bytes per parameter: name stem, index, rank, three dimensions (fuzz_targets/detect.rs).
    write("detect", "vgg.bin", bytes([0, 0, 4, 3, 3, 3, 4, 6, 2, 2, 4, 0, 1, 0, 1, 4, 0, 0]))
    write("detect", "resnet.bin", bytes([6, 0, 4, 8, 3, 7, 13, 1, 4, 8, 8, 1, 14, 1, 4, 8, 8, 3,
                                         15, 1, 4, 8, 8, 1, 11, 0, 2, 10, 8, 0]))

    # ONNX: the small test fixtures (scripts/make_onnx_fixtures.py, make_keras_fixtures.py).
    fixtures = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
    for name in ["keras_mobilenet.onnx", "onnx_flattened_gather.onnx", "onnx_unsupported_op.onnx",
                 "onnx_cycle.onnx", "onnx_external/tiny.onnx", "shufflenet_v2_small.onnx"]:
        with open(os.path.join(fixtures, name), "rb") as f:
            write("onnx", os.path.basename(name), f.read())


if __name__ == "__main__":
    main()

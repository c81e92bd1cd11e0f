"""Keras models through ONNX: keras.applications' VGG16, ResNet50 and MobileNetV2 and Chollet's
cats-vs-dogs convnet (Deep Learning with Python, 5.2: one sigmoid output), random weights with
batch norms' moving statistics drawn at random, converted by tf2onnx (NHWC input, as Keras
models take it) and opened by convscope with a model.toml that names keras.applications'
preprocessing ("caffe" for VGG16 and ResNet50: BGR less the mean; "tf" for MobileNetV2 and the
convnet: -1..1). For each model and photo, convscope's probabilities (`predict --json`, the
final softmax or sigmoid applied to the logits it keeps) against Keras's own `predict` on the
same pixels preprocessed by keras.applications' own `preprocess_input`, and a Grad-CAM run
(`cam`) that must succeed.

    python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu tf2onnx scikit-image
    cargo build --release
    /tmp/tfenv/bin/python scripts/keras_check.py [NAME ...]

Prints one line per model and photo and exits non-zero when a difference passes 1e-4.
"""

import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf
import tf2onnx
from photos import PHOTOS, square_photo

BINARY = "target/release/convscope"
TOLERANCE = 1e-4


def cats_vs_dogs(size):
    inp = keras.Input((size, size, 3))
    x = inp
    for filters in [32, 64, 128, 128]:
        x = keras.layers.Conv2D(filters, 3, activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.5)(x)
    x = keras.layers.Dense(512, activation="relu")(x)
    return keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(x))


MODELS = [
    # (name, builder, input size, preprocessing mode)
    # VGG16 at 64x64: tf2onnx needs more than 24 GB to convert its 224x224 classifier.
    ("vgg16", lambda s: keras.applications.VGG16(input_shape=(s, s, 3), weights=None), 64,
     "caffe"),
    ("resnet50", lambda s: keras.applications.ResNet50(input_shape=(s, s, 3), weights=None), 224,
     "caffe"),
    ("mobilenet_v2", lambda s: keras.applications.MobileNetV2(input_shape=(s, s, 3),
                                                              weights=None), 224, "tf"),
    ("cats_vs_dogs", cats_vs_dogs, 150, "tf"),
]


def randomise_batch_norms(model, rng):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.normal(1.0, 0.1, gamma.shape).astype(np.float32),
                               rng.normal(0.0, 0.1, beta.shape).astype(np.float32),
                               rng.normal(0.0, 0.1, mean.shape).astype(np.float32),
                               rng.uniform(0.5, 1.5, var.shape).astype(np.float32)])


def run(args):
    result = subprocess.run([BINARY, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"convscope {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def main():
    keras.utils.set_random_seed(20261128)
    rng = np.random.default_rng(20261128)
    names = sys.argv[1:] or [m[0] for m in MODELS]
    models = [m for m in MODELS if m[0] in names]
    failures = 0
    with tempfile.TemporaryDirectory() as folder:
        for name, build, size, mode in models:
            model = build(size)
            randomise_batch_norms(model, rng)
            spec = (tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),)
            model_dir = os.path.join(folder, name)
            os.makedirs(model_dir)
            tf2onnx.convert.from_keras(model, input_signature=spec, opset=17,
                                       output_path=os.path.join(model_dir, "model.onnx"))
            with open(os.path.join(model_dir, "model.toml"), "w") as f:
                f.write(f'weights = "model.onnx"\npreprocessing = "{mode}"\n')
            preprocess = (keras.applications.vgg16.preprocess_input if mode == "caffe"
                          else keras.applications.mobilenet_v2.preprocess_input)
            for photo_name in PHOTOS:
                path, pixels = square_photo(photo_name, size, folder)
                pixels = pixels[None]
                theirs = model.predict(preprocess(pixels.copy()), verbose=0)[0]
                ours = json.loads(run(["predict", "--json", "--crop", "resize", model_dir, path]))
                logits = np.array(ours["logits"], dtype=np.float64)
                if theirs.shape[0] == 1:
                    # Two classes from one logit: class 1 (positive) scores the logit.
                    probs = 1 / (1 + np.exp(-logits[1:]))
                else:
                    e = np.exp(logits - logits.max())
                    probs = e / e.sum()
                err = float(np.abs(probs - theirs).max() / np.abs(theirs).max())
                cam = json.loads(run(["cam", "--json", "--crop", "resize", "-o",
                                      os.path.join(folder, "cam.png"), model_dir, path]))
                ok = err < TOLERANCE
                failures += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {name:<14} {photo_name:<10} probabilities "
                      f"{err:.1e} ({ours['head']})  Grad-CAM at {cam['layer']}", flush=True)
    print(f"{failures} of {len(models) * len(PHOTOS)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

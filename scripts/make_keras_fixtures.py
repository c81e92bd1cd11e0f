"""Makes the Keras fixtures in tests/fixtures/ (needs tensorflow, tf2onnx, safetensors): three
small Keras models converted to ONNX by tf2onnx (NHWC input, as Keras models take it), with random
weights and batch norms' moving statistics drawn at random, and Keras's own outputs on a fixed
input:

- keras_convnet.onnx: Chollet's cats-vs-dogs convnet (Deep Learning with Python, 5.2) in small:
  convolutions and max pooling, Flatten (in TensorFlow's H, W, C order), Dropout, Dense, and one
  sigmoid output;
- keras_vgg16.onnx: keras.applications.VGG16's layers and names, narrowed;
- keras_mobilenet.onnx: the pieces of keras.applications' MobileNetV2 and ResNet50 in small:
  ZeroPadding2D before a "valid" strided convolution and before a max pool after a ReLU,
  BatchNormalization (tf2onnx writes it as a multiply and an add), ReLU6, DepthwiseConv2D, a
  residual Add, global average pooling, and a softmax over 5 classes.

keras_expected.safetensors holds, per model, the input (NCHW, as convscope's graph takes it),
Keras's output (probabilities) and two layers' outputs (NCHW).

    python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu tf2onnx safetensors
    /tmp/tfenv/bin/python scripts/make_keras_fixtures.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf
import tf2onnx
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
SIZE = 32


def convnet():
    inp = keras.Input((SIZE, SIZE, 3), name="image")
    x = inp
    for i, filters in enumerate([8, 16]):
        x = keras.layers.Conv2D(filters, 3, activation="relu", name=f"conv{i + 1}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    x = keras.layers.Dense(16, activation="relu", name="dense")(x)
    out = keras.layers.Dense(1, activation="sigmoid", name="predictions")(x)
    return keras.Model(inp, out, name="convnet")


def vgg16_shaped():
    """keras.applications.VGG16's layers and names at a sixteenth to a thirty-second of its
    widths (a hundred-and-twenty-eighth in the classifier): five blocks of 3x3 "same"
    convolutions and max pooling, then Flatten and three Dense layers, softmax over 10
    classes."""
    inp = keras.Input((SIZE, SIZE, 3), name="image")
    x = inp
    for block, (convs, filters) in enumerate([(2, 4), (2, 8), (3, 16), (3, 16), (3, 16)], 1):
        for i in range(1, convs + 1):
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                                    name=f"block{block}_conv{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(32, activation="relu", name="fc2")(x)
    out = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name="vgg16")


def mobilenet():
    inp = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name="conv1_pad")(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, use_bias=False, name="conv1")(x)
    x = keras.layers.BatchNormalization(name="conv1_bn")(x)
    x = keras.layers.ReLU(name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    shortcut = x
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="block_dw")(x)
    x = keras.layers.BatchNormalization(name="block_dw_bn")(x)
    x = keras.layers.ReLU(6.0, name="block_dw_relu")(x)
    x = keras.layers.Conv2D(8, 1, use_bias=False, name="block_project")(x)
    x = keras.layers.BatchNormalization(name="block_project_bn")(x)
    x = keras.layers.Add(name="block_add")([shortcut, x])
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(5, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name="mobilenet")


def randomise(model, rng):
    for layer in model.layers:
        weights = layer.get_weights()
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = weights
            layer.set_weights([rng.normal(1.0, 0.2, gamma.shape), rng.normal(0.0, 0.2, beta.shape),
                               rng.normal(0.0, 0.2, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
        elif weights:
            # Biases too (Keras starts them at zero, which would hide a lost bias).
            layer.set_weights([rng.normal(0.0, 0.3, w.shape) for w in weights])


def main():
    keras.utils.set_random_seed(20261128)
    rng = np.random.default_rng(20261128)
    expected = {}
    for name, build, layers in [
        ("keras_convnet", convnet, ["conv2", "pool2"]),
        ("keras_vgg16", vgg16_shaped, ["block3_conv3", "block5_pool"]),
        ("keras_mobilenet", mobilenet, ["pool1", "block_add"]),
    ]:
        model = build()
        randomise(model, rng)
        spec = (tf.TensorSpec((None, SIZE, SIZE, 3), tf.float32, name="image"),)
        path = os.path.join(OUT, f"{name}.onnx")
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=path)
        x = rng.uniform(-1.0, 1.0, (1, SIZE, SIZE, 3)).astype(np.float32)
        expected[f"{name}.input"] = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        expected[f"{name}.probabilities"] = model.predict(x, verbose=0).astype(np.float32)
        # Two layers' outputs, NCHW, by their Keras names.
        for layer in layers:
            sub = keras.Model(model.inputs, model.get_layer(layer).output)
            out = sub.predict(x, verbose=0).transpose(0, 3, 1, 2)
            expected[f"{name}.out.{layer}"] = np.ascontiguousarray(out, dtype=np.float32)
        print(f"{path}: {os.path.getsize(path)} bytes")
    save_file(expected, os.path.join(OUT, "keras_expected.safetensors"))


if __name__ == "__main__":
    main()

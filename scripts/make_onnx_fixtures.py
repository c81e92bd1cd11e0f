"""Makes the ONNX fixtures in tests/fixtures/ (needs torch, torchvision, safetensors, onnx,
onnxruntime): the reduced-width ResNet-50, EfficientNet-B0, ConvNeXt-T, ShuffleNetV2 and
MobileNetV3-small of make_fixtures.py / make_family_fixtures.py, with the weights of their
committed checkpoints, exported by torch.onnx.export (the TorchScript exporter for the first
three, ResNet with its batch norms kept; both exporters for ShuffleNetV2; the dynamo exporter for
MobileNet), so that the tests can hold a model opened from .onnx to the same expected outputs
and gradients as the one opened from its state dict. Each export is checked against PyTorch with
onnxruntime before it is written. Then small graphs with the dynamo exporter's `as_strided` (see
`flattened_gather`), with normalisation baked in (`baked_normalisation`) and with a layer norm's
arithmetic (`layer_norm_arithmetic`), and small files for the error paths (see `hostile`).

    python scripts/make_onnx_fixtures.py
"""

import os

import numpy as np
import onnx
import onnxruntime
import torch
from safetensors.torch import load_file, save_file
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf
from torchvision.models.mobilenetv3 import mobilenet_v3_small
from torchvision.models.shufflenetv2 import ShuffleNetV2

import make_fixtures
from make_fixtures import CLASSES, OUT


def load(model, name):
    sd = {k: v.float() if v.is_floating_point() else v
          for k, v in load_file(os.path.join(OUT, f"{name}.safetensors")).items()}
    model.load_state_dict(sd)
    return model.eval()


def export(model, name, dynamo, keep_batch_norm=False, file=None):
    exp = load_file(os.path.join(OUT, f"{name}_expected.safetensors"))
    x = exp["input"]
    path = os.path.join(OUT, f"{file or name}.onnx")
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


def tiny():
    torch.manual_seed(7)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(4, 3)).eval()


def hostile():
    """Small files for the error paths: a node convscope does not compute (Resize), weights in
    an external file (read), and an external location outside the model's folder (refused)."""
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(5)
    upsample = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Upsample(scale_factor=2))
    path = os.path.join(OUT, "onnx_unsupported_op.onnx")
    torch.onnx.export(upsample.eval(), (x,), path, dynamo=False, opset_version=17)
    model = tiny()
    folder = os.path.join(OUT, "onnx_external")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "tiny.onnx")
    torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17, input_names=["image"])
    proto = onnx.load(path)
    weights = os.path.join(folder, "tiny.weights")
    if os.path.exists(weights):
        os.remove(weights)  # onnx appends to an existing external data file
    onnx.save_model(proto, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="tiny.weights", size_threshold=0)
    got = onnxruntime.InferenceSession(path).run(None, {"image": x.numpy()})[0]
    save_file({"input": x, "logits": torch.from_numpy(got)},
              os.path.join(folder, "tiny_expected.safetensors"))
    proto = onnx.load(path, load_external_data=False)
    for t in proto.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../onnx_unsupported_op.onnx"
    onnx.save_model(proto, os.path.join(folder, "outside.onnx"))
    # The same small model with its height and width left free in the graph.
    torch.onnx.export(model, (x,), os.path.join(OUT, "onnx_free_size.onnx"), dynamo=False,
                      opset_version=17, input_names=["image"],
                      dynamic_axes={"image": {2: "height", 3: "width"}})
    broken_graphs()
    print(f"{folder}: {sorted(os.listdir(folder))}")


def save_small_graph(name, nodes, inits, opset, x):
    """Saves a graph of `nodes` from an `image` of x's shape to 4 `logits`, checked by onnx, and
    onnxruntime's logits for `x` beside it."""
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    path = os.path.join(OUT, f"{name}.onnx")
    onnx.save_model(model, path)
    got = onnxruntime.InferenceSession(path).run(None, {"image": x})[0]
    save_file({"input": torch.from_numpy(x), "logits": torch.from_numpy(got)},
              os.path.join(OUT, f"{name}_expected.safetensors"))


def flattened_gather():
    """The dynamo exporter's `as_strided` of an unchanged tensor, as it writes it in ConvNeXt's
    head (a Reshape to [-1], then a Gather of every element in order, shaped as before), in a
    small graph built with onnx.helper: Conv, ReduceMean, that pair, Flatten, Gemm."""
    from onnx import helper, numpy_helper
    rng = np.random.default_rng(5)
    w = rng.normal(size=(6, 3, 3, 3)).astype(np.float32)
    fc = rng.normal(size=(4, 6)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "conv.weight"),
             numpy_helper.from_array(np.array([-1], np.int64), "flat"),
             numpy_helper.from_array(np.arange(6, dtype=np.int64).reshape(1, 6, 1, 1), "every"),
             numpy_helper.from_array(np.array([2, 3], np.int64), "hw"),
             numpy_helper.from_array(fc, "fc.weight")]
    nodes = [helper.make_node("Conv", ["image", "conv.weight"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("ReduceMean", ["c", "hw"], ["mean"], keepdims=1),
             helper.make_node("Reshape", ["mean", "flat"], ["flat_mean"]),
             helper.make_node("Gather", ["flat_mean", "every"], ["as_strided"], axis=0),
             helper.make_node("Flatten", ["as_strided"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "fc.weight"], ["logits"], transB=1)]
    save_small_graph("onnx_flattened_gather", nodes, inits, 18,
                     rng.normal(size=(1, 3, 8, 8)).astype(np.float32))


def baked_normalisation():
    """Ops exporters write for preprocessing baked into a model and for other activations and
    poolings, in a small graph built with onnx.helper: Sub and Div of a constant per channel
    (mean and std), Conv, LeakyRelu, HardSwish as `x * HardSigmoid(x)`, Mul and Add of scalars,
    AveragePool with padding left out of the count, GlobalMaxPool, Flatten, Gemm."""
    from onnx import helper, numpy_helper
    rng = np.random.default_rng(9)
    inits = [numpy_helper.from_array(np.array([0.485, 0.456, 0.406], np.float32)
                                     .reshape(1, 3, 1, 1), "mean"),
             numpy_helper.from_array(np.array([0.229, 0.224, 0.225], np.float32)
                                     .reshape(1, 3, 1, 1), "std"),
             numpy_helper.from_array(rng.normal(size=(5, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half"),
             numpy_helper.from_array(np.array(0.1, np.float32), "tenth"),
             numpy_helper.from_array(rng.normal(size=(4, 5)).astype(np.float32), "fc")]
    nodes = [helper.make_node("Sub", ["image", "mean"], ["centred"]),
             helper.make_node("Div", ["centred", "std"], ["scaled"]),
             helper.make_node("Conv", ["scaled", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("LeakyRelu", ["c"], ["l"], alpha=0.2),
             # HardSwish as exporters write it before opset 14.
             helper.make_node("HardSigmoid", ["l"], ["gate"], alpha=1.0 / 6.0, beta=0.5),
             helper.make_node("Mul", ["l", "gate"], ["hs"]),
             helper.make_node("Mul", ["hs", "half"], ["m"]),
             helper.make_node("Add", ["m", "tenth"], ["a"]),
             helper.make_node("AveragePool", ["a"], ["avg"], kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1], count_include_pad=0),
             helper.make_node("GlobalMaxPool", ["avg"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1)]
    save_small_graph("onnx_baked_normalisation", nodes, inits, 17,
                     rng.uniform(size=(1, 3, 8, 8)).astype(np.float32))


def layer_norm_arithmetic():
    """A channels-last layer norm as torch.onnx.export writes it before opset 17 (ConvNeXt's
    `LayerNorm` at opset 11-16): ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, then the
    weight's Mul and the bias's Add, between Transposes; opset 13."""
    from onnx import helper, numpy_helper
    rng = np.random.default_rng(13)
    f = np.float32
    inits = [numpy_helper.from_array(rng.normal(size=(6, 3, 3, 3)).astype(f), "w"),
             numpy_helper.from_array(np.array(2.0, f), "two"),
             numpy_helper.from_array(np.array(1e-6, f), "eps"),
             numpy_helper.from_array(rng.normal(1.0, 0.2, size=6).astype(f), "gamma"),
             numpy_helper.from_array(rng.normal(0.0, 0.2, size=6).astype(f), "beta"),
             numpy_helper.from_array(rng.normal(size=(4, 6)).astype(f), "fc")]
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("ReduceMean", ["t"], ["mean"], axes=[-1]),
             helper.make_node("Sub", ["t", "mean"], ["d"]),
             helper.make_node("Pow", ["d", "two"], ["sq"]),
             helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1]),
             helper.make_node("Add", ["var", "eps"], ["ve"]),
             helper.make_node("Sqrt", ["ve"], ["sd"]),
             helper.make_node("Div", ["d", "sd"], ["n"]),
             helper.make_node("Mul", ["n", "gamma"], ["scaled"]),
             helper.make_node("Add", ["scaled", "beta"], ["ln"]),
             helper.make_node("Transpose", ["ln"], ["back"], perm=[0, 3, 1, 2]),
             helper.make_node("GlobalAveragePool", ["back"], ["p"]),
             helper.make_node("Flatten", ["p"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc"], ["logits"], transB=1)]
    save_small_graph("onnx_layer_norm_arithmetic", nodes, inits, 13,
                     rng.normal(size=(1, 3, 8, 8)).astype(np.float32))


def oversized_weight():
    """A float tensor declaring 10^12 values and holding 16 bytes (make_tensor would refuse)."""
    from onnx import TensorProto
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, raw_data=b"\0" * 16)
    t.dims.extend([1000000, 1000000, 1, 1])
    return t


def broken_graphs():
    """Graphs no exporter writes, built with onnx.helper and saved unchecked: a cycle (each Relu
    reads the other's output), a dangling input (a Conv reading a weight nothing provides), and a
    weight declaring a trillion values it does not hold."""
    from onnx import TensorProto, helper
    image = [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])]
    out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])]
    graphs = {
        "onnx_cycle": ([helper.make_node("Relu", ["image_or_y"], ["x"]),
                        helper.make_node("Add", ["x", "y"], ["image_or_y"]),
                        helper.make_node("Relu", ["x"], ["y"])], []),
        "onnx_dangling": ([helper.make_node("Conv", ["image", "w"], ["y"])], []),
        "onnx_oversized": ([helper.make_node("Conv", ["image", "w"], ["y"])],
                           [oversized_weight()]),
    }
    for name, (nodes, inits) in graphs.items():
        graph = helper.make_graph(nodes, name, image, out, inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        with open(os.path.join(OUT, f"{name}.onnx"), "wb") as f:
            f.write(model.SerializeToString())


def main():
    # ResNet with its BatchNormalization nodes kept (the exporters fold them into the
    # convolutions otherwise).
    export(load(make_fixtures.small_resnet50(), "resnet50_small"), "resnet50_small", False,
           keep_batch_norm=True)
    setting, _ = _efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=1.0)
    b0 = EfficientNet(setting, 0.2, num_classes=CLASSES)
    export(load(b0, "efficientnet_b0_small"), "efficientnet_b0_small", False)
    convnext = ConvNeXt([CNBlockConfig(8, 16, 3), CNBlockConfig(16, 32, 3),
                         CNBlockConfig(32, 64, 9), CNBlockConfig(64, None, 3)], num_classes=CLASSES)
    export(load(convnext, "convnext_tiny_small"), "convnext_tiny_small", False)
    # ShuffleNetV2 from both exporters: the TorchScript one writes `chunk` as shape arithmetic
    # and Slice nodes, the dynamo one as Split.
    for dynamo, file in [(False, "shufflenet_v2_small"), (True, "shufflenet_v2_small_dynamo")]:
        shufflenet = ShuffleNetV2([4, 8, 4], [8, 16, 32, 64, 128], num_classes=CLASSES)
        export(load(shufflenet, "shufflenet_v2_small"), "shufflenet_v2_small", dynamo, file=file)
    mnv3 = mobilenet_v3_small(num_classes=CLASSES, width_mult=0.25)
    export(load(mnv3, "mobilenet_v3_small_small"), "mobilenet_v3_small_small", True)
    flattened_gather()
    baked_normalisation()
    layer_norm_arithmetic()
    hostile()


if __name__ == "__main__":
    main()

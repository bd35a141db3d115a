"""``yamlnet export``: a trained model as an ONNX file, for onnxruntime, Netron and the serving tools.

The ONNX graph takes what ``yamlnet predict`` takes — raw images, float32 (N, n_H, n_W, n_C),
channels-last, N free, under the name ``input`` — and does everything inside: the model's
normalization, a transpose to ONNX's channels-first, every layer in inference mode, and the final
softmax (``probabilities``, or ``logits`` for a model without one). Class names and the resolved
model file travel in the metadata. Needs the ``onnx`` package: ``pip install "yamlnet[onnx]"``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from yamlnet.errors import ConfigError
from yamlnet.graph import INPUT, Graph
from yamlnet.npzio import write_bytes_atomic

#: the default opset, and the IR version each opset is stamped with: current onnx packages stamp their
#: own, newer IR version, which older onnxruntime releases refuse to load
OPSET = 17
IR_VERSIONS = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}
_ACTIVATIONS = {"relu": ("Relu", {}), "leaky_relu": ("LeakyRelu", {"alpha": 0.01}), "sigmoid": ("Sigmoid", {}),
                "tanh": ("Tanh", {})}


def _onnx():
    try:
        import onnx
        return onnx
    except ImportError:
        raise ConfigError('yamlnet export needs the onnx package: pip install "yamlnet[onnx]"') from None


def export(source, out: str | Path | None = None, opset: int = OPSET) -> tuple[Path, Path]:
    """Write the model of ``source`` (a run directory: its best.npz; or a model .npz) as ONNX to ``out``
    (default: beside it, ``<name>.onnx``). Returns (the ONNX file, the model file it came from)."""
    from yamlnet import runs
    from yamlnet.model import load_model

    onnx = _onnx()
    if opset not in IR_VERSIONS:
        raise ConfigError(f"--opset must be one of {', '.join(map(str, IR_VERSIONS))}, got {opset}")
    model_file = runs.model_file(source)
    model = load_model(model_file)
    proto = to_onnx(model, opset)
    onnx.checker.check_model(proto, full_check=True)
    source = Path(source)
    out = Path(out) if out is not None else (source if source.is_dir() else source.parent) / f"{model.name}.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, proto.SerializeToString())
    return out, model_file


def to_onnx(model, opset: int = OPSET):
    """The ``onnx.ModelProto`` of a yamlnet ``Model`` (its weights, normalization and class names)."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    nodes, initializers = [], []

    def constant(name: str, array: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attributes) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def activate(name: str, activation: str, x: str) -> str:
        if activation in ("", "linear"):
            return x
        op, attributes = _ACTIVATIONS[activation]
        return node(op, [x], f"{name}/{activation}", **attributes)

    def flat(name: str, x: str, shape) -> str:
        """A volume (NCHW inside ONNX) flattened in yamlnet's H, W, C order."""
        if len(shape) != 3:
            return x
        return node("Flatten", [node("Transpose", [x], f"{name}/nhwc", perm=[0, 2, 3, 1])], f"{name}/flat", axis=1)

    n_c = model.input_shape[-1]  # (a model never trained knows no normalization: the identity)
    shift, scale = model.normalization or (np.zeros(n_c, model.dtype), np.ones(n_c, model.dtype))
    x = node("Sub", ["input", constant("normalization/shift", shift)], "normalization/centred")
    x = node("Div", [x, constant("normalization/scale", scale)], "normalization/scaled")
    outputs = {INPUT: node("Transpose", [x], "input/nchw", perm=[0, 3, 1, 2])}
    shapes = {INPUT: model.input_shape}
    graph = Graph.of(model.layers)
    for index, layer in enumerate(model.layers):
        name, kind, config = layer.name, layer.type, layer.config
        sources = [outputs[source] for source in graph.sources[index]]
        source_shape = shapes[graph.sources[index][0]]
        x = sources[0]
        if kind == "conv2d":
            w = constant(f"{name}/W", layer.params["W"].transpose(3, 2, 0, 1))
            x = node("Conv", [x, w, constant(f"{name}/b", layer.params["b"])], f"{name}/conv",
                     kernel_shape=[layer.f, layer.f], strides=[layer.s, layer.s], pads=[layer.p] * 4)
        elif kind in ("maxpool2d", "avgpool2d"):
            attributes = {"kernel_shape": [layer.f, layer.f], "strides": [layer.s, layer.s], "pads": [layer.p] * 4}
            if kind == "avgpool2d":
                attributes["count_include_pad"] = 1  # yamlnet counts padded zeros; ONNX's default does not
            x = node("MaxPool" if kind == "maxpool2d" else "AveragePool", [x], f"{name}/pool", **attributes)
        elif kind == "dense":
            x = node("Gemm", [flat(name, x, source_shape), constant(f"{name}/W", layer.params["W"]),
                              constant(f"{name}/b", layer.params["b"])], f"{name}/gemm")
        elif kind == "flatten":
            x = flat(name, x, source_shape)
        elif kind == "batchnorm":
            x = node("BatchNormalization", [x, constant(f"{name}/gamma", layer.params["gamma"]),
                                            constant(f"{name}/beta", layer.params["beta"]),
                                            constant(f"{name}/running_mean", layer.state["running_mean"]),
                                            constant(f"{name}/running_var", layer.state["running_var"])],
                     f"{name}/bn", epsilon=float(config["eps"]))
        elif kind == "globalavgpool2d":
            x = node("Flatten", [node("GlobalAveragePool", [x], f"{name}/gap")], f"{name}/flat", axis=1)
        elif kind == "add":
            x = node("Sum", sources, f"{name}/sum")
        elif kind == "concat":
            x = node("Concat", sources, f"{name}/concat", axis=1)
        elif kind == "softmax":
            x = node("Softmax", [x], f"{name}/softmax", axis=-1)
        elif kind not in ("dropout", "activation"):
            raise ConfigError(f"layer type {kind} has no ONNX form yet")  # a new type must add one here
        x = activate(name, layer.activation, x)
        outputs[index], shapes[index] = x, layer.output_shape
    final = "probabilities" if model.layers[-1].type == "softmax" else "logits"
    nodes.append(helper.make_node("Identity", [outputs[len(model.layers) - 1]], [final], name=final))
    n_h, n_w, n_c = model.input_shape
    onnx_graph = helper.make_graph(
        nodes, model.name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", n_h, n_w, n_c])],
        [helper.make_tensor_value_info(final, TensorProto.FLOAT, ["N", model.output_shape[0]])],
        initializers)
    proto = helper.make_model(onnx_graph, producer_name="yamlnet", opset_imports=[helper.make_opsetid("", opset)],
                              doc_string=f"{model.name}: raw images (N, {n_h}, {n_w}, {n_c}) float32 → {final}")
    proto.ir_version = IR_VERSIONS[opset]
    from yamlnet import __version__
    proto.producer_version = __version__
    helper.set_model_props(proto, {"classes": json.dumps(model.classes), "yamlnet_config": json.dumps(model.config)})
    return onnx.shape_inference.infer_shapes(proto)

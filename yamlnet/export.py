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


class OnnxGraph:
    """The ONNX graph being written: what a layer's ``onnx`` method adds its nodes to."""

    def __init__(self):
        from onnx import helper, numpy_helper
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.initializers = [], []

    def constant(self, name: str, array: np.ndarray) -> str:
        """A float32 initializer named ``name``: its name."""
        self.initializers.append(self.numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attributes) -> str:
        """One node of operator ``op``: its output's name, ``output``."""
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def flat(self, name: str, x: str, shape) -> str:
        """``x`` flattened in yamlnet's H, W, C order, if ``shape`` is a volume (NCHW inside ONNX)."""
        if len(shape) != 3:
            return x
        return self.node("Flatten", [self.node("Transpose", [x], f"{name}/nhwc", perm=[0, 2, 3, 1])], f"{name}/flat",
                         axis=1)

    def activate(self, name: str, activation: str, x: str) -> str:
        if activation in ("", "linear"):
            return x
        op, attributes = _ACTIVATIONS[activation]
        return self.node(op, [x], f"{name}/{activation}", **attributes)


def to_onnx(model, opset: int = OPSET):
    """The ``onnx.ModelProto`` of a yamlnet ``Model`` (its weights, normalization and class names):
    each layer adds its own nodes (``Layer.onnx``); one whose type has none is refused in one line."""
    onnx = _onnx()
    from onnx import TensorProto, helper

    graph_out = OnnxGraph()
    n_c = model.input_shape[-1]  # (a model never trained knows no normalization: the identity)
    shift, scale = model.normalization or (np.zeros(n_c, model.dtype), np.ones(n_c, model.dtype))
    x = graph_out.node("Sub", ["input", graph_out.constant("normalization/shift", shift)], "normalization/centred")
    x = graph_out.node("Div", [x, graph_out.constant("normalization/scale", scale)], "normalization/scaled")
    outputs = {INPUT: graph_out.node("Transpose", [x], "input/nchw", perm=[0, 3, 1, 2])}
    shapes = {INPUT: model.input_shape}
    graph = Graph.of(model.layers)
    for index, layer in enumerate(model.layers):
        sources = graph.sources[index]
        try:
            x = layer.onnx(graph_out, [outputs[source] for source in sources], shapes[sources[0]])
        except NotImplementedError:
            raise ConfigError(f"layer {layer.name}: type {layer.type} has no ONNX form ({type(layer).__name__} "
                              f"defines no onnx() method)") from None
        outputs[index], shapes[index] = graph_out.activate(layer.name, layer.activation, x), layer.output_shape
    nodes, initializers = graph_out.nodes, graph_out.initializers
    final = "probabilities" if model.layers[-1].gives_probabilities else "logits"
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

"""Planning: a resolved config becomes layers with every shape worked out, before any weight or data
exists — and the one sequence of refusals that validate, summary, sweep and train all go through.

``make_layers`` resolves every layer's ``inputs`` (names to indices, once) and each shape; ``plan``
adds what training would refuse that is known without reading a data file: a model that is no
classifier of its data set, weights to load that do not fit, and (asked for) the memory estimate.
"""

from __future__ import annotations

import numpy as np

from yamlnet import checkpoint
from yamlnet.config import Document, resolve
from yamlnet.config.loader import OneLine, OneLineList, dump_yaml
from yamlnet.config.schema import suggest
from yamlnet.data import DATASETS, class_names
from yamlnet.errors import ConfigError, DataError, ShapeError
from yamlnet.graph import INPUT, Graph
from yamlnet.layers import LAYERS, Layer
from yamlnet.layers.activation import RELU_LIKE
from yamlnet.layers.base import shape_text
from yamlnet.memory import training_memory
from yamlnet.sizes import format_bytes, parse_size
from yamlnet.npzio import read_npz


def resolve_inputs(config: dict, document: Document | None = None) -> list[list[int]]:
    """Each layer's ``inputs`` as indices, checked: names that exist and come earlier, one input for
    a plain layer, two or more for a join, and no output that nothing reads (a dead branch)."""
    from yamlnet.layers import LAYERS

    document = document or Document(data=config)
    names = [layer["name"] for layer in config["layers"]]
    sources = []
    for index, layer in enumerate(config["layers"]):
        given = layer.get("inputs")
        wanted = [given] if isinstance(given, str) else list(given) if given is not None else \
            [names[index - 1] if index else "input"]
        path = ("layers", index, "inputs")
        resolved = []
        for position, name in enumerate(wanted):
            where = path + (position,) if isinstance(given, list) else path
            resolved.append(_index_of(name, index, names, document, where))
        joins = LAYERS[layer["type"]].joins
        if joins and len(resolved) < 2:
            raise document.error(path if given is not None else ("layers", index, "type"),
                                 f"{layer['type']} joins two or more inputs, got {_listed(wanted)}; "
                                 f"name them: inputs: [a, b]")
        if not joins and len(resolved) > 1:
            raise document.error(path, f"{layer['type']} takes one input, got {len(wanted)} ({', '.join(wanted)}); "
                                       f"join them first with add or concat")
        sources.append(resolved)
    read = {source for inputs in sources for source in inputs}
    for index, name in enumerate(names[:-1]):
        if index not in read:
            raise document.error(("layers", index), f"the output of {name} is never used: no later layer reads it "
                                                     f"(a dead branch); name it in a later layer's inputs, or "
                                                     f"remove the layer")
    return sources


def _index_of(name: str, index: int, names: list[str], document: Document, where: tuple) -> int:
    if name == "input":
        return INPUT
    if name in names[:index]:
        return names.index(name)
    if name == names[index]:
        raise document.error(where, f"layer {name} cannot read its own output")
    if name in names[index + 1:]:
        later = names.index(name, index + 1)
        raise document.error(where, f"{name} is layers[{later}], listed after this layer; inputs may name only "
                                    f"input or layers listed earlier (the file order is the order they run in)")
    hint = suggest(name, ["input", *names[:index]]) or f"; layers before it: {', '.join(['input', *names[:index]])}"
    raise document.error(where, f"no layer named '{name}'{hint}", kind=ConfigError)


def _listed(names: list[str]) -> str:
    return f"one ({names[0]})" if len(names) == 1 else ", ".join(names)


def make_layers(config: dict, document: Document | None = None) -> list[Layer]:
    """The layers of ``config`` with ``inputs`` (resolved and checked), ``input_shape`` and
    ``output_shape`` set; no weights yet. ``Graph.of(layers)`` gives their wiring."""
    document = document or Document(data=config)
    graph = Graph.from_sources(resolve_inputs(config, document))
    names = ["input", *(layer["name"] for layer in config["layers"])]
    shapes = {INPUT: tuple(config["input"])}
    layers = []
    for index, layer_config in enumerate(config["layers"]):
        layer = LAYERS[layer_config["type"]](layer_config["name"], layer_config)
        layer.inputs = [names[source + 1] for source in graph.sources[index]]
        in_shapes = [shapes[source] for source in graph.sources[index]]
        try:
            shapes[index] = layer.set_input_shape(in_shapes if layer.joins else in_shapes[0])
        except ShapeError as error:
            raise document.error(("layers", index) + ((error.key,) if error.key else ()), error.message,
                                 kind=ShapeError) from None
        layers.append(layer)
    return layers


def plan(source, overrides=(), *, memory_check: bool = False) -> tuple[dict, list[Layer]]:
    """The resolved config of ``source`` and its layers with every shape worked out — no weights —
    refusing whatever training would refuse that is known without reading a data file. With
    ``memory_check``, also refuse a model whose training would not fit ``training.max_memory``."""
    config, document = resolve(source, overrides)
    return config, checked_layers(config, document, memory_check=memory_check)


def checked_layers(config: dict, document: Document | None = None, *, memory_check: bool = True,
                   init_weights: bool = True) -> list[Layer]:
    """The layers of a resolved config through the one sequence of refusals that validate, summary,
    sweep and train all go through, in this order: the layers and their shapes, a classifier of its
    data set, the weights to load (not for a resumed run, which loads its own), and
    (``memory_check``) the training-memory estimate."""
    layers = make_layers(config, document)
    check_classifier(config, layers, document)
    if init_weights:
        check_init_weights(config, layers, document)
    if memory_check:
        check_memory(config, layers, document)
    return layers


def check_init_weights(config: dict, layers: list[Layer],
                       document: Document | None = None) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """What ``training.init_weights`` gives each layer with parameters — "" where its weights load,
    else why not — and the arrays read from it (empty without init_weights). Refuses a layer in
    ``init_layers`` or ``freeze`` that the model lacks, and one in ``init_layers`` that cannot be loaded."""
    document = document or Document(data=config)
    training = config["training"]
    names = [layer.name for layer in layers]
    for key in ("init_layers", "freeze"):
        for position, name in enumerate(training.get(key) or []):
            if name not in names:
                raise document.error(("training", key, position), f"no layer named {name}; layers are "
                                                                   f"{', '.join(names)}")
    if not training.get("init_weights"):
        if training.get("init_layers"):
            raise document.error(("training", "init_layers"), "needs training.init_weights: the weights to load")
        return {}, {}
    from yamlnet import runs
    try:
        arrays = read_npz(runs.model_file(training["init_weights"]), "model file")
    except DataError as error:
        raise document.error(("training", "init_weights"), f"{error.file}: {error.message}", kind=DataError) from None
    wanted = training.get("init_layers")
    reasons = {}
    for layer in layers:
        state = {key: shape for key, (shape, _) in layer.state_shapes().items()}
        shapes = {**layer.param_shapes(), **state}
        if not shapes:
            continue
        stored = {key: arrays.get(checkpoint.layer_key("state" if key in state else "params", layer.name, key))
                  for key in shapes}
        if wanted is not None and layer.name not in wanted:
            reasons[layer.name] = "not in init_layers"
        elif any(value is None for value in stored.values()):
            reasons[layer.name] = "no such layer there"
        else:
            differ = [key for key in shapes if stored[key].shape != tuple(shapes[key])]
            reasons[layer.name] = (f"{differ[0]} is {shape_text(stored[differ[0]].shape)} there, "
                                   f"{shape_text(shapes[differ[0]])} here" if differ else "")
        if wanted is not None and layer.name in wanted and reasons[layer.name]:
            raise document.error(("training", "init_layers", wanted.index(layer.name)),
                                 f"{layer.name} cannot be loaded from {training['init_weights']}: "
                                 f"{reasons[layer.name]}", kind=ShapeError)
    return reasons, arrays


def check_classifier(config: dict, layers: list[Layer], document: Document | None = None) -> None:
    """Refuse a model that cannot be trained as a classifier of its data set: softmax before the
    last layer, an output that is a volume, or a class count or image size that differs from a
    built-in data set's. (A model without a final softmax is fine: its outputs are logits.)"""
    document = document or Document(data=config)
    last = len(layers) - 1
    for index, layer in enumerate(layers[:-1]):
        if layer.gives_probabilities:
            raise document.error(("layers", index, "type"), f"{layer.type} may only be the last layer (training "
                                 f"fuses it with the loss); remove it or move it to the end", kind=ShapeError)
    output = layers[-1].output_shape
    if len(output) != 1:
        raise document.error(("layers", last), f"the model ends in a volume {shape_text(output)}; a classifier "
                             f"ends in a vector of class scores (flatten or dense, then softmax)", kind=ShapeError)
    dataset = DATASETS[config["data"]["dataset"]]
    if config["data"].get("cache", "memory") != "memory" and not dataset.streams:
        raise document.error(("data", "cache"), f"the {dataset.name} data set is held in memory; none and disk "
                                                f"are for folder and npz", kind=DataError)
    if config["data"].get("classes"):
        try:
            class_names(config["data"], output[0])
        except DataError as error:
            raise document.error(("data", "classes"), error.message, kind=ShapeError) from None
    if dataset.name == "folder" and config["input"][2] not in (1, 3):
        raise document.error(("input",), f"images are read as grey (n_C = 1) or RGB (n_C = 3), not "
                                         f"{config['input'][2]} channels", kind=ShapeError)
    if dataset.image_shape and tuple(config["input"]) != dataset.image_shape:
        raise document.error(("input",), f"the {dataset.name} data set's images are "
                             f"{shape_text(dataset.image_shape)}, not {shape_text(config['input'])}", kind=ShapeError)
    if dataset.n_classes and dataset.n_classes != output[0]:
        index = next((i for i in range(last, -1, -1) if "units" in layers[i].config), last)
        path = ("layers", index, "units") if "units" in layers[index].config else ("layers", index)
        raise document.error(path, f"the model has {output[0]} outputs but the {dataset.name} data set has "
                             f"{dataset.n_classes} classes", kind=ShapeError)


def check_memory(config: dict, layers: list[Layer], document: Document | None = None) -> None:
    """Refuse, before allocating anything, a model whose training would need more than
    ``training.max_memory``: the message gives the estimate and the layer that dominates it."""
    limit = parse_size(config["training"]["max_memory"])
    estimates = training_memory(config, layers)
    total = sum(size for size, _ in estimates)
    if total <= limit:
        return
    document = document or Document(data=config)
    index = max(range(len(estimates)), key=lambda i: estimates[i][0])
    size, what = estimates[index]
    path = ("layers", index) if index < len(layers) else ("data",)
    where = f"its {what}" if index < len(layers) else what
    raise document.error(path, f"training would need about {format_bytes(total)} at batch_size "
                               f"{config['training']['batch_size']}, over training.max_memory "
                               f"({format_bytes(limit)}); the largest part, {format_bytes(size)}, is {where}. "
                               f"Use a smaller batch_size or layer, or raise training.max_memory")


def initializer(layers: list[Layer], graph: Graph, index: int) -> str:
    """"he" when the layer's output reaches a ReLU-like activation before any other weights — its
    own, or an ``activation`` or ``add`` layer that reads it (through pooling, dropout, batchnorm and
    the like) —; else "glorot"."""

    def reaches_relu(activation: str, at: int) -> bool:
        if activation not in ("", "linear"):
            return activation in RELU_LIKE
        return any(reaches_relu(layers[reader].activation, reader) for reader in graph.readers[at]
                   if layers[reader].transparent_to_init)

    return "he" if reaches_relu(layers[index].activation, index) else "glorot"


def expanded_yaml(source, overrides=()) -> str:
    """The model file with its blocks and repeats written out (``yamlnet expand``): plain YAML, with no
    ``blocks:``, that yamlnet reads as the same model, weights and all. Checked like any file first."""
    config, document = resolve(source, overrides)
    checked_layers(config, document)
    data = dict(document.data)
    if isinstance(data.get("input"), list):
        data["input"] = OneLineList(data["input"])
    data["layers"] = [OneLine(layer) for layer in data["layers"]]
    return dump_yaml(data)

"""How much memory training a model would take, estimated from its shapes before anything is
allocated: the model refuses to be built over ``training.max_memory``, and ``summary`` prints it."""

from __future__ import annotations

from yamlnet.execution import in_place
from yamlnet.graph import Graph

BYTES = {"float32": 4, "float64": 8}


def elements(shape) -> int:
    n = 1
    for size in shape:
        n *= size
    return n


_OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "adam": 2}


def training_memory(config: dict, layers: list) -> list[tuple[int, str]]:
    """Estimated bytes of training at ``training.batch_size``, per layer: (bytes, what dominates).

    Counts each layer's weights, gradients and optimizer state; its output and the gradient of it
    for the whole batch (outputs kept for later readers are among them), and one more gradient per
    extra reader; a conv's im2col columns and input-gradient buffers. The data set is counted apart
    (the last entry, ``data_memory``) where its size is known before loading.
    """
    estimates = layer_memory(config, layers)
    data = data_memory(config, sum(size for size, _ in estimates))
    return estimates + ([data] if data else [])


def model_bytes(config: dict, layers: list) -> int:
    """Estimated bytes of training the model, its data left out."""
    return sum(size for size, _ in layer_memory(config, layers))


def layer_memory(config: dict, layers: list) -> list[tuple[int, str]]:
    """``training_memory``'s entries of the layers: (bytes, what dominates) each."""
    training = config["training"]
    itemsize = BYTES[training["dtype"]]
    batch = training["batch_size"]
    copies = 2 + _OPTIMIZER_SLOTS[training["optimizer"]]
    graph = Graph.of(layers)
    overwriting = in_place(layers, graph)
    estimates = []
    for index, layer in enumerate(layers):
        weights = layer.param_count() * itemsize * copies
        # its output (none of its own where it overwrites its input) and the gradient of it, plus one
        # more gradient to add up per extra reader
        arrays = (1 if index in overwriting else 2) + max(0, len(graph.readers[index]) - 1)
        activations = arrays * batch * elements(layer.output_shape) * itemsize
        parts = {"weights": weights, "activations": activations,
                 "im2col and input-gradient buffers": layer.scratch_bytes(batch, itemsize)}
        estimates.append((sum(parts.values()), max(parts, key=parts.get)))
    return estimates


def data_memory(config: dict, model_bytes: int) -> tuple[int, str] | None:
    """Bytes of the data set while training, where its size is known before loading it (generated
    shapes, a folder's images, an npz's arrays): all its images in memory, or (``data.cache`` none or
    disk) the batches read ahead and a validation chunk. None where it is not known."""
    from yamlnet.data.stream import choose_cache, image_count, streamed_bytes

    count = image_count(config)
    if count is None:
        return None
    cache, _ = choose_cache(config, model_bytes, count)
    if cache == "memory":
        return count * elements(config["input"]) * 4, f"{count:,} images held in memory"
    return streamed_bytes(config, count), f"batches read ahead (data.cache: {cache})"

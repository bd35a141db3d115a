"""How much memory training a model would take, estimated from its shapes before anything is
allocated: the model refuses to be built over ``training.max_memory``, and ``summary`` prints it."""

from __future__ import annotations

from yamlnet.graph import Graph

BYTES = {"float32": 4, "float64": 8}


def format_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.2f} {unit}"
        n /= 1024


def elements(shape) -> int:
    n = 1
    for size in shape:
        n *= size
    return n


_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "adam": 2}


def parse_size(size: int | str) -> int:
    """``2GiB`` → 2147483648; an integer is a number of bytes."""
    if isinstance(size, int):
        return size
    text = size.strip().upper()
    unit = text.lstrip("0123456789. ")
    return int(float(text[:len(text) - len(unit)]) * _UNITS[unit.strip()])


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
    readers = Graph.of(layers).readers
    estimates = []
    for index, layer in enumerate(layers):
        weights = layer.param_count() * itemsize * copies
        # its output and the gradient of it, plus one more gradient to add up per extra reader
        activations = (2 + max(0, len(readers[index]) - 1)) * batch * elements(layer.output_shape) * itemsize
        parts = {"weights": weights, "activations": activations,
                 "im2col and input-gradient buffers": layer.scratch_bytes(batch, itemsize)}
        estimates.append((sum(parts.values()), max(parts, key=parts.get)))
    return estimates


def data_memory(config: dict, model_bytes: int) -> tuple[int, str] | None:
    """Bytes of the data set while training, where its size is known before loading it (generated
    shapes, a folder's images, an npz's arrays): all its images in memory, or (``data.cache`` none or
    disk) the batches read ahead and a validation chunk. None where it is not known."""
    from yamlnet.data import DATASETS
    from yamlnet.data.stream import READ_THREADS, choose_cache
    from yamlnet.evaluate import BATCH

    data = config["data"]
    dataset = DATASETS[data["dataset"]]
    if dataset.count is None:
        return None
    image = elements(config["input"]) * 4
    cache, _ = choose_cache(config, model_bytes)
    if cache == "memory":
        count = dataset.count(data, tuple(config["input"]))
        return count * image, f"{count:,} images held in memory"
    batches = (data["prefetch"] + READ_THREADS + 1) * config["training"]["batch_size"] + 2 * BATCH
    return batches * image, f"batches read ahead (data.cache: {cache})"

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
    (the last entry) where its size is known before loading: generated shapes, a folder's images.
    """
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
    data = config["data"]
    if data["dataset"] == "shapes":
        count = data["n_samples"] + data["n_test"]
        estimates.append((count * elements(config["input"]) * 4, f"{count:,} generated images"))
    elif data["dataset"] == "folder":
        from yamlnet.data.folder import count_images
        count = count_images(data)
        estimates.append((count * elements(config["input"]) * 4, f"{count:,} decoded images"))
    return estimates


"""What ``yamlnet summary`` shows: shapes, f / s / p, params and mult-adds, before any weight exists."""

from __future__ import annotations

from yamlnet.graph import Graph
from yamlnet.layers import Layer
from yamlnet.layers.base import shape_text

BYTES = {"float32": 4, "float64": 8}


def summarize(config: dict, layers: list[Layer]) -> dict:
    """The summary as JSON-ready data: ``{"name", "input", "layers": [...], "total_params", "total_macs"}``."""
    return {
        "name": config["name"],
        "input": list(config["input"]),
        "layers": [{"name": layer.name, "type": layer.type, "inputs": list(layer.inputs),
                    "output_shape": list(layer.output_shape), "params": layer.param_count(), "macs": layer.macs()}
                   for layer in layers],
        "total_params": sum(layer.param_count() for layer in layers),
        "total_macs": sum(layer.macs() for layer in layers),
    }


def format_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.2f} {unit}"
        n /= 1024


def render(config: dict, layers: list[Layer], explain: bool = False) -> str:
    """A table in the manner of Keras' ``model.summary()``; with ``explain``, the arithmetic under each row."""
    itemsize = BYTES[config["training"]["dtype"]]
    # a graph gets Keras' "Connected to" column: what each layer reads; a chain needs none
    graph = not Graph.of(layers).is_chain
    header = ("Layer (type)", "Output shape", "f / s / p", "Activation", "Params", "Mult-adds") + \
        (("Inputs",) if graph else ())
    rows, notes = [], {}
    for layer in layers:
        fsp = layer.hyperparameter_text()
        if fsp and layer.drops_pixels():
            fsp += " *"
            notes["*"] = "* floor() leaves input rows or columns that no window covers"
        activation = layer.activation if layer.activation not in ("", "linear") else ""
        rows.append((f"{layer.name} ({layer.type})", shape_text(layer.output_shape), fsp, activation,
                     f"{layer.param_count():,}", f"{layer.macs():,}") + ((", ".join(layer.inputs),) if graph else ())
                    + (layer.explain() if explain else [],))
    columns = len(header)
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(columns)]
    right = {4, 5}

    def line(cells):
        return "  ".join(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                         for i, cell in enumerate(cells)).rstrip()

    rule = "─" * len(line(header))
    total_params = sum(layer.param_count() for layer in layers)
    activations = sum(_elements(layer.output_shape) for layer in layers)
    out = [f"Model: {config['name']}    input: {shape_text(config['input'])}    dtype: {config['training']['dtype']}",
           rule, line(header), rule]
    for row in rows:
        out.append(line(row[:columns]))
        out.extend(" " * 4 + step for step in row[columns])
    out += [rule,
            f"Total params: {total_params:,}",
            f"Parameter memory: {format_bytes(total_params * itemsize)}",
            f"Total mult-adds: {sum(layer.macs() for layer in layers):,}",
            f"Activation memory per sample: {format_bytes((_elements(config['input']) + activations) * itemsize)}",
            f"Training memory at batch {config['training']['batch_size']} (estimate): "
            f"{format_bytes(sum(size for size, _ in training_memory(config, layers)))}"]
    if layers[-1].type != "softmax":
        out.append("The model ends without softmax: its outputs are taken as logits (softmax cross-entropy "
                   "in training, softmax in predict)")
    out += list(notes.values())
    return "\n".join(out)


def _elements(shape) -> int:
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


def training_memory(config: dict, layers: list[Layer]) -> list[tuple[int, str]]:
    """Estimated bytes of training at ``training.batch_size``, per layer: (bytes, what dominates).

    Counts each layer's weights, gradients and optimizer state; its output and the gradient of it
    for the whole batch (outputs kept for later readers are among them), and one more gradient per
    extra reader; a conv's im2col columns and input-gradient buffers. The data set is counted apart
    (the last entry) where its size is known before loading: generated shapes, a folder's images.
    """
    from yamlnet.kernels import MAX_COLS_BYTES

    training = config["training"]
    itemsize = BYTES[training["dtype"]]
    batch = training["batch_size"]
    copies = 2 + _OPTIMIZER_SLOTS[training["optimizer"]]
    readers = Graph.of(layers).readers
    estimates = []
    for index, layer in enumerate(layers):
        weights = layer.param_count() * itemsize * copies
        # its output and the gradient of it, plus one more gradient to add up per extra reader
        activations = (2 + max(0, len(readers[index]) - 1)) * batch * _elements(layer.output_shape) * itemsize
        columns = 0
        if layer.type == "conv2d":
            n_h, n_w, _ = layer.output_shape
            per_sample = n_h * n_w * layer.f * layer.f * layer.input_shape[2] * itemsize
            columns = min(batch * per_sample, MAX_COLS_BYTES) + 2 * batch * _elements(layer.input_shape) * itemsize
        parts = {"weights": weights, "activations": activations, "im2col and input-gradient buffers": columns}
        estimates.append((sum(parts.values()), max(parts, key=parts.get)))
    data = config["data"]
    if data["dataset"] == "shapes":
        count = data["n_samples"] + data["n_test"]
        estimates.append((count * _elements(config["input"]) * 4, f"{count:,} generated images"))
    elif data["dataset"] == "folder":
        from yamlnet.data.folder import count_images
        count = count_images(data)
        estimates.append((count * _elements(config["input"]) * 4, f"{count:,} decoded images"))
    return estimates


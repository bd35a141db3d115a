"""What ``yamlnet summary`` shows: shapes, f / s / p, params and mult-adds, before any weight exists."""

from __future__ import annotations

from yamlnet.config.blocks import group_path, shared_groups
from yamlnet.graph import Graph
from yamlnet.layers import Layer
from yamlnet.layers.base import shape_text
from yamlnet.memory import BYTES, elements, training_memory
from yamlnet.sizes import format_bytes


def summarize(config: dict, layers: list[Layer]) -> dict:
    """The summary as JSON-ready data: ``{"name", "input", "layers": [...], "total_params", "total_macs"}``."""
    return {
        "name": config["name"],
        "input": list(config["input"]),
        "layers": [{"name": layer.name, "type": layer.type, "block": group_path(layer.name),
                    "inputs": list(layer.inputs), "output_shape": list(layer.output_shape),
                    "params": layer.param_count(), "macs": layer.macs()}
                   for layer in layers],
        "total_params": sum(layer.param_count() for layer in layers),
        "total_macs": sum(layer.macs() for layer in layers),
    }


def _group_row(group: str, members: list[Layer], depth: int, graph: bool) -> tuple:
    """A block use's (or a repeat's) row: its name, what it is, its last layer's shape, its totals."""
    copies = {layer.name[len(group) + 1:].split(".")[0] for layer in members}
    numbered = all(copy.isdigit() for copy in copies)
    what = "block" if any(len(group_path(layer.name)) > depth + 1 for layer in members) or not numbered \
        else members[0].type
    what += f" × {len(copies)}" if numbered else ""
    return ("  " * depth + f"{group} ({what})", shape_text(members[-1].output_shape), "", "",
            f"{sum(layer.param_count() for layer in members):,}", f"{sum(layer.macs() for layer in members):,}") \
        + ((", ".join(members[0].inputs),) if graph else ()) + ([],)


def render(config: dict, layers: list[Layer], explain: bool = False, depth: int | None = None) -> str:
    """A table in the manner of Keras' ``model.summary()``; with ``explain``, the arithmetic under each row.
    The layers of a block use (named ``<use>.<layer>``) come under a row of the use with its totals;
    ``depth`` shows that many levels of them (1: the file's own rows only), as torchinfo's does."""
    itemsize = BYTES[config["training"]["dtype"]]
    # a graph gets Keras' "Connected to" column: what each layer reads; a chain needs none
    graph = not Graph.of(layers).is_chain
    header = ("Layer (type)", "Output shape", "f / s / p", "Activation", "Params", "Mult-adds") + \
        (("Inputs",) if graph else ())
    rows, notes, open_groups = [], {}, []
    for layer in layers:
        groups = group_path(layer.name)
        shared = shared_groups(open_groups, groups)
        for level, group in enumerate(groups[shared:], start=shared):
            if depth is None or level < depth:
                members = [other for other in layers if other.name.startswith(group + ".")]
                rows.append(_group_row(group, members, level, graph))
        open_groups = groups
        if depth is not None and len(groups) >= depth:
            continue
        fsp = layer.hyperparameter_text()
        if fsp and layer.drops_pixels():
            fsp += " *"
            notes["*"] = "* floor() leaves input rows or columns that no window covers"
        activation = layer.activation if layer.activation not in ("", "linear") else ""
        rows.append(("  " * len(groups) + f"{layer.name} ({layer.type})", shape_text(layer.output_shape), fsp, activation,
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
    activations = sum(elements(layer.output_shape) for layer in layers)
    out = [f"Model: {config['name']}    input: {shape_text(config['input'])}    dtype: {config['training']['dtype']}",
           rule, line(header), rule]
    for row in rows:
        out.append(line(row[:columns]))
        out.extend(" " * 4 + step for step in row[columns])
    out += [rule,
            f"Total params: {total_params:,}",
            f"Parameter memory: {format_bytes(total_params * itemsize)}",
            f"Total mult-adds: {sum(layer.macs() for layer in layers):,}",
            f"Activation memory per sample: {format_bytes((elements(config['input']) + activations) * itemsize)}",
            f"Training memory at batch {config['training']['batch_size']} (estimate): "
            f"{format_bytes(sum(size for size, _ in training_memory(config, layers)))}"]
    if not layers[-1].gives_probabilities:
        out.append("The model ends without softmax: its outputs are taken as logits (softmax cross-entropy "
                   "in training, softmax in predict)")
    out += list(notes.values())
    return "\n".join(out)


def render_html(config: dict, layers: list[Layer]) -> str:
    """The summary as an HTML table, for notebooks (``Model._repr_html_``): a row per layer, then the totals."""
    from html import escape

    head = ("Layer", "Type", "Output shape", "f / s / p", "Activation", "Params", "Mult-adds")
    right = ' style="text-align:right"'

    def row(layer) -> str:
        cells = (layer.name, layer.type, shape_text(layer.output_shape), layer.hyperparameter_text(),
                 "" if layer.activation in ("", "linear") else layer.activation, f"{layer.param_count():,}",
                 f"{layer.macs():,}")
        return "<tr>" + "".join(f"<td{right if i >= 5 else ''}>{escape(str(cell))}</td>"
                                for i, cell in enumerate(cells)) + "</tr>"

    rows = "".join(row(layer) for layer in layers)
    total_params = sum(layer.param_count() for layer in layers)
    return (f"<p><b>{escape(config['name'])}</b> — input {shape_text(config['input'])}, "
            f"{config['training']['dtype']}</p><table><thead><tr>"
            + "".join(f"<th>{name}</th>" for name in head) + f"</tr></thead><tbody>{rows}</tbody></table>"
            f"<p>Total params: {total_params:,} · Total mult-adds: {sum(layer.macs() for layer in layers):,}</p>")

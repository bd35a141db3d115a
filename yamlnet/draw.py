"""``yamlnet draw``: the network as the lecture draws it — activation volumes as boxes labelled
n_H × n_W × n_C, arrows labelled with the layer and its f / s / p — as PNG or SVG, or as Mermaid."""

from __future__ import annotations

from pathlib import Path

from yamlnet.errors import ConfigError
from yamlnet.layers.base import shape_text

_SHAPE_CHANGING = {"conv2d", "maxpool2d", "avgpool2d", "flatten", "dense"}
#: volumes in one row of the picture; longer networks wrap onto more rows
PER_ROW = 5
#: what ``--out``'s extension says to write
FORMATS = {".png": "png", ".svg": "svg", ".md": "mermaid", ".mmd": "mermaid"}


def format_for(format_: str | None, out: Path | None) -> str:
    """The format to draw in: ``--format`` if given, else ``--out``'s extension, else png; the two must agree."""
    if format_ is not None and format_ not in set(FORMATS.values()):
        raise ConfigError(f"--format must be png, svg or mermaid, got {format_!r}")
    if out is None:
        return format_ or "png"
    inferred = FORMATS.get(Path(out).suffix.lower())
    if inferred is None:
        raise ConfigError(f"--out {out}: draw writes .png, .svg, or Mermaid text to .md or .mmd, "
                          f"not {Path(out).suffix or 'a file without an extension'}")
    if format_ is not None and format_ != inferred:
        raise ConfigError(f"--format {format_} does not match --out {out} ({inferred})")
    return inferred


def stages(config: dict, layers) -> list[tuple[str, str]]:
    """[(edge label, node label)] from the input to the prediction. Layers that keep the shape
    (activation, dropout) join the label of the arrow before them."""
    chain = []
    for layer in layers:
        label = f"{layer.name}"
        if layer.hyperparameter_text():
            label += f" {layer.hyperparameter_text()}"
        if layer.activation not in ("", "linear") and layer.type != "activation":
            label += f" + {layer.activation}"
        if layer.type in _SHAPE_CHANGING or layer.type == "softmax" or not chain:
            chain.append([label, shape_text(layer.output_shape)])
        else:
            chain[-1][0] += f" → {label}" if layer.type != "activation" else f" + {layer.activation}"
    nodes = [("", f"X-input\n{shape_text(config['input'])}")]
    for index, (edge, shape) in enumerate(chain, start=1):
        last = index == len(chain)
        name = "Prediction" if last and layers[-1].type == "softmax" else f"Layer {index}"
        nodes.append((edge, f"{name}\n{shape}"))
    return nodes


def mermaid(config: dict, layers) -> str:
    """A Mermaid ``graph LR`` of the chain, like the course notes' figure."""
    nodes = stages(config, layers)
    lines = ["graph LR"]
    for index, (edge, label) in enumerate(nodes):
        text = label.replace("\n", "<br/>")
        node = f'N{index}["{text}"]'
        if index == 0:
            first = node
            continue
        previous = first if index == 1 else f"N{index - 1}"
        lines.append(f'{previous} --> |"{edge}"| {node}')
    return "\n".join(lines) + "\n"


def draw(config: dict, layers, path: Path) -> Path:
    """Boxes sized by the volume's height and depth, in a row; saved as PNG or SVG by ``path``'s suffix."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, Rectangle

    nodes = stages(config, layers)
    shapes = [tuple(config["input"])] + [layer.output_shape for layer in layers
                                         if layer.type in _SHAPE_CHANGING or layer.type == "softmax"]
    shapes = shapes[:len(nodes)]
    tallest = max(shape[0] for shape in shapes if len(shape) == 3) if any(len(s) == 3 for s in shapes) else 1
    # At most PER_ROW volumes a row, rows under each other: text keeps its size however long the network.
    gap, slot, row_height = 2.2, 3.0, 3.4
    n_rows = -(-len(nodes) // PER_ROW)
    figure, axis = plt.subplots(figsize=(2.6 * min(len(nodes), PER_ROW) + 0.6, 3.3 * n_rows + 0.3))
    previous = None
    for index, ((edge, label), shape) in enumerate(zip(nodes, shapes)):
        row, column = divmod(index, PER_ROW)
        x, y = column * slot, -row * row_height
        # a volume: height ∝ n_H, width ∝ n_C (channels grow as the picture shrinks); a vector: a thin bar
        height = 0.3 + 1.7 * (shape[0] / tallest if len(shape) == 3 else min(1, shape[0] / 2000) ** 0.5)
        width = 0.25 + (0.6 * min(1, shape[2] / 64) if len(shape) == 3 else 0.12)
        axis.add_patch(Rectangle((x, y - height / 2), width, height,
                                 facecolor="#cfe3f7" if len(shape) == 3 else "#f7dfc6", edgecolor="#333"))
        axis.text(x + width / 2, y - height / 2 - 0.12, label, ha="center", va="top", fontsize=8)
        if previous is not None:
            start, end, text = previous, (x - 0.05, y), edge.replace(" f=", "\nf=")
            if start[1] != y:  # onto the next row: right, down between the rows, back left, down, in
                middle = start[1] - 0.6 * row_height
                axis.plot([start[0], start[0] + 0.3, start[0] + 0.3, x - 0.4, x - 0.4],
                          [start[1], start[1], middle, middle, y], color="black", linewidth=1)
                axis.text(x - 0.3, middle - 0.1, text, ha="left", va="top", fontsize=7)
                start = (x - 0.4, y)
            else:
                axis.text((start[0] + end[0]) / 2, y + 0.15, text, ha="center", va="bottom", fontsize=7)
            axis.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12))
        previous = (x + width + 0.05, y)
    axis.set_xlim(-0.5, slot * min(len(nodes), PER_ROW) - slot + gap)
    axis.set_ylim(-(n_rows - 1) * row_height - 1.9, 1.3)
    axis.axis("off")
    axis.set_title(f"{config['name']}", fontsize=10)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120, format=path.suffix.lstrip(".").lower() or "png")
    plt.close(figure)
    return path

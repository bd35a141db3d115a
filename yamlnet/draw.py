"""``yamlnet draw``: the network as the lecture draws it — activation volumes as boxes labelled
n_H × n_W × n_C, arrows labelled with the layer and its f / s / p — as PNG or SVG, or as Mermaid."""

from __future__ import annotations

from pathlib import Path

from yamlnet.errors import ConfigError
from yamlnet.layers.base import shape_text

_SHAPE_CHANGING = {"conv2d", "maxpool2d", "avgpool2d", "flatten", "dense"}
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
    gap, x = 2.2, 0.0
    figure, axis = plt.subplots(figsize=(max(6, 2.6 * len(nodes)), 3.6))
    centres = []
    for index, ((edge, label), shape) in enumerate(zip(nodes, shapes)):
        # a volume: height ∝ n_H, width ∝ n_C (channels grow as the picture shrinks); a vector: a thin bar
        height = 0.3 + 1.7 * (shape[0] / tallest if len(shape) == 3 else min(1, shape[0] / 2000) ** 0.5)
        width = 0.25 + (0.6 * min(1, shape[2] / 64) if len(shape) == 3 else 0.12)
        axis.add_patch(Rectangle((x, -height / 2), width, height, facecolor="#cfe3f7" if len(shape) == 3 else "#f7dfc6",
                                 edgecolor="#333"))
        axis.text(x + width / 2, -height / 2 - 0.12, label, ha="center", va="top", fontsize=8)
        if index:
            start = centres[-1]
            axis.add_patch(FancyArrowPatch((start, 0), (x - 0.05, 0), arrowstyle="-|>", mutation_scale=12))
            axis.text((start + x) / 2, 0.15, edge.replace(" f=", "\nf="), ha="center", va="bottom", fontsize=7)
        centres.append(x + width + 0.05)
        x += width + gap
    axis.set_xlim(-0.3, x - gap + 0.8)
    axis.set_ylim(-1.9, 1.3)
    axis.axis("off")
    axis.set_title(f"{config['name']}", fontsize=10)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120, format=path.suffix.lstrip(".").lower() or "png")
    plt.close(figure)
    return path

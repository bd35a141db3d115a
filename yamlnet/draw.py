"""``yamlnet draw``: the network as the lecture draws it — activation volumes as boxes labelled
n_H × n_W × n_C, arrows labelled with the layer and its f / s / p — as PNG or SVG, or as Mermaid.

A chain is drawn left to right, five volumes a row; a graph top to bottom, one row per step of
depth, so that parallel branches stand side by side and every join shows the arrows that meet in it.
The layers of a block use (``<use>.<layer>``, ``yamlnet.config.blocks``) are framed together and
the frame named after the use; a model with blocks is drawn as a graph."""

from __future__ import annotations

from pathlib import Path

from yamlnet.config.blocks import group_path, shared_groups
from yamlnet.errors import ConfigError
from yamlnet.graph import INPUT, Graph
from yamlnet.layers.base import shape_text
from yamlnet.figures import pyplot, save

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
        if not layer.drawn_inside or not chain:
            chain.append([layer.label(), shape_text(layer.output_shape)])
        else:
            chain[-1][0] += layer.drawn_after(chain=True)
    nodes = [("", f"X-input\n{shape_text(config['input'])}")]
    for index, (edge, shape) in enumerate(chain, start=1):
        last = index == len(chain)
        name = "Prediction" if last and layers[-1].gives_probabilities else f"Layer {index}"
        nodes.append((edge, f"{name}\n{shape}"))
    return nodes


def graph_nodes(config: dict, layers) -> list[dict]:
    """The boxes of a graph: {"label", "shape", "sources" (box indices)}, the input first. A
    batchnorm, activation or dropout that alone reads a layer is drawn in that layer's box."""
    graph = Graph.of(layers)
    nodes = [{"label": "X-input", "shape": tuple(config["input"]), "sources": [], "groups": []}]
    box = {INPUT: 0}
    for index, layer in enumerate(layers):
        sources = graph.sources[index]
        if layer.drawn_inside and sources[0] != INPUT and graph.readers[sources[0]] == (index,):
            box[index] = box[sources[0]]
            nodes[box[index]]["label"] += layer.drawn_after(chain=False)
            continue
        kind = f" ({layer.type})" if layer.drawn_with_type else ""
        nodes.append({"label": layer.label() + kind, "shape": layer.output_shape,
                      "sources": [box[source] for source in sources], "groups": group_path(layer.name)})
        box[index] = len(nodes) - 1
    return nodes


def drawn_as_graph(layers) -> bool:
    """A graph, or a chain with blocks (whose frames need the graph's layout)."""
    return not Graph.of(layers).is_chain or any(group_path(layer.name) for layer in layers)


def mermaid(config: dict, layers) -> str:
    """A Mermaid ``graph LR`` of a chain, like the course notes' figure; ``graph TD`` of a graph,
    one node per box of ``graph_nodes``, a ``subgraph`` per block use, and an edge per input."""
    if drawn_as_graph(layers):
        nodes = graph_nodes(config, layers)
        lines, open_groups = ["graph TD"], []
        for index, node in enumerate(nodes):
            shared = shared_groups(open_groups, node["groups"])
            lines += ["end"] * (len(open_groups) - shared)
            lines += [f'subgraph {group.replace(".", "_")} ["{group}"]' for group in node["groups"][shared:]]
            open_groups = node["groups"]
            lines.append(f'N{index}["{node["label"]}<br/>{shape_text(node["shape"])}"]'.replace("\n", "<br/>"))
        lines += ["end"] * len(open_groups)
        lines += [f"N{source} --> N{index}" for index, node in enumerate(nodes) for source in node["sources"]]
        return "\n".join(lines) + "\n"
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
    """The picture, saved as PNG or SVG by ``path``'s suffix: a chain in rows, a graph top to bottom."""
    return (draw_graph if drawn_as_graph(layers) else draw_chain)(config, layers, path)


def draw_graph(config: dict, layers, path: Path) -> Path:
    """One row per step of depth (the longest path from the input), branches side by side; a box per
    ``graph_nodes`` entry, blue for volumes, orange for vectors; an arrow per input."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    plt = pyplot()
    nodes = graph_nodes(config, layers)
    depth = [0] * len(nodes)
    for index, node in enumerate(nodes):  # as early as its inputs allow …
        depth[index] = 1 + max((depth[source] for source in node["sources"]), default=-1)
    readers: dict[int, list[int]] = {}
    for index, node in enumerate(nodes):
        for source in node["sources"]:
            readers.setdefault(source, []).append(index)
    for index in range(len(nodes) - 1, 0, -1):  # … then as late as its readers allow: short arrows
        if index in readers:
            depth[index] = min(depth[reader] for reader in readers[index]) - 1
    rows: dict[int, list[int]] = {}
    for index in range(len(nodes)):
        rows.setdefault(depth[index], []).append(index)
    width, height, column, row_height = 2.3, 0.75, 2.7, 1.25
    widest = max(len(row) for row in rows.values())
    figure, axis = plt.subplots(figsize=(column * widest + 0.4, row_height * len(rows) * 0.85 + 0.6))
    centre = {}
    for level, members in rows.items():
        for k, index in enumerate(members):
            x = (k - (len(members) - 1) / 2) * column
            y = -level * row_height
            centre[index] = (x, y)
            node = nodes[index]
            axis.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.03",
                                          facecolor="#cfe3f7" if len(node["shape"]) == 3 else "#f7dfc6",
                                          edgecolor="#333"))
            axis.text(x, y, f"{node['label']}\n{shape_text(node['shape'])}", ha="center", va="center", fontsize=7)
    _frame_groups(axis, nodes, centre, width, height)
    for index, node in enumerate(nodes):
        for source in node["sources"]:
            (x0, y0), (x1, y1) = centre[source], centre[index]
            if y0 - y1 <= row_height * 1.01:  # the next row: straight down
                arrow = FancyArrowPatch((x0, y0 - height / 2 - 0.03), (x1, y1 + height / 2 + 0.03),
                                        arrowstyle="-|>", mutation_scale=10, linewidth=0.8)
            else:  # a skip connection: out of the box's side, down beside the rows it skips, back in
                side = 1 if x1 >= 0 else -1
                arrow = FancyArrowPatch((x0 + side * width / 2, y0), (x1 + side * width / 2, y1),
                                        arrowstyle="-|>", mutation_scale=10, linewidth=0.8, color="#a33",
                                        connectionstyle=f"arc,angleA={0 if side > 0 else 180},"
                                                        f"angleB={0 if side > 0 else 180},armA=30,armB=30,rad=8")
            axis.add_patch(arrow)
    axis.set_xlim(-column * widest / 2 - 0.4, column * widest / 2 + 0.4)
    axis.set_ylim(-(len(rows) - 1) * row_height - 0.6, 0.6)
    axis.axis("off")
    axis.set_title(config["name"], fontsize=10)
    return save(figure, path, dpi=120)


def _frame_groups(axis, nodes: list[dict], centre: dict, width: float, height: float) -> None:
    """A dashed frame around the boxes of each block use (outer uses framed wider), named at its top left."""
    from matplotlib.patches import Rectangle

    members: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        for group in node["groups"]:
            members.setdefault(group, []).append(index)
    deepest = max((len(node["groups"]) for node in nodes), default=0)
    for group, boxes in members.items():
        margin = 0.08 + 0.1 * (deepest - group.count("."))
        xs, ys = [centre[i][0] for i in boxes], [centre[i][1] for i in boxes]
        left, right = min(xs) - width / 2 - margin, max(xs) + width / 2 + margin
        bottom, top = min(ys) - height / 2 - margin, max(ys) + height / 2 + margin
        axis.add_patch(Rectangle((left, bottom), right - left, top - bottom, fill=False, linestyle="--",
                                 linewidth=0.7, edgecolor="#777"))
        axis.text(left + 0.05, top - 0.04, group, ha="left", va="top", fontsize=6, color="#555")


def draw_chain(config: dict, layers, path: Path) -> Path:
    """Boxes sized by the volume's height and depth, five to a row."""
    from matplotlib.patches import FancyArrowPatch, Rectangle

    plt = pyplot()
    nodes = stages(config, layers)
    shapes = [tuple(config["input"])] + [layer.output_shape for index, layer in enumerate(layers)
                                         if index == 0 or not layer.drawn_inside]  # the boxes of ``stages``
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
    return save(figure, path, dpi=120)

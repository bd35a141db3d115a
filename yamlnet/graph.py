"""The wiring of a model: which outputs each layer reads, resolved once, and the one way to run it.

The file order is an execution order — ``inputs`` may name only ``input`` or layers listed
earlier — so no topological sort is needed: forward runs the layers in file order, keeping each
output until its last reader has run; backward runs them in reverse, adding the gradients that
reach an output from several readers. A chain is the graph whose every layer reads the one
before: the same code runs both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from yamlnet.config import Document
from yamlnet.config.schema import suggest
from yamlnet.errors import ConfigError

#: the index that stands for the model's input in ``Graph.sources``
INPUT = -1


@dataclass(frozen=True)
class Graph:
    """``sources[i]``: the indices layer i reads, in order (``INPUT`` for the model's input);
    ``readers[i]``: the layers that read layer i; ``release[i]``: the outputs whose last reader is layer i."""

    sources: tuple[tuple[int, ...], ...]
    readers: tuple[tuple[int, ...], ...]
    release: tuple[tuple[int, ...], ...]

    @classmethod
    def from_sources(cls, sources: list[list[int]]) -> "Graph":
        readers: list[list[int]] = [[] for _ in sources]
        last_reader: dict[int, int] = {}
        for index, inputs in enumerate(sources):
            for source in inputs:
                if source != INPUT and index not in readers[source]:
                    readers[source].append(index)
                last_reader[source] = index
        release: list[list[int]] = [[] for _ in sources]
        for source, index in last_reader.items():
            release[index].append(source)
        return cls(tuple(map(tuple, sources)), tuple(map(tuple, readers)), tuple(map(tuple, release)))

    @classmethod
    def of(cls, layers: list) -> "Graph":
        """The wiring of built layers, from their ``inputs`` names."""
        index = {"input": INPUT, **{layer.name: i for i, layer in enumerate(layers)}}
        return cls.from_sources([[index[name] for name in layer.inputs] for layer in layers])

    @property
    def is_chain(self) -> bool:
        return all(inputs == (index - 1,) for index, inputs in enumerate(self.sources))


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


def run_forward(layers: list, graph: Graph, x: np.ndarray, training: bool, until: int | None = None) -> np.ndarray:
    """The output of layer ``until`` (default: the last) for the batch ``x``, running layers 0..until
    in order. Each output is dropped as soon as its last reader has run."""
    until = len(layers) - 1 if until is None else until
    outputs: dict[int, np.ndarray] = {INPUT: x}
    for index in range(until + 1):
        layer = layers[index]
        arrays = [outputs[source] for source in graph.sources[index]]
        outputs[index] = layer.forward(arrays if layer.joins else arrays[0], training)
        for source in graph.release[index]:
            if source != until:
                outputs.pop(source, None)
    return outputs[until]


def run_backward(layers: list, graph: Graph, grad: np.ndarray, start: int) -> None:
    """Backpropagate ``grad`` (d loss / d output of layer ``start``) through layers start..0, filling
    their ``grads``. Where an output feeds several layers, their gradients add up. Layers with
    nothing trainable at or before them are skipped."""
    pending: dict[int, np.ndarray] = {start: grad}
    for index in range(start, -1, -1):
        grad = pending.pop(index, None)
        layer = layers[index]
        if grad is None or not (layer.params or layer.needs_input_grad):
            continue
        back = layer.backward(grad)
        if not layer.needs_input_grad:
            continue
        for source, part in zip(graph.sources[index], back if layer.joins else [back]):
            if source == INPUT or part is None:
                continue
            pending[source] = pending[source] + part if source in pending else part

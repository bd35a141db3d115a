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


def run_backward(layers: list, graph: Graph, grad: np.ndarray, start: int, keep=()) -> dict[int, np.ndarray]:
    """Backpropagate ``grad`` (d loss / d output of layer ``start``) through layers start..0, filling
    their ``grads``. Where an output feeds several layers, their gradients add up. Layers with
    nothing trainable at or before them are skipped. Returns the gradients that reached the outputs
    of the layers in ``keep`` (``INPUT``: the model's input, where the layers compute it)."""
    pending: dict[int, np.ndarray] = {start: grad}
    kept: dict[int, np.ndarray] = {}
    for index in range(start, -1, -1):
        grad = pending.pop(index, None)
        if index in keep and grad is not None:
            kept[index] = grad
        layer = layers[index]
        if grad is None or not (layer.params or layer.needs_input_grad):
            continue
        back = layer.backward(grad)
        if not layer.needs_input_grad:
            continue
        for source, part in zip(graph.sources[index], back if layer.joins else [back]):
            if part is None:
                continue
            if source == INPUT:
                if INPUT in keep:
                    kept[INPUT] = kept[INPUT] + part if INPUT in kept else part
                continue
            pending[source] = pending[source] + part if source in pending else part
    return kept

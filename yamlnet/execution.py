"""Execution: the lists of layers a model runs, and one training step through them.

A model's layers are what its file says; what runs may differ without changing a single number
that matters: a conv and the 2 × 2 max-pool it feeds run as one layer (``yamlnet.layers.fused``),
a separate activation overwrites an output nothing else reads instead of copying it, and at
inference a batchnorm that alone reads a linear conv or dense layer is folded into a copy of it.
``Execution`` builds those lists once per list of layers (a model's own, or a shard's copies) and
refreshes the folded weights at every call.
"""

from __future__ import annotations

import numpy as np

from yamlnet.graph import INPUT, Graph, run_backward, run_forward
from yamlnet.layers import Layer
from yamlnet.layers.fused import PassThrough, fuse
from yamlnet.losses import CrossEntropy


def mark_input_grads(layers: list[Layer], graph: Graph) -> None:
    """d loss / d input is needed only where something trainable lies upstream (not for the first conv)."""
    trainable_upstream = {INPUT: False}
    for index, layer in enumerate(layers):
        layer.needs_input_grad = any(trainable_upstream[source] for source in graph.sources[index])
        trainable_upstream[index] = bool(layer.params) or layer.needs_input_grad


def logits_index(layers: list[Layer], graph: Graph) -> int:
    """The layer whose outputs the loss takes as logits: a final softmax's input (training fuses the
    softmax with cross-entropy), else the last layer."""
    return graph.sources[-1][0] if layers[-1].gives_probabilities else len(layers) - 1


def in_place(layers: list[Layer], graph: Graph) -> set[int]:
    """The ``runs_in_place`` layers (separate activations) that alone read an output handed over to them
    (``hands_over_output``): they overwrite it instead of copying it."""
    found = set()
    for index, layer in enumerate(layers):
        sources = graph.sources[index]
        if layer.runs_in_place and len(sources) == 1 and sources[0] != INPUT \
                and layers[sources[0]].hands_over_output and graph.readers[sources[0]] == (index,):
            found.add(index)
    return found


class Execution:
    """How a model's ``graph`` of layers runs: its lists (``lists``), forward, and a training step."""

    def __init__(self, graph: Graph, logits_at: int, loss: CrossEntropy | None = None):
        self.graph, self.logits_at = graph, logits_at
        self.loss = loss or CrossEntropy()
        self._lists: dict[tuple[int, bool], tuple[list[Layer], list]] = {}

    def lists(self, layers: list[Layer], training: bool) -> list[Layer]:
        """``layers`` as they run: conv + max-pool pairs fused, activations in place (``_in_place``) and,
        at inference, batchnorms and activations folded (``_fold``). Built once per list; ``layers``
        itself, the weights and the file stay as they are."""
        key = (id(layers), training)
        if key not in self._lists:  # inference shares training's fused layers (and their buffers)
            self._lists[key] = (self._in_place(fuse(layers, self.graph)), []) if training else \
                self._fold(self.lists(layers, True))
        run, folds = self._lists[key]
        for original, norm, twin in folds:  # the weights change between calls: fold them afresh
            scale, shift = norm.scale_and_shift()
            np.multiply(original.params["W"], scale, out=twin.params["W"])
            np.multiply(original.params["b"], scale, out=twin.params["b"])
            twin.params["b"] += shift
        return run

    def _in_place(self, layers: list[Layer]) -> list[Layer]:
        """``layers`` with each layer ``in_place`` finds run by a copy that overwrites its input instead
        of copying it (one pass and one fresh array fewer; at inference ``_fold`` goes further)."""
        run = list(layers)
        for index in in_place(layers, self.graph):
            run[index] = layers[index].in_place()
        return run

    def _fold(self, layers: list[Layer]) -> tuple[list[Layer], list]:
        """``layers`` for inference, each ``folds_into_linear`` layer (batchnorm) that alone reads a
        ``takes_folded_batchnorm`` one without an activation (a linear conv or dense layer) folded into a
        copy of it: W ← W · a, b ← b · a + c with a, c the batchnorm's per-channel scale and shift (its
        running statistics), as serving engines do, the copy applying the batchnorm's activation; each
        activation that runs in place applied by the layer whose output it overwrites (a copy of it);
        and the (layer, batchnorm, copy) triples."""
        folded, folds = list(layers), []
        for index, layer in enumerate(layers):
            source = self.graph.sources[index]
            if (layer.folds_into_linear and len(source) == 1 and source[0] != INPUT
                    and layers[source[0]].takes_folded_batchnorm
                    and layers[source[0]].activation == "linear" and self.graph.readers[source[0]] == (index,)):
                twin = layers[source[0]].replica()
                twin.params = {key: value.copy() for key, value in twin.params.items()}
                twin.config = {**twin.config, "activation": layer.activation}  # the batchnorm's g, after the fold
                folded[source[0]], folded[index] = twin, PassThrough(layer, "folded")
                folds.append((layers[source[0]], layer, twin))
        for index, layer in enumerate(layers):
            if not layer.overwrites_input:  # (an activation ``_in_place`` chose)
                continue
            # its g applied by the layer that made the array: a conv's within each cache-sized slice
            source = self.graph.sources[index][0]
            if isinstance(folded[source], PassThrough):  # a batchnorm without g, folded into a copy of ours
                maker = folded[self.graph.sources[source][0]]
            else:
                maker = folded[source] = folded[source].replica()  # (the params themselves: nothing to refresh)
            maker.config = {**maker.config, "activation": layer.activation}
            folded[index] = PassThrough(layer, "folded")
        return folded, folds

    def forward(self, layers: list[Layer], x: np.ndarray, training: bool) -> np.ndarray:
        """The last layer's output for x (N, n_H, n_W, n_C), already normalized."""
        return run_forward(self.lists(layers, training), self.graph, x, training)

    def train_step(self, layers: list[Layer], x: np.ndarray, y: np.ndarray, divisor: float) -> tuple[float, np.ndarray]:
        """Forward, fused softmax cross-entropy (``self.loss``) and backward of x (n, …) — a whole batch,
        or one shard of a batch whose loss divides by ``divisor`` (``self.loss.divisor`` of the whole
        batch's labels: its size, without class weights) — with labels y (n,), filling ``layers``' grads
        with its part of the batch mean's; returns (its part of the loss, probabilities (n, n_classes))."""
        return self.step(self.lists(layers, True), x, y, divisor)

    def step(self, run: list[Layer], x: np.ndarray, y: np.ndarray, divisor: float, loss=None):
        """The one forward → loss → backward of yamlnet, over an execution list ``run``: ``loss(logits,
        y, divisor)`` (default ``self.loss``) gives (loss, d loss / d logits, probabilities), and that is
        returned but the gradient."""
        logits = run_forward(run, self.graph, x, training=True, until=self.logits_at)
        value, grad, probs = (loss or self.loss)(logits, y, divisor)
        run_backward(run, self.graph, grad, self.logits_at)
        return value, probs

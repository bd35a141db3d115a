"""Stage 3 of the pipeline: planned layers (``yamlnet.plan``) become a ``Model``, a graph of NumPy
layers with weights, that runs forward, backward and the fused loss through ``yamlnet.graph``, the
one path for chains and graphs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from yamlnet import checkpoint, kernels
from yamlnet.config import Document, resolve
from yamlnet.errors import DataError
from yamlnet.execution import Execution, logits_index, mark_input_grads
from yamlnet.graph import Graph
from yamlnet.layers import Layer
from yamlnet.layers.softmax import softmax
from yamlnet.losses import CrossEntropy
from yamlnet.npzio import read_npz, write_npz_atomic
from yamlnet.plan import check_memory, initializer, make_layers
from yamlnet.shards import Shards
from yamlnet.summary import render


class Model:
    """A built network.

    ``layers``: the layers in order, each with ``name``, ``type``, ``params``, ``grads``,
    ``input_shape`` and ``output_shape``. Inputs are (N, n_H, n_W, n_C) in the model's dtype.
    """

    def __init__(self, config: dict, document: Document | None = None, layers: list[Layer] | None = None):
        """The network of a resolved ``config``, with fresh weights from ``training.seed``: of its planned
        ``layers`` (``yamlnet.plan.checked_layers``), or of layers made here, refused over the memory limit."""
        kernels.keep_freed_memory()
        self.config = config
        self.name: str = config["name"]
        self.input_shape = tuple(config["input"])
        self.dtype = np.dtype(config["training"]["dtype"])
        if layers is None:
            layers = make_layers(config, document)
            check_memory(config, layers, document)
        self.layers = layers
        self.graph = Graph.of(self.layers)
        self.output_shape = self.layers[-1].output_shape
        self.rng = np.random.default_rng(config["training"]["seed"])  # weights, then dropout masks
        for index, layer in enumerate(self.layers):
            layer.build(layer.input_shape, self.rng, self.dtype, initializer(self.layers, self.graph, index))
        mark_input_grads(self.layers, self.graph)
        #: the layer whose outputs the loss takes as logits (a final softmax's input: fused with the loss)
        self.logits_at = logits_index(self.layers, self.graph)
        #: how the layers run (``yamlnet.execution``): fused pairs, folded batchnorms, the training step
        self.executor = Execution(self.graph, self.logits_at, CrossEntropy(config["training"]["label_smoothing"]))
        #: how its batches are cut into shards and run side by side (``yamlnet.shards``)
        self.shards = Shards(self.layers, self.executor, config)
        #: (shift, scale), each (n_C,): raw images are normalized as (x − shift) / scale (``normalize``)
        #: before the layers see them; training sets them from its data, save and load keep them with
        #: the weights. None: a model built, not trained — it knows no normalization.
        self.normalization: tuple[np.ndarray, np.ndarray] | None = None
        #: class k's name; training sets them from its data (folder names, data.classes, …)
        self.classes: list[str] = [str(k) for k in range(self.output_shape[0])] if len(self.output_shape) == 1 else []

    # -- math (on normalized arrays, as the layers take them) --------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """x (N, n_H, n_W, n_C) → the last layer's output (class probabilities after softmax)."""
        x = self._check_input(x)
        outputs = self.shards.run(x, None, training)
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    def execution(self, training: bool) -> list[Layer]:
        """The model's layers as they run (``yamlnet.execution``: fused pairs, folded batchnorms)."""
        return self.executor.lists(self.layers, training)

    def close_workers(self) -> None:
        """End the worker processes of the shards (``shards``: the cut, ``worker_pids``), if any: the next
        cut batch starts new ones. They also end when the model is dropped or Python exits."""
        self.shards.close()

    def loss_and_grad(self, x: np.ndarray, y: np.ndarray) -> float:
        """Mean cross-entropy for integer labels y (N,), filling every layer's ``grads``.

        Runs in training mode (dropout active, batchnorm on batch statistics, its running statistics
        updated). A final softmax is fused with the loss; without one, the last layer's outputs are
        taken as logits.
        """
        loss, _ = self.train_step_forward(x, y)
        return loss

    def train_step_forward(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """``loss_and_grad`` that also returns the probabilities (N, n_classes), for accuracy."""
        x, y = self._check_input(x), np.asarray(y)
        results = self.shards.run(x, y, True)
        loss = sum(shard_loss for shard_loss, _ in results)
        probs = [shard_probs for _, shard_probs in results]
        return loss, probs[0] if len(probs) == 1 else np.concatenate(probs)

    def predict_proba(self, images: np.ndarray, batch_size: int = 64, *, normalized: bool = False) -> np.ndarray:
        """Class probabilities (N, n_classes) of raw images (N, n_H, n_W, n_C) — any integer or float
        dtype, as the data set has them; (N, n_H, n_W) for grey — normalized as the run's training data
        was (``normalize``). ``normalized=True``: the arrays are normalized already (as ``forward`` takes
        them). Computed ``batch_size`` samples at a time (small batches keep every layer's activations
        in cache: faster than one big batch)."""
        x = self._check_input(images) if normalized else self.normalize(images)
        out = []
        for start in range(0, len(x), batch_size):
            y = self.forward(x[start:start + batch_size])
            out.append(y if self.layers[-1].gives_probabilities else softmax(y))  # without a softmax layer, outputs are logits
        return np.concatenate(out) if out else np.zeros((0,) + self.output_shape, self.dtype)

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """Raw images (N, n_H, n_W, n_C), or (N, n_H, n_W) for grey, of any integer or float dtype →
        (x − shift) / scale in the model's dtype: what the layers take (``forward``)."""
        if self.normalization is None:
            raise DataError("this model knows no normalization: it was built, not trained or loaded from a run. "
                            "Pass normalized=True for arrays that are normalized already, or set "
                            "model.normalization = (shift, scale)")
        x = np.asarray(images)
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating) or x.dtype == bool):
            raise DataError(f"images must be numbers, got {x.dtype}")
        shift, scale = self.normalization
        return (self._check_input(x) - shift) / scale

    def summary(self, explain: bool = False) -> str:
        """The text ``yamlnet summary`` prints: shapes, f / s / p, parameters and mult-adds of every layer."""
        return render(self.config, self.layers, explain)

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        """The summary as a table, as Jupyter shows a model."""
        from yamlnet.summary import render_html
        return render_html(self.config, self.layers)

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim == 3 and self.input_shape[-1] == 1:  # grey images without their channel axis
            x = x[..., None]
        if x.shape[1:] != self.input_shape:
            raise DataError(f"input batch has shape {x.shape}; the model takes (N, "
                            f"{', '.join(map(str, self.input_shape))})")
        return x.astype(self.dtype, copy=False)

    # -- parameters ----------------------------------------------------------------------
    def parameters(self) -> dict[str, np.ndarray]:
        """"layer/key" → parameter array (the arrays themselves: changing them changes the model)."""
        return {f"{layer.name}/{key}": value for layer in self.layers for key, value in layer.params.items()}

    def gradients(self) -> dict[str, np.ndarray]:
        return {f"{layer.name}/{key}": value for layer in self.layers for key, value in layer.grads.items()}

    def states(self) -> dict[str, np.ndarray]:
        """"layer/key" → state array: saved with the weights, not trained (batchnorm's running statistics)."""
        return {f"{layer.name}/{key}": value for layer in self.layers for key, value in layer.state.items()}

    def param_count(self) -> int:
        return sum(layer.param_count() for layer in self.layers)

    def arrays(self) -> dict[str, np.ndarray]:
        """What ``save`` writes (``yamlnet.checkpoint``): weights, state, normalization, class names, config."""
        return checkpoint.model_arrays(self)

    def save(self, path: str | Path) -> None:
        """One ``.npz`` with the weights, the normalization and the resolved config, written atomically."""
        write_npz_atomic(path, self.arrays())

    def load_weights(self, arrays: dict[str, np.ndarray], file: str | None = None) -> None:
        """Copy the weights and state of ``arrays`` (as ``save`` writes them) in, each checked against its
        layer's shape; and the class names and normalization they hold."""
        checkpoint.load_into(self, arrays, file)


def build_model(source, overrides=()) -> Model:
    """A ``Model`` from a path, a YAML string or a dict, with fresh weights drawn from ``training.seed``."""
    config, document = resolve(source, overrides)
    return Model(config, document)


def load_model(path: str | Path) -> Model:
    """A ``Model`` from ``Model.save`` (or a run's checkpoint), read with ``allow_pickle=False``."""
    arrays = read_npz(path, "model file")
    config, document = resolve(checkpoint.config_from_arrays(arrays, str(path)))
    document.file = f"{path} (its config)"
    model = Model(config, document)
    model.load_weights(arrays, str(path))
    return model

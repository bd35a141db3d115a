"""Stage 3 of the pipeline: planned layers (``yamlnet.plan``) become a ``Model``, a graph of NumPy
layers with weights, that runs forward, backward and the fused loss through ``yamlnet.graph``, the
one path for chains and graphs.
"""

from __future__ import annotations

import json
import os
import warnings
from functools import partial
from pathlib import Path

import numpy as np

from yamlnet import kernels, parallel, workers
from yamlnet.config import Document, resolve
from yamlnet.errors import DataError
from yamlnet.graph import INPUT, Graph, run_backward, run_forward
from yamlnet.layers import Layer
from yamlnet.layers.fused import PassThrough, fuse
from yamlnet.layers.softmax import softmax
from yamlnet.losses import softmax_cross_entropy
from yamlnet.npzio import read_npz, write_npz_atomic
from yamlnet.plan import check_memory, initializer, make_layers
from yamlnet.summary import render

FORMAT = "yamlnet-model-1"


class Model:
    """A built network.

    ``layers``: the layers in order, each with ``name``, ``type``, ``params``, ``grads``,
    ``input_shape`` and ``output_shape``. Inputs are (N, n_H, n_W, n_C) in the model's dtype.
    """

    def __init__(self, config: dict, document: Document | None = None):
        kernels.keep_freed_memory()
        self.config = config
        self.name: str = config["name"]
        self.input_shape = tuple(config["input"])
        self.dtype = np.dtype(config["training"]["dtype"])
        self.layers = make_layers(config, document)
        self.graph = Graph.of(self.layers)
        check_memory(config, self.layers, document)
        self.output_shape = self.layers[-1].output_shape
        self.rng = np.random.default_rng(config["training"]["seed"])  # weights, then dropout masks
        for index, layer in enumerate(self.layers):
            layer.build(layer.input_shape, self.rng, self.dtype, initializer(self.layers, self.graph, index))
        # d loss / d input is needed only where something trainable lies upstream (not for the first conv)
        trainable_upstream = {INPUT: False}
        for index, layer in enumerate(self.layers):
            layer.needs_input_grad = any(trainable_upstream[source] for source in self.graph.sources[index])
            trainable_upstream[index] = bool(layer.params) or layer.needs_input_grad
        self._ends_in_softmax = self.layers[-1].gives_probabilities
        #: the layer whose outputs the loss takes as logits: a final softmax's input (training fuses
        #: the softmax with cross-entropy), else the last layer
        self.logits_at = self.graph.sources[-1][0] if self._ends_in_softmax else len(self.layers) - 1
        self._replicas: list[list[Layer]] = [self.layers]  # one copy of the layers per shard
        self._macs_per_sample = sum(layer.macs() for layer in self.layers)
        self._whole_batch_layers = [index for index, layer in enumerate(self.layers) if layer.needs_whole_batch]
        self._workers: workers.ShardWorkers | None = None  # the shards in worker processes
        self._worker_failures = 0
        #: the least work of a shard (``parallel.shards``); None: parallel.MIN_SHARD_MACS. A resumed run
        #: sets the value it was cut with.
        self.min_shard_macs: int | None = None
        self._executions: dict[tuple[int, bool], tuple[list[Layer], list]] = {}  # see execution
        #: (shift, scale), each (n_C,): raw images are normalized as (x − shift) / scale (``normalize``)
        #: before the layers see them; training sets them from its data, save and load keep them with
        #: the weights. None: a model built, not trained — it knows no normalization.
        self.normalization: tuple[np.ndarray, np.ndarray] | None = None
        #: class k's name; training sets them from its data (folder names, data.classes, …)
        self.classes: list[str] = [str(k) for k in range(self.output_shape[0])] if len(self.output_shape) == 1 else []

    # -- math ----------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """x (N, n_H, n_W, n_C) → the last layer's output (class probabilities after softmax)."""
        x = self._check_input(x)
        outputs = self._run_shards(x, None, training)
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    def execution(self, training: bool, layers: list[Layer] | None = None) -> list[Layer]:
        """The layers as they run (default: this model's; or a shard's copies): conv + max-pool pairs
        fused (``yamlnet.layers.fused``) and, at inference, each batchnorm that alone reads a linear
        conv or dense layer folded into it (``_fold``). Built once per list; ``layers`` itself, the
        weights and the file stay as they are."""
        layers = self.layers if layers is None else layers
        key = (id(layers), training)
        if key not in self._executions:  # inference shares training's fused layers (and their buffers)
            self._executions[key] = (fuse(layers, self.graph), []) if training else \
                self._fold(self.execution(True, layers))
        run, folds = self._executions[key]
        for original, norm, twin in folds:  # the weights change between calls: fold them afresh
            scale, shift = norm.scale_and_shift()
            np.multiply(original.params["W"], scale, out=twin.params["W"])
            np.multiply(original.params["b"], scale, out=twin.params["b"])
            twin.params["b"] += shift
        return run

    def _fold(self, layers: list[Layer]) -> tuple[list[Layer], list]:
        """``layers`` for inference, each batchnorm that alone reads a linear conv or dense layer folded
        into a copy of it: W ← W · a, b ← b · a + c with a, c the batchnorm's per-channel scale and
        shift (its running statistics), as serving engines do; and the (layer, batchnorm, copy) triples."""
        folded, folds = list(layers), []
        for index, layer in enumerate(layers):
            source = self.graph.sources[index]
            if (layer.folds_into_linear and len(source) == 1 and source[0] != INPUT
                    and layers[source[0]].takes_folded_batchnorm
                    and layers[source[0]].activation == "linear" and self.graph.readers[source[0]] == (index,)):
                twin = layers[source[0]].replica()
                twin.params = {key: value.copy() for key, value in twin.params.items()}
                folded[source[0]], folded[index] = twin, PassThrough(layer, "folded")
                folds.append((layers[source[0]], layer, twin))
        return folded, folds

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
        results = self._run_shards(x, y, True)
        loss = sum(shard_loss for shard_loss, _ in results)
        probs = [shard_probs for _, shard_probs in results]
        return loss, probs[0] if len(probs) == 1 else np.concatenate(probs)

    def shard_train_step(self, layers: list[Layer], x: np.ndarray, y: np.ndarray,
                         batch_size: int) -> tuple[float, np.ndarray]:
        """Forward, fused loss and backward of one shard of a batch of ``batch_size`` through ``layers``
        (an execution list), filling their grads with the shard's part of the batch mean's."""
        logits = run_forward(layers, self.graph, x, training=True, until=self.logits_at)
        loss, grad, probs = softmax_cross_entropy(logits, y, batch_size)
        run_backward(layers, self.graph, grad, self.logits_at)
        return loss, probs

    # -- shards ----------------------------------------------------------------------------
    def cut(self, n: int) -> list[tuple[int, int]]:
        """The (start, stop) shards of a batch of n (``yamlnet.parallel.shards``): a property of the
        run — ``training.shards`` and ``min_shard_macs`` — never of the machine."""
        return parallel.shards(n, self._macs_per_sample, self.config["training"]["shards"], self.min_shard_macs)

    def _run_shards(self, x: np.ndarray, y: np.ndarray | None, training: bool) -> list:
        """One batch, cut (``cut``) into shards that run side by side: in worker processes where there
        are some (training steps with labels y, and inference), else on threads; a batch of one shard
        runs here. Their results in order; with labels, the model's grads the whole batch's. Dropout's
        draws are made here for the whole batch, so that they do not depend on the cut, nor on which
        attempt ran it: a batch whose workers died runs again on new ones, then on threads."""
        bounds = self.cut(len(x))
        if len(bounds) == 1:
            task = partial(self.shard_train_step, self.execution(True), x, y, len(x)) if y is not None else \
                partial(run_forward, self.execution(training), self.graph, x, training)
            return [task()]
        noise = {index: layer.draw_noise(len(x)) for index, layer in enumerate(self.layers)
                 if training and layer.draws_noise}
        if y is not None or not training:
            while (group := self._shard_workers(bounds)) is not None:
                try:
                    return group.run(self, x, y, bounds, noise)
                except workers.WorkerError as error:  # (the group is closed already)
                    self._worker_trouble(str(error))
        return self._run_on_threads(x, y, training, bounds, noise)

    def _run_on_threads(self, x, y, training, bounds, noise) -> list:
        """The shards as threads of this process (``parallel.run``), each through its own copy of the
        layers (the first shard's are ``self.layers``), batchnorm's copies sharing one reducer; on one
        core, where nothing needs them to meet, one after another instead."""
        while len(self._replicas) < len(bounds):
            self._replicas.append([layer.replica() for layer in self.layers])
        together = training and bool(self._whole_batch_layers)  # batchnorm's shards meet: they must run at once
        reducer = parallel.Reducer(len(bounds)) if together else None
        tasks = []
        for shard, (replica, (start, stop)) in enumerate(zip(self._replicas, bounds)):
            for index, layer in enumerate(replica):
                if layer.needs_whole_batch:
                    layer.reducer, layer.shard = reducer, shard
                if index in noise:
                    layer.noise = noise[index][start:stop]
            tasks.append(partial(self.shard_train_step, self.execution(True, replica), x[start:stop],
                                 y[start:stop], len(x)) if y is not None else
                         partial(run_forward, self.execution(training, replica), self.graph, x[start:stop], training))
        try:
            if together or parallel.cores() > 1:
                results = parallel.run(tasks, (reducer,) if reducer is not None else ())
            else:  # one core: one after another, on this thread (the same numbers, without the hand-offs)
                results = [task() for task in tasks]
        finally:  # the first shard's layers are the model's own: leave them as a whole batch needs them
            for replica in self._replicas:
                for layer in replica:
                    if layer.needs_whole_batch:
                        layer.reducer, layer.shard = None, 0
                    if layer.draws_noise:
                        layer.noise = None
        if y is not None:
            for replica in self._replicas[1:len(bounds)]:  # each shard's gradient is its part of the batch mean's
                for layer, twin in zip(self.layers, replica):
                    for key, grad in layer.grads.items():
                        grad += twin.grads[key]
        return results

    def _shard_workers(self, bounds: list[tuple[int, int]]) -> "workers.ShardWorkers | None":
        """The worker processes for a batch cut at ``bounds`` (``yamlnet.workers``), started at the first
        such batch (again for a larger one); None — run the shards as threads — where workers cannot run
        (not Linux), would not help (this process may use one core), or failed twice."""
        if not workers.ENABLED or self._worker_failures >= 2:
            return None
        cores = parallel.cores()
        if cores < 2:
            return None
        largest = max(stop - start for start, stop in bounds)
        group = self._workers
        if group is None or group.closed or group.owner != os.getpid() or largest > group.capacity \
                or len(bounds) > group.n_shards:
            self.close_workers()  # (in a process forked from their owner: only its copies of the pipes)
            try:
                self._workers = workers.ShardWorkers(self, len(bounds), largest, max(1, cores // len(bounds)))
            except workers.WorkerError as error:
                self._worker_trouble(str(error))
                return None
        return self._workers

    def _worker_trouble(self, what: str) -> None:
        """A worker could not start or stopped: say so in one line and go on — on new workers the first
        time, on threads after that. The batch runs again from the start, so nothing is lost."""
        self.close_workers()
        self._worker_failures += 1
        then = "starting new ones" if self._worker_failures < 2 else "its shards run on threads from now on"
        warnings.warn(workers.WorkerWarning(f"{self.name}: {what}; {then} (same results)"), stacklevel=4)

    def close_workers(self) -> None:
        """End the worker processes of the shards, if any (``yamlnet.workers``): the next cut batch starts
        new ones. They also end when the model is dropped or Python exits."""
        if self._workers is not None:
            self._workers.close()
            self._workers = None

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
            out.append(y if self._ends_in_softmax else softmax(y))  # without a softmax layer, outputs are logits
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
        """What ``save`` writes: the weights under ``params/``, the state under ``state/``, the
        normalization, and the resolved config as JSON."""
        arrays = {f"params/{key}": value for key, value in self.parameters().items()}
        arrays.update({f"state/{key}": value for key, value in self.states().items()})
        if self.normalization is not None:
            arrays["normalization/shift"], arrays["normalization/scale"] = self.normalization
        arrays["__classes__"] = np.array(self.classes, dtype=str)
        arrays["__config__"] = np.array(json.dumps(self.config))
        arrays["__format__"] = np.array(FORMAT)
        return arrays

    def save(self, path: str | Path) -> None:
        """One ``.npz`` with the weights, the normalization and the resolved config, written atomically."""
        write_npz_atomic(path, self.arrays())

    def load_weights(self, arrays: dict[str, np.ndarray], file: str | None = None) -> None:
        """Copy ``params/layer/key`` and ``state/layer/key`` arrays in, checking that each exists and
        has its layer's shape, and that nothing else is there."""
        for prefix, expected, what in (("params/", self.parameters(), "weights"), ("state/", self.states(), "state")):
            for key, param in expected.items():
                stored = arrays.get(prefix + key)
                if stored is None:
                    raise DataError(f"has no {what} for {key}; was it saved from another model?", file=file)
                if stored.shape != param.shape:
                    raise DataError(f"{key} has shape {stored.shape} but layer {key.split('/')[0]} expects "
                                    f"{param.shape}", file=file)
                if not np.issubdtype(stored.dtype, np.floating):
                    raise DataError(f"{key} has dtype {stored.dtype}; {what} are floating point", file=file)
                param[...] = stored
            extra = sorted(key[len(prefix):] for key in arrays if key.startswith(prefix)
                           and key[len(prefix):] not in expected)
            if extra:
                raise DataError(f"holds {what} the model does not have: {', '.join(extra)}", file=file)
        if "__classes__" in arrays:
            classes = arrays["__classes__"]
            if classes.dtype.kind != "U" or classes.shape != (len(self.classes),):
                raise DataError(f"class names must be {len(self.classes)} strings, got {classes.dtype} "
                                f"{classes.shape}", file=file)
            self.classes = [str(name) for name in classes]
        if "normalization/shift" in arrays:
            shift, scale = arrays["normalization/shift"], arrays.get("normalization/scale")
            expected_shape = (self.input_shape[-1],)
            if scale is None or shift.shape != expected_shape or scale.shape != expected_shape or not (
                    np.issubdtype(shift.dtype, np.floating) and np.issubdtype(scale.dtype, np.floating)):
                raise DataError(f"normalization arrays must both be {expected_shape} floats", file=file)
            self.normalization = (shift.astype(self.dtype), scale.astype(self.dtype))


def build_model(source, overrides=()) -> Model:
    """A ``Model`` from a path, a YAML string or a dict, with fresh weights drawn from ``training.seed``."""
    config, document = resolve(source, overrides)
    return Model(config, document)


def config_from_arrays(arrays: dict[str, np.ndarray], file: str | None = None) -> dict:
    if "__config__" not in arrays or arrays["__config__"].dtype.kind != "U":
        raise DataError("is not a yamlnet model or checkpoint (it holds no config)", file=file)
    try:
        return json.loads(str(arrays["__config__"]))
    except json.JSONDecodeError as exc:
        raise DataError(f"holds a config that is not valid JSON: {exc}", file=file) from None


def load_model(path: str | Path) -> Model:
    """A ``Model`` from ``Model.save`` (or a run's checkpoint), read with ``allow_pickle=False``."""
    arrays = read_npz(path, "model file")
    config, document = resolve(config_from_arrays(arrays, str(path)))
    document.file = f"{path} (its config)"
    model = Model(config, document)
    model.load_weights(arrays, str(path))
    return model

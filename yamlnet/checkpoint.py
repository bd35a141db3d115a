"""The layout of yamlnet's .npz files — a saved model, a run's checkpoints — the one place that spells
its keys: ``params/<layer>/<key>`` (weights), ``state/<layer>/<key>`` (saved, not trained: batchnorm's
running statistics), ``normalization/shift`` and ``/scale``, ``optim/<param>/<slot>`` (the optimizer's
state), ``loop/order`` (an epoch's order of samples, mid-epoch), and the JSON of ``__config__``,
``__classes__``, ``__format__`` and ``__state__`` (the training loop's position and random states).
Everything is read with ``allow_pickle=False`` (``yamlnet.npzio``).
"""

from __future__ import annotations

import json

import numpy as np

from yamlnet.errors import DataError

FORMAT = "yamlnet-model-1"
_KINDS = (("params", "weights"), ("state", "state"))


def layer_key(kind: str, layer: str, key: str) -> str:
    """``params/conv1/W``: where array ``key`` of ``layer`` (``kind``: params or state) is kept."""
    return f"{kind}/{layer}/{key}"


def layer_arrays(arrays: dict[str, np.ndarray], layer) -> dict[str, np.ndarray | None]:
    """{key: the stored array or None} of every params and state array that ``layer`` has."""
    return {key: arrays.get(layer_key(kind, layer.name, key))
            for kind, _ in _KINDS for key in getattr(layer, kind)}


def model_arrays(model) -> dict[str, np.ndarray]:
    """What ``Model.save`` writes: weights, state, normalization (if known), class names, the config."""
    arrays = {layer_key(kind, layer.name, key): value for kind, _ in _KINDS
              for layer in model.layers for key, value in getattr(layer, kind).items()}
    if model.normalization is not None:
        arrays["normalization/shift"], arrays["normalization/scale"] = model.normalization
    arrays["__classes__"] = np.array(model.classes, dtype=str)
    arrays["__config__"] = np.array(json.dumps(model.config))
    arrays["__format__"] = np.array(FORMAT)
    return arrays


def load_into(model, arrays: dict[str, np.ndarray], file: str | None = None) -> None:
    """Copy the weights and state of ``arrays`` into ``model``'s layers, checking that each exists and
    has its layer's shape and that nothing else is there; and its class names and normalization."""
    for kind, what in _KINDS:
        expected = {f"{layer.name}/{key}": value for layer in model.layers for key, value in getattr(layer, kind).items()}
        for key, param in expected.items():
            stored = arrays.get(f"{kind}/{key}")
            if stored is None:
                raise DataError(f"has no {what} for {key}; was it saved from another model?", file=file)
            if stored.shape != param.shape:
                raise DataError(f"{key} has shape {stored.shape} but layer {key.split('/')[0]} expects "
                                f"{param.shape}", file=file)
            if not np.issubdtype(stored.dtype, np.floating):
                raise DataError(f"{key} has dtype {stored.dtype}; {what} are floating point", file=file)
            param[...] = stored
        extra = sorted(key[len(kind) + 1:] for key in arrays if key.startswith(kind + "/")
                       and key[len(kind) + 1:] not in expected)
        if extra:
            raise DataError(f"holds {what} the model does not have: {', '.join(extra)}", file=file)
    if "__classes__" in arrays:
        classes = arrays["__classes__"]
        if classes.dtype.kind != "U" or classes.shape != (len(model.classes),):
            raise DataError(f"class names must be {len(model.classes)} strings, got {classes.dtype} "
                            f"{classes.shape}", file=file)
        model.classes = [str(name) for name in classes]
    if "normalization/shift" in arrays:
        shift, scale = arrays["normalization/shift"], arrays.get("normalization/scale")
        expected_shape = (model.input_shape[-1],)
        if scale is None or shift.shape != expected_shape or scale.shape != expected_shape or not (
                np.issubdtype(shift.dtype, np.floating) and np.issubdtype(scale.dtype, np.floating)):
            raise DataError(f"normalization arrays must both be {expected_shape} floats", file=file)
        model.normalization = (shift.astype(model.dtype), scale.astype(model.dtype))


def config_from_arrays(arrays: dict[str, np.ndarray], file: str | None = None) -> dict:
    """The resolved config a model file or checkpoint holds."""
    if "__config__" not in arrays or arrays["__config__"].dtype.kind != "U":
        raise DataError("is not a yamlnet model or checkpoint (it holds no config)", file=file)
    try:
        return json.loads(str(arrays["__config__"]))
    except json.JSONDecodeError as exc:
        raise DataError(f"holds a config that is not valid JSON: {exc}", file=file) from None


def checkpoint_arrays(model, optimizer_state: dict[str, np.ndarray], order: np.ndarray | None) -> dict:
    """A run's checkpoint: the model's arrays, the optimizer's state, and mid-epoch the epoch's order."""
    arrays = model_arrays(model)
    arrays.update({f"optim/{key}": value for key, value in optimizer_state.items()})
    if order is not None:
        arrays["loop/order"] = order
    return arrays


def optimizer_state(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {key[len("optim/"):]: value for key, value in arrays.items() if key.startswith("optim/")}


def epoch_order(arrays: dict[str, np.ndarray]) -> np.ndarray | None:
    return arrays.get("loop/order")


def with_loop_state(arrays: dict[str, np.ndarray], state: dict) -> dict[str, np.ndarray]:
    return {**arrays, "__state__": np.array(json.dumps(state))}


def split_loop_state(arrays: dict[str, np.ndarray], file: str | None = None) -> tuple[dict, dict]:
    """(the arrays, the loop state) of a checkpoint's arrays."""
    state = arrays.pop("__state__", None)
    try:
        return arrays, json.loads(str(state)) if state is not None else {}
    except json.JSONDecodeError:
        raise DataError("holds a loop state that is not valid JSON", file=file) from None

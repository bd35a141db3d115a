"""The tests' one generator of random models (hypothesis strategies).

``random_models()`` draws graphs whose every choice fits — each layer reads outputs it can take, its
keys fit its input, every output is read — for the tests that compare yamlnet with PyTorch and
onnxruntime. ``random_models(impossible=p)`` lets each choice, with probability p, ignore the shapes:
any type at any position, any keys the schema allows, any earlier output to read; many such models
must be refused, and the property tests check that exactly those are (against an independent shape
oracle). ``LAYER_KEYS`` holds one strategy per registered layer type, so that a new type is drawn too.
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

from yamlnet.layers import LAYERS

ACTIVATIONS = ["linear", "relu", "leaky_relu", "sigmoid", "tanh"]
_activation = st.sampled_from(ACTIVATIONS)
_padding = st.one_of(st.integers(0, 3), st.sampled_from(["valid", "same"]))


def _pool(kind):
    return st.fixed_dictionaries({"type": st.just(kind), "size": st.integers(1, 4), "padding": st.integers(0, 2)},
                                 optional={"stride": st.integers(1, 3)})


#: any keys the schema allows, whatever the input: one strategy per registered layer type
LAYER_KEYS = {
    "conv2d": st.fixed_dictionaries({"type": st.just("conv2d"), "filters": st.integers(1, 4),
                                     "size": st.integers(1, 5), "stride": st.integers(1, 3), "padding": _padding,
                                     "activation": _activation},
                                    optional={"groups": st.integers(1, 3), "dilation": st.integers(1, 3)}),
    "maxpool2d": _pool("maxpool2d"),
    "avgpool2d": _pool("avgpool2d"),
    "dense": st.fixed_dictionaries({"type": st.just("dense"), "units": st.integers(1, 6), "activation": _activation}),
    "flatten": st.just({"type": "flatten"}),
    "dropout": st.fixed_dictionaries({"type": st.just("dropout"), "rate": st.floats(0, 0.9)}),
    "activation": st.fixed_dictionaries({"type": st.just("activation"), "activation": _activation}),
    "softmax": st.just({"type": "softmax"}),
    "batchnorm": st.fixed_dictionaries({"type": st.just("batchnorm")}, optional={"momentum": st.floats(0, 1),
                                                                               "activation": _activation}),
    "globalavgpool2d": st.just({"type": "globalavgpool2d"}),
    "add": st.fixed_dictionaries({"type": st.just("add"), "activation": _activation}),
    "concat": st.just({"type": "concat"}),
}
#: the types that read volumes only
_VOLUME_ONLY = {"conv2d", "maxpool2d", "avgpool2d", "globalavgpool2d"}


def _fitting(draw, kind: str, shape: tuple) -> tuple[dict, tuple]:
    """Keys of a ``kind`` layer that fit an input of ``shape``, and its output's shape."""
    if kind == "conv2d":
        groups = draw(st.sampled_from([g for g in range(1, shape[2] + 1) if shape[2] % g == 0]))
        keys = {"filters": groups * draw(st.integers(1, 4 // groups if groups <= 4 else 1)),
                "size": draw(st.sampled_from([1, 3])), "padding": "same",
                "activation": draw(st.sampled_from(["linear", "relu", "sigmoid", "leaky_relu"]))}
        if groups > 1:
            keys["groups"] = groups
        if draw(st.booleans()):
            keys["dilation"] = 2
        return keys, (*shape[:2], keys["filters"])
    if kind in ("maxpool2d", "avgpool2d"):
        if min(shape[:2]) < 2:
            return {"size": 1}, shape
        stride = draw(st.integers(1, 2))
        return {"size": 2, "stride": stride}, ((shape[0] - 2) // stride + 1, (shape[1] - 2) // stride + 1, shape[2])
    if kind == "globalavgpool2d":
        return {}, (shape[2],)
    if kind == "flatten":
        return {}, (math.prod(shape),)
    if kind == "dense":
        keys = {"units": draw(st.integers(2, 5)), "activation": draw(st.sampled_from(["linear", "tanh"]))}
        return keys, (keys["units"],)
    if kind == "batchnorm":
        return {"momentum": draw(st.sampled_from([0.1, 0.5, 1.0])),
                "activation": draw(st.sampled_from(["linear", "linear", "relu"]))}, shape
    if kind == "activation":
        return {"activation": draw(st.sampled_from(["relu", "tanh", "sigmoid"]))}, shape
    if kind == "dropout":
        return {"rate": 0.0}, shape  # (random masks would part ways with the references')
    return {}, shape  # a type that keeps the shape and has no keys to fit


@st.composite
def random_models(draw, kinds=None, impossible: float = 0.0):
    """A random model file's mapping: up to seven layers of ``kinds`` (default: every registered type
    but a softmax before the end), then its loose ends pooled, joined and classified into three
    classes (a softmax at the end: always where every choice fits, else drawn). ``impossible``: the
    probability that a layer ignores the shapes (see the module's docstring)."""
    kinds = sorted(kinds or set(LAYERS) - {"softmax"}) if impossible == 0 else sorted(kinds or LAYERS)
    low = 1 if impossible else 4
    shapes = {"input": (draw(st.integers(low, 12 if impossible else 9)), draw(st.integers(low, 12 if impossible else 9)),
                        draw(st.integers(1, 3)))}  # None: a shape the generator does not know
    layers, read = [], set()
    for index in range(draw(st.integers(0 if impossible else 1, 7))):
        name, kind = f"l{index}", draw(st.sampled_from(kinds))
        known = {key: shape for key, shape in shapes.items() if shape is not None}
        if impossible and draw(st.floats(0, 1)) < impossible:  # any keys, any earlier outputs
            layer = {**draw(LAYER_KEYS[kind]), "name": name}
            earlier = st.sampled_from(sorted(shapes))
            layer["inputs"] = draw(st.lists(earlier, min_size=2, max_size=3)) if LAYERS[kind].joins else \
                draw(st.one_of(st.just(list(shapes)[-1]), earlier))
            read.update([layer["inputs"]] if isinstance(layer["inputs"], str) else layer["inputs"])
            layers.append(layer)
            shapes[name] = None
            continue
        if LAYERS[kind].joins:
            first = draw(st.sampled_from(sorted(known)))
            fits = [key for key, shape in known.items() if (shape == known[first] if kind == "add" else
                                                           len(shape) == len(known[first]) and
                                                           shape[:-1] == known[first][:-1])]
            inputs = [first, *draw(st.lists(st.sampled_from(sorted(fits)), min_size=1, max_size=2))]
            layer = {"name": name, "type": kind, "inputs": inputs}
            if kind == "add":
                layer["activation"] = draw(st.sampled_from(["linear", "relu", "tanh"]))
                shape = known[first]
            else:
                shape = (*known[first][:-1], sum(known[key][-1] for key in inputs))
        else:
            sources = sorted(key for key, shape in known.items() if len(shape) == 3 or kind not in _VOLUME_ONLY)
            if not sources:
                continue
            inputs = draw(st.sampled_from(sources))
            keys, shape = _fitting(draw, kind, known[inputs])
            layer = {"name": name, "type": kind, "inputs": inputs, **keys}
        read.update([inputs] if isinstance(inputs, str) else inputs)
        layers.append(layer)
        shapes[name] = shape
    ends = []
    for name in [layer["name"] for layer in layers if layer["name"] not in read] or ["input"]:
        if shapes[name] is None or len(shapes[name]) == 3:  # a volume pooled; a shape unknown, flattened
            kind = "flatten" if shapes[name] is None else "globalavgpool2d"
            layers.append({"name": f"{name}_end", "type": kind, "inputs": name})
            name = f"{name}_end"
        ends.append(name)
    if len(ends) > 1:
        layers.append({"name": "ends", "type": "concat", "inputs": ends})
    layers.append({"name": "fc", "type": "dense", "units": 3, "inputs": "ends" if len(ends) > 1 else ends[0]})
    if impossible == 0 or draw(st.booleans()):
        layers.append({"name": "prediction", "type": "softmax"})
    return {"input": list(shapes["input"]), "layers": layers}

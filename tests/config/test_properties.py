"""Property tests: random valid files build with the shapes an independent computation predicts;
random mutations of valid files, random overrides and random data sections give a YamlnetError
with a location, or a valid model — never another exception."""

import json
import math
import os

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import yamlnet
from yamlnet.config import resolve
from yamlnet.errors import ConfigError, ShapeError, YamlnetError
from yamlnet.layers import LAYERS
from yamlnet.plan import plan
from yamlnet.summary import summarize

from graphs import LAYER_KEYS, random_models

# The same examples on every run, so that CI is repeatable; YAMLNET_EXAMPLES=5000 YAMLNET_RANDOM=1 explores further.
SETTINGS = settings(max_examples=int(os.environ.get("YAMLNET_EXAMPLES", 150)), deadline=None,
                    derandomize=not os.environ.get("YAMLNET_RANDOM"), database=None,
                    suppress_health_check=[HealthCheck.too_slow])

def test_the_generator_draws_every_registered_layer_type():
    assert set(LAYER_KEYS) == set(LAYERS)


def expected_shapes(model):
    """Shapes and parameter counts computed here, from the course notes' formulas, independently;
    None for a model that must be refused."""
    shapes, out, read = {"input": tuple(model["input"])}, [], set()
    names = [layer.get("name", f"x{i}") for i, layer in enumerate(model["layers"])]
    for index, layer in enumerate(model["layers"]):
        kind, params = layer["type"], 0
        given = layer.get("inputs", names[index - 1] if index else "input")
        sources = [given] if isinstance(given, str) else given
        read.update(sources)
        joins = kind in ("add", "concat")
        if joins != (len(sources) > 1):
            return None
        in_shapes = [shapes[source] for source in sources]
        shape = in_shapes[0]
        if kind == "add":
            if any(other != shape for other in in_shapes):
                return None
        elif kind == "concat":
            if len({len(other) for other in in_shapes}) > 1 or len({other[:-1] for other in in_shapes}) > 1:
                return None
            shape = (*shape[:-1], sum(other[-1] for other in in_shapes))
        elif kind in ("conv2d", "maxpool2d", "avgpool2d"):
            if len(shape) != 3:
                return None
            f = layer["size"]
            s = layer.get("stride", 1 if kind == "conv2d" else f)
            p = layer.get("padding", 0)
            d, groups = layer.get("dilation", 1), layer.get("groups", 1)
            span = d * (f - 1) + 1  # PyTorch's extent of a dilated kernel
            if p == "same":
                if s != 1 or span % 2 == 0:
                    return None
                p = (span - 1) // 2
            p = 0 if p == "valid" else p
            if kind != "conv2d" and p > f // 2:
                return None
            if kind == "conv2d" and (shape[2] % groups or layer["filters"] % groups):
                return None
            n_h, n_w = (shape[0] + 2 * p - span) // s + 1, (shape[1] + 2 * p - span) // s + 1
            if n_h < 1 or n_w < 1:
                return None
            channels = layer["filters"] if kind == "conv2d" else shape[2]
            if kind == "conv2d":
                params = f * f * (shape[2] // groups) * channels + channels
            shape = (n_h, n_w, channels)
        elif kind == "globalavgpool2d":
            if len(shape) != 3:
                return None
            shape = (shape[2],)
        elif kind == "batchnorm":
            params = 2 * shape[-1]
        elif kind == "flatten":
            shape = (math.prod(shape),)
        elif kind == "dense":
            params = math.prod(shape) * layer["units"] + layer["units"]
            shape = (layer["units"],)
        shapes[names[index]] = shape
        out.append((list(shape), params))
    if any(name not in read for name in names[:-1]):
        return None  # a dead branch
    return out


@SETTINGS
@given(random_models(impossible=0.8))  # about a third of them impossible
def test_random_valid_models_build_with_the_predicted_shapes(model):
    expected = expected_shapes(model)
    if expected is None:
        try:
            yamlnet.build_model(model)
        except (ShapeError, ConfigError) as error:
            assert str(error).startswith("layers[")
            return
        raise AssertionError("an impossible model was accepted")
    built = yamlnet.build_model(model)
    summary = summarize(built.config, built.layers)
    assert [[layer["output_shape"], layer["params"]] for layer in summary["layers"]] == [list(e) for e in expected]
    assert summary["total_params"] == sum(p for _, p in expected)
    x = np.random.default_rng(0).standard_normal((2, *model["input"]))
    out = built.forward(x)
    assert out.shape == (2, *expected[-1][0]) and np.all(np.isfinite(out))
    loss = built.loss_and_grad(x, np.array([0, 1]))
    assert np.isfinite(loss)


VALID = """\
name: m
input: [8, 8, 1]
layers:
  - {name: conv1, type: conv2d, filters: 4, size: 3, stride: 1, padding: 1, activation: relu}
  - name: pool
    type: maxpool2d
    size: 2
  - {name: fc, type: dense, units: 10}
  - {type: softmax}
data:
  dataset: digits
  validation_split: 0.2
training:
  epochs: 3
  learning_rate: 0.1
  optimizer: momentum
  lr_schedule: {type: step, step_size: 2}
"""

weird = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.sampled_from([0, -1, 10**18, 2**63]),
                  st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                  st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
                  st.sampled_from(["same", "valid", "ñ", "层", "\u202e", "1e999", "!!python/none", "*x", "&a"]))


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


def _set(data, path, value):
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


def _delete(data, path):
    for part in path[:-1]:
        data = data[part]
    del data[path[-1]]


@st.composite
def mutated_files(draw):
    kind = draw(st.sampled_from(["replace", "delete", "rename", "text"]))
    data = yaml.safe_load(VALID)
    paths = [p for p in _paths(data) if p]
    path = draw(st.sampled_from(paths))
    if kind == "replace":
        _set(data, path, draw(weird))
    elif kind == "delete":
        _delete(data, path)
    elif kind == "rename" and isinstance(path[-1], str):
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        parent[draw(st.text(min_size=1, max_size=8))] = parent.pop(path[-1])
    if kind != "text":
        return yaml.safe_dump(data, allow_unicode=True)
    lines = VALID.splitlines()
    where = draw(st.integers(0, len(lines) - 1))
    edit = draw(st.sampled_from(["tab", "duplicate", "nest", "garbage", "cut"]))
    if edit == "tab":
        lines[where] = "\t" + lines[where]
    elif edit == "duplicate":
        lines.insert(where, lines[where])
    elif edit == "nest":
        depth = draw(st.integers(1, 300))
        lines[where] += " " + "[" * depth + "]" * depth
    elif edit == "garbage":
        lines[where] = draw(st.text(max_size=30))
    else:
        lines = lines[:where]
    return "\n".join(lines) + "\n"


def _located(error: YamlnetError) -> bool:
    return bool(error.file and (error.line or error.key)) or bool(error.key and error.key.startswith("--set"))


def _check(text, tmp_path, overrides=()):
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        plan(path, overrides, memory_check=True)
    except YamlnetError as error:
        message = str(error)
        assert "\n" not in message and message
        assert _located(error), message


@SETTINGS
@given(mutated_files())
def test_mutated_files_give_a_located_error_never_a_crash(tmp_path_factory, text):
    _check(text, tmp_path_factory.mktemp("m"))


dotted = st.lists(st.one_of(st.sampled_from(["training", "data", "layers", "conv1", "fc", "pool", "size", "filters",
                                             "learning_rate", "dataset", "type", "x", "[0]", "[9]", ""]),
                            st.text(max_size=6)), min_size=1, max_size=4).map(".".join)


@SETTINGS
@given(st.lists(st.tuples(dotted, st.one_of(st.text(max_size=12), weird.map(json.dumps))), min_size=1, max_size=3),
       st.booleans())
def test_random_overrides_give_a_located_error_never_a_crash(tmp_path_factory, items, with_equals):
    overrides = [f"{key}={value}" if with_equals else key + value for key, value in items]
    _check(VALID, tmp_path_factory.mktemp("m"), overrides)


data_sections = st.dictionaries(
    st.sampled_from(["dataset", "path", "validation_split", "normalization", "shuffle", "n_samples", "n_test",
                     "noise", "x_key", "y_key", "test_path", "nonsense"]),
    st.one_of(weird, st.sampled_from(["digits", "shapes", "npz", "mnist", "scale", "standardize", "none"]),
              st.integers(10, 60), st.floats(0, 0.99)), max_size=5)


@SETTINGS
@given(data_sections)
def test_random_data_sections_give_a_located_error_never_a_crash(tmp_path_factory, data):
    from yamlnet.data import load_data
    folder = tmp_path_factory.mktemp("d")
    model = yaml.safe_load(VALID)
    model["data"] = data
    text = yaml.safe_dump(model, allow_unicode=True)
    _check(text, folder)
    try:
        config, _ = resolve(text)
    except YamlnetError:
        return
    if config["data"].get("n_samples", 0) + config["data"].get("n_test", 0) <= 100:
        try:
            load_data(config, 10)
        except YamlnetError as error:
            assert "\n" not in str(error) and str(error)

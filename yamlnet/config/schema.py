"""The model file's JSON Schema, generated from the registries, and validation against it.

``build_schema()`` assembles the schema from ``LAYERS`` (each layer type's hyperparameters),
``DATASETS`` and ``OPTIMIZERS``; nothing else lists layer types or keys. ``validate`` checks a
``Document`` with jsonschema (Draft 2020-12), reports the first error in file order as one
located line, fills in defaults and names, and returns the resolved config.
"""

from __future__ import annotations

import copy
import datetime
import difflib
import math
import re
from typing import Any

import jsonschema

from yamlnet.config.loader import Document, default_layer_names
from yamlnet.data import COMMON_KEYS, DATASETS
from yamlnet.layers import LAYERS
from yamlnet.metrics import METRICS
from yamlnet.layers.plugins import FAILED
from yamlnet.optim import OPTIMIZERS, SCHEDULES

DRAFT = "https://json-schema.org/draft/2020-12/schema"
LAYER_NAME = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$",
              "x-expected": "a name of letters, digits, _ and -, not starting with a digit",
              "description": "unique in the file; defaults to <type><k>: conv2d1, conv2d2, …"}
PROBABILITY = {"type": "number", "minimum": 0, "exclusiveMaximum": 1}

TRAINING_PROPERTIES = {
    "epochs": {"type": "integer", "minimum": 1, "default": 10, "description": "passes over the training data"},
    "batch_size": {"type": "integer", "minimum": 1, "default": 32, "description": "samples per gradient step"},
    "learning_rate": {"type": "number", "exclusiveMinimum": 0, "default": 0.01,
                      "description": "step size of gradient descent"},
    "optimizer": {"enum": list(OPTIMIZERS), "default": "sgd",
                  "description": "sgd: p ← p − lr·g; momentum: with velocity; adam"},
    "momentum": {**PROBABILITY, "default": 0.9, "description": "momentum: the velocity's decay μ"},
    "nesterov": {"type": "boolean", "default": False, "description": "momentum: Nesterov's look-ahead"},
    "beta1": {**PROBABILITY, "default": 0.9, "description": "adam: first-moment decay"},
    "beta2": {**PROBABILITY, "default": 0.999, "description": "adam: second-moment decay"},
    "eps": {"type": "number", "exclusiveMinimum": 0, "default": 1e-8, "description": "adam: added to √v"},
    "weight_decay": {"type": "number", "minimum": 0, "default": 0.0,
                     "description": "L2 penalty on weights (not biases), added to their gradients"},
    "lr_schedule": {
        "type": "object", "additionalProperties": False, "default": {}, "x-example": "{type: cosine}",
        "description": "learning rate by epoch",
        "properties": {
            "type": {"enum": list(SCHEDULES), "default": "constant",
                     "description": "constant; step: × gamma every step_size epochs; cosine: to 0 at the last epoch; "
                                    "onecycle: up to learning_rate and down again (PyTorch's OneCycleLR); plateau: × "
                                    "factor when metric stops improving (ReduceLROnPlateau)"},
            "step_size": {"type": "integer", "minimum": 1, "default": 10, "description": "step: epochs per step"},
            "gamma": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.1,
                      "description": "step: factor per step"},
            "warmup_epochs": {"type": "integer", "minimum": 0, "default": 0,
                              "description": "epochs of linear warm-up from warmup_start · learning_rate before the "
                                             "schedule, which then runs as if it started there"},
            "warmup_start": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.1,
                             "description": "warmup_epochs: the first epoch's share of learning_rate"},
            "metric": {"enum": list(METRICS), "default": "val_loss",
                       "description": "plateau: the metric watched (without validation data, the training one)"},
            "factor": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.1,
                       "description": "plateau: the rate's factor at each reduction"},
            "patience": {"type": "integer", "minimum": 0, "default": 10,
                         "description": "plateau: epochs without improvement (by 0.01 %) before a reduction"},
            "min_lr": {"type": "number", "minimum": 0, "default": 0.0,
                       "description": "plateau: the rate is never reduced below this"},
            "pct_start": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.3,
                          "description": "onecycle: the share of the epochs spent rising"},
            "div_factor": {"type": "number", "minimum": 1, "default": 25.0,
                           "description": "onecycle: the first rate is learning_rate / div_factor"},
            "final_div_factor": {"type": "number", "minimum": 1, "default": 10000.0,
                                 "description": "onecycle: the last rate is the first / final_div_factor"},
        },
    },
    "early_stopping": {
        "type": "object", "additionalProperties": False, "default": {}, "x-example": "{patience: 5}",
        "description": "stop when the metric has not improved for patience epochs",
        "properties": {
            "metric": {"enum": list(METRICS), "default": "val_accuracy",
                       "description": "the metric watched; it also picks best.npz (without validation data, "
                                      "val_x falls back to x)"},
            "patience": {"type": "integer", "minimum": 0, "default": 0, "description": "0 turns early stopping off"},
            "min_delta": {"type": "number", "minimum": 0, "default": 0.0,
                          "description": "smallest change that counts as better"},
        },
    },
    "label_smoothing": {**PROBABILITY, "default": 0.0,
                        "description": "ε: each target puts 1 − ε on its class and ε spread evenly over all "
                                       "classes (PyTorch's label_smoothing)"},
    "class_weights": {"anyOf": [{"enum": ["balanced"]},
                                {"type": "object", "additionalProperties": {"type": "number", "exclusiveMinimum": 0},
                                 "minProperties": 1}],
                      "x-expected": "balanced, or a mapping of class names to weights > 0",
                      "x-example": "{cat: 2, dog: 1}",
                      "description": "weight each sample's loss by its class: balanced (n / (classes · n_class), from "
                                     "the training part's counts), or by class name (classes not named: 1)"},
    "log": {"type": "array", "items": {"enum": ["tensorboard"]}, "default": [], "uniqueItems": True,
            "description": "where else the run reports: tensorboard (event files in the run directory's tb/; "
                           "pip install \"yamlnet[tensorboard]\")"},
    "init_weights": {"type": "string", "minLength": 1, "x-path": True,
                     "description": "start from trained weights: a run directory (its best.npz) or a model .npz"},
    "init_layers": {"type": "array", "items": LAYER_NAME, "minItems": 1,
                    "description": "init_weights: the layers to load (default: every layer whose name and "
                                   "parameter shapes match)"},
    "freeze": {"type": "array", "items": LAYER_NAME, "default": [],
               "description": "layers whose weights training leaves as they are (no updates, no optimizer state)"},
    "seed": {"type": "integer", "minimum": 0, "default": 0,
             "description": "seeds weights, split, shuffling and dropout: same file, same run"},
    "dtype": {"enum": ["float32", "float64"], "default": "float32", "description": "float64 for checks"},
    "shards": {"type": "integer", "minimum": 1, "maximum": 64, "default": 2,
               "description": "cut each batch into at most this many shards that run side by side, one per core; "
                              "part of the run's arithmetic like the seed (the same value, the same weights on "
                              "any machine); 1: whole batches"},
    "checkpoint_every": {"type": "integer", "minimum": 0, "default": 0,
                         "description": "also write checkpoints/last.npz every this many batches, so that a "
                                        "killed run loses at most that many; 0: at the end of each epoch only"},
    "max_memory": {
        "anyOf": [{"type": "integer", "minimum": 1},
                  {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*([KMGT]i?B|B)\s*$"}],
        "default": "2GiB", "x-expected": "a size such as 512MiB, 2GiB or a number of bytes",
        "description": "refuse to build a model whose training would need more memory than this (estimated)"},
}


SWEEP_SCHEMA = {
    "type": "object",
    "description": "yamlnet sweep: dotted keys (as for --set) mapped to lists of values, and how to combine them",
    "properties": {
        "mode": {"enum": ["grid", "random", "tpe"], "default": "grid",
                 "description": "grid: every combination; random: samples combinations drawn from the grid; "
                                "tpe: samples trials chosen by Optuna's TPE sampler from lists and ranges "
                                "(pip install \"yamlnet[search]\")"},
        "samples": {"type": "integer", "minimum": 1, "description": "random, tpe: how many combinations (tpe: 20)"},
        "prune": {"enum": ["none", "median"], "default": "none",
                  "description": "tpe: median stops a trial whose metric after an epoch is worse than the median of "
                                 "earlier trials at that epoch (Optuna's MedianPruner, after 5 trials and 1 epoch)"},
        "metric": {"enum": list(METRICS), "default": "val_accuracy",
                   "description": "the table is sorted by each run's best value of this metric"},
        "seed": {"type": "integer", "minimum": 0, "default": 0,
                 "description": "random: seeds the draw; tpe: seeds the sampler"},
    },
    "patternProperties": {r"^[A-Za-z_][^.\[\]]*(\.[^.\[\]]+|\[\d+\])+$": {
        "anyOf": [{"type": "array", "minItems": 1},
                  {"type": "object", "required": ["low", "high"], "additionalProperties": False,
                   "properties": {"low": {"type": "number"}, "high": {"type": "number"},
                                  "log": {"type": "boolean"}, "step": {"type": "number", "exclusiveMinimum": 0}}}],
        "x-expected": "a list of values, or a range {low, high} (tpe)",
        "description": "the values to try for this key: a list, or for tpe a range {low, high, log, step}"}},
    "additionalProperties": False,
}


INPUT_NAME = {"type": "string", "pattern": LAYER_NAME["pattern"],
              "x-expected": "a layer name, or input for the model's input"}
INPUTS = {"anyOf": [INPUT_NAME, {"type": "array", "items": INPUT_NAME, "minItems": 1}],
          "x-expected": "a layer name or a list of layer names",
          "description": "what the layer reads: earlier layers' names, or input (the model's input); "
                         "defaults to the layer listed before"}


REPEAT = {"type": "integer", "minimum": 1,
          "description": "chain this many copies, each reading the one before (named <name>.1, <name>.2, …); "
                         "default 1"}

BLOCKS_SCHEMA = {
    "type": "object",
    "description": "named sub-graphs with parameters, used in layers like a layer: {name, block, with, repeat}",
    "additionalProperties": {
        "type": "object", "required": ["layers"], "additionalProperties": False,
        "properties": {
            "params": {"type": "object",
                       "description": "each parameter with its default (~: every use must give it); "
                                      "a value $name in the block's layers is replaced by the parameter's value"},
            "layers": {"type": "array", "minItems": 1, "items": {"type": "object"},
                       "description": "the block's layers: input is the block's input, the last layer its output"},
        },
    },
}

BLOCK_USE = {
    "type": "object",
    "description": "a use of a block of the file's blocks: section; its layers are named <name>.<layer>",
    "required": ["name", "block"],
    "additionalProperties": False,
    "properties": {
        "name": LAYER_NAME,
        "block": {"type": "string", "description": "the block's name under blocks:"},
        "with": {"type": "object", "description": "values of the block's parameters"},
        "inputs": INPUTS,
        "repeat": REPEAT,
    },
}


def layer_schema(cls) -> dict:
    return {
        "type": "object",
        "description": cls.description,
        "properties": {"type": {"const": cls.type}, "name": LAYER_NAME, "inputs": INPUTS, "repeat": REPEAT,
                       **cls.hyperparameters},
        "required": ["type", *cls.required],
        "additionalProperties": False,
    }


def path_keys() -> list[tuple[str, str]]:
    """(section, key) of every key whose value is a path (marked ``x-path`` in its schema)."""
    sections = {"data": data_schema()["properties"], "training": TRAINING_PROPERTIES}
    return [(section, key) for section, properties in sections.items()
            for key, value in properties.items() if value.get("x-path")]


def data_schema() -> dict:
    properties = {**COMMON_KEYS, "dataset": {**COMMON_KEYS["dataset"], "enum": list(DATASETS),
                                             "enumDescriptions": [d.description for d in DATASETS.values()]}}
    for dataset in DATASETS.values():
        properties.update(dataset.keys)
    return {
        "type": "object",
        "description": "the data set: built in, generated, or your own arrays or images",
        "additionalProperties": False,
        "properties": properties,
        "allOf": [{"if": {"properties": {"dataset": {"const": name}}, "required": ["dataset"]},
                   "then": {"required": list(dataset.required)}}
                  for name, dataset in DATASETS.items() if dataset.required],
    }


def build_schema() -> dict:
    """The whole JSON Schema of a model file (what ``yamlnet schema`` prints)."""
    return {
        "$schema": DRAFT,
        "$id": "https://yamlnet.invalid/yamlnet.schema.json",
        "title": "yamlnet model file",
        "description": "A small convolutional network, its data and its training, in one file.",
        "type": "object",
        "additionalProperties": False,
        "required": ["input", "layers"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "description": "the model's name; defaults to the file's"},
            "input": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 3, "maxItems": 3,
                      "description": "[n_H, n_W, n_C] of one input image"},
            "layers": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/layer"},
                       "description": "the layers, input to output"},
            "data": {"$ref": "#/$defs/data", "default": {}, "description": "the data set"},
            "training": {"$ref": "#/$defs/training", "default": {}, "description": "the training settings"},
            "sweep": {"$ref": "#/$defs/sweep", "description": "what yamlnet sweep varies; train ignores it"},
            "blocks": {"$ref": "#/$defs/blocks"},
        },
        "$defs": {
            "layer": {
                "type": "object",
                "properties": {"type": {"enum": list(LAYERS)}},
                "if": {"required": ["block"]},
                "then": {"$ref": "#/$defs/block_use"},
                "else": {
                    "required": ["type"],
                    "allOf": [{"if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                               "then": {"$ref": f"#/$defs/{name}"}} for name in LAYERS],
                },
            },
            "block_use": BLOCK_USE,
            "blocks": BLOCKS_SCHEMA,
            **{name: layer_schema(cls) for name, cls in LAYERS.items()},
            "data": data_schema(),
            "training": {"type": "object", "description": "how the network is trained", "additionalProperties": False,
                         "properties": TRAINING_PROPERTIES},
            "sweep": SWEEP_SCHEMA,
        },
    }


_SCHEMA: dict | None = None


def schema() -> dict:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = build_schema()
    return _SCHEMA


def _is_integer(checker, value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


def validate(document: Document) -> dict:
    """Check ``document`` against the schema and return its resolved config (a new dict).

    Raises ``ConfigError`` located at the first mistake in the file.
    """
    data = document.data
    if not isinstance(data, dict):
        raise document.error((), f"a model file must be a mapping of keys (name, input, layers, data, "
                                 f"training), got {_got(data)}")
    check(document, schema())
    _check_finite(data, (), document)
    config = fill_defaults(schema(), copy.deepcopy(data))
    _check_names(config, document)
    _check_data_keys(config, document)
    _check_augment(config, document)
    for layer in config["layers"]:
        LAYERS[layer["type"]].complete(layer)
    return config


def check(document: Document, against: dict) -> None:
    """Raise the first error (in file order) of ``document.data`` against the schema ``against``."""
    errors = list(_Validator(against).iter_errors(document.data))
    # A mistyped key also makes its correct spelling "missing": report the typo, not the absence.
    mistyped = {tuple(error.absolute_path) for error in errors if error.validator == "additionalProperties"}
    errors = [error for error in errors
              if not (error.validator == "required" and tuple(error.absolute_path) in mistyped)]
    if errors:
        raise min((_explain(error, document) for error in errors), key=lambda found: found[0])[1]


def fill_defaults(node: dict, value: Any) -> Any:
    """Fill every missing key that has a ``default`` in the schema, recursively."""
    node = _resolve(node)
    if isinstance(value, dict):
        for key, sub in node.get("properties", {}).items():
            sub = _resolve(sub)
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = fill_defaults(sub, value[key])
        if "if" in node:
            fill_defaults(node["then"] if _holds(node["if"], value) else node.get("else", {}), value)
        for branch in node.get("allOf", []):
            if _holds(branch.get("if", {}), value):
                fill_defaults(branch.get("then", {}), value)
    elif isinstance(value, list) and "items" in node:
        return [fill_defaults(node["items"], item) for item in value]
    return value


def _holds(condition: dict, value: dict) -> bool:
    """Whether ``value`` meets an ``if`` of the schema: its required keys and constant properties."""
    return all(key in value for key in condition.get("required", ())) and \
        all(value.get(key) == rule.get("const") for key, rule in condition.get("properties", {}).items())


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = {**schema()["$defs"][name], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _check_finite(value: Any, path: tuple, document: Document) -> None:
    """JSON Schema cannot say "finite": .inf and .nan are numbers to it, never to a model file."""
    if isinstance(value, float) and not math.isfinite(value):
        raise document.error(path, f"must be a finite number, got {value}")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, path + (key,), document)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_finite(item, path + (index,), document)


def _check_names(config: dict, document: Document) -> None:
    names = default_layer_names(config["layers"])
    seen: dict[str, int] = {}
    for index, (layer, name) in enumerate(zip(config["layers"], names)):
        if name == "input":
            raise document.error(("layers", index, "name"), "'input' names the model's input in inputs; "
                                                              "give the layer another name")
        if name in seen:
            raise document.error(("layers", index, "name") if "name" in layer else ("layers", index),
                                 f"name '{name}' is already used by layers[{seen[name]}]; layer names must be unique")
        seen[name] = index
        layer["name"] = name
    config.setdefault("name", _stem(document.file))


def _check_data_keys(config: dict, document: Document) -> None:
    data = config["data"]
    dataset = DATASETS[data["dataset"]]
    own = set(COMMON_KEYS) | set(dataset.keys) | set(dataset.required)
    switched = ("data", "dataset") in document.origins  # --set data.dataset=… drops the file's other keys
    for key in document.data.get("data", {}) or {}:
        if key not in own and not (switched and ("data", key) not in document.origins):
            users = [name for name, other in DATASETS.items() if key in other.keys]
            raise document.error(("data", key), f"is not used by the {dataset.name} data set "
                                                 f"(only by {', '.join(users)})", at_key=True)
    for key in [key for key in data if key not in own]:
        del data[key]  # defaults of other data sets' keys


def _check_augment(config: dict, document: Document) -> None:
    """What the schema cannot say of ``data.augment``: a range in order, colours that need colour."""
    augment = config["data"]["augment"]
    low, high = augment["scale"]
    if low > high:
        raise document.error(("data", "augment", "scale"), f"[lo, hi] must have lo ≤ hi, got [{low}, {high}]")
    for key in ("saturation", "hue"):
        if augment[key] and config["input"][2] != 3:
            raise document.error(("data", "augment", key), f"changes colours, so it needs RGB images (n_C = 3), "
                                                            f"and the input has {config['input'][2]} channel(s)")


def _stem(file: str | None) -> str:
    if not file:
        return "model"
    name = file.replace("\\", "/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] or "model"


_TYPE_WORDS = {"integer": "a whole number", "number": "a number", "string": "a string", "boolean": "true or false",
               "object": "a mapping", "array": "a list", "null": "empty"}


_YAML11_BOOLEANS = {"yes", "no", "on", "off", "y", "n"}


def _got(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing (null)"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return f"the date {value}"
    return type(value).__name__


def _other_names() -> dict[str, str]:
    """What other frameworks call a layer type (``Layer.other_names``) → yamlnet's name for it."""
    return {other: cls.type for cls in LAYERS.values() for other in cls.other_names}


def suggest(word: Any, choices) -> str:
    """``; did you mean 'relu'?`` for a near miss, whatever its case (``ReLU``), or another framework's name."""
    if not isinstance(word, str):
        return ""
    by_lower = {str(choice).lower(): str(choice) for choice in choices}
    other_names = _other_names()
    if other_names.get(word.lower()) in by_lower.values():
        return f"; did you mean '{other_names[word.lower()]}'?"
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"; did you mean '{by_lower[close[0]]}'?" if close else ""


def _home_of(key: Any) -> str | None:
    """``training.epochs`` for ``epochs``: where a key given at the top level belongs."""
    for section in ("training", "data"):
        if key in schema()["$defs"][section]["properties"]:
            return f"{section}.{key}"
    return None


def _explain(error: jsonschema.ValidationError, document: Document):
    """(sort key, ConfigError) for one jsonschema error."""
    path = tuple(error.absolute_path)
    kind, expected, got = error.validator, error.validator_value, error.instance
    at_key = False
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        patterns = list(error.schema.get("patternProperties", {}))
        extras = [key for key in got if key not in allowed and not any(re.search(p, str(key)) for p in patterns)]
        extra = sorted(extras, key=lambda k: document.key_marks.get(path + (k,), (0, 0)))[0]
        if patterns:
            allowed.append("a dotted key such as training.learning_rate")
        path, at_key = path + (extra,), True
        suggestion = suggest(extra, allowed)
        if not path[:-1] and _home_of(extra):
            suggestion = f"; did you mean '{_home_of(extra)}'?"
        message = f"unknown key '{extra}'{suggestion}"
        if not suggestion:
            message += f" (allowed: {', '.join(allowed)})"
    elif kind == "required":
        missing = [key for key in expected if key not in got][0]
        message = f"missing required key '{missing}'"
    elif kind == "type":
        example = f" such as {error.schema['x-example']}" if "x-example" in error.schema else ""
        message = f"must be {_TYPE_WORDS.get(expected, expected)}{example}, got {_got(got)}"
        if expected == "boolean" and isinstance(got, str) and got.lower() in _YAML11_BOOLEANS:
            message += "; write true or false (YAML 1.2 reads yes, no, on and off as strings)"
    elif kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "greater than",
                 "exclusiveMaximum": "less than"}
        message = f"must be {words[kind]} {expected}, got {_got(got)}"
    elif kind == "enum" and path[:1] == ("layers",) and path[-1:] == ("type",) and isinstance(got, str) \
            and got in FAILED:
        message = f"the layer type {got} comes from {FAILED[got]}"
    elif kind == "enum":
        message = f"must be one of {', '.join(map(str, expected))}, got {_got(got)}{suggest(got, expected)}"
    elif kind in ("minItems", "maxItems"):
        if error.schema.get("minItems") == error.schema.get("maxItems"):
            message = f"must be a list of {expected}, got {_got(got)}"
        else:
            message = f"must have {'at least' if kind == 'minItems' else 'at most'} {expected} items, got {len(got)}"
    elif kind == "minLength":
        message = "must not be empty"
    elif "x-expected" in error.schema:
        message = f"must be {error.schema['x-expected']}, got {_got(got)}"
    else:
        message = f"{error.message}"
    located = document.error(path, message, at_key=at_key)
    order = (located.line or 0, located.column or 0, len(path))
    return order, located

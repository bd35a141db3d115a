"""``--set KEY=VALUE``: change one key of a loaded file before it is validated.

KEY is a dotted path — ``training.learning_rate``, ``data.dataset`` — in which a layer is named
by its name or its index: ``layers.conv1.filters`` or ``layers[0].size``. VALUE is read as YAML,
so ``0.05``, ``true``, ``same`` and ``{type: cosine}`` mean what they would in the file.
"""

from __future__ import annotations

import re

from yamlnet.config.blocks import USE_KEYS
from yamlnet.config.loader import Document, default_layer_names, parse_yaml
from yamlnet.errors import ConfigError

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_key(key: str) -> list:
    """``layers[0].size`` → ["layers", 0, "size"]; names stay strings, [i] become ints."""
    parts, position = [], 0
    for match in _PART.finditer(key):
        between = key[position:match.start()]
        if between not in ("", "."):
            raise ValueError(between)
        parts.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        position = match.end()
    if not parts or key[position:] or key.startswith(".") or ".." in key:
        raise ValueError(key)
    return parts


class _NoSuchLayer(ConfigError):
    """A ``layers.<name>`` that names no layer written in the file (perhaps one a block expands to)."""


def apply_overrides(document: Document, overrides, *, defer_unknown_layers: bool = False) -> list[str]:
    """Apply each ``KEY=VALUE`` to ``document.data`` in order, recording where each value came from.
    With ``defer_unknown_layers``, those that name a layer the file does not write (``stage1.c1``, which
    a block use expands to) are returned, to be applied to the expanded file; else they are errors."""
    deferred = []
    for item in overrides:
        origin = f"--set {item}"
        key, sep, raw = item.partition("=")
        try:
            parts = parse_key(key.strip())
        except ValueError:
            parts = None
        if not sep or parts is None:
            raise ConfigError("expected KEY=VALUE with a dotted KEY, like training.learning_rate=0.05",
                              key=origin)
        try:
            value = parse_yaml(raw, None).data if raw.strip() else None
        except ConfigError as error:
            raise ConfigError(f"the value is not valid YAML: {error.message}", key=origin) from None
        if not isinstance(document.data, dict):
            raise ConfigError("the file is not a mapping, so nothing in it can be set", key=origin)
        try:
            path = _resolve_path(document.data, parts, origin, defer_unknown_layers)
        except _NoSuchLayer:
            if not defer_unknown_layers:
                raise
            deferred.append(item)
            continue
        container = document.data
        for depth, part in enumerate(path):
            last = depth == len(path) - 1
            if isinstance(container, dict):
                if last:
                    container[part] = value
                elif not isinstance(container.get(part), (dict, list)):
                    container[part] = {}  # setting a key below a missing (or plain) value makes a mapping
            elif not (isinstance(container, list) and isinstance(part, int) and part < len(container)):
                where = ".".join(map(str, path[:depth])) or "the file"
                raise ConfigError(f"{where} is not a mapping, so it has no key {part}", key=origin)
            elif last:
                container[part] = value
            if not last:
                container = container[part]
        path = tuple(path)
        for table in (document.marks, document.key_marks, document.origins):
            for stale in [p for p in table if p[:len(path)] == path]:
                del table[stale]
        document.origins[path] = origin
    return deferred


def _resolve_path(data: dict, parts: list, origin: str, short_forms: bool = False) -> list:
    """Turn ``layers.<name>`` and ``layers[i]`` into list indices, with a clear error when they miss.
    In a file with ``short_forms`` (blocks, repeat), a key below a block use that is not one of the
    use's own (``layers.stage1.2.c1.filters``) names a layer of the expansion: ``_NoSuchLayer``."""
    if parts[0] != "layers" or len(parts) < 2:
        if any(isinstance(part, int) for part in parts):
            raise ConfigError("only layers are indexed with [i]", key=origin)
        return parts
    layers = data.get("layers")
    if not isinstance(layers, list):
        raise ConfigError("the file has no list of layers", key=origin)
    names = default_layer_names(layers)
    selector, rest = parts[1], 2
    if isinstance(selector, int):
        if selector >= len(layers):
            raise ConfigError(f"there is no layers[{selector}]; the file has {len(layers)} layers", key=origin)
        index = selector
    else:  # the longest dotted name that is a layer's: layers.stage1.2.c1.filters
        words = [str(part) for part in parts[1:]]
        found = [end for end in range(len(words), 0, -1) if ".".join(words[:end]) in names]
        if not found:
            shown = ", ".join(names) if len(names) <= 12 else ", ".join(names[:12]) + ", …"
            raise _NoSuchLayer(f"no layer named {'.'.join(words[:-1]) or selector}; layers are {shown}", key=origin)
        index, rest = names.index(".".join(words[:found[0]])), 1 + found[0]
        written = layers[index]
        if short_forms and len(parts) > rest and isinstance(written, dict) and (
                ("block" in written and parts[rest] not in USE_KEYS) or ("repeat" in written and str(parts[rest]).isdigit())):
            raise _NoSuchLayer(f"no layer named {'.'.join(words[:-1])}", key=origin)
    if len(parts) == rest:
        raise ConfigError("name a key of the layer, like layers.conv1.filters=16", key=origin)
    return ["layers", index, *parts[rest:]]


def flatten(value, prefix: str = "") -> dict:
    """``{"layers": [{"name": "conv1", "filters": 8}]}`` → ``{"layers.conv1.filters": 8}``: the keys of ``--set``."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and prefix == "layers" and all(isinstance(v, dict) and "name" in v for v in value):
        out = {}
        for layer in value:
            out.update(flatten({k: v for k, v in layer.items() if k != "name"}, f"layers.{layer['name']}"))
        return out
    return {prefix: value}


def differences(a: dict, b: dict) -> set[str]:
    """The dotted keys (as ``flatten`` spells them) whose values differ between two configs."""
    before, after = flatten(a), flatten(b)
    return {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}

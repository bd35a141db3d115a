"""Blocks and ``repeat``: a model file's short forms, expanded into plain layers before validation.

A file may define named sub-graphs once, with parameters, and use them like layers::

    blocks:
      residual:
        params: {filters: 16, stride: 1}          # each parameter with its default (~: must be given)
        layers:
          - {name: c1, type: conv2d, filters: $filters, size: 3, stride: $stride, padding: 1}
          - {name: out, type: add, inputs: [c1, input]}
    layers:
      - {name: stage1, block: residual, repeat: 3}
      - {name: stage2, block: residual, with: {filters: 32, stride: 2}}
      - {name: c, type: conv2d, filters: 8, size: 3, repeat: 2}

``expand`` turns that into the file a user could have written by hand: a value that is exactly
``$param`` becomes the parameter's value; inside a block ``input`` is the block's input and its last
layer its output; ``repeat: n`` chains n copies. Expanded layers are named ``<use>.<layer>``
(``stage2.c1``), ``<use>.<k>.<layer>`` when repeated (``stage1.2.c1``, k from 1) and ``<name>.<k>``
for a repeated layer; other layers' ``inputs`` may name them, and a block use's name stands for its
output. The expanded document keeps the marks of the lines the layers came from, and each expanded
layer says which use it came from, so an error inside a block points at both.
"""

from __future__ import annotations

from typing import Any, Mapping

from yamlnet.config.loader import Document, PathKey, default_layer_names
from yamlnet.config.schema import suggest
from yamlnet.errors import ConfigError

USE_KEYS = ("name", "block", "with", "inputs", "repeat")
#: a file may expand to at most this many layers (repeats inside repeats multiply)
MAX_LAYERS = 10_000
BLOCK_KEYS = ("params", "layers")


def group_path(name: str) -> list[str]:
    """The groups an expanded layer belongs to, outermost first: ``stage1.2.c1`` → ``["stage1", "stage1.2"]``."""
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts))]


def shared_groups(before: list[str], now: list[str]) -> int:
    """How many of the groups (``group_path``) a layer shares with the one before it, outermost first:
    the groups a view keeps open; those past it close, and ``now``'s past it open."""
    shared = 0
    while shared < min(len(before), len(now)) and before[shared] == now[shared]:
        shared += 1
    return shared


def has_short_forms(data: Any) -> bool:
    """Whether the file uses ``blocks:``, a block or ``repeat`` (else it is already plain)."""
    if not isinstance(data, Mapping):
        return False
    layers = data.get("layers")
    return "blocks" in data or (isinstance(layers, list) and any(
        isinstance(layer, Mapping) and ("block" in layer or "repeat" in layer) for layer in layers))


def expand(document: Document) -> Document:
    """The document with every block use and ``repeat`` written out, and no ``blocks:``."""
    if not has_short_forms(document.data):
        return document
    return _Expander(document).run()


class _Expander:
    def __init__(self, document: Document):
        self.source = document
        self.blocks = self._blocks(document.data.get("blocks", {}))
        self.layers: list = []
        self.result = Document(data=None, file=document.file, origins=dict(document.origins))

    def run(self) -> Document:
        data = self.source.data
        written = data.get("layers")
        if isinstance(written, list):
            self._expand_list(written, ("layers",), "", "input", {}, (), None)
        else:
            self.layers = written
        self.result.data = {key: (self.layers if key == "layers" else value)
                            for key, value in data.items() if key != "blocks"}
        for table, source in ((self.result.marks, self.source.marks), (self.result.key_marks, self.source.key_marks)):
            for path, mark in source.items():
                if path[:1] not in (("layers",), ("blocks",)):
                    table[path] = mark
            table.setdefault(("layers",), source.get(("layers",), (1, 1)))
        return self.result

    # -- checks of the written forms -------------------------------------------------------------
    def _error(self, path: PathKey, message: str, at_key: bool = False) -> ConfigError:
        return self.source.error(path, message, at_key=at_key)

    def _blocks(self, blocks: Any) -> dict:
        if not isinstance(blocks, Mapping):
            raise self._error(("blocks",), "must be a mapping of block names to blocks (params and layers)")
        for name, block in blocks.items():
            path = ("blocks", name)
            if not isinstance(block, Mapping):
                raise self._error(path, "a block is a mapping with params and layers")
            for key in block:
                if key not in BLOCK_KEYS:
                    raise self._error(path + (key,), f"unknown key '{key}'{suggest(key, BLOCK_KEYS)} "
                                                     f"(a block has params and layers)", at_key=True)
            if not isinstance(block.get("params", {}), Mapping):
                raise self._error(path + ("params",), "must be a mapping of parameter names to their defaults")
            layers = block.get("layers")
            if not isinstance(layers, list) or not layers:
                raise self._error(path + ("layers",) if "layers" in block else path,
                                  "a block needs a list of at least one layer under layers")
        return dict(blocks)

    def _repeat(self, item: Mapping, path: PathKey) -> int:
        repeat = item.get("repeat", 1)
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
            raise self._error(path + ("repeat",), f"must be a whole number ≥ 1, got {repeat!r}")
        return repeat

    def _bindings(self, use: Mapping, path: PathKey, block_name: str, outer: dict, within: tuple | None) -> dict:
        """parameter → (value, path of the value in the written file) for one use of a block."""
        params = self.blocks[block_name].get("params", {}) or {}
        given = use.get("with", {})
        if not isinstance(given, Mapping):
            raise self._error(path + ("with",), f"must be a mapping of the block's parameters to values, got {given!r}")
        given = {key: self._substitute(value, path + ("with", key), outer, self._note(path, within))
                 for key, value in given.items()}
        for key in given:
            if key not in params:
                known = ", ".join(params) or "none"
                raise self._error(path + ("with", key), f"block {block_name} has no parameter '{key}'"
                                  f"{suggest(key, params)} (its parameters: {known})", at_key=True)
        bindings = {}
        for key, default in params.items():
            if key in given:  # located where the value was written: here, or where a $param came from
                value, origins = given[key]
                bindings[key] = (value, origins.get((), path + ("with", key)))
            elif default is None:
                raise self._error(path, f"block {block_name} needs a value for its parameter '{key}' "
                                        f"(with: {{{key}: …}})")
            else:
                bindings[key] = (default, ("blocks", block_name, "params", key))
        return bindings

    def _substitute(self, value: Any, path: PathKey, bindings: dict, note: str = "") -> tuple[Any, dict]:
        """``value`` with every ``$param`` replaced; and the written path of each replaced value.
        ``note`` says, for an error, which use of the block this is."""
        if isinstance(value, str) and value.startswith("$") and len(value) > 1:
            name = value[1:]
            if name not in bindings:
                if not bindings:
                    raise self._error(path, f"'{value}' names no parameter: $name stands for a parameter only "
                                            "inside a block's layers")
                raise self._error(path, f"'{value}' names no parameter of the block{suggest(name, bindings)} "
                                        f"(its parameters: {', '.join(bindings)}; in {note})")
            return bindings[name][0], {(): bindings[name][1]}
        if isinstance(value, Mapping):
            out, origins = {}, {}
            for key, item in value.items():
                out[key], inner = self._substitute(item, path + (key,), bindings, note)
                origins.update({(key,) + rest: origin for rest, origin in inner.items()})
            return out, origins
        if isinstance(value, list):
            out, origins = [], {}
            for index, item in enumerate(value):
                replaced, inner = self._substitute(item, path + (index,), bindings, note)
                out.append(replaced)
                origins.update({(index,) + rest: origin for rest, origin in inner.items()})
            return out, origins
        return value, {}

    # -- expansion --------------------------------------------------------------------------------
    def _expand_list(self, items: list, items_path: PathKey, prefix: str, block_input: str,
                     bindings: dict, stack: tuple, within: tuple | None) -> str:
        """Write out ``items`` (the file's layers, or a block's) after ``self.layers``; returns the
        name of the last one's output. ``block_input`` is what ``input`` means here; ``within``, for a
        block's layers, is (``used as <use> at line L``, the note of that use itself)."""
        defaults = default_layer_names([item if isinstance(item, Mapping) and "block" not in item else {}
                                        for item in items])
        local: dict[str, str] = {"input": block_input}
        previous = block_input
        for index, item in enumerate(items):
            path = items_path + (index,)
            if not isinstance(item, Mapping):
                self._emit(item, path, {}, self._note(path, within))  # the schema says what is wrong
                previous = None
                continue
            repeat = self._repeat(item, path)
            name = item.get("name", defaults[index])
            if not isinstance(name, str):
                raise self._error(path + ("name",), f"must be a layer name, got {name!r}")
            if "." in name and (prefix or "block" in item or "repeat" in item):
                raise self._error(path + ("name",), f"'{name}': a dot in a name is kept for the names of "
                                                    "expanded blocks (stage1.c1); use _ or -")
            if "inputs" in item:
                inputs_value, _ = self._substitute(item["inputs"], path + ("inputs",), bindings,
                                                   self._note(path, within))
                first_inputs = [local.get(n, n) if isinstance(n, str) else n for n in
                                (inputs_value if isinstance(inputs_value, list) else [inputs_value])]
                first_inputs = first_inputs if isinstance(inputs_value, list) else first_inputs[0]
            else:
                first_inputs = previous
            if "block" in item:
                previous = self._use(item, path, prefix + name, first_inputs, repeat, bindings, stack, within)
            else:
                previous = self._layer(item, path, prefix + name, first_inputs, repeat, bindings, within)
            local[name] = previous
        return previous

    def _use(self, use: Mapping, path: PathKey, name: str, first_input, repeat: int, bindings: dict,
             stack: tuple, within: tuple | None) -> str:
        for key in use:
            if key not in USE_KEYS:
                raise self._error(path + (key,), f"unknown key '{key}'{suggest(key, USE_KEYS)} (a block use has "
                                                 f"{', '.join(USE_KEYS)}; the block's parameters go under with)",
                                  at_key=True)
        if "name" not in use:
            raise self._error(path, "a block use needs a name (its layers are named <name>.<layer>)")
        block_name = use["block"]
        if block_name not in self.blocks:
            known = ", ".join(map(str, self.blocks)) or "none: define them under blocks"
            raise self._error(path + ("block",), f"no block named {block_name!r}{suggest(block_name, self.blocks)}"
                                                 f" (blocks: {known})")
        if block_name in stack:
            chain = " → ".join([*stack, block_name])
            raise self._error(path + ("block",), f"block {block_name} uses itself ({chain}); a block may use "
                                                 "other blocks, never itself")
        own = self._bindings(use, path, block_name, bindings, within)
        line = self.source.marks.get(path, (None,))[0]
        used = f"used as {name}" + (f" at line {line}" if line else "")
        output = first_input
        for copy in range(1, repeat + 1):
            copy_prefix = f"{name}.{copy}." if repeat > 1 else f"{name}."
            output = self._expand_list(self.blocks[block_name]["layers"], ("blocks", block_name, "layers"),
                                       copy_prefix, output, own, stack + (block_name,),
                                       (used, self._note(path, within)))
        return output

    def _layer(self, item: Mapping, path: PathKey, name: str, first_input, repeat: int, bindings: dict,
               within: tuple | None) -> str:
        layer, origins = self._substitute({key: value for key, value in item.items() if key != "repeat"}, path,
                                          bindings, self._note(path, within))
        previous = first_input
        for copy in range(1, repeat + 1):
            copy_name = f"{name}.{copy}" if repeat > 1 else name
            written = dict(layer, name=copy_name)
            if previous != self._last_name():
                written["inputs"] = previous
            elif "inputs" in written:
                del written["inputs"]  # it reads the layer before it: say nothing, as a written file would
            copies = f"copy {copy} of {repeat} of {name}" if repeat > 1 else ""
            self._emit(written, path, origins, "; ".join(filter(None, [copies, self._note(path, within)])))
            previous = copy_name
        return previous

    def _note(self, path: PathKey, within: tuple | None) -> str:
        """Where the item at ``path`` came from, for its errors: ``block residual, line 7, used as
        stage2 at line 14`` (and the uses around that use, for a block inside a block)."""
        if within is None:
            return ""
        used, outer = within
        line = self.source.marks.get(path, (None,))[0]
        return f"block {path[1]}" + (f", line {line}," if line else "") + f" {used}" + (f"; {outer}" if outer else "")

    def _last_name(self) -> str:
        if not self.layers:
            return "input"
        last = self.layers[-1]
        return last.get("name") if isinstance(last, Mapping) else None

    def _emit(self, layer: Any, path: PathKey, origins: dict, within: str) -> None:
        """Append one plain layer, with the marks of where it was written (and of where each ``$param``
        value came from), so that errors point into the file."""
        index = len(self.layers)
        if index == MAX_LAYERS:
            raise self._error(path, f"the file expands to more than {MAX_LAYERS:,} layers (repeats inside repeats "
                                    "multiply); use fewer")
        self.layers.append(layer)
        target = ("layers", index)
        for table, source in ((self.result.marks, self.source.marks), (self.result.key_marks, self.source.key_marks)):
            for written, mark in source.items():
                if written[:len(path)] == path:
                    table[target + written[len(path):]] = mark
        for rest, origin in origins.items():
            if origin in self.source.marks:
                self.result.marks[target + rest] = self.source.marks[origin]
        if within:
            self.result.within[target] = within

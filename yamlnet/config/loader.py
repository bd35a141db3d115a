"""Read a model file safely, remembering where every key and value stands.

YAML is composed with PyYAML's ``SafeLoader`` (no tag can run code), reading scalars as the
YAML 1.2 core schema does (as editors do): ``3e-4`` is a number, ``yes``/``no``/``on``/``off``
and dates are strings. ``_Walker`` then turns the nodes into plain dicts, lists and scalars, and:

- records the line and column of every key and value, so that errors can point at them;
- refuses a key given twice in one mapping (PyYAML alone keeps the last one silently);
- refuses tags other than YAML's own, files over 1 MiB, nesting over 64 levels and more than
  100,000 nodes — the last stops alias bombs, whose aliases would otherwise expand exponentially.

Nesting is counted while the text is composed, so a file built to blow up stops at its 65th
level, not after PyYAML has built the whole tree.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from yamlnet.config.builtin import builtin_path
from yamlnet.errors import ConfigError

MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 100_000

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"

PathKey = tuple  # ("layers", 1, "stride")

# The YAML 1.2 core schema's plain scalars (https://yaml.org/spec/1.2.2/#1032-tag-resolution).
_CORE_SCALARS = [
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("tag:yaml.org,2002:float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                                r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+.0123456789"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:merge", r"^(?:<<)$", "<"),  # merge keys: not core, but editors read them
]


def _construct_int(loader, node) -> int:
    text = loader.construct_scalar(node)
    return int(text, 0) if text.startswith(("0o", "0x")) else int(text)


def _construct_float(loader, node) -> float:
    text = loader.construct_scalar(node)
    special = text.lstrip("+-").lower()
    if special in (".inf", ".nan"):
        return math.copysign(math.inf, -1.0 if text.startswith("-") else 1.0) if special == ".inf" else math.nan
    return float(text)


class _Loader(yaml.SafeLoader):
    """``SafeLoader`` with YAML 1.2 core-schema scalars and a nesting count while composing."""

    yaml_implicit_resolvers: dict = {}

    def __init__(self, text: str, file: str | None):
        super().__init__(text)
        self.file, self.depth = file, 0

    def compose_node(self, parent, index):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise ConfigError(f"the YAML is nested more than {MAX_DEPTH} levels deep",
                              file=self.file, line=mark.line + 1, column=mark.column + 1)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _Dumper(yaml.SafeDumper):
    """``SafeDumper`` that also quotes strings the 1.2 core schema would read as numbers (``1e3``)."""

    yaml_implicit_resolvers = {key: list(value) for key, value in yaml.SafeDumper.yaml_implicit_resolvers.items()}


for _tag, _pattern, _first in _CORE_SCALARS:
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))
    _Dumper.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)


class OneLine(dict):
    """A mapping that ``dump_yaml`` writes on one line, in flow style (``{name: c1, type: conv2d}``)."""


class OneLineList(list):
    """A list that ``dump_yaml`` writes on one line (``[8, 8, 1]``)."""


_Dumper.add_representer(OneLine, lambda dumper, value: dumper.represent_mapping(
    "tag:yaml.org,2002:map", value.items(), flow_style=True))
_Dumper.add_representer(OneLineList, lambda dumper, value: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", value, flow_style=True))


def dump_yaml(data: Any) -> str:
    """YAML text that ``parse_yaml`` reads back as ``data`` (keys in their order; ``OneLine`` and
    ``OneLineList`` values on one line each)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1 << 16)


@dataclass
class Document:
    """A loaded model file: its data and the positions of everything in it.

    ``marks[path]`` is the (line, column) of the value at ``path``, ``key_marks[path]`` that of
    its key; both 1-based. ``origins[path]`` names the ``--set`` override that set a value.
    ``within[("layers", i)]`` says which block use (``yamlnet.config.blocks``) a layer came from:
    errors about it name that use as well as the line inside the block.
    """

    data: Any
    file: str | None = None
    marks: dict = field(default_factory=dict)
    key_marks: dict = field(default_factory=dict)
    origins: dict = field(default_factory=dict)
    within: dict = field(default_factory=dict)

    def error(self, path: PathKey, message: str, *, at_key: bool = False, kind=ConfigError):
        """Return a ``kind`` error located at ``path`` (the key's position when ``at_key``)."""
        key = describe_path(path, self.data)
        if tuple(path[:2]) in self.within:
            message += f" (in {self.within[tuple(path[:2])]})"
        for depth in range(len(path), -1, -1):
            prefix = tuple(path[:depth])
            if prefix in self.origins:
                return kind(message, key=f"{self.origins[prefix]}: {key}" if key else self.origins[prefix])
            marks = (self.key_marks, self.marks) if at_key else (self.marks, self.key_marks)
            for table in marks:
                if prefix in table:
                    line, column = table[prefix]
                    return kind(message, file=self.file, line=line, column=column, key=key or None)
        return kind(message, file=self.file, key=key or None)


def default_layer_names(layers: list) -> list[str]:
    """Each layer's name: its own ``name`` or ``<type><k>``, k counting that type from 1."""
    counts: dict[str, int] = {}
    names = []
    for layer in layers:
        kind = layer.get("type") if isinstance(layer, Mapping) else None
        kind = kind if isinstance(kind, str) else None
        counts[kind] = counts.get(kind, 0) + 1
        own = layer.get("name") if isinstance(layer, Mapping) else None
        names.append(own if isinstance(own, str) else f"{kind or 'layer'}{counts[kind]}")
    return names


def describe_path(path: PathKey, data: Any = None) -> str:
    """``("layers", 1, "stride")`` → ``layers[1] (conv2).stride``."""
    text = ""
    for i, part in enumerate(path):
        if isinstance(part, int):
            text += f"[{part}]"
            layers = data.get("layers") if isinstance(data, Mapping) else None
            if (i == 1 and path[0] == "layers" and isinstance(layers, list) and part < len(layers)
                    and isinstance(layers[part], Mapping)):
                text += f" ({default_layer_names(layers)[part]})"
        else:
            text += f".{part}" if text else str(part)
    return text


def load_document(source: str | os.PathLike | Mapping) -> Document:
    """Load a model from a path, a built-in model's name (``simple``), a YAML string or a dict
    (already-parsed data)."""
    if isinstance(source, Mapping):
        return Document(data=_plain(source))
    builtin = builtin_path(source)
    if builtin is not None:
        return load_file(builtin)
    if isinstance(source, os.PathLike) or (isinstance(source, str) and _looks_like_path(source)):
        return load_file(source)
    if isinstance(source, str):
        return parse_yaml(source, None)
    raise ConfigError(f"a model is a path, a YAML string or a dict, got {type(source).__name__}")


def _looks_like_path(text: str) -> bool:
    return "\n" not in text and (text.endswith((".yaml", ".yml")) or os.path.isfile(text))


def load_file(path: str | os.PathLike) -> Document:
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(f"file is {size:,} bytes; a model file may have at most {MAX_FILE_BYTES:,}",
                              file=str(path))
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", file=str(path)) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a model file", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"is not UTF-8 text ({exc.reason} at byte {exc.start})", file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot be read: {exc.strerror}", file=str(path)) from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, file: str | None) -> Document:
    """Parse YAML text into a ``Document``; ``file`` is the name used in messages."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise ConfigError(f"the YAML text is longer than {MAX_FILE_BYTES:,} bytes", file=file)
    loader = None
    try:
        loader = _Loader(text, file)
        node = loader.get_single_node()
        document = Document(data=None, file=file)
        if node is None:
            raise ConfigError("the file is empty; a model file is a mapping with input and layers",
                              file=file, line=1, column=1)
        document.data = _Walker(loader, document).walk(node, (), 0)
        return document
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        raise ConfigError(f"YAML cannot hold the control character {chr(exc.character)!r} (#x{exc.character:04x})",
                          file=file, line=line, column=column) from None
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise ConfigError(f"{exc.problem}; yamlnet reads plain YAML only", file=file,
                          line=mark.line + 1, column=mark.column + 1) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if (exc.context_mark and exc.problem_mark and exc.problem_mark.line > exc.context_mark.line
                and (exc.context or "").startswith("while parsing a flow")):
            # an unclosed { or [ is found only where the text goes on: point at where it opened
            bracket = "{" if "mapping" in exc.context else "["
            closing = "}" if bracket == "{" else "]"
            problem = f"the {bracket} opened here is never closed with {closing} ({problem})"
            mark = exc.context_mark
        if "\t" in problem or "found character '\\t'" in problem:
            problem += " (YAML does not allow tabs for indentation)"
        raise ConfigError(f"YAML syntax error: {problem}", file=file,
                          line=mark.line + 1 if mark else None,
                          column=mark.column + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", file=file) from None
    except RecursionError:
        raise ConfigError(f"the YAML is nested too deeply (more than {MAX_DEPTH} levels)", file=file) from None
    finally:
        if loader is not None:
            loader.dispose()


class _Walker:
    def __init__(self, loader: _Loader, document: Document):
        self.loader, self.document, self.nodes = loader, document, 0

    def walk(self, node: yaml.Node, path: PathKey, depth: int) -> Any:
        self.nodes += 1
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        if self.nodes > MAX_NODES:
            raise ConfigError(f"the YAML expands to more than {MAX_NODES:,} values (an alias bomb?)",
                              file=self.document.file, line=line, column=column)
        if depth > MAX_DEPTH:
            raise ConfigError(f"the YAML is nested more than {MAX_DEPTH} levels deep",
                              file=self.document.file, line=line, column=column)
        self.document.marks.setdefault(path, (line, column))
        if isinstance(node, yaml.MappingNode):
            self._check_tag(node, _MAP_TAG, "mapping")
            self.loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
            result: dict = {}
            for key_node, value_node in node.value:
                key = self._key(key_node)
                where = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if key in result:
                    first = self.document.key_marks.get(path + (key,), where)
                    raise ConfigError(f"key '{key}' is given twice, on line {first[0]} and line {where[0]}",
                                      file=self.document.file, line=where[0], column=where[1],
                                      key=describe_path(path + (key,), result if not path else None))
                self.document.key_marks[path + (key,)] = where
                result[key] = self.walk(value_node, path + (key,), depth + 1)
            return result
        if isinstance(node, yaml.SequenceNode):
            self._check_tag(node, _SEQ_TAG, "list")
            return [self.walk(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node)  # scalars: SafeLoader refuses unknown tags

    def _key(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise ConfigError("a mapping key must be a plain value, not a list or a mapping",
                              file=self.document.file, line=node.start_mark.line + 1,
                              column=node.start_mark.column + 1)
        return self.loader.construct_object(node)

    def _check_tag(self, node: yaml.Node, expected: str, what: str) -> None:
        if node.tag != expected:
            raise ConfigError(f"tag {node.tag} is not allowed on a {what}; yamlnet reads plain YAML only",
                              file=self.document.file, line=node.start_mark.line + 1,
                              column=node.start_mark.column + 1)


def _plain(value: Any) -> Any:
    """A deep copy of dicts and lists (tuples become lists), so callers' data is never changed."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value

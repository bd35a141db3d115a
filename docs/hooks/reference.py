"""The documentation's reference pages, generated while the site is built (an MkDocs hook).

A page holds a marker such as ``<!-- reference: layers -->``; the hook puts in its place the tables
made from what yamlnet itself knows — the model file's JSON Schema (``yamlnet schema``) and the
command line's typer app — so that a key added to a layer type's ``hyperparameters`` or an option
added to a command appears on the site with no other edit. The functions are plain: the tests
call them to check every key and option is there.
"""

from __future__ import annotations

import re

import typer

MARKER = re.compile(r"<!-- reference: ([a-z_]+) -->")
COMMON_LAYER_KEYS = ("type", "name", "inputs", "repeat")


def on_page_markdown(markdown: str, page, config, files) -> str:
    """MkDocs hook: each marker becomes its generated reference."""
    return MARKER.sub(lambda match: reference(match.group(1)), markdown)


def reference(section: str) -> str:
    """The Markdown of one section: ``top``, ``layers``, ``layer_types``, ``data``, ``datasets``,
    ``training``, ``sweep``, ``blocks`` (from the schema) or ``cli`` (from the typer app)."""
    if section == "cli":
        from yamlnet.cli import app
        return cli_markdown(app)
    from yamlnet.config import build_schema
    schema = build_schema()
    makers = {"top": lambda: key_table(schema["properties"], schema["required"], schema),
              "layers": lambda: layers_markdown(schema), "layer_types": lambda: layer_list(schema),
              "data": lambda: key_table(schema["$defs"]["data"]["properties"], (), schema["$defs"]["data"]),
              "datasets": lambda: dataset_list(schema),
              "training": lambda: key_table(schema["$defs"]["training"]["properties"], ()),
              "sweep": lambda: sweep_table(schema),
              "blocks": lambda: blocks_markdown(schema)}
    if section not in makers:
        raise ValueError(f"unknown reference section {section!r}; known: {', '.join([*makers, 'cli'])}")
    return makers[section]()


# -- the model file, from the schema ---------------------------------------------------------------

def _code(value) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == {}:
        return "`{}`"
    if value == []:
        return "`[]`"
    return f"`{value}`"


def _bounds(spec: dict) -> str:
    low, high = spec.get("minimum"), spec.get("maximum")
    low_open, high_open = spec.get("exclusiveMinimum"), spec.get("exclusiveMaximum")
    if (low is not None or low_open is not None) and (high is not None or high_open is not None):
        left = f"[{low}" if low is not None else f"({low_open}"
        right = f"{high}]" if high is not None else f"{high_open})"
        return f" in {left}, {right}"
    if low is not None:
        return f" ≥ {low}"
    if low_open is not None:
        return f" > {low_open}"
    if high is not None:
        return f" ≤ {high}"
    return ""


def type_text(spec: dict) -> str:
    """A key's type in words: ``integer ≥ 1``, ``number in [0, 1)``, one of ``a``, ``b``, …"""
    if "x-expected" in spec and "anyOf" in spec:
        return spec["x-expected"]
    if "enum" in spec:
        return ", ".join(_code(value) for value in spec["enum"])
    if "anyOf" in spec:
        return " or ".join(type_text(option) for option in spec["anyOf"])
    kind = spec.get("type")
    if kind in ("integer", "number"):
        return kind + _bounds(spec)
    if kind == "boolean":
        return "`true` or `false`"
    if kind == "string" and "pattern" in spec:
        return "name"
    if kind == "string":
        return "path (from the model file's folder)" if spec.get("x-path") else "string"
    if kind == "array":
        items = spec.get("items", {})
        items = "layers" if "$ref" in items else _plural(type_text(items)) if items else "values"
        count = spec.get("minItems")
        if count is not None and count == spec.get("maxItems"):
            return f"list of {count} {items}"
        return f"list of {items}" + (f", at least {count}" if count and count > 1 else "")
    if kind == "object" or "$ref" in spec:
        return "mapping"
    return "any"


def _plural(kind: str) -> str:
    word, _, rest = kind.partition(" ")
    return f"{word}s {rest}".strip() if word in ("integer", "number", "name", "string") else kind


def _meaning(spec: dict) -> str:
    text = spec.get("description", "")
    if "enumDescriptions" in spec:
        text += "".join(f"<br>`{value}`: {about}" for value, about in zip(spec["enum"], spec["enumDescriptions"]))
    if "x-example" in spec:
        text += f" (as `--set` in flow style: `{spec['x-example']}`)"
    return _cell(text)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _conditions(section: dict) -> dict[str, list[str]]:
    """``{key: [values of the switch]}`` for keys required only when a switch (``dataset``) has a value."""
    required = {}
    for rule in section.get("allOf", ()):
        switch = next(iter(rule["if"]["properties"].items()))
        for key in rule["then"].get("required", ()):
            required.setdefault(key, []).append(switch[1]["const"])
    return required


def key_table(properties: dict, required, section: dict | None = None) -> str:
    """One table row per key (nested mappings as ``key.sub`` rows): type, default, meaning."""
    conditional = _conditions(section or {})
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, spec in properties.items():
        if key in required:
            default = "required"
        elif key in conditional:
            default = "required for " + ", ".join(_code(value) for value in conditional[key])
        elif "default" in spec and not ("$ref" in spec and spec["default"] == {}):
            default = _code(spec["default"])
        else:
            default = "—"
        kind = "mapping, [below](#" + spec["$ref"].rsplit("/", 1)[1] + ")" if "$ref" in spec else type_text(spec)
        rows.append(f"| `{key}` | {_cell(kind)} | {default} | {_meaning(spec)} |")
        for sub, sub_spec in spec.get("properties", {}).items():
            rows.append(f"| `{key}.{sub}` | {_cell(type_text(sub_spec))} | "
                        f"{_code(sub_spec['default']) if 'default' in sub_spec else '—'} | {_meaning(sub_spec)} |")
    return "\n".join(rows)


def layer_types(schema: dict) -> list[str]:
    return schema["$defs"]["layer"]["properties"]["type"]["enum"]


def layer_list(schema: dict) -> str:
    """One line per layer type."""
    return "\n".join(f"- [`{name}`](#{name}) — {schema['$defs'][name]['description']}" for name in layer_types(schema))


def layers_markdown(schema: dict) -> str:
    """The keys every layer has, then a heading and a table per layer type."""
    first = schema["$defs"][layer_types(schema)[0]]
    common = {key: first["properties"][key] for key in COMMON_LAYER_KEYS}
    common["type"] = {"enum": layer_types(schema), "description": "the layer type, one of the sections below"}
    parts = ["Every layer:", "", key_table(common, ("type",))]
    for name in layer_types(schema):
        spec = schema["$defs"][name]
        own = {key: value for key, value in spec["properties"].items() if key not in COMMON_LAYER_KEYS}
        parts += ["", f"### `{name}`", "", spec["description"][:1].upper() + spec["description"][1:] + ".", "",
                  key_table(own, spec.get("required", ())) if own else "No keys of its own."]
    return "\n".join(parts)


def dataset_list(schema: dict) -> str:
    spec = schema["$defs"]["data"]["properties"]["dataset"]
    return "\n".join(f"- `{name}` — {about}" for name, about in zip(spec["enum"], spec["enumDescriptions"]))


def blocks_markdown(schema: dict) -> str:
    """The keys of a block under ``blocks:``, then those of a use of it in ``layers:``."""
    block = schema["$defs"]["blocks"]["additionalProperties"]
    use = schema["$defs"]["block_use"]
    return "\n".join(["A block, under `blocks: {name: …}`:", "", key_table(block["properties"], block["required"]), "",
                      "A use of a block, in `layers:` (or in another block's layers):", "",
                      key_table(use["properties"], use["required"])])


def sweep_table(schema: dict) -> str:
    sweep = schema["$defs"]["sweep"]
    (pattern,) = sweep["patternProperties"].values()
    rows = key_table(sweep["properties"], ()).split("\n")
    rows.insert(2, f"| any dotted key, as for `--set` | {type_text(pattern)} | — | {_cell(pattern['description'])} |")
    return "\n".join(rows)


# -- the command line, from the typer app ----------------------------------------------------------

def cli_markdown(app: typer.Typer) -> str:
    """A section per command: what it does, its usage line and a table of its arguments and options."""
    group = typer.main.get_command(app)
    parts = ["## `yamlnet`", "", _usage(group, "yamlnet"), "", params_table(group, "yamlnet")]
    for name, command in group.commands.items():
        parts += ["", f"## `yamlnet {name}`", "", (command.help or "").strip(), "",
                  _usage(command, f"yamlnet {name}"), "", params_table(command, f"yamlnet {name}")]
    return "\n".join(parts)


def _context(command, path: str = "yamlnet"):
    # typer may vendor its own click: the command's own context class, never click's
    return command.context_class(command, info_name=path)


def _usage(command, path: str) -> str:
    with _context(command, path) as context:
        return "```\n" + command.get_usage(context).strip() + "\n```"


def option_names(command) -> list[str]:
    """Every option string a command takes (``--out``, ``--no-plot``, ``--help``)."""
    with _context(command) as context:
        params = command.get_params(context)
    return [name for param in params if param.param_type_name == "option"
            for name in (*param.opts, *param.secondary_opts)]


def params_table(command, path: str) -> str:
    """Each argument and option as ``--help`` shows it: its name and value, then its help and default."""
    with _context(command, path) as context:
        records = [(param, param.get_help_record(context)) for param in command.get_params(context)]
    rows = ["| argument or option | what |", "|---|---|"]
    for param, record in records:
        shown, about = record or (param.name, "")
        rows.append(f"| `{shown}` | {_cell(' '.join(about.split()))} |")
    return "\n".join(rows)

"""Stage 1 and 2 of the pipeline: load a model file, then validate it into a resolved config."""

from __future__ import annotations

from yamlnet.config.blocks import expand, has_short_forms
from yamlnet.config.loader import Document, load_document
from yamlnet.config.overrides import apply_overrides
from yamlnet.config.schema import build_schema, validate


def resolve(source, overrides=()) -> tuple[dict, Document]:
    """Load ``source`` (path, YAML string or dict), apply ``--set`` overrides, write out its blocks
    and repeats (``yamlnet.config.blocks``), validate.

    Returns the resolved config (defaults filled, names given, paths absolute: ``absolute_paths``)
    and the document, whose marks locate later errors (shapes, data) in the file.
    """
    document = load_document(source)
    short = has_short_forms(document.data)
    later = apply_overrides(document, overrides, defer_unknown_layers=short) if overrides else []
    document = expand(document) if short else document
    if later:  # keys of layers a block expanded to: layers.stage1.c1.filters
        apply_overrides(document, later)
    config = validate(document)
    absolute_paths(config, document, overrides)
    return config, document


def absolute_paths(config: dict, document: Document, overrides=()) -> None:
    """Make the config's relative paths (the keys marked ``x-path`` in the schema: data files and
    folders, init_weights) absolute, as editors, Hydra and Ultralytics read them: a path written in a
    model file is relative to that file's folder, one given with ``--set`` (or in a YAML string or a
    dict, or in a built-in model) to the current folder. A run's config.yaml then holds paths that
    work from any folder, and wherever the run directory moves."""
    import os
    from pathlib import Path

    from yamlnet.config.builtin import MODELS
    from yamlnet.config.schema import path_keys

    folder = Path(document.file).resolve().parent if document.file and Path(document.file).is_file() else None
    if folder is not None and folder == MODELS.resolve():
        folder = None
    overridden = {tuple(item.split("=", 1)[0].strip().split(".")) for item in overrides}
    for section, key in path_keys():
        value = config.get(section, {}).get(key)
        if isinstance(value, str) and value and not os.path.isabs(os.path.expanduser(value)):
            base = Path.cwd() if folder is None or (section, key) in overridden else folder
            config[section][key] = os.path.normpath(base / os.path.expanduser(value))


def load_config(source, overrides=()) -> dict:
    """The resolved config of a model file: validated, with every default filled in."""
    return resolve(source, overrides)[0]


__all__ = ["Document", "build_schema", "load_config", "load_document", "resolve", "validate"]

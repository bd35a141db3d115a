"""Stage 1 and 2 of the pipeline: load a model file, then validate it into a resolved config."""

from __future__ import annotations

from yamlnet.config.loader import Document, load_document
from yamlnet.config.schema import build_schema, validate


def resolve(source, overrides=()) -> tuple[dict, Document]:
    """Load ``source`` (path, YAML string or dict), apply ``--set`` overrides, validate.

    Returns the resolved config (defaults filled, names given) and the document, whose marks
    locate later errors (shapes, data) in the file.
    """
    document = load_document(source)
    if overrides:
        from yamlnet.config.overrides import apply_overrides
        apply_overrides(document, overrides)
    return validate(document), document


def load_config(source, overrides=()) -> dict:
    """The resolved config of a model file: validated, with every default filled in."""
    return resolve(source, overrides)[0]


__all__ = ["Document", "build_schema", "load_config", "load_document", "resolve", "validate"]

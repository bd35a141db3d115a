"""The example models that ship inside the package, found by name: ``yamlnet train simple``.

A name (``simple``) or a file name (``simple.yaml``) that is not a file in the current folder is
looked up among ``yamlnet/models/*.yaml``; an existing file always wins.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

MODELS = Path(str(resources.files("yamlnet") / "models"))
SCHEMA = Path(str(resources.files("yamlnet") / "schemas" / "yamlnet.schema.json"))


def builtin_models() -> dict[str, Path]:
    """Name → path of every built-in model, sorted by name."""
    return {path.stem: path for path in sorted(MODELS.glob("*.yaml"))}


def builtin_path(source) -> Path | None:
    """The built-in model that ``source`` names, if it is a bare name or file name and no such file exists."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    text = os.fspath(source)
    if "\n" in text or os.path.exists(text) or os.path.dirname(text):
        return None
    name = text[:-5] if text.endswith(".yaml") else text[:-4] if text.endswith(".yml") else text
    return builtin_models().get(name)


def description(path: Path, width: int = 72) -> str:
    """The first sentence of a model file's opening comment (after its modeline): what the model is."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        if "yaml-language-server" not in line:
            words.append(line.lstrip("#").strip())
    text = " ".join(words)
    sentence = text.split(". ")[0].rstrip(".:")
    return sentence if len(sentence) <= width else sentence[:width - 1].rstrip() + "…"

"""Layer types from other packages: the entry-point group ``yamlnet.layers``, found the way pytest finds
its plugins. An entry point's name is the ``type`` written in model files, its value a ``Layer`` subclass:

    [project.entry-points."yamlnet.layers"]
    channelscale = "mypkg.layers:ChannelScale"

Only installed packages add code: nothing in a model file ever names a module to import. A package
that fails to load — its import raises, its value is no ``Layer`` subclass, its name is taken by a
built-in type or is no valid type name — never breaks yamlnet: one warning line names the entry point
and its package, and a model file that writes that type gets one located line saying why it is missing.
"""

from __future__ import annotations

import re
import warnings
from importlib.metadata import entry_points

from yamlnet.errors import YamlnetWarning
from yamlnet.layers.base import LAYERS, Layer

GROUP = "yamlnet.layers"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: type name → why the package that should give it did not (for the error of a file that writes it)
FAILED: dict[str, str] = {}


class PluginWarning(YamlnetWarning):
    """A package's layer types could not be loaded; yamlnet goes on without them."""


def load_plugins() -> None:
    """Register the layer types of every installed package's ``yamlnet.layers`` entry points."""
    for entry in entry_points(group=GROUP):
        package = entry.dist.name if entry.dist is not None else "an unnamed package"
        try:
            cls = entry.load()
        except Exception as error:  # whatever its import raised: it must not stop yamlnet
            _failed(entry, package, f"{type(error).__name__}: {error}")
            continue
        if not (isinstance(cls, type) and issubclass(cls, Layer)):
            _failed(entry, package, f"{entry.value} is not a subclass of yamlnet.layers.Layer")
        elif entry.name in LAYERS and LAYERS[entry.name] is not cls:
            _warn(entry, package, f"the type {entry.name} is yamlnet's own (or another package's): this one is "
                                  f"left out")
        elif not _NAME.match(entry.name):
            _failed(entry, package, f"{entry.name!r} is not a layer type name (lower-case letters, digits and _)")
        else:
            cls.type = entry.name
            LAYERS[entry.name] = cls


def _failed(entry, package: str, why: str) -> None:
    FAILED.setdefault(entry.name, f"the package {package}, which failed to load it ({why})")
    _warn(entry, package, why)


def _warn(entry, package: str, why: str) -> None:
    warnings.warn(PluginWarning(f"layer type entry point {entry.name} = {entry.value} of the package {package} "
                                f"was not loaded: {why}"), stacklevel=3)

"""Layer types. Importing this package fills ``LAYERS``, the registry the schema is built from."""

from yamlnet.layers.base import LAYERS, Layer, register
from yamlnet.layers import (activation, batchnorm, conv, dense, dropout, flatten, merge, pool,  # noqa: F401
                            softmax)  # (importing registers them)
from yamlnet.layers.plugins import load_plugins

load_plugins()  # then the types of installed packages (entry points "yamlnet.layers")

__all__ = ["LAYERS", "Layer", "register"]

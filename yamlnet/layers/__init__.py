"""Layer types. Importing this package fills ``LAYERS``, the registry the schema is built from."""

from yamlnet.layers.base import LAYERS, Layer, register
from yamlnet.layers import activation, conv, dense, dropout, flatten, pool, softmax  # noqa: F401  (register)

__all__ = ["LAYERS", "Layer", "register"]

"""Data sets: the registry (``registry``), the loaders (one module each, registering themselves),
and the preparation every data set shares (``prepare``). This face only hands names on.
"""

from yamlnet.data.registry import COMMON_KEYS, DATASETS, FASHION_MNIST, PATH_KEY, Dataset, register_dataset
from yamlnet.data.prepare import DataSplits, check_arrays, class_names, load_data, normalization
from yamlnet.data.stream import Feed, Streamed
# the loaders, in the order of the schema's enum (importing registers them)
from yamlnet.data import digits, shapes, npz, mnist, folder  # noqa: F401

__all__ = ["COMMON_KEYS", "DATASETS", "FASHION_MNIST", "PATH_KEY", "DataSplits", "Dataset", "check_arrays",
           "class_names", "load_data", "normalization", "register_dataset", "Feed", "Streamed"]

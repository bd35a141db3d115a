"""The data set registry: ``data.dataset`` in a model file → its loader, as ``yamlnet.layers`` maps
``type`` to a class. A loader registers itself with ``@register_dataset``; the schema's ``data`` keys
are generated from ``COMMON_KEYS`` and each data set's own ``keys``.

A loader takes (the ``data`` mapping, the model's input shape, the seed) and returns images ``x``
(N, n_H, n_W, n_C), integer labels ``y`` (N,), a separate test set or (None, None), and optionally
the class names found in the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass
class Dataset:
    name: str
    #: (data_config, input_shape, seed) -> (x, y, x_test | None, y_test | None[, class names found in the data])
    load: Callable
    keys: dict  # JSON Schema properties of the keys only this data set uses
    required: tuple[str, ...]
    n_classes: int | None  # None: taken from the labels
    description: str
    image_shape: tuple[int, int, int] | None = None  # (n_H, n_W, n_C) when fixed by the data set
    classes: tuple[str, ...] | None = None  # the class names, when the data set fixes them
    #: (data_config, input_shape) -> how many images it holds, where that is known before reading them
    count: Callable | None = None
    #: the data.cache it takes when its images do not fit in memory ("disk", "none"); None: memory only
    streams: str | None = None


DATASETS: dict[str, Dataset] = {}


def register_dataset(name: str, *, keys: dict | None = None, required: tuple = (), n_classes: int | None = None,
                     description: str = "", image_shape: tuple | None = None, classes: tuple | None = None,
                     count: Callable | None = None, streams: str | None = None):
    def decorate(load):
        DATASETS[name] = Dataset(name, load, keys or {}, required, n_classes, description, image_shape, classes,
                                 count, streams)
        return load
    return decorate


COMMON_KEYS = {
    "dataset": {"default": "digits", "description": "which data set"},
    "validation_split": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "default": 0.2,
                         "description": "share of the training data held out for validation"},
    "normalization": {"enum": ["standardize", "scale", "none"], "default": "standardize",
                      "description": "standardize: per channel, by the training part's mean and std; "
                                     "scale: to 0..1 by its min and max; none: raw values"},
    "shuffle": {"type": "boolean", "default": True, "description": "reshuffle the training part every epoch"},
    "cache": {"enum": ["memory", "none", "disk"],
              "description": "where the images live while training: memory (decoded once; the fastest), none "
                             "(read from their files for every batch), disk (a folder's images decoded once into "
                             "a uint8 cache file, reused by later runs); the same weights bit for bit whichever; "
                             "default: memory where the decoded images fit training.max_memory, else disk for a "
                             "folder and none for npz (folder and npz only)"},
    "prefetch": {"type": "integer", "minimum": 1, "maximum": 64, "default": 4,
                 "description": "with cache none or disk: how many batches are read ahead of training"},
    "classes": {"anyOf": [{"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
                          {"enum": ["fashion_mnist"]}],
                "x-expected": "a list of class names, or fashion_mnist",
                "description": "the class names, in label order (one per output); fashion_mnist: "
                               "Fashion-MNIST's ten; default: the data set's own, else 0, 1, …"},
    "augment": {
        "type": "object", "additionalProperties": False, "default": {}, "x-example": "{flip: horizontal, shift: 2}",
        "description": "random changes to the training images, afresh every epoch, drawn from the seed",
        "properties": {
            "flip": {"enum": ["none", "horizontal", "vertical", "both"], "default": "none",
                     "description": "mirror each image with probability 1/2 (both: each axis on its own)"},
            "shift": {"type": "integer", "minimum": 0, "default": 0,
                      "description": "move each image by up to this many pixels each way, filling with 0"},
            "noise": {"type": "number", "minimum": 0, "default": 0.0,
                      "description": "add Gaussian noise of this σ (in normalized units)"},
            "rotate": {"type": "number", "minimum": 0, "maximum": 180, "default": 0.0,
                       "description": "rotate each image by an angle drawn in ±this many degrees (bilinear; "
                                      "0 in normalized units where nothing moves in)"},
            "scale": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 2,
                      "maxItems": 2, "default": [1.0, 1.0],
                      "description": "[lo, hi]: zoom each image about its centre by a factor drawn in lo..hi "
                                     "(above 1: closer)"},
            "crop": {"type": "integer", "minimum": 0, "default": 0,
                     "description": "torchvision's RandomCrop(padding=N): pad by N pixels of 0, then a random crop "
                                    "of the input's size"},
            "brightness": {"type": "number", "minimum": 0, "default": 0.0,
                           "description": "ColorJitter's: multiply the pixels by a factor drawn in max(0, 1 − b)..1 + b"},
            "contrast": {"type": "number", "minimum": 0, "default": 0.0,
                         "description": "ColorJitter's: blend each image with its mean grey by a factor drawn in "
                                        "max(0, 1 − c)..1 + c"},
            "saturation": {"type": "number", "minimum": 0, "default": 0.0,
                           "description": "ColorJitter's, RGB only: blend each pixel with its grey by a factor drawn "
                                          "in max(0, 1 − s)..1 + s"},
            "hue": {"type": "number", "minimum": 0, "maximum": 0.5, "default": 0.0,
                    "description": "ColorJitter's, RGB only: turn each image's hues by a share of the colour "
                                   "circle drawn in ±h"},
            "cutout": {"type": "integer", "minimum": 0, "default": 0,
                       "description": "set one N × N square of each image, centred anywhere in it, to 0 "
                                      "(in normalized units)"},
        },
    },
}

FASHION_MNIST = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot")


PATH_KEY = {"type": "string", "minLength": 1, "x-path": True,
            "description": "npz: the .npz file, or a folder holding x.npy and y.npy; mnist: the folder holding the four IDX files; folder: the "
                           "folder with one sub-folder per class"}

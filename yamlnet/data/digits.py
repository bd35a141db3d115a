"""digits: 1,797 handwritten digits, 8 × 8 × 1, values 0..16, shipped with yamlnet (CC BY 4.0, see DIGITS-README.md)."""

from __future__ import annotations

import gzip
from importlib import resources

import numpy as np

from yamlnet.data.registry import register_dataset


@register_dataset("digits", n_classes=10, image_shape=(8, 8, 1),
                  description="built in: 1,797 handwritten digits, 8 × 8 × 1, ten classes (UCI, CC BY 4.0)")
def load_digits(data, input_shape, seed):
    with resources.files("yamlnet.data").joinpath("digits.csv.gz").open("rb") as raw, gzip.open(raw, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.float32)
    return table[:, :64].reshape(-1, 8, 8, 1), table[:, 64].astype(np.int64), None, None

"""Numerical gradients by central differences, and CS231n's relative error."""

from __future__ import annotations

import numpy as np


def rel_error(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def numerical_gradient(f, array: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """d f() / d array, perturbing ``array`` in place one entry at a time."""
    grad = np.zeros_like(array, dtype=np.float64)
    it = np.nditer(array, flags=["multi_index"], op_flags=["readwrite"])
    for _ in it:
        index = it.multi_index
        old = array[index]
        array[index] = old + h
        plus = f()
        array[index] = old - h
        minus = f()
        array[index] = old
        grad[index] = (plus - minus) / (2 * h)
    return grad

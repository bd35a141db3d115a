"""Softmax fused with cross-entropy: stable for any logits, and the simplest gradient there is."""

from __future__ import annotations

import numpy as np


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray,
                          batch_size: int | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against integer labels.

    logits (N, n_classes), labels (N,) int → (loss, d loss / d logits (N, n_classes), probabilities).
    Shifting by the row max keeps exp() finite, so even logits of 1e30 give a finite loss.
    ``batch_size`` (default N) is the mean's divisor: for a shard of a larger batch, so that the
    shards' losses and gradients add up to the whole batch's.
    """
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    batch_size = n if batch_size is None else batch_size
    loss = float(np.sum(np.log(total[:, 0]) - shifted[rows, labels]) / batch_size)
    probs = exp / total
    grad = probs.copy()
    grad[rows, labels] -= 1
    grad /= batch_size
    return loss, grad, probs

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


class CrossEntropy:
    """The training loss: softmax cross-entropy with PyTorch's ``label_smoothing`` ε and class ``weights``
    w (C,) — for a sample of label y, −Σ_c a_c log p_c with a_c = (1 − ε)·w_y·[c = y] + ε·w_c / C — and
    its mean over the batch divided by Σ w_y of the batch's labels (N without weights), as
    ``torch.nn.functional.cross_entropy`` takes it. Without either, ``softmax_cross_entropy`` itself."""

    def __init__(self, smoothing: float = 0.0, weights: np.ndarray | None = None):
        self.smoothing, self.weights = smoothing, weights

    def divisor(self, labels: np.ndarray) -> float:
        """What the mean over a whole batch with these labels divides by: every shard of it divides by this."""
        return len(labels) if self.weights is None else float(self.weights[labels].sum())

    def __call__(self, logits: np.ndarray, labels: np.ndarray,
                 divisor: float | None = None) -> tuple[float, np.ndarray, np.ndarray]:
        """logits (N, C), labels (N,) → (loss, d loss / d logits (N, C), probabilities (N, C))."""
        if self.smoothing == 0 and self.weights is None:
            return softmax_cross_entropy(logits, labels, divisor)
        n, classes = logits.shape
        divisor = self.divisor(labels) if divisor is None else divisor
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        total = exp.sum(axis=1, keepdims=True)
        weights = np.ones(classes, dtype=logits.dtype) if self.weights is None else self.weights.astype(logits.dtype)
        targets = np.zeros_like(logits)  # a (N, C): each row's weights on the log-probabilities
        targets += self.smoothing / classes * weights
        targets[np.arange(n), labels] += (1 - self.smoothing) * weights[labels]
        log_probs = shifted - np.log(total)
        loss = float(-np.sum(targets * log_probs) / divisor)
        probs = exp / total
        grad = probs * targets.sum(axis=1, keepdims=True) - targets  # d/dz of −Σ a log softmax(z) = p·Σa − a
        grad /= divisor
        return loss, grad, probs


"""Loss functions: mean softmax cross-entropy (docs/design.md §5)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["cross_entropy", "log_softmax", "softmax"]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise ``log softmax`` by log-sum-exp, finite for any finite logits.

    Parameters
    ----------
    logits : ndarray, shape (N, K), float32 or float64

    Returns
    -------
    ndarray, shape (N, K), same dtype
    """
    # Subtracting the row maximum makes every exponent ≤ 0, so exp never overflows and the
    # largest term is exactly 1, so the log never sees 0.
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax probabilities, shape and dtype of ``logits (N, K)``."""
    return np.exp(log_softmax(logits))


def cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    count: int | None = None,
    smoothing: float = 0.0,
) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy and its gradient with respect to the logits.

    ``L = -(1/N) Σ_n log softmax(z_n)[y_n]`` computed by log-sum-exp, and
    ``dL/dz = (softmax(z) - onehot(y)) / N`` (docs/design.md §5). With label smoothing
    ``ε`` the target is ``q = (1 - ε) onehot(y) + ε / K`` instead of the one-hot vector:
    ``L = -(1/N) Σ_n Σ_k q_nk log softmax(z_n)_k`` and ``dL/dz = (softmax(z) - q) / N``
    (docs/design.md §5.12).

    Parameters
    ----------
    logits : array_like, shape (N, K), float32 or float64
        Unnormalised class scores.
    labels : array_like of int, shape (N,)
        Class indices in ``0 … K-1``.
    count : int, optional
        The ``N`` the loss is a mean over (default: the number of rows). A chunk of a
        larger batch passes the batch's size: its gradient rows are then exactly those of
        the whole batch's, and the chunks' losses add up to the batch's loss (up to the
        rounding of that float64 sum).
    smoothing : float
        Label smoothing ``ε`` in ``[0, 1)``; 0 (default) is the plain cross-entropy.

    Returns
    -------
    loss : float
    dlogits : ndarray, shape (N, K), dtype of ``logits``

    Raises
    ------
    ValueError
        If the shapes do not match, a label is out of range, or a logit is not finite.

    Examples
    --------
    >>> loss, d = cross_entropy(np.zeros((2, 4)), [0, 3])
    >>> round(loss, 6), d[0]
    (1.386294, array([-0.375,  0.125,  0.125,  0.125]))
    """
    z = np.asarray(logits)
    if z.dtype not in (np.float32, np.float64):
        z = z.astype(np.float64)
    y = np.asarray(labels)
    if z.ndim != 2 or z.shape[0] == 0:
        raise ValueError(f"logits must have shape (N, K) with N ≥ 1, got shape {z.shape}")
    if y.shape != (z.shape[0],):
        raise ValueError(f"labels must have shape ({z.shape[0]},), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"labels must be integers, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels must lie in 0 … {z.shape[1] - 1}, got {y.min()} … {y.max()}")
    if not np.isfinite(z).all():
        raise ValueError("logits contain NaN or infinite values")
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    n = z.shape[0]
    if count is None:
        count = n
    elif isinstance(count, bool) or not isinstance(count, int | np.integer) or count < n:
        raise ValueError(f"count must be an int of at least the {n} rows, got {count!r}")
    rows = np.arange(n)
    logp = log_softmax(z)
    picked = logp[rows, y].astype(np.float64).sum()
    dlogits = np.exp(logp)
    if smoothing:
        k = z.shape[1]
        spread = logp.astype(np.float64).sum()
        loss = -float(((1 - smoothing) * picked + smoothing / k * spread) / count)
        dlogits -= dlogits.dtype.type(smoothing / k)
        dlogits[rows, y] -= dlogits.dtype.type(1 - smoothing)
    else:
        loss = -float(picked / count)
        dlogits[rows, y] -= 1
    dlogits /= count
    return loss, dlogits

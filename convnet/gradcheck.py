"""Finite-difference gradient checking for layers, models and plain functions.

Central differences, ``(f(x + h) - f(x - h)) / 2h``, have an error of order ``h²``; in
float64 with ``h = 1e-6`` they agree with a correct analytic gradient to about ``1e-9``
relative, far below the ``1e-6`` the tests demand, and a wrong gradient is off by order 1.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["check_gradients", "numerical_gradient", "relative_error"]


def numerical_gradient(
    f: Callable[[], float], x: np.ndarray, eps: float = 1e-6, indices: np.ndarray | None = None
) -> np.ndarray:
    """Central-difference gradient of a scalar function with respect to an array.

    Each element of ``x`` is nudged in place by ``±eps`` in turn and restored, so ``f``
    reads ``x`` itself (a parameter array of a layer, for example).

    Parameters
    ----------
    f : callable () -> float
        The function; it must read ``x`` on every call.
    x : ndarray, float64
        The array to differentiate with respect to, modified temporarily.
    eps : float
        The step.
    indices : ndarray of int, optional
        Flat indices to differentiate at (default all); the other entries are left 0.

    Returns
    -------
    ndarray, same shape as ``x``, float64

    Examples
    --------
    >>> x = np.array([1.0, 2.0])
    >>> np.round(numerical_gradient(lambda: float((x ** 2).sum()), x), 6)
    array([2., 4.])
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise TypeError("x must be a float64 ndarray (finite differences need float64)")
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    grad = np.zeros(x.shape)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError("x must be contiguous so that it can be nudged in place")
    for i in range(flat.size) if indices is None else indices:
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """``‖a - n‖ / max(‖a‖ + ‖n‖, 1e-300)``: 0 for equal arrays, about 1 for unrelated ones.

    A norm-based ratio, so that single entries that are almost zero do not dominate.
    """
    a, b = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} and {b.shape}")
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


def check_gradients(
    net,
    x: np.ndarray,
    *,
    eps: float = 1e-6,
    seed: int = 0,
    labels: np.ndarray | None = None,
    samples: int | None = None,
) -> dict[str, float]:
    """Compare a layer's or model's backward pass with finite differences.

    The scalar checked is ``L = Σ y · r`` for a fixed random ``r`` (so ``dL/dy = r``), or the
    cross-entropy of the output when ``labels`` are given.

    Parameters
    ----------
    net : Layer or Sequential
        Anything with ``forward``, ``backward`` and float64 parameters; for a layer the
        dict ``net.params`` / ``net.grads``, for a model ``state_dict()`` / ``grads()``.
    x : ndarray, float64
        The input batch.
    eps : float
        Finite-difference step.
    seed : int
        Seed of the random projection ``r``.
    labels : ndarray of int, optional
        Check the loss ``cross_entropy(net.forward(x), labels)`` instead.
    samples : int, optional
        Compare at most this many randomly chosen entries of each array (all by default);
        a whole network has too many parameters to nudge every one.

    Returns
    -------
    dict of str to float
        The relative error (:func:`relative_error`) for ``"input"`` and each parameter.
    """
    from .losses import cross_entropy

    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise TypeError("x must be a float64 ndarray for a gradient check")
    x = x.copy()
    out = net.forward(x)
    r = np.random.default_rng(seed).standard_normal(out.shape)

    def loss() -> float:
        y = net.forward(x)
        if labels is not None:
            return cross_entropy(y, labels)[0]
        return float(np.sum(y * r))

    if labels is not None:
        _, dout = cross_entropy(out, labels)
    else:
        dout = r
    dx = net.backward(dout)
    if hasattr(net, "state_dict"):
        params, grads = net.state_dict(copy=False), net.grads()
    else:
        params, grads = net.params, net.grads
    analytic = {name: g.copy() for name, g in grads.items()}
    analytic["input"] = dx
    pick = np.random.default_rng(seed + 1)
    errors = {}
    for name, p in [("input", x), *params.items()]:
        if samples is None or samples >= p.size:
            idx = np.arange(p.size)
        else:
            idx = np.sort(pick.choice(p.size, samples, replace=False))
        numeric = numerical_gradient(loss, p, eps, idx).reshape(-1)[idx]
        errors[name] = relative_error(analytic[name].reshape(-1)[idx], numeric)
    return errors

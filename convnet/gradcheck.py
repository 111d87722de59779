"""Finite-difference gradient checking for layers, models and plain functions.

Central differences, ``(f(x + h) - f(x - h)) / 2h``, have an error of order ``h²``; in
float64 with ``h = 1e-6`` they agree with a correct analytic gradient to about ``1e-9``
relative, far below the ``1e-6`` the tests demand, and a wrong gradient is off by order 1.

That holds where the function is differentiable between ``x - h`` and ``x + h``. ReLU and
max pooling have kinks: where a ReLU's input crosses 0, or where the largest value of a
pooling window changes hands. Real digits put inputs exactly on kinks all the time: the
flat background of an MNIST digit gives every pooling window over it four equal values,
and nudging one of them by ``±h`` makes it the winner one way and a loser the other, so
the central difference there is half the one-sided slopes' sum, not a derivative, and the
backward pass (which routes the gradient to the first maximum, a valid subgradient) can
not match it. :func:`check_gradients` therefore watches every ReLU's signs and every max
pool's winners at ``x + h`` and ``x - h``, leaves out the entries whose nudge changed them,
and says how many it left out (:class:`GradientCheck`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .layers import Layer, MaxPool2D, ReLU
from .model import Sequential

__all__ = ["GradientCheck", "check_gradients", "numerical_gradient", "relative_error"]


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


class GradientCheck(dict):
    """Relative errors by array name (a ``dict``), and what was left out at kinks.

    Attributes
    ----------
    checked : dict of str to int
        How many entries of each array were compared.
    kinks : dict of str to int
        How many of the entries picked for comparison were left out because nudging them
        by ``±eps`` changed the sign of a ReLU's input or the winner of a max-pooling window:
        the function has a kink between ``x - eps`` and ``x + eps`` (often an exact tie,
        as on a digit's flat background), where a finite difference measures no derivative.
        An array whose every picked entry sits at a kink has the error NaN.
    """

    def __init__(self, errors: dict[str, float], checked: dict[str, int], kinks: dict[str, int]):
        super().__init__(errors)
        self.checked, self.kinks = checked, kinks

    def __repr__(self) -> str:
        left = {k: v for k, v in self.kinks.items() if v}
        note = f", entries left out at kinks: {left}" if left else ""
        return f"GradientCheck({dict(self)}{note})"


def _winners(h: np.ndarray, pool: MaxPool2D) -> np.ndarray:
    """The flat index of each pooling window's first maximum, ``(N, C, Ho, Wo)``."""
    (kh, kw), (sh, sw) = pool.kernel_size, pool.stride
    windows = np.lib.stride_tricks.sliding_window_view(h, (kh, kw), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw]
    return windows.reshape(*windows.shape[:4], kh * kw).argmax(axis=-1)


def _routing(layers: list[tuple[Layer, dict]], x: np.ndarray) -> list[np.ndarray]:
    """The sign of every ReLU input and the winner of every max-pooling window for ``x``.

    Computed from the layers' inputs, one layer after the other on the whole batch, so
    that it does not depend on how the network splits a batch.
    """
    last = max((i for i, (layer, _) in enumerate(layers) if isinstance(layer, ReLU | MaxPool2D)),
               default=-1)  # fmt: skip
    pattern, h = [], x
    for i, (layer, params) in enumerate(layers[: last + 1]):
        if isinstance(layer, ReLU):
            pattern.append(h > 0)
        elif isinstance(layer, MaxPool2D):
            pattern.append(_winners(h, layer))
        if i < last:
            h = layer.forward(params, h)[0]
    return pattern


def check_gradients(
    net: Layer | Sequential,
    x: np.ndarray,
    *,
    params: dict[str, np.ndarray] | None = None,
    eps: float = 1e-6,
    seed: int = 0,
    labels: np.ndarray | None = None,
    samples: int | None = None,
) -> GradientCheck:
    """Compare a layer's or model's backward pass with finite differences.

    The scalar checked is ``L = Σ y · r`` for a fixed random ``r`` (so ``dL/dy = r``), or the
    cross-entropy of the output when ``labels`` are given. Entries whose ``±eps`` nudge
    crosses a kink of a ReLU or a max pool (see the module docstring) are left out and
    counted in :attr:`GradientCheck.kinks`: there the function has no derivative for the
    finite difference to measure.

    Parameters
    ----------
    net : Layer or Sequential
        A layer (its pure ``forward(params, x)`` and ``backward(params, cache, dout)``,
        checked with respect to ``params``) or a model (its ``forward``, ``backward`` and
        ``grads()``, checked with respect to ``state_dict()``), with float64 parameters.
        Kinks are watched in :class:`~convnet.layers.ReLU` and
        :class:`~convnet.layers.MaxPool2D` layers (the layer itself, or those of a model's
        ``layers``), subclasses included.
    x : ndarray, float64
        The input batch.
    params : dict of str to ndarray, optional
        For a layer: the parameters to check at (nudged in place and restored); default
        ``net.init_params(seed)``. Not accepted with a model, which has its own.
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
    GradientCheck
        A dict of the relative error (:func:`relative_error`) for ``"input"`` and each
        parameter over the entries away from kinks, with the counts ``checked`` and
        ``kinks`` as attributes.

    Examples
    --------
    >>> pool = MaxPool2D(2)
    >>> x = np.zeros((1, 1, 4, 4))  # a flat patch: every window is a four-way tie
    >>> x[0, 0, 0, 0] = 1.0
    >>> result = check_gradients(pool, x)  # a layer without parameters
    >>> result["input"] <= 1e-6, result.checked["input"], result.kinks["input"]
    (True, 4, 12)
    """
    from .losses import cross_entropy

    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise TypeError("x must be a float64 ndarray for a gradient check")
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    x = x.copy()
    if isinstance(net, Layer):
        if params is None:
            params = net.init_params(seed)
        layers = [(net, params)]
        out, cache = net.forward(params, x)
    elif isinstance(net, Sequential):
        if params is not None:
            raise ValueError("params is for a layer; a model is checked at its own parameters")
        params = net.state_dict(copy=False)
        layers = [(layer, net.params[name]) for name, layer in net.layers]
        out = net.forward(x)
    else:
        raise TypeError(f"net must be a Layer or a Sequential, got {type(net).__name__}")
    r = np.random.default_rng(seed).standard_normal(out.shape)

    def loss() -> float:
        y = net.forward(params, x)[0] if isinstance(net, Layer) else net.forward(x)
        if labels is not None:
            return cross_entropy(y, labels)[0]
        return float(np.sum(y * r))

    dout = r if labels is None else cross_entropy(out, labels)[1]
    if isinstance(net, Layer):
        dx, grads = net.backward(params, cache, dout)
    else:
        dx, grads = net.backward(dout), net.grads()
    analytic = {name: g.copy() for name, g in grads.items()}
    analytic["input"] = dx
    pick = np.random.default_rng(seed + 1)
    errors, checked, kinks = {}, {}, {}
    for name, p in [("input", x), *params.items()]:
        if samples is None or samples >= p.size:
            idx = np.arange(p.size)
        else:
            idx = np.sort(pick.choice(p.size, samples, replace=False))
        flat = p.reshape(-1)
        if not np.shares_memory(flat, p):
            raise ValueError(f"{name} must be contiguous so that it can be nudged in place")
        numeric = np.empty(len(idx))
        smooth = np.ones(len(idx), dtype=bool)
        for j, i in enumerate(idx):
            old = flat[i]
            flat[i] = old + eps
            up, routes_up = loss(), _routing(layers, x)
            flat[i] = old - eps
            down, routes_down = loss(), _routing(layers, x)
            flat[i] = old
            numeric[j] = (up - down) / (2 * eps)
            smooth[j] = all(map(np.array_equal, routes_up, routes_down))
        checked[name], kinks[name] = int(smooth.sum()), int((~smooth).sum())
        a = analytic[name].reshape(-1)[idx]
        errors[name] = relative_error(a[smooth], numeric[smooth]) if smooth.any() else np.nan
    return GradientCheck(errors, checked, kinks)

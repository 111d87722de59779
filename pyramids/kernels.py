"""One-dimensional low-pass kernels for the Gaussian and Laplacian pyramids.

A kernel is an odd-length, symmetric, finite 1-D array that sums to 1 (docs/design.md §1).
Every function that takes ``kernel=`` accepts any of:

* ``"binomial"`` (the default): ``[1, 4, 6, 4, 1] / 16``, which is the Burt–Adelson kernel
  with ``a = 0.375``;
* ``"binomial3"``, ``"binomial5"``, ``"binomial7"``, ...: the normalised binomial
  coefficients of that (odd) length, up to :data:`MAX_KERNEL_TAPS`;
* a float ``a``: the Burt–Adelson 5-tap kernel ``[1/4 - a/2, 1/4, a, 1/4, 1/4 - a/2]``;
* an array of weights, validated as above.

Kernels are at most :data:`MAX_KERNEL_TAPS` = 16383 taps long. A pyramid reduces an image
only while its smaller side is at least as long as the kernel
(:func:`pyramids.laplacian.default_levels`), and the largest image that
:func:`pyramids.io.read_image` accepts by default, ``2**28`` pixels, has a smaller side of at
most ``2**14 = 16384``: a longer kernel could never be used, and is refused at once rather
than costing minutes of arithmetic and gigabytes of operator.
"""

from __future__ import annotations

import functools
import re
import weakref

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "MAX_KERNEL_TAPS",
    "KernelLike",
    "binomial_kernel",
    "burt_adelson_kernel",
    "resolve_kernel",
]

KernelLike = str | float | ArrayLike

DEFAULT_KERNEL = "binomial"

MAX_KERNEL_TAPS = 16383
"""The longest kernel accepted: the largest odd length not above ``2**14`` (module docstring)."""


def _check_taps(length: int | str) -> None:
    if isinstance(length, str) or length > MAX_KERNEL_TAPS:
        raise ValueError(
            f"a kernel of {length} taps is longer than any image could use: at most "
            f"{MAX_KERNEL_TAPS} taps (a pyramid reduces only sides at least as long as its "
            "kernel, and an image of at most 2**28 pixels has a smaller side of at most 16384)"
        )


def binomial_kernel(length: int = 5) -> np.ndarray:
    """Normalised binomial kernel of odd ``length``.

    Parameters
    ----------
    length : int
        Number of taps, odd and at least 1.

    Returns
    -------
    ndarray, shape (length,), float64
        ``C(length - 1, k) / 2**(length - 1)`` for ``k = 0 … length - 1``, each correctly
        rounded: the coefficients are exact integers and the division is Python's exact
        integer true division, so no intermediate overflows (far taps of long kernels
        round to 0). Linear in ``length`` big-integer steps: 16383 taps take tens of ms.

    Raises
    ------
    ValueError
        If ``length`` is even, below 1 or above :data:`MAX_KERNEL_TAPS`.

    Examples
    --------
    >>> binomial_kernel(5) * 16
    array([1., 4., 6., 4., 1.])
    """
    if isinstance(length, bool) or not isinstance(length, int | np.integer):
        raise TypeError(f"length must be an int, got {type(length).__name__}")
    if length < 1 or length % 2 == 0:
        raise ValueError(f"length must be odd and at least 1, got {length}")
    _check_taps(int(length))
    n = int(length) - 1
    denominator = 1 << n
    half = []  # C(n, k) / 2**n for k = 0 … n/2, by the recurrence C(n, k+1) = C(n, k)(n-k)/(k+1)
    coefficient = 1
    for k in range(n // 2 + 1):
        half.append(coefficient / denominator)
        coefficient = coefficient * (n - k) // (k + 1)
    return np.array(half + half[-2::-1], dtype=np.float64)


def burt_adelson_kernel(a: float = 0.375) -> np.ndarray:
    """Burt–Adelson 5-tap generating kernel ``[1/4 - a/2, 1/4, a, 1/4, 1/4 - a/2]``.

    Parameters
    ----------
    a : float
        Central weight. ``a = 0.375`` gives the binomial kernel, ``a = 0.4`` the kernel
        closest to a Gaussian, ``a = 0.5`` a triangle-like kernel. Must lie in ``(0, 1)``.

    Returns
    -------
    ndarray, shape (5,), float64

    Examples
    --------
    >>> burt_adelson_kernel(0.4)
    array([0.05, 0.25, 0.4 , 0.25, 0.05])
    """
    a = float(a)
    if not np.isfinite(a) or not 0.0 < a < 1.0:
        raise ValueError(f"Burt–Adelson parameter a must lie in (0, 1), got {a}")
    return np.array([0.25 - a / 2, 0.25, a, 0.25, 0.25 - a / 2], dtype=np.float64)


@functools.lru_cache(maxsize=32)
def _named_kernel(name: str) -> np.ndarray:
    """The read-only weights of a kernel name (kept: a small build resolves it each call)."""
    match = re.fullmatch(r"binomial(\d*)", name)
    if match is None:
        raise ValueError(
            f"unknown kernel name {name!r}; use 'binomial', 'binomialN' (N odd), "
            "a Burt–Adelson parameter a (float) or an array of weights"
        )
    digits = match.group(1) or "5"
    if len(digits) > len(str(MAX_KERNEL_TAPS)):  # refuse before converting huge numbers
        _check_taps(f"{digits[:8]}… ({len(digits)} digits)")
    return _frozen(binomial_kernel(int(digits)))


def _frozen(weights: np.ndarray) -> np.ndarray:
    """``weights`` as a read-only array over an immutable buffer, kept in :data:`_RESOLVED`.

    Over ``bytes``, no caller can make the array writeable again (numpy refuses
    ``setflags(write=True)``), so an array found in :data:`_RESOLVED` still holds the
    weights that were validated, and a name's shared array cannot be changed for others.
    """
    frozen = np.frombuffer(weights.astype(np.float64).tobytes(), np.float64)
    _RESOLVED[id(frozen)] = frozen
    return frozen


#: The arrays :func:`resolve_kernel` returned, by ``id``, while they live: handing one back
#: (a pyramid's own ``kernel`` on every reconstruct) skips validating it again, a tenth of
#: a small collapse's time. Read-only arrays only, so their weights cannot have changed.
_RESOLVED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def resolve_kernel(kernel: KernelLike = DEFAULT_KERNEL) -> np.ndarray:
    """Turn any accepted kernel description into a validated float64 array.

    Parameters
    ----------
    kernel : str, float or array_like
        See the module docstring for the accepted forms.

    Returns
    -------
    ndarray, shape (2r + 1,), float64
        Read-only (one array kept per name): symmetric, finite, summing to 1.

    Raises
    ------
    ValueError
        If the kernel is unknown, empty, of even length, longer than
        :data:`MAX_KERNEL_TAPS`, not symmetric, not finite, or does not sum to 1.
    TypeError
        If ``kernel`` is of an unsupported type.
    """
    if isinstance(kernel, str):
        return _named_kernel(kernel)
    if (
        isinstance(kernel, np.ndarray)
        and not kernel.flags.writeable
        and _RESOLVED.get(id(kernel)) is kernel
    ):
        return kernel
    if isinstance(kernel, bool):
        raise TypeError("kernel must be a name, a float or an array, got bool")
    elif isinstance(kernel, int | float | np.floating | np.integer):
        weights = burt_adelson_kernel(float(kernel))
    else:
        try:
            weights = np.array(kernel, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"kernel must be a name, a float or an array: {exc}") from None
        if weights.ndim != 1 or weights.size == 0:
            raise ValueError(f"kernel must be a non-empty 1-D array, got shape {weights.shape}")
        _check_taps(weights.size)
        if weights.size % 2 == 0:
            raise ValueError(f"kernel must have odd length, got {weights.size}")
        if not np.all(np.isfinite(weights)):
            raise ValueError("kernel must be finite (no NaN or inf)")
        if not np.allclose(weights, weights[::-1], rtol=0, atol=1e-12):
            raise ValueError(f"kernel must be symmetric, got {weights.tolist()}")
        if abs(weights.sum() - 1.0) > 1e-9:
            raise ValueError(f"kernel must sum to 1, got sum {weights.sum()!r}")
    return _frozen(weights)

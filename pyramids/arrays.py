"""Checking and converting the arrays, shapes and dtypes given to the public functions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

__all__ = ["all_finite", "as_float_image", "check_length", "float_dtype", "shape_hwc"]


def as_float_image(
    image: ArrayLike, name: str = "image", *, min_ndim: int = 2, check_finite: bool = True
) -> np.ndarray:
    """Validate an image and return it as a floating-point array.

    Float32 and float64 images keep their dtype (float16 becomes float32). Integer images
    are scaled to ``[0, 1]`` by the maximum of their dtype (``uint8 / 255``,
    ``uint16 / 65535``; signed types by their positive maximum, so they land in ``[-1, 1]``),
    and booleans become 0.0 and 1.0, all as float64, as ``skimage.img_as_float`` does.
    Any byte order is accepted: a big-endian array (``'>f4'``, ``'>u2'``) is treated as the
    native array of the same kind and size, so ``'>f4'`` gives native float32.
    The input is never modified; the result may share its memory when no conversion is
    needed.

    Parameters
    ----------
    image : array_like, shape (h, w) or (h, w, c)
        The image.
    name : str
        The argument's name, used in error messages.
    min_ndim : int
        Allow ``min_ndim`` dimensions and up to 3 (2 for images).
    check_finite : bool
        Refuse NaN and infinite values (default). A builder that finds them more cheaply
        afterwards (docs/design.md §9) passes False and calls :func:`all_finite` itself.

    Returns
    -------
    ndarray, float32 or float64, same shape

    Raises
    ------
    TypeError
        If the image is not numeric (complex, object, strings).
    ValueError
        If it has the wrong number of dimensions, an empty side, or non-finite values.
    """
    try:
        array = np.asarray(image)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric array: {exc}") from None
    if not array.dtype.isnative:  # e.g. '>f4' read from a big-endian file: same kind and size
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype.char in "fd":  # float32 or float64 (native): as it is, the common case
        pass
    elif array.dtype == bool:
        array = array.astype(np.float64)
    elif np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float64) / float(np.iinfo(array.dtype).max)
    elif array.dtype == np.float16:
        array = array.astype(np.float32)
    elif array.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be a real numeric array, got dtype {array.dtype}")
    if not min_ndim <= array.ndim <= 3:
        expected = "(h, w) or (h, w, c)" if min_ndim == 2 else "(n,), (h, w) or (h, w, c)"
        raise ValueError(f"{name} must have shape {expected}, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    if check_finite and not all_finite(array):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def all_finite(array: np.ndarray) -> bool:
    """Whether every value of a float array is finite (neither NaN nor infinite)."""
    # A sum is finite exactly when every term is, unless it overflows: only then is the
    # elementwise test (which costs a boolean array of the image's size) needed. For a
    # contiguous array the sum of squares, BLAS's dot product of the array with itself,
    # reads it twice as fast as numpy's pairwise sum (a NaN or ±inf squares to NaN or inf).
    # A small array (a pyramid's coarsest level) is tested directly: cheaper than errstate.
    if array.size <= 4096:
        return bool(np.isfinite(array).all())
    with np.errstate(over="ignore", invalid="ignore"):  # answered below
        if array.flags.c_contiguous and array.dtype in (np.float32, np.float64):
            flat = array.reshape(-1)
            total = np.dot(flat, flat)
        else:
            total = np.add.reduce(array, axis=None)
    return bool(np.isfinite(total) or np.isfinite(array).all())


def check_length(n: int, name: str = "n") -> int:
    """``n`` as a Python int if it is a positive integer (a signal length, a side).

    Raises
    ------
    TypeError
        If ``n`` is not an integer (a bool is not one).
    ValueError
        If ``n`` is below 1.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"{name} must be at least 1, got {n}")
    return int(n)


def float_dtype(dtype: DTypeLike, name: str = "dtype") -> np.dtype:
    """``dtype`` as a numpy dtype if it is float32 or float64, else a ``TypeError``."""
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got {dt}")
    return dt


def shape_hwc(shape: Sequence[int], name: str = "shape") -> tuple[int, int, int]:
    """``(h, w, c)`` of an image shape ``(h, w)`` (``c = 1``) or ``(h, w, c)``.

    Raises
    ------
    ValueError
        If the shape has another length or a side below 1.
    """
    sides = tuple(int(s) for s in shape)
    if len(sides) not in (2, 3) or min(sides) < 1:
        raise ValueError(f"{name} must be (h, w) or (h, w, c) with positive sides, got {sides}")
    return sides[0], sides[1], sides[2] if len(sides) == 3 else 1

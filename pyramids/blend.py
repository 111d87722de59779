"""Laplacian pyramid blending under a mask (Burt & Adelson 1983; docs/design.md §3)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .arrays import as_float_image
from .engine import get_engine
from .kernels import DEFAULT_KERNEL, KernelLike, resolve_kernel
from .laplacian import _check_levels, _collapse, _gaussian_levels, _laplacian_levels
from .operators import Boundary, check_boundary
from .parallel import resolve_threads

__all__ = ["blend"]


def _check_mask(mask: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    """Validate a blending mask against the image shape; return it as float in [0, 1]."""
    m = as_float_image(mask, "mask")  # integer masks scaled by their dtype's maximum
    if m.shape != shape and m.shape != shape[:2]:
        allowed = f"{shape[:2]} or {shape}" if len(shape) == 3 else f"{shape}"
        raise ValueError(f"mask must have shape {allowed} to match the images, got {m.shape}")
    low, high = float(m.min()), float(m.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"mask values must lie in [0, 1], got range [{low}, {high}]")
    return m


def blend(
    a: ArrayLike,
    b: ArrayLike,
    mask: ArrayLike,
    levels: int | None = None,
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
    *,
    threads: int | None = None,
) -> np.ndarray:
    """Blend two images under a mask with Laplacian pyramids (docs/design.md §3).

    Each band of the result is ``GM_k · LA_k + (1 - GM_k) · LB_k``, where ``LA``, ``LB`` are
    the Laplacian pyramids of ``a`` and ``b`` and ``GM`` the Gaussian pyramid of the mask;
    the residuals combine the same way, and the result is the collapsed pyramid. Coarse
    bands are mixed over wide regions and fine ones over narrow ones, so the seam disappears
    without blurring either image.

    Parameters
    ----------
    a, b : array_like, shape (h, w) or (h, w, c)
        The two images, of equal shape. Float32 stays float32 when both are float32;
        integer images are scaled to [0, 1] by their dtype's maximum (``uint8 / 255``).
    mask : array_like of bool, float or integers, shape (h, w) or (h, w, c)
        Weight of ``a``, in [0, 1] (``True`` / 1 takes ``a``). Integer masks are scaled by
        their dtype's maximum, as images are, so the ``uint8`` array that
        ``read_image("images/mask.png")`` returns works as it is (255 takes ``a``). A 2-D
        mask applies to every channel; a 3-D one gives each channel its own mask.
    levels : int, optional
        Number of reductions; default :func:`pyramids.laplacian.default_levels`.
    kernel : str, float or array_like
        Low-pass kernel; default the binomial ``[1, 4, 6, 4, 1] / 16``.
    boundary : {'reflect', 'symmetric', 'nearest', 'periodic', 'zero'}
        Boundary mode, default ``reflect``. With ``zero`` the mask's pyramid is normalised
        by the pyramid of a constant image, so that a mask of ones still takes only ``a``.
    threads : int, optional
        Threads to split the work over; default :func:`pyramids.parallel.default_threads`
        (``$PYRAMIDS_NUM_THREADS``, else up to 4 cores). The result does not depend on it.

    Returns
    -------
    ndarray, shape of ``a``
        The blend, float (the common float dtype of ``a`` and ``b``). Not clipped: values
        can overshoot [0, 1] slightly near strong edges, as in any Laplacian blend.

    Raises
    ------
    ValueError
        If the images differ in shape, are empty or not finite, or the mask has the wrong
        shape, NaN, or values outside [0, 1].
    TypeError
        If an image or the mask is not numeric.

    Examples
    --------
    A white image blended into a black one across a vertical seam: the transition spreads
    over about 2**levels pixels on either side.

    >>> a, b = np.ones((64, 256)), np.zeros((64, 256))
    >>> mask = np.zeros((64, 256), bool)
    >>> mask[:, :128] = True
    >>> out = blend(a, b, mask, levels=4)
    >>> np.round(out[32, [0, 100, 127, 128, 155, 255]], 3)
    array([1.   , 0.984, 0.513, 0.484, 0.015, 0.   ])
    """
    # a and b are checked for NaN and infinity by their pyramids (_laplacian_levels)
    x = as_float_image(a, "a", check_finite=False)
    y = as_float_image(b, "b", check_finite=False)
    if x.shape != y.shape:
        raise ValueError(f"a and b must have the same shape, got {x.shape} and {y.shape}")
    m = _check_mask(mask, x.shape)
    check_boundary(boundary)
    weights = resolve_kernel(kernel)
    levels = _check_levels(levels, x.shape, weights)
    threads = resolve_threads(threads)
    dtype = np.result_type(x, y)
    # none of them is written to (the mask's level 0 is read by the mixing only)
    x, y = x.astype(dtype, copy=False), y.astype(dtype, copy=False)
    m = m.astype(dtype, copy=False)

    la_bands, la_residual = _laplacian_levels(x, levels, weights, boundary, threads, "a")
    lb_bands, lb_residual = _laplacian_levels(y, levels, weights, boundary, threads, "b")
    gm = _gaussian_levels(m, levels, weights, boundary, threads, "mask")
    if boundary == "zero":
        # Zero padding pulls the mask's pyramid towards 0 at the borders, which would leak
        # b into a there. Dividing by the pyramid of a constant image (normalised
        # convolution) keeps a constant mask constant; the other modes need no correction.
        ones = _gaussian_levels(np.ones(m.shape[:2], dtype), levels, weights, boundary, threads)
        gm = [g / (o if g.ndim == 2 else o[..., None]) for g, o in zip(gm, ones)]
    if m.ndim == 2 and x.ndim == 3:
        gm = [g[..., None] for g in gm]

    compiled = get_engine().name == "compiled"

    def mix(weight: np.ndarray, from_a: np.ndarray, from_b: np.ndarray) -> np.ndarray:
        # GM·LA + (1 - GM)·LB, written so that GM = 1 gives LA and GM = 0 gives LB exactly;
        # the compiled engine's kernel makes the same roundings in one pass (§9)
        if compiled:
            from .compiled import mix_weighted

            return mix_weighted(weight, from_a, from_b)
        return weight * from_a + (1 - weight) * from_b

    bands = [mix(g, pa, pb) for g, pa, pb in zip(gm, la_bands, lb_bands)]
    residual = mix(gm[-1], la_residual, lb_residual)
    # the mixed coefficients come from images checked above: the collapse checks nothing
    return _collapse(bands, residual, weights, boundary, threads)

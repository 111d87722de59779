"""Gaussian and Laplacian pyramids on the sparse operators (DESIGN.md §2).

``levels`` always counts reductions: a Gaussian pyramid with ``levels=K`` holds ``K + 1``
images (the input first), a Laplacian pyramid ``K`` band-pass images and the low-pass
residual ``g_K``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from .arrays import as_float_image
from .kernels import DEFAULT_KERNEL, KernelLike, resolve_kernel
from .operators import (
    Boundary,
    check_boundary,
    expand_unchecked,
    reduce_unchecked,
    single_threaded_blas,
)

__all__ = [
    "LaplacianPyramid",
    "default_levels",
    "gaussian_pyramid",
    "laplacian_pyramid",
    "max_levels",
    "reconstruct_laplacian",
]


def _reduced(n: int) -> int:
    return (n + 1) // 2


def max_levels(shape: Sequence[int]) -> int:
    """The most reductions an image of ``shape`` allows: until it is 1 × 1.

    Reducing a 1-pixel side leaves it at 1 pixel, so the largest side decides:
    ``ceil(log2(max(h, w)))``.

    Examples
    --------
    >>> max_levels((512, 512)), max_levels((5, 300)), max_levels((1, 1))
    (9, 9, 0)
    """
    n, levels = max(int(s) for s in shape[:2]), 0
    while n > 1:
        n, levels = _reduced(n), levels + 1
    return levels


def default_levels(shape: Sequence[int], kernel: KernelLike = DEFAULT_KERNEL) -> int:
    """The default number of reductions: while the image is at least as large as the kernel.

    The smaller side decides (the larger one for images with a 1-pixel side): it is reduced
    while it has at least as many pixels as the kernel has taps, so the residual is the first
    level smaller than the kernel. A 512 × 512 image with the 5-tap kernel gets 7 levels and
    a 4 × 4 residual.

    Examples
    --------
    >>> default_levels((512, 512)), default_levels((480, 640)), default_levels((1, 100))
    (7, 7, 5)
    """
    taps = len(resolve_kernel(kernel))
    sides = [int(s) for s in shape[:2] if int(s) > 1] or [1]
    n, levels = min(sides), 0
    while n >= max(taps, 2):
        n, levels = _reduced(n), levels + 1
    return min(levels, max_levels(shape))


def _check_levels(levels: int | None, shape: Sequence[int], kernel: KernelLike) -> int:
    if levels is None:
        return default_levels(shape, kernel)
    if isinstance(levels, bool) or not isinstance(levels, int | np.integer):
        raise TypeError(f"levels must be an int or None, got {type(levels).__name__}")
    most = max_levels(shape)
    if not 0 <= levels <= most:
        raise ValueError(
            f"levels must be between 0 and {most} for an image of shape {tuple(shape)}, "
            f"got {levels}"
        )
    return int(levels)


@single_threaded_blas()
def gaussian_pyramid(
    image: ArrayLike,
    levels: int | None = None,
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
) -> list[np.ndarray]:
    """Gaussian pyramid ``g_0 = x``, ``g_{k+1} = G g_k`` (DESIGN.md §2).

    Parameters
    ----------
    image : array_like, shape (h, w) or (h, w, c)
        Grey or multichannel image of any size. Float32 and float64 keep their dtype;
        integer images are scaled to [0, 1] by their dtype's maximum (``uint8 / 255``,
        ``uint16 / 65535``) and become float64.
    levels : int, optional
        Number of reductions, between 0 and :func:`max_levels`; default
        :func:`default_levels`.
    kernel : str, float or array_like
        Low-pass kernel (:mod:`pyramids.kernels`); default the binomial ``[1,4,6,4,1]/16``.
    boundary : {'reflect', 'symmetric', 'nearest', 'periodic', 'zero'}
        Boundary mode, default ``reflect``.

    Returns
    -------
    list of ndarray
        ``levels + 1`` images, the first a copy of the (converted) input; level ``k`` has
        shape ``(ceil(h / 2**k), ceil(w / 2**k)[, c])``.

    Raises
    ------
    ValueError
        For an empty image, NaN or infinite values, a bad shape, too many levels.

    Examples
    --------
    >>> [g.shape for g in gaussian_pyramid(np.zeros((5, 8)), levels=2)]
    [(5, 8), (3, 4), (2, 2)]
    """
    x = as_float_image(image)
    check_boundary(boundary)
    weights = resolve_kernel(kernel)
    levels = _check_levels(levels, x.shape, weights)
    pyramid = [x.copy()]
    for _ in range(levels):
        pyramid.append(reduce_unchecked(pyramid[-1], weights, boundary))
    return pyramid


@dataclass(eq=False)  # arrays have no single truth value; compare coefficients explicitly
class LaplacianPyramid:
    """Band-pass levels ``L_k = g_k - F g_{k+1}`` and the low-pass residual ``g_K``.

    The coefficients are plain data: edit ``bands`` or ``residual`` (keeping their shapes)
    and call :meth:`reconstruct` to collapse the edited pyramid.

    Attributes
    ----------
    bands : list of ndarray
        ``levels`` band-pass images, finest first; band ``k`` has the shape of ``g_k``.
    residual : ndarray
        The coarsest Gaussian level ``g_K``.
    kernel : ndarray
        The low-pass kernel used (float64 weights).
    boundary : str
        The boundary mode used.
    """

    bands: list[np.ndarray]
    residual: np.ndarray
    kernel: np.ndarray = field(default_factory=lambda: resolve_kernel(DEFAULT_KERNEL))
    boundary: str = "reflect"

    def __repr__(self) -> str:
        return (
            f"LaplacianPyramid(levels={self.levels}, shape={self.shape}, "
            f"dtype={self.residual.dtype}, kernel={np.asarray(self.kernel).tolist()}, "
            f"boundary={self.boundary!r})"
        )

    @property
    def levels(self) -> int:
        """Number of reductions (band-pass images)."""
        return len(self.bands)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the image the pyramid represents."""
        return self.bands[0].shape if self.bands else self.residual.shape

    def reconstruct(self) -> np.ndarray:
        """Collapse the pyramid: ``g_K = residual``, ``g_k = L_k + F g_{k+1}`` (§2).

        Returns
        -------
        ndarray
            The image, in the pyramid's dtype; equal to the original up to rounding when the
            coefficients are unedited.
        """
        return reconstruct_laplacian(self.bands, self.residual, self.kernel, self.boundary)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The pyramid as named arrays (for ``numpy.savez``): ``band0`` …, ``residual``."""
        arrays = {f"band{k}": band for k, band in enumerate(self.bands)}
        arrays.update(
            kind=np.array("laplacian"),
            residual=self.residual,
            kernel=np.asarray(self.kernel, dtype=np.float64),
            boundary=np.array(self.boundary),
        )
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> LaplacianPyramid:
        """Rebuild a pyramid from :meth:`to_arrays` output (e.g. a loaded ``.npz``)."""
        missing = {"kind", "residual", "kernel", "boundary"} - set(arrays)
        if missing:
            raise ValueError(f"not a Laplacian pyramid: missing {', '.join(sorted(missing))}")
        if str(arrays["kind"]) != "laplacian":
            raise ValueError(f"not a Laplacian pyramid: kind is {str(arrays['kind'])!r}")
        n = sum(1 for key in arrays if key.startswith("band"))
        try:
            bands = [np.asarray(arrays[f"band{k}"]) for k in range(n)]
        except KeyError as exc:
            raise ValueError(f"Laplacian pyramid arrays lack {exc.args[0]}") from None
        return cls(
            bands=bands,
            residual=np.asarray(arrays["residual"]),
            kernel=resolve_kernel(np.asarray(arrays["kernel"])),
            boundary=check_boundary(str(arrays["boundary"])),
        )


@single_threaded_blas()
def laplacian_pyramid(
    image: ArrayLike,
    levels: int | None = None,
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
) -> LaplacianPyramid:
    """Laplacian pyramid ``L_k = g_k - F_k g_{k+1}``, residual ``g_K`` (DESIGN.md §2).

    Parameters
    ----------
    image : array_like, shape (h, w) or (h, w, c)
        Grey or multichannel image of any size; dtype handling as in
        :func:`gaussian_pyramid`.
    levels : int, optional
        Number of reductions (band-pass images), between 0 and :func:`max_levels`;
        default :func:`default_levels`.
    kernel : str, float or array_like
        Low-pass kernel; default the binomial ``[1, 4, 6, 4, 1] / 16``.
    boundary : {'reflect', 'symmetric', 'nearest', 'periodic', 'zero'}
        Boundary mode, default ``reflect``.

    Returns
    -------
    LaplacianPyramid
        With ``.bands`` (finest first), ``.residual`` and ``.reconstruct()``.

    Examples
    --------
    >>> x = np.random.default_rng(0).random((33, 20))
    >>> pyr = laplacian_pyramid(x, levels=3)
    >>> [b.shape for b in pyr.bands], pyr.residual.shape
    ([(33, 20), (17, 10), (9, 5)], (5, 3))
    >>> bool(np.abs(pyr.reconstruct() - x).max() < 1e-12)
    True
    """
    x = as_float_image(image)
    check_boundary(boundary)
    weights = resolve_kernel(kernel)
    levels = _check_levels(levels, x.shape, weights)
    bands = []
    g = x
    for _ in range(levels):
        coarse = reduce_unchecked(g, weights, boundary)
        # L_k = g_k - F g_{k+1}, the subtraction fused into the last pass of F
        bands.append(expand_unchecked(coarse, g.shape[:2], weights, boundary, (np.subtract, g)))
        g = coarse
    residual = g.copy() if g is x else g
    return LaplacianPyramid(bands=bands, residual=residual, kernel=weights, boundary=boundary)


@single_threaded_blas()
def reconstruct_laplacian(
    bands: Sequence[ArrayLike],
    residual: ArrayLike,
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
) -> np.ndarray:
    """Collapse Laplacian coefficients: ``g_K = residual``, ``g_k = L_k + F g_{k+1}`` (§2).

    Parameters
    ----------
    bands : sequence of array_like
        Band-pass images, finest first; band ``k`` must have shape ``(h_k, w_k[, c])`` with
        ``h_{k+1} = ceil(h_k / 2)``.
    residual : array_like
        Low-pass residual, of shape ``(ceil(h_K-1 / 2), ceil(w_K-1 / 2)[, c])``.
    kernel, boundary
        Must be those the pyramid was built with.

    Returns
    -------
    ndarray, shape of ``bands[0]`` (or of ``residual`` when there are no bands)
        In the common float dtype of the coefficients.

    Raises
    ------
    ValueError
        If the shapes do not chain, or a coefficient is empty or not finite.
    """
    check_boundary(boundary)
    weights = resolve_kernel(kernel)
    g = as_float_image(residual, "residual")
    layers = [as_float_image(band, f"bands[{k}]") for k, band in enumerate(bands)]
    expected = g.shape
    for k in range(len(layers) - 1, -1, -1):
        shape = layers[k].shape
        if (_reduced(shape[0]), _reduced(shape[1]), *shape[2:]) != expected:
            below = "residual" if k == len(layers) - 1 else f"bands[{k + 1}]"
            raise ValueError(
                f"bands[{k}] of shape {shape} does not fit {below} of shape {expected}: "
                f"each level must be ceil(half) the size of the one before"
            )
        expected = shape
    dtype = np.result_type(g, *layers)
    g = g.astype(dtype, copy=True)
    for band in reversed(layers):
        base = band.astype(dtype, copy=False)
        g = expand_unchecked(g, band.shape[:2], weights, boundary, (np.add, base))
    return g

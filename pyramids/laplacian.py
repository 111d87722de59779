"""Gaussian and Laplacian pyramids on the sparse operators (docs/design.md §2).

``levels`` always counts reductions: a Gaussian pyramid with ``levels=K`` holds ``K + 1``
images (the input first), a Laplacian pyramid ``K`` band-pass images and the low-pass
residual ``g_K``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from .arrays import all_finite, as_float_image
from .display import band_to_display
from .engine import collapse_by_level, get_engine
from .kernels import DEFAULT_KERNEL, KernelLike, resolve_kernel
from .operators import (
    Boundary,
    blur_downsample_matrix,
    check_boundary,
    expand_operator,
    reduce_operator,
    upsample_blur_matrix,
)
from .parallel import blas_limited, resolve_threads
from .pyramid import Pyramid, meta_numbers, meta_value

__all__ = [
    "GaussianPyramid",
    "LaplacianPyramid",
    "default_levels",
    "gaussian_pyramid",
    "laplacian_pyramid",
    "max_levels",
    "reconstruct_laplacian",
    "reconstruction_error_bound",
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


def gaussian_pyramid(
    image: ArrayLike,
    levels: int | None = None,
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
    *,
    threads: int | None = None,
    copy: bool = True,
) -> GaussianPyramid:
    """Gaussian pyramid ``g_0 = x``, ``g_{k+1} = G g_k`` (docs/design.md §2).

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
    threads : int, optional
        Threads to split the work over; default :func:`pyramids.parallel.default_threads`
        (``$PYRAMIDS_NUM_THREADS``, else up to 4 cores). The result does not depend on it.
    copy : bool
        Whether level 0 is a new array (default). With ``copy=False``, a float32 or float64
        ndarray that needs no conversion is not copied: level 0 is then a read-only view
        of ``image`` (it changes when ``image`` does), as OpenCV's ``buildPyramid`` and
        scikit-image's ``pyramid_gaussian`` return the input itself. Copying costs about
        as much as the reductions of a large image (docs/design.md §9).

    Returns
    -------
    GaussianPyramid
        A sequence of ``levels + 1`` images (``len``, indexing and iteration as for a list),
        the first a copy of the (converted) input (or, with ``copy=False``, the input);
        level ``k`` has shape ``(ceil(h / 2**k), ceil(w / 2**k)[, c])``.

    Raises
    ------
    ValueError
        For an empty image, NaN or infinite values, a bad shape, too many levels.

    Examples
    --------
    >>> [g.shape for g in gaussian_pyramid(np.zeros((5, 8)), levels=2)]
    [(5, 8), (3, 4), (2, 2)]
    """
    x = as_float_image(image, check_finite=False)  # checked by _gaussian_levels
    check_boundary(boundary)
    weights = resolve_kernel(kernel)
    levels = _check_levels(levels, x.shape, weights)
    threads = resolve_threads(threads)
    # Level 0 must not alias the caller's array unless copy=False; a converted image
    # (uint8, float16, a byte-swapped one) is a new array already, so only an unconverted
    # one is copied.
    aliases = not isinstance(image, np.ndarray) or np.may_share_memory(x, image)
    pyramid = _gaussian_levels(x, levels, weights, boundary, threads, copy=aliases and copy)
    if aliases and not copy:  # made from x itself (a read-only x would be copied by a pass)
        pyramid[0] = x.view()
        pyramid[0].flags.writeable = False
    return GaussianPyramid._trusted(images=pyramid, kernel=weights, boundary=boundary)


def _reductions(shape: tuple[int, ...], levels: int, weights, boundary: Boundary) -> list:
    """The ``levels`` reduction operators from an image of ``shape`` down, finest first
    (the list kept for each shape, levels, kernel and boundary: a small build's Python)."""
    weights = np.asarray(weights, np.float64)
    key = (tuple(shape), levels, weights.tobytes(), boundary)
    return list(_reductions_kept(*key))


@functools.lru_cache(maxsize=64)
def _reductions_kept(shape: tuple[int, ...], levels: int, weights: bytes, boundary) -> tuple:
    kernel = np.frombuffer(weights, np.float64)
    ops = []
    for _ in range(levels):
        ops.append(reduce_operator(shape, kernel, boundary))
        shape = (*ops[-1].shape_out, *shape[2:])
    return tuple(ops)


def _expansions(shapes: list[tuple[int, ...]], weights, boundary: Boundary) -> list:
    """The expansion operators onto each of ``shapes`` (the bands', finest first), the list
    kept for each shapes, kernel and boundary, as :func:`_reductions` keeps its own."""
    weights = np.asarray(weights, np.float64)
    return list(_expansions_kept(tuple(map(tuple, shapes)), weights.tobytes(), boundary))


@functools.lru_cache(maxsize=64)
def _expansions_kept(shapes: tuple, weights: bytes, boundary) -> tuple:
    kernel = np.frombuffer(weights, np.float64)
    return tuple(expand_operator(shape, kernel, boundary) for shape in shapes)


def _spreads(op) -> bool:
    """Whether a NaN or an infinity anywhere in the input of ``op`` reaches its output.

    It does when every input row and column has a nonzero weight in some output (one term
    of ``G`` or ``F``): a product with a nonzero weight stays NaN or infinite, and a sum
    with a NaN or infinite term is NaN or infinite (docs/design.md §9). Kept on ``op``.
    """
    key = "spreads non-finite"
    if key not in op.prepared:
        op.prepared[key] = any(
            all(np.all(np.bincount(m.indices[m.data != 0], minlength=m.shape[1]) > 0)
                for m in (u, v))
            for u, v in zip(op.rows, op.cols)
        )  # fmt: skip
    return op.prepared[key]


def _finite_or_raise(arrays: list[tuple[str, np.ndarray]]) -> None:
    """The error of :func:`pyramids.arrays.as_float_image` for the first non-finite array."""
    for name, array in arrays:
        if not all_finite(array):
            raise ValueError(f"{name} contains NaN or infinite values")


class _Passes(NamedTuple):
    """How a build applies its operators (:func:`_passes`)."""

    apply: Callable  #: apply(op, x, combine, threads)
    levels: Callable  #: levels(ops, x, threads): the Gaussian levels below x
    deferred: bool  #: the finite check is made on the result
    context: AbstractContextManager  #: held for the whole build
    #: apply_finite(op, x, combine, threads): apply's result and whether it is all finite
    #: (tested by the compiled kernel as it writes each row; else by a pass of its own)
    apply_finite: Callable
    #: collapse(ops, bases, x, threads, check): g_0 and whether it is finite
    #: (:func:`pyramids.engine.collapse_by_level`)
    collapse: Callable


def _passes(ops: list) -> _Passes:
    """How a build of the operators ``ops`` applies them, with the engine of
    :func:`pyramids.engine.get_engine`, looked up once for the build.

    ``apply(op, x, combine, threads)`` applies one operator: the compiled engine's
    ``run``, which skips the checks of its ``apply`` (the build made or checked every
    array it passes), else the engine's ``apply``. ``levels(ops, x, threads)`` makes
    ``[G_1 x, G_2 G_1 x, …]``: the compiled engine's ``reduce_levels`` (a small pyramid
    in one compiled call), else one ``apply`` per level. The finite check is ``deferred``
    (made on the result, after the passes) with the compiled
    engine where every operator spreads NaN and infinity (:func:`_spreads`); numpy's
    engines check first, as they would warn of the invalid values on their threads. The
    context holds :func:`pyramids.parallel.blas_limited` for the tiled engine, which calls
    BLAS in every pass (for the whole build: releasing it between passes costs more than a
    small pass); the compiled and matrix engines call no BLAS.
    """
    engine = get_engine()
    if engine.name == "compiled":
        deferred = bool(ops) and all(_spreads(op) for op in ops)
        passes = _COMPILED_PASSES.get((engine, deferred))
        if passes is None:  # kept: a small build would spend more on making it than on a pass
            passes = _COMPILED_PASSES[engine, deferred] = _Passes(
                engine.run,
                engine.reduce_levels,
                deferred,
                nullcontext(),  # reusable: it does nothing
                engine.run_finite,
                engine.collapse,
            )
        return passes
    deferred = False
    context = blas_limited() if engine.name == "separable" else nullcontext()

    def apply(op, x: np.ndarray, combine, threads: int) -> np.ndarray:
        return engine.apply(op, x, combine=combine, threads=threads)

    def levels(ops: list, x: np.ndarray, threads: int) -> list[np.ndarray]:
        made = [x]
        for op in ops:
            made.append(apply(op, made[-1], None, threads))
        return made[1:]

    def apply_finite(op, x: np.ndarray, combine, threads: int) -> tuple[np.ndarray, bool]:
        y = apply(op, x, combine, threads)
        return y, all_finite(y)

    def collapse(ops: list, bases: list, x: np.ndarray, threads: int, check: bool):
        return collapse_by_level(apply, apply_finite, ops, bases, x, threads, check)

    return _Passes(apply, levels, deferred, context, apply_finite, collapse)


#: The compiled engine's passes, by engine and ``deferred`` (:func:`_passes`).
_COMPILED_PASSES: dict[tuple[object, bool], _Passes] = {}


def _gaussian_levels(
    x: np.ndarray,
    levels: int,
    weights,
    boundary: Boundary,
    threads: int,
    name: str = "image",
    *,
    copy: bool = False,
) -> list[np.ndarray]:
    """``[x, G x, G G x, …]`` of a converted image ``x`` (level 0 a copy with ``copy``),
    and the check that
    ``x`` is finite: where every reduction spreads non-finite values (:func:`_spreads`),
    on the coarsest level only, a few pixels, and on ``x`` itself only if that level is not
    finite (it can overflow from finite values, which is no error); else on ``x`` first."""
    ops = _reductions(x.shape, levels, weights, boundary)
    passes = _passes(ops)
    levels_of, deferred, limit = passes.levels, passes.deferred, passes.context
    if not deferred:
        _finite_or_raise([(name, x)])
    with limit:
        pyramid = [x.copy() if copy else x, *levels_of(ops, x, threads)]
    if deferred and not all_finite(pyramid[-1]):
        _finite_or_raise([(name, x)])
    return pyramid


class GaussianPyramid(Pyramid, Sequence):
    """The Gaussian levels ``g_0 = x``, ``g_{k+1} = G g_k``, finest first (docs/design.md §2).

    A sequence of its images: ``len(pyr)`` is ``levels + 1``, ``pyr[k]`` is ``g_k`` (a slice
    gives a list), and iterating gives ``g_0 … g_K``, so code written for the list that
    :func:`gaussian_pyramid` used to return keeps working. Level 0 is the image itself,
    so :meth:`reconstruct` returns (a copy of) it.

    Parameters
    ----------
    images : sequence of ndarray
        ``g_0 … g_K``; ``g_{k+1}`` of shape ``(ceil(h_k / 2), ceil(w_k / 2)[, c])``. Checked
        as :func:`pyramids.arrays.as_float_image` checks images, then cast to one dtype.
    kernel : str, float, array_like or None
        The low-pass kernel used (``None``: not known, as in a format-0 file).
    boundary : str
        The boundary mode used.

    Attributes
    ----------
    images : list of ndarray
    kernel : ndarray or None
        Float64 weights.
    boundary : str
    """

    kind = "gaussian"

    def __init__(
        self,
        images: Sequence[ArrayLike],
        kernel: KernelLike | None = DEFAULT_KERNEL,
        boundary: Boundary = "reflect",
    ):
        if len(images) < 1:
            raise ValueError("images must hold at least the image itself")
        checked = [as_float_image(g, f"images[{k}]") for k, g in enumerate(images)]
        _check_chain(checked, [f"images[{k}]" for k in range(len(checked))])
        dtype = np.result_type(*checked)
        self.images = [g.astype(dtype, copy=False) for g in checked]
        self.kernel = None if kernel is None else resolve_kernel(kernel)
        self.boundary = check_boundary(boundary)

    @property
    def levels(self) -> int:
        """Number of reductions: one less than the number of images."""
        return len(self.images) - 1

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the image, ``g_0``."""
        return self.images[0].shape

    @property
    def dtype(self) -> np.dtype:
        """Dtype of the levels."""
        return self.images[0].dtype

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index]

    def __iter__(self):
        return iter(self.images)

    def reconstruct(self) -> np.ndarray:
        """The image: a copy of level 0 (no options)."""
        return self.images[0].copy()

    def pictures(self) -> dict[str, np.ndarray]:
        """Each level clipped to [0, 1], as ``level0`` …"""
        return {f"level{k}": np.clip(g, 0, 1) for k, g in enumerate(self.images)}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {f"level{k}": g for k, g in enumerate(self.images)}

    def _settings(self) -> dict[str, object]:
        kernel = None if self.kernel is None else np.asarray(self.kernel).tolist()
        return {"kernel": kernel, "boundary": self.boundary}

    @classmethod
    def _array_names(cls, meta) -> list[str]:
        return [f"level{k}" for k in range(meta["levels"] + 1)]

    @classmethod
    def _from_parts(cls, arrays, meta) -> GaussianPyramid:
        kernel = None if meta.get("kernel") is None else meta_numbers(meta, "kernel")
        return cls(list(arrays.values()), kernel, meta_value(meta, "boundary", str))


class LaplacianPyramid(Pyramid):
    """Band-pass levels ``L_k = g_k - F g_{k+1}`` and the low-pass residual ``g_K``.

    The coefficients are plain data: edit ``bands`` or ``residual`` (keeping their shapes)
    and call :meth:`reconstruct` to collapse the edited pyramid.

    Parameters
    ----------
    bands : sequence of ndarray
        ``levels`` band-pass images, finest first; band ``k`` has the shape of ``g_k``.
    residual : ndarray
        The coarsest Gaussian level ``g_K``, ``ceil(half)`` the last band's size.
    kernel : str, float or array_like
        The low-pass kernel used.
    boundary : str
        The boundary mode used.

    The coefficients are checked as :func:`pyramids.arrays.as_float_image` checks images
    (finite, 2 or 3 dimensions), their shapes must chain, and they are cast to one dtype.

    Attributes
    ----------
    bands : list of ndarray
    residual : ndarray
    kernel : ndarray
        The low-pass kernel (float64 weights).
    boundary : str
    """

    kind = "laplacian"
    #: What :meth:`reconstruct` checked last: the kernel as given and its weights, the
    #: boundary, each coefficient's (id, shape, dtype), their names and the expansions;
    #: empty until a reconstruct has checked float arrays of one dtype.
    _kept: tuple = ()

    def __init__(
        self,
        bands: Sequence[ArrayLike],
        residual: ArrayLike,
        kernel: KernelLike = DEFAULT_KERNEL,
        boundary: Boundary = "reflect",
    ):
        checked = [as_float_image(b, f"bands[{k}]") for k, b in enumerate(bands)]
        checked.append(as_float_image(residual, "residual"))
        _check_chain(checked, _coefficient_names(len(bands)))
        dtype = np.result_type(*checked)
        *self.bands, self.residual = [c.astype(dtype, copy=False) for c in checked]
        self.kernel = resolve_kernel(kernel)
        self.boundary = check_boundary(boundary)

    @property
    def levels(self) -> int:
        """Number of reductions (band-pass images)."""
        return len(self.bands)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the image the pyramid represents."""
        return self.bands[0].shape if self.bands else self.residual.shape

    @property
    def dtype(self) -> np.dtype:
        """Dtype of the coefficients."""
        return self.residual.dtype

    def reconstruct(self, *, threads: int | None = None) -> np.ndarray:
        """Collapse the pyramid: ``g_K = residual``, ``g_k = L_k + F g_{k+1}`` (§2).

        Parameters
        ----------
        threads : int, optional
            As for :func:`reconstruct_laplacian`; the result does not depend on it.

        Returns
        -------
        ndarray
            The image, in the pyramid's dtype; equal to the original up to rounding when the
            coefficients are unedited.
        """
        coefficients = (*self.bands, self.residual)
        kept = self._kept
        if (
            kept
            and kept[0] is self.kernel
            and kept[2] == self.boundary
            and len(kept[3]) == len(coefficients)
            and all(
                type(a) is np.ndarray and id(a) == i and a.shape == shape and a.dtype == dtype
                for a, (i, shape, dtype) in zip(coefficients, kept[3])
            )
        ):  # the very arrays checked last time (edited in place or not): only the collapse
            weights, boundary, _, names, ops = kept[1:]
            bands, threads = list(self.bands), resolve_threads(threads)
            return _collapse(bands, self.residual, weights, boundary, threads, names, ops)
        image = reconstruct_laplacian(
            self.bands, self.residual, self.kernel, self.boundary, threads=threads
        )
        dtype = getattr(self.residual, "dtype", None)
        if (
            dtype in (np.float32, np.float64)
            and dtype.isnative
            and all(type(a) is np.ndarray and a.dtype == dtype for a in coefficients)
        ):  # the checks passed them on as they are: the next reconstruct may skip them
            weights = resolve_kernel(self.kernel)
            self._kept = (
                self.kernel,
                weights,
                self.boundary,
                tuple((id(a), a.shape, a.dtype) for a in coefficients),
                _coefficient_names(len(self.bands)),
                _expansions([band.shape for band in self.bands], weights, self.boundary),
            )
        return image

    def pictures(self) -> dict[str, np.ndarray]:
        """Bands with 0 at mid-grey (``band0`` …) and the residual clipped to [0, 1]."""
        shown = {f"band{k}": band_to_display(band) for k, band in enumerate(self.bands)}
        shown["residual"] = np.clip(self.residual, 0, 1)
        return shown

    def _arrays(self) -> dict[str, np.ndarray]:
        return {**{f"band{k}": b for k, b in enumerate(self.bands)}, "residual": self.residual}

    def _settings(self) -> dict[str, object]:
        return {"kernel": np.asarray(self.kernel).tolist(), "boundary": self.boundary}

    @classmethod
    def _array_names(cls, meta) -> list[str]:
        return [f"band{k}" for k in range(meta["levels"])] + ["residual"]

    @classmethod
    def _from_parts(cls, arrays, meta) -> LaplacianPyramid:
        *bands, residual = arrays.values()
        kernel = meta_numbers(meta, "kernel")
        return cls(bands, residual, kernel, meta_value(meta, "boundary", str))


def _coefficient_names(levels: int) -> list[str]:
    """``bands[0]`` … ``bands[levels - 1]``, ``residual``: how errors name a collapse's
    coefficients."""
    return [f"bands[{k}]" for k in range(levels)] + ["residual"]


def _check_chain(levels: list[np.ndarray], names: list[str]) -> None:
    """Each level ``ceil(half)`` the size of the one before, with the same channels."""
    for k in range(1, len(levels)):
        finer, coarser = levels[k - 1].shape, levels[k].shape
        expected = (_reduced(finer[0]), _reduced(finer[1]), *finer[2:])
        if coarser != expected:
            raise ValueError(
                f"{names[k]} has shape {coarser}, which does not fit {names[k - 1]} of shape "
                f"{finer}: it must be {expected}, each level ceil(half) the size of the one before"
            )


def laplacian_pyramid(
    image: ArrayLike,
    levels: int | None = None,
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
    *,
    threads: int | None = None,
) -> LaplacianPyramid:
    """Laplacian pyramid ``L_k = g_k - F_k g_{k+1}``, residual ``g_K`` (docs/design.md §2).

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
    threads : int, optional
        Threads to split the work over; default :func:`pyramids.parallel.default_threads`
        (``$PYRAMIDS_NUM_THREADS``, else up to 4 cores). The result does not depend on it.

    Returns
    -------
    LaplacianPyramid
        With ``.bands`` (finest first), ``.residual`` and ``.reconstruct()``.

    Raises
    ------
    ValueError
        As :func:`gaussian_pyramid`, and where a band overflows the image's dtype (a float32
        image with values near ±3.4e38; in float64 it fits).

    Examples
    --------
    >>> x = np.random.default_rng(0).random((33, 20))
    >>> pyr = laplacian_pyramid(x, levels=3)
    >>> [b.shape for b in pyr.bands], pyr.residual.shape
    ([(33, 20), (17, 10), (9, 5)], (5, 3))
    >>> bool(np.abs(pyr.reconstruct() - x).max() < 1e-12)
    True
    """
    x = as_float_image(image, check_finite=False)  # checked by _laplacian_levels
    check_boundary(boundary)
    weights = resolve_kernel(kernel)
    levels = _check_levels(levels, x.shape, weights)
    threads = resolve_threads(threads)
    bands, residual = _laplacian_levels(x, levels, weights, boundary, threads)
    if residual is x:  # no reduction: the residual must not alias the caller's array
        residual = x.copy()
    return LaplacianPyramid._trusted(
        bands=bands, residual=residual, kernel=weights, boundary=boundary
    )


def _laplacian_levels(
    x: np.ndarray, levels: int, weights, boundary: Boundary, threads: int, name: str = "image"
) -> tuple[list[np.ndarray], np.ndarray]:
    """The bands and the residual of a converted image ``x`` (the residual is ``x`` for
    no reduction), and the check that ``x`` is finite, as :func:`_gaussian_levels` makes it:
    every band is ``g_k`` minus a product, so the residual ``g_K`` carries any NaN. A band
    that is not finite although ``x`` is has overflowed (a float32 image near ±3.4e38):
    that is an error too, named here, since no collapse could use the band."""
    ops = _reductions(x.shape, levels, weights, boundary)
    passes = _passes(ops)
    apply, deferred, limit = passes.apply, passes.deferred, passes.context
    if not deferred:
        _finite_or_raise([(name, x)])
    bands = []
    overflowed = None  # the first band that is not finite
    g = x
    with limit:
        for k, op in enumerate(ops):
            coarse = apply(op, g, None, threads)
            # L_k = g_k - F g_{k+1}, the subtraction fused into the last pass of F, and
            # the band's finite check made by the kernel where it can be (no pass of its own)
            expand = expand_operator(g.shape, weights, boundary)
            band, finite = passes.apply_finite(expand, coarse, (np.subtract, g), threads)
            if not finite and overflowed is None:
                overflowed = k
            bands.append(band)
            g = coarse
    if deferred and not all_finite(g):
        _finite_or_raise([(name, x)])
    if overflowed is not None:
        raise ValueError(_overflow_message(f"{name}'s Laplacian band {overflowed}", x.dtype))
    return bands, g


def _overflow_message(what: str, dtype: np.dtype) -> str:
    """The one line for a result that overflowed ``dtype`` from finite values."""
    advice = "; convert the image to float64" if dtype == np.float32 else ""
    return f"{what} overflows {dtype.name}: the values are too large{advice}"


def reconstruct_laplacian(
    bands: Sequence[ArrayLike],
    residual: ArrayLike,
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
    *,
    threads: int | None = None,
) -> np.ndarray:
    """Collapse Laplacian coefficients: ``g_K = residual``, ``g_k = L_k + F g_{k+1}`` (§2).

    In exact arithmetic the collapse of an unedited pyramid returns the image exactly; in
    floating point its error is bounded by :func:`reconstruction_error_bound`, derived here.

    Notation: ``u = eps / 2`` is the unit roundoff of the dtype (``2**-24`` for float32,
    ``2**-53`` for float64) and ``γ_n = n·u / (1 - n·u)``. For level ``k`` (``g_k`` of
    shape ``(h_k, w_k)``), ``F_k = F_h ⊗ F_w`` and ``G_k = G_h ⊗ G_w`` are the 2-D operators
    (channels do not change the norms below), ``a_k = ‖F_k‖∞ = ‖F_h‖∞·‖F_w‖∞`` and
    ``b_k = ‖G_k‖∞`` their largest absolute row sums, and ``p_k`` (``q_k``) the most
    nonzeros in a row of ``F_h`` plus the most in a row of ``F_w`` (of ``G_h``, ``G_w``).

    1. A separable product ``F_h · Y · F_wᵀ`` computed in two passes, each output a sum of
       at most ``p_k`` products in all (the zeros of the dense tiles add nothing), differs
       from the exact one by at most ``γ_{p_k}·|F_k|·|Y|`` elementwise, so by
       ``γ_{p_k}·a_k·‖Y‖∞`` in the max norm. The same holds for ``G`` with ``q_k``, so the
       computed Gaussian levels obey ``‖g_k‖∞ ≤ n_k``, with ``n_0 = ‖x‖∞`` and
       ``n_{k+1} = (1 + γ_{q_k})·b_k·n_k``.
    2. The build stores ``L_k = fl(g_k - e_k)``, ``e_k = fl(F_k g_{k+1})``: the band of
       the computed levels, rounded once, where
       ``‖g_k - e_k‖∞ ≤ ℓ_k = n_k + (1 + γ_{p_k})·a_k·n_{k+1}``.
    3. The collapse computes ``r_K = g_K`` and ``r_k = fl(L_k + fl(F_k r_{k+1}))``. With
       ``Δ_k = r_k - g_k``, ``Δ_k = F_k Δ_{k+1} + (η_k - ζ_k) + θ_k (g_k - e_k) + θ'_k s_k``,
       where ``ζ_k``, ``η_k`` are the rounding errors of the build's and the collapse's
       products (step 1, applied to ``g_{k+1}`` and to ``r_{k+1}``), ``θ_k``, ``θ'_k`` (at
       most ``u``) those of the subtraction and the addition, and ``s_k`` the exact sum.
    4. So ``E_k = ‖Δ_k‖∞`` obeys ``E_K = 0``,
       ``D_k = a_k E_{k+1} + γ_{p_k}·a_k·(2 n_{k+1} + E_{k+1}) + u·ℓ_k`` and
       ``E_k ≤ (1 + u)·D_k + u·n_k``; the returned image errs by at most ``E_0``.

    To first order in ``u`` the bound is
    ``‖x̂ - x‖∞ ≤ u · Σ_{k<K} (Π_{j<k} a_j) · (n_k + ℓ_k + 2·p_k·a_k·n_{k+1})``: each level
    adds its band subtraction, its addition and its two products
    (``O(u·(1 + ‖F_k‖∞)·‖g_k‖∞)``), carried to the image through the ``F`` of every finer
    level. With the default kernel and the ``reflect`` or ``zero`` boundary (``periodic``
    while the sides are even), ``a_k, b_k ≤ 1`` while both sides of ``g_k`` exceed 1 pixel, and
    ``p_k = 6``: the bound is then about ``15·K·u·‖x‖∞``, ``6.3e-6`` for float32 and
    ``1.2e-14`` for float64 at 7 levels of an image in [0, 1]. With ``symmetric`` or
    ``nearest`` a border row of ``F`` sums to more than 1 (1.375 for the binomial kernel,
    1.5 for ``kernel=0.5``), as it does with ``periodic`` on an odd side, and a side of
    1 pixel gives ``F = 2`` for every boundary but ``zero``; then ``Π a_j`` grows
    geometrically with the levels, and so can the error: a 64 × 3 float32 image,
    ``symmetric``, ``kernel=0.5``, 6 levels, errs by 1.07e-5 (bound 2.3e-4).

    Parameters
    ----------
    bands : sequence of array_like
        Band-pass images, finest first; band ``k`` must have shape ``(h_k, w_k[, c])`` with
        ``h_{k+1} = ceil(h_k / 2)``.
    residual : array_like
        Low-pass residual, of shape ``(ceil(h_K-1 / 2), ceil(w_K-1 / 2)[, c])``.
    kernel, boundary
        Must be those the pyramid was built with.
    threads : int, optional
        Threads to split the work over; default :func:`pyramids.parallel.default_threads`
        (``$PYRAMIDS_NUM_THREADS``, else up to 4 cores). The result does not depend on it.

    Returns
    -------
    ndarray, shape of ``bands[0]`` (or of ``residual`` when there are no bands)
        In the common float dtype of the coefficients.

    Raises
    ------
    ValueError
        If the shapes do not chain, a coefficient is empty or not finite, or the image
        overflows its dtype.
    """
    check_boundary(boundary)
    weights = resolve_kernel(kernel)
    # checked for NaN and infinity by _collapse
    g = as_float_image(residual, "residual", check_finite=False)
    layers = [
        as_float_image(band, f"bands[{k}]", check_finite=False) for k, band in enumerate(bands)
    ]
    names = _coefficient_names(len(layers))
    _check_chain([*layers, g], names)
    threads = resolve_threads(threads)
    return _collapse(layers, g, weights, boundary, threads, names)


def _collapse(
    bands: list[np.ndarray],
    residual: np.ndarray,
    weights,
    boundary: Boundary,
    threads: int,
    names: list[str] | None = None,
    ops: list | None = None,
) -> np.ndarray:
    """The collapse of converted, chained coefficients (a new array). With ``names`` (the
    coefficients', residual last) it checks them for NaN and infinity: on the result only
    where :func:`_passes` defers the check (each step is ``L_k + F g_{k+1}``, and every
    ``F`` spreads them), on the coefficients themselves, the residual first, where the
    result is not finite or the check is not deferred. ``ops``: the expansions onto the
    bands' shapes, where the caller kept them (:func:`_expansions`)."""
    dtype = residual.dtype
    if any(band.dtype != dtype for band in bands):
        dtype = np.result_type(residual, *bands)
    if ops is None:
        ops = _expansions([band.shape for band in bands], weights, boundary)
    passes = _passes(ops)
    check = names is not None
    deferred = check and (passes.deferred or not bands)  # no bands: the result is the residual
    if check and not deferred:
        _finite_or_raise([(names[-1], residual), *zip(names, bands)])
    if bands:  # the result's finite check is made by its last pass
        bases = [band.astype(dtype, copy=False) for band in bands]
        with passes.context:
            g, finite = passes.collapse(
                ops, bases, residual.astype(dtype, copy=False), threads, check
            )
    else:  # the result is the residual
        g = residual.astype(dtype, copy=True)
        finite = not check or all_finite(g)
    if check and not finite:
        # a NaN or infinite coefficient, or (where every coefficient is finite) an overflow
        _finite_or_raise([(names[-1], residual), *zip(names, bands)])
        raise ValueError(_overflow_message("the reconstruction", g.dtype))
    return g


def _row_norm(matrix) -> tuple[float, int]:
    """Largest absolute row sum and most nonzeros in a row of a sparse CSR matrix."""
    absolute = abs(matrix.astype(np.float64))
    return float(absolute.sum(axis=1).max()), int(np.diff(absolute.indptr).max())


def reconstruction_error_bound(
    shape: Sequence[int],
    levels: int | None = None,
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
    dtype: type | np.dtype | str = np.float64,
    scale: float = 1.0,
    coefficient_error: float = 0.0,
) -> float:
    """Bound on the max error of collapsing an unedited Laplacian pyramid, from rounding.

    ``reconstruct_laplacian(*laplacian_pyramid(x, ...))`` differs from ``x`` by at most the
    returned value in every pixel, for every image ``x`` of ``shape`` and ``dtype`` with
    ``max|x| ≤ scale``. The derivation (operator norms ``‖F_k‖∞``, ``‖G_k‖∞``, the number of
    levels and the dtype's unit roundoff) is in :func:`reconstruct_laplacian`.

    Parameters
    ----------
    shape : (h, w) or (h, w, c)
        Shape of the image.
    levels : int, optional
        Number of reductions; default :func:`default_levels`.
    kernel, boundary
        As for :func:`laplacian_pyramid`.
    dtype : float32 or float64
        The dtype the pyramid is computed in (integer images are computed in float64).
    scale : float
        A bound on ``max|x|`` of the (float) image; 1 for images in [0, 1].
    coefficient_error : float
        A relative error ``ρ`` that every coefficient may carry before the collapse
        (``|L'_k - L_k| ≤ ρ·|L_k|``, the residual likewise); it adds ``ρ·ℓ_k`` to ``D_k``
        and starts the recursion at ``E_K = ρ·n_K``. Blending an image with itself
        (``GM·LA + (1 - GM)·LA`` with ``0 ≤ GM ≤ 1``) has ``ρ = γ_3``.

    Returns
    -------
    float
        The bound on ``max|reconstruction - x|``.

    Examples
    --------
    For the default kernel and boundary it is about ``15·levels·u``:

    >>> bound = reconstruction_error_bound((512, 512), 7, dtype=np.float32)
    >>> round(bound / 2.0**-24, 1)  # u = 2**-24 for float32
    105.0
    """
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    for name, value in (("scale", scale), ("coefficient_error", coefficient_error)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number at least 0, got {value}")
    if len(shape) not in (2, 3) or min(int(s) for s in shape) < 1:
        raise ValueError(f"shape must be (h, w) or (h, w, c) with positive sides, got {shape}")
    weights = resolve_kernel(kernel)
    check_boundary(boundary)
    levels = _check_levels(levels, shape, weights)
    u = float(np.finfo(dt).eps) / 2

    def gamma(n: int) -> float:
        return n * u / (1 - n * u)

    sides = [(int(shape[0]), int(shape[1]))]
    for _ in range(levels):
        sides.append((_reduced(sides[-1][0]), _reduced(sides[-1][1])))
    norms, a, p = [float(scale)], [], []
    for h, w in sides[:-1]:
        (fh, ph), (fw, pw) = (
            _row_norm(upsample_blur_matrix(n, weights, boundary, dt)) for n in (h, w)
        )
        (gh, qh), (gw, qw) = (
            _row_norm(blur_downsample_matrix(n, weights, boundary, dt)) for n in (h, w)
        )
        a.append(fh * fw)
        p.append(ph + pw)
        norms.append((1 + gamma(qh + qw)) * gh * gw * norms[-1])
    rho = float(coefficient_error)
    error = rho * norms[-1]
    for k in range(levels - 1, -1, -1):
        band = norms[k] + (1 + gamma(p[k])) * a[k] * norms[k + 1]
        mismatch = gamma(p[k]) * a[k] * (2 * norms[k + 1] + error)
        perturbed = rho * (1 + u) * band
        error = (1 + u) * (a[k] * error + mismatch + u * band + perturbed) + u * norms[k]
    return error

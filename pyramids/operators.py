"""The package's linear operators, built as ``scipy.sparse`` matrices (docs/design.md §1).

Every operator is a folded, strided correlation, built by one function,
:func:`correlation_matrix`: output ``i`` of a length-``n`` signal ``x`` is
``Σ_a taps[a] · x[ext(step·i + a - r)]``, where ``ext`` extends ``x`` past its ends by the
boundary mode and :func:`fold_indices` maps every tap that falls outside back onto the
sample it reads (its weight added there). With ``upsample=True`` it is the other way round:
the input sits on every ``step``-th sample of a length-``n`` signal, zeros between, and that
signal is correlated. From it:

- ``G = correlation_matrix(w, n, boundary, step=2)``, blur and keep the even samples
  (:func:`blur_downsample_matrix`);
- ``F = correlation_matrix(2·w, n, boundary, step=2, upsample=True)``, insert zeros and blur
  (:func:`upsample_blur_matrix`);
- every stage of the steerable pyramid, with the separable factors of its 2-D filter, and
  its mirror synthesis, with ``parity`` for a factor that is odd about the mirror
  (:mod:`pyramids.steerable`); :func:`correlation_matrix_2d` builds the same for a 2-D filter
  tap by tap (the explicit reference).

An image is transformed separably, ``G_h · X · G_wᵀ`` (:func:`reduce_operator`,
:func:`expand_operator`), never through the big Kronecker matrix (which
:func:`reduce_matrix` and :func:`expand_matrix` hand out for teaching, small images and
solvers). How a separable operator is applied fast is :mod:`pyramids.engine`'s business.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, DTypeLike

from . import engine
from .arrays import as_float_image, check_length, float_dtype, shape_hwc
from .engine import Separable
from .kernels import DEFAULT_KERNEL, KernelLike, resolve_kernel
from .parallel import resolve_threads

__all__ = [
    "BOUNDARIES",
    "Boundary",
    "apply_separable",
    "blur_downsample_matrix",
    "correlation_matrix",
    "correlation_matrix_2d",
    "expand",
    "expand_matrix",
    "expand_operator",
    "fold_indices",
    "reduce",
    "reduce_matrix",
    "reduce_operator",
    "upsample_blur_matrix",
]

Boundary = Literal["reflect", "symmetric", "nearest", "periodic", "zero"]
BOUNDARIES: tuple[str, ...] = ("reflect", "symmetric", "nearest", "periodic", "zero")


# --------------------------------------------------------------------------- boundaries


def check_boundary(boundary: str) -> str:
    """Return ``boundary`` if it names a supported mode, else raise ``ValueError``."""
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {', '.join(BOUNDARIES)}; got {boundary!r}")
    return boundary


def fold_indices(indices: ArrayLike, n: int, boundary: str) -> tuple[np.ndarray, np.ndarray]:
    """Map sample indices of an extended signal back into ``0 … n-1``.

    Parameters
    ----------
    indices : array_like of int
        Indices, possibly outside ``0 … n-1`` (any distance away).
    n : int
        Signal length, at least 1.
    boundary : {'reflect', 'symmetric', 'nearest', 'periodic', 'zero'}
        The extension (docs/design.md §1): ``reflect`` mirrors without repeating the edge
        sample, ``symmetric`` repeats it, ``nearest`` clamps, ``periodic`` wraps, ``zero``
        pads with 0.

    Returns
    -------
    folded : ndarray of int
        The index each input index reads from.
    valid : ndarray of bool
        False where the extended sample is zero (only for ``boundary='zero'``).

    Examples
    --------
    >>> fold_indices([-2, -1, 0, 4, 5], 5, "reflect")[0]
    array([2, 1, 0, 4, 3])
    >>> fold_indices([-2, -1, 0, 4, 5], 5, "symmetric")[0]
    array([1, 0, 0, 4, 4])
    """
    check_boundary(boundary)
    idx = np.asarray(indices, dtype=np.int64)
    valid = np.ones(idx.shape, dtype=bool)
    if boundary == "reflect":
        if n == 1:
            return np.zeros_like(idx), valid
        period = 2 * (n - 1)
        idx = np.mod(idx, period)
        idx = np.where(idx >= n, period - idx, idx)
    elif boundary == "symmetric":
        period = 2 * n
        idx = np.mod(idx, period)
        idx = np.where(idx >= n, period - 1 - idx, idx)
    elif boundary == "nearest":
        idx = np.clip(idx, 0, n - 1)
    elif boundary == "periodic":
        idx = np.mod(idx, n)
    else:  # zero
        valid = (idx >= 0) & (idx < n)
        idx = np.clip(idx, 0, n - 1)
    return idx, valid


# --------------------------------------------------------------------------- the builder


def _axis_taps(
    length: int, n: int, boundary: str, step: int, upsample: bool, parity: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | float]:
    """For every (output, tap) of one axis: the input it reads, whether it reads one at all,
    and the sign it reads with. Arrays of shape ``(outputs, length)``."""
    radius = length // 2
    centres = np.arange(n) if upsample else step * np.arange(-(-n // step))
    positions = centres[:, None] + np.arange(-radius, radius + 1)
    cols, valid = fold_indices(positions, n, boundary)
    signs: np.ndarray | float = 1.0
    if parity == -1 and n > 1:  # an odd signal changes sign at every mirror: x[-i] = -x[i]
        signs = np.where(np.mod(positions, 2 * (n - 1)) >= n, -1.0, 1.0)
    if upsample:  # the input sits on every step-th sample, zeros between
        valid &= cols % step == 0
        cols = cols // step
    return cols, valid, signs


def _check_builder(boundary: str, step: int, parity: int) -> None:
    check_boundary(boundary)
    check_length(step, "step")
    if parity not in (1, -1):
        raise ValueError(f"parity must be 1 or -1, got {parity!r}")
    if parity == -1 and boundary != "reflect":
        raise ValueError(f"parity=-1 needs boundary 'reflect' (a mirror), got {boundary!r}")


def correlation_matrix(
    taps: ArrayLike,
    n: int,
    boundary: Boundary = "reflect",
    *,
    step: int = 1,
    upsample: bool = False,
    parity: int = 1,
) -> sp.csr_array:
    """The folded, strided 1-D correlation with ``taps``, as a sparse matrix.

    Parameters
    ----------
    taps : array_like, shape (2r + 1,)
        The weights, centred on the middle one.
    n : int
        Length of the full-rate signal, at least 1.
    boundary : {'reflect', 'symmetric', 'nearest', 'periodic', 'zero'}
        How the signal is extended past its ends (:func:`fold_indices`).
    step : int
        The rate change.
    upsample : bool
        False: correlate, then keep every ``step``-th output,
        ``(C x)[i] = Σ_a taps[a] x[ext(step·i + a - r)]``. True: put the input on every
        ``step``-th sample of a length-``n`` signal ``u`` (zeros between), extend ``u``,
        and correlate, ``(C y)[j] = Σ_a taps[a] u[ext(j + a - r)]``.
    parity : {1, -1}
        -1 extends an odd signal (boundary ``'reflect'`` only): a sample read through a
        mirror changes sign.

    Returns
    -------
    scipy.sparse.csr_array, float64
        Shape ``(ceil(n / step), n)``, or ``(n, ceil(n / step))`` with ``upsample``. Taps
        folded onto one sample are summed; zero taps stay stored.

    Examples
    --------
    >>> correlation_matrix([1.0, 2.0, 3.0], 4, "zero").toarray()
    array([[2., 3., 0., 0.],
           [1., 2., 3., 0.],
           [0., 1., 2., 3.],
           [0., 0., 1., 2.]])
    """
    taps = np.asarray(taps, dtype=np.float64)
    if taps.ndim != 1 or len(taps) % 2 == 0:
        raise ValueError(f"taps must be a 1-D array of odd length, got shape {taps.shape}")
    n = check_length(n)
    _check_builder(boundary, step, parity)
    cols, valid, signs = _axis_taps(len(taps), n, boundary, step, upsample, parity)
    rows = np.broadcast_to(np.arange(len(cols))[:, None], cols.shape)
    data = np.broadcast_to(taps * signs, cols.shape)
    m = -(-n // step)
    shape = (n, m) if upsample else (m, n)
    matrix = sp.csr_array((data[valid], (rows[valid], cols[valid])), shape=shape)
    matrix.sum_duplicates()  # folded taps landing on one sample add up (docs/design.md §1)
    return matrix


def correlation_matrix_2d(
    kernel: ArrayLike,
    shape: tuple[int, int],
    boundary: Boundary = "reflect",
    *,
    step: int = 1,
    upsample: bool = False,
    parities: tuple[int, int] = (1, 1),
) -> sp.csr_array:
    """The 2-D analogue of :func:`correlation_matrix`, built tap by tap, on flattened images.

    ``(C x)[(i, j)] = Σ_{a,b} f[a, b] x[ext(step·i + a - r), ext(step·j + b - s)]`` (or, with
    ``upsample``, the correlation of the zero-stuffed input): the extension acts on each
    axis, and a tap is dropped where either axis reads nothing. For a separable filter
    ``f = u vᵀ`` it equals ``kron(correlation_matrix(u, h, …), correlation_matrix(v, w, …))``.

    Parameters
    ----------
    kernel : array_like, shape (p, q), both odd
    shape : (h, w)
        The full-rate image shape.
    boundary, step, upsample
        As for :func:`correlation_matrix`.
    parities : (int, int)
        The ``parity`` of each axis.

    Returns
    -------
    scipy.sparse.csr_array, float64
        Shape ``(ceil(h/step)·ceil(w/step), h·w)``, or its transpose's with ``upsample``.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError(f"kernel must be a 2-D array of odd sides, got shape {kernel.shape}")
    h, w = (check_length(s, "shape") for s in shape)
    for parity in parities:
        _check_builder(boundary, step, parity)
    ri, vi, si = _axis_taps(kernel.shape[0], h, boundary, step, upsample, parities[0])
    cj, vj, sj = _axis_taps(kernel.shape[1], w, boundary, step, upsample, parities[1])
    si, sj = np.broadcast_to(si, ri.shape), np.broadcast_to(sj, cj.shape)
    mh, mw = len(ri), len(cj)
    w_in = -(-w // step) if upsample else w
    # Axes: output row i, output column j, tap row a, tap column b.
    rows = np.broadcast_to(np.arange(mh * mw).reshape(mh, mw, 1, 1), (mh, mw, *kernel.shape))
    cols = np.broadcast_to(ri[:, None, :, None] * w_in + cj[None, :, None, :], rows.shape)
    valid = np.broadcast_to(vi[:, None, :, None] & vj[None, :, None, :], rows.shape)
    data = np.broadcast_to(kernel * si[:, None, :, None] * sj[None, :, None, :], rows.shape)
    size_in = -(-h // step) * w_in if upsample else h * w
    matrix = sp.csr_array(
        (data[valid], (rows[valid], cols[valid])), shape=(mh * mw, size_in), dtype=np.float64
    )
    matrix.sum_duplicates()
    return matrix


# --------------------------------------------------------------------------- G and F


@lru_cache(maxsize=512)
def _g_f(kind: str, n: int, kernel_key: tuple[float, ...], boundary: str) -> sp.csr_array:
    """``G`` (``kind='reduce'``) or ``F`` (``'expand'``) for length ``n``, float64, cached."""
    weights = np.asarray(kernel_key)
    if kind == "reduce":
        # (G x)[i] = Σ_k w[k] x[ext(2i + k)]                                      (§1)
        matrix = correlation_matrix(weights, n, boundary, step=2)
    else:
        # (F y)[j] = Σ_k 2 w[k] u[ext(j + k)], u[2i] = y[i], odd samples of u zero (§1)
        matrix = correlation_matrix(2.0 * weights, n, boundary, step=2, upsample=True)
    matrix.eliminate_zeros()  # e.g. the end taps of the Burt–Adelson kernel with a = 1/2
    return matrix


def _kernel_key(kernel: KernelLike) -> tuple[float, ...]:
    """The weights of ``kernel``, validated, as a hashable key (an array is checked once)."""
    if isinstance(kernel, np.ndarray) and kernel.ndim == 1:  # e.g. from resolve_kernel
        return _checked_weights(tuple(kernel.tolist()))
    return tuple(resolve_kernel(kernel).tolist())


@lru_cache(maxsize=64)
def _checked_weights(weights: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(resolve_kernel(np.array(weights)).tolist())


def _matrix_1d(
    kind: str, n: int, kernel: KernelLike, boundary: str, dtype: DTypeLike
) -> sp.csr_array:
    n = check_length(n)
    return _g_f(kind, n, _kernel_key(kernel), check_boundary(boundary)).astype(float_dtype(dtype))


def blur_downsample_matrix(
    n: int,
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
    dtype: DTypeLike = np.float64,
) -> sp.csr_array:
    """The 1-D blur-and-downsample matrix ``G`` of docs/design.md §1.

    Parameters
    ----------
    n : int
        Input length, at least 1.
    kernel : str, float or array_like
        Low-pass kernel (see :mod:`pyramids.kernels`); default the 5-tap binomial.
    boundary : {'reflect', 'symmetric', 'nearest', 'periodic', 'zero'}
        Boundary mode folded into the matrix.
    dtype : float32 or float64

    Returns
    -------
    scipy.sparse.csr_array, shape (ceil(n / 2), n)
        ``(G x)[i] = Σ_k w[k] x[ext(2i + k)]``. A fresh copy: editing it does not touch
        the cache.

    Examples
    --------
    >>> (blur_downsample_matrix(5).toarray() * 16).astype(int)
    array([[6, 8, 2, 0, 0],
           [1, 4, 6, 4, 1],
           [0, 0, 2, 8, 6]])
    """
    return _matrix_1d("reduce", n, kernel, boundary, dtype)


def upsample_blur_matrix(
    n: int,
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
    dtype: DTypeLike = np.float64,
) -> sp.csr_array:
    """The 1-D upsample-and-blur matrix ``F`` of docs/design.md §1.

    Parameters
    ----------
    n : int
        Output length, at least 1; the input has length ``ceil(n / 2)``.
    kernel, boundary, dtype
        As for :func:`blur_downsample_matrix`.

    Returns
    -------
    scipy.sparse.csr_array, shape (n, ceil(n / 2))
        Zeros inserted at odd positions, then a blur with ``2·w`` under the boundary mode.

    Examples
    --------
    >>> (8 * upsample_blur_matrix(8, boundary="zero").toarray()).astype(int)[:3]
    array([[6, 1, 0, 0],
           [4, 4, 0, 0],
           [1, 6, 1, 0]])
    """
    return _matrix_1d("expand", n, kernel, boundary, dtype)


@lru_cache(maxsize=256)
def _separable(
    kind: str, h: int, w: int, kernel_key: tuple[float, ...], boundary: str
) -> Separable:
    return Separable(
        (_g_f(kind, h, kernel_key, boundary),), (_g_f(kind, w, kernel_key, boundary),)
    )


def reduce_operator(
    shape: Sequence[int], kernel: KernelLike = DEFAULT_KERNEL, boundary: Boundary = "reflect"
) -> Separable:
    """The 2-D blur-and-downsample operator ``G_h · X · G_wᵀ``, as the engines apply it.

    Parameters
    ----------
    shape : (h, w) or (h, w, c)
        Shape of the input image (every channel gets the same operator).
    kernel, boundary
        As for :func:`blur_downsample_matrix`.

    Returns
    -------
    pyramids.engine.Separable
        One term, float64 factors. Cached, so that the engine's tiles, kept with the
        operator, are made once per shape.

    Examples
    --------
    >>> from pyramids.engine import apply
    >>> apply(reduce_operator((5, 4)), np.ones((5, 4))).shape
    (3, 2)
    """
    h, w, _ = shape_hwc(shape)
    return _separable("reduce", h, w, _kernel_key(kernel), check_boundary(boundary))


def expand_operator(
    shape: Sequence[int], kernel: KernelLike = DEFAULT_KERNEL, boundary: Boundary = "reflect"
) -> Separable:
    """The 2-D upsample-and-blur operator ``F_h · Y · F_wᵀ``, as the engines apply it.

    Parameters
    ----------
    shape : (h, w) or (h, w, c)
        Shape of the *output* image; the input has shape ``(ceil(h/2), ceil(w/2)[, c])``.
    kernel, boundary
        As for :func:`blur_downsample_matrix`.

    Returns
    -------
    pyramids.engine.Separable
        One term, float64 factors, cached as :func:`reduce_operator`'s.
    """
    h, w, _ = shape_hwc(shape)
    return _separable("expand", h, w, _kernel_key(kernel), check_boundary(boundary))


# --------------------------------------------------------------------------- Kronecker forms


def per_channel(matrix: sp.csr_array, channels: int) -> sp.csr_array:
    """``kron(matrix, I_c)``: the same operator on every channel of a row-major image."""
    if channels == 1:
        return matrix
    return sp.kron(matrix, sp.eye_array(channels, dtype=matrix.dtype), format="csr")


def _kron_2d(kind: str, shape: Sequence[int], kernel, boundary, dtype) -> sp.csr_array:
    h, w, c = shape_hwc(shape)
    rows, cols = (_matrix_1d(kind, n, kernel, boundary, dtype) for n in (h, w))
    return sp.kron(rows, per_channel(cols, c), format="csr")


def reduce_matrix(
    shape: Sequence[int],
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
    dtype: DTypeLike = np.float64,
) -> sp.csr_array:
    """The 2-D blur-and-downsample operator as one sparse matrix, ``kron(G_h, G_w)``.

    It acts on the row-major flattened image: ``(reduce_matrix(x.shape) @ x.ravel())``
    equals ``reduce(x).ravel()``. For a colour shape ``(h, w, c)`` it is
    ``kron(G_h, kron(G_w, I_c))``. Meant for small images and solvers; large images go
    through :func:`reduce`.

    Parameters
    ----------
    shape : (h, w) or (h, w, c)
        Shape of the input image.
    kernel, boundary, dtype
        As for :func:`blur_downsample_matrix`.

    Returns
    -------
    scipy.sparse.csr_array, shape (ceil(h/2)·ceil(w/2)·c, h·w·c)
    """
    return _kron_2d("reduce", shape, kernel, boundary, dtype)


def expand_matrix(
    shape: Sequence[int],
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
    dtype: DTypeLike = np.float64,
) -> sp.csr_array:
    """The 2-D upsample-and-blur operator as one sparse matrix, ``kron(F_h, F_w)``.

    Parameters
    ----------
    shape : (h, w) or (h, w, c)
        Shape of the *output* image; the input has shape ``(ceil(h/2), ceil(w/2)[, c])``.
    kernel, boundary, dtype
        As for :func:`blur_downsample_matrix`.

    Returns
    -------
    scipy.sparse.csr_array, shape (h·w·c, ceil(h/2)·ceil(w/2)·c)
    """
    return _kron_2d("expand", shape, kernel, boundary, dtype)


# --------------------------------------------------------------------------- entry points


def reduce(
    image: ArrayLike,
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
    *,
    threads: int | None = None,
) -> np.ndarray:
    """Blur and downsample an image by 2: ``G_h · X · G_wᵀ`` (docs/design.md §1).

    Parameters
    ----------
    image : array_like, shape (h, w) or (h, w, c)
        Grey or multichannel image. Float32 and float64 keep their dtype; integer images are
        scaled to [0, 1] (see :func:`pyramids.arrays.as_float_image`).
    kernel : str, float or array_like
        Low-pass kernel; default the 5-tap binomial ``[1, 4, 6, 4, 1] / 16``.
    boundary : {'reflect', 'symmetric', 'nearest', 'periodic', 'zero'}
        Boundary mode; default ``reflect`` (OpenCV's ``BORDER_REFLECT_101``).
    threads : int, optional
        Threads to split the work over; default :func:`pyramids.parallel.default_threads`
        (``$PYRAMIDS_NUM_THREADS``, else up to 4 cores). The result does not depend on it.

    Returns
    -------
    ndarray, shape (ceil(h/2), ceil(w/2)[, c])

    Examples
    --------
    >>> reduce(np.ones((5, 4), np.float32)).shape
    (3, 2)
    """
    # the finite check is the Gaussian build's: on the result where G carries a NaN or an
    # infinity of the input to it, a quarter of the values (docs/design.md §9)
    from .laplacian import _gaussian_levels  # laplacian imports this module

    x = as_float_image(image, check_finite=False)
    reduce_operator(x.shape, kernel, boundary)  # checks the kernel and the boundary
    threads = resolve_threads(threads)
    return _gaussian_levels(x, 1, resolve_kernel(kernel), boundary, threads)[1]


def expand(
    image: ArrayLike,
    shape: Sequence[int],
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
    *,
    threads: int | None = None,
) -> np.ndarray:
    """Upsample by 2 and blur: ``F_h · Y · F_wᵀ`` (docs/design.md §1).

    Parameters
    ----------
    image : array_like, shape (m_h, m_w) or (m_h, m_w, c)
        The coarse image.
    shape : (h, w)
        Output height and width; ``m_h`` must equal ``ceil(h / 2)`` and ``m_w``
        ``ceil(w / 2)``, so odd sizes come back exactly.
    kernel, boundary, threads
        As for :func:`reduce`.

    Returns
    -------
    ndarray, shape (h, w[, c])

    Examples
    --------
    >>> expand(np.ones((3, 2)), (5, 4)).shape
    (5, 4)
    """
    x = as_float_image(image)
    if len(shape) != 2:
        raise ValueError(f"shape must be (h, w), got {tuple(shape)}")
    h, w = (check_length(int(s), "shape") for s in shape)
    if x.shape[:2] != ((h + 1) // 2, (w + 1) // 2):
        raise ValueError(
            f"an image of shape {x.shape[:2]} cannot expand to {(h, w)}: "
            f"it must have shape {((h + 1) // 2, (w + 1) // 2)}"
        )
    return engine.apply(expand_operator((h, w), kernel, boundary), x, threads=threads)


def apply_separable(
    image: ArrayLike,
    rows: sp.sparray | sp.spmatrix,
    cols: sp.sparray | sp.spmatrix,
    *,
    threads: int | None = None,
) -> np.ndarray:
    """Apply a separable operator ``rows · X · colsᵀ`` to a grey or colour image.

    Every channel of a ``(h, w, c)`` image gets the same operator, in one call.

    Parameters
    ----------
    image : array_like, shape (h, w) or (h, w, c)
        Image; integers are scaled as in :func:`pyramids.arrays.as_float_image`.
    rows : sparse matrix, shape (h_out, h)
        Operator along the height.
    cols : sparse matrix, shape (w_out, w)
        Operator along the width.
    threads : int, optional
        As for :func:`reduce`.

    Returns
    -------
    ndarray, shape (h_out, w_out) or (h_out, w_out, c)
        In the image's float dtype.
    """
    x = as_float_image(image)
    if rows.shape[1] != x.shape[0] or cols.shape[1] != x.shape[1]:
        raise ValueError(
            f"operators of shapes {rows.shape} and {cols.shape} do not fit an image of shape "
            f"{x.shape}: they need {x.shape[0]} and {x.shape[1]} columns"
        )
    return engine.apply(Separable((rows,), (cols,)), x, threads=threads)

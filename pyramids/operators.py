"""Sparse blur-and-downsample ``G`` and upsample-and-blur ``F`` operators (DESIGN.md §1).

The 1-D operators are ``scipy.sparse`` matrices with the boundary mode folded in: a tap that
falls outside the signal is mapped back inside by :func:`fold_indices` and its weight added
to the sample it lands on. They are built once per (length, kernel, boundary, dtype) and
cached.

An image is transformed separably, ``G_h · X · G_wᵀ``, never through the big Kronecker
matrix (which :func:`reduce_matrix` and :func:`expand_matrix` still hand out for teaching,
small images and solvers). Both passes apply the cached sparse matrix through its dense
tiles (:class:`BandTiles`): a banded matrix is a short run of dense blocks along its
diagonal, and one batched BLAS product over a strided view of the image applies them all,
several times faster than a sparse product that gathers each nonzero. The passes split
their rows over a small thread pool (numpy's products release the GIL). An expansion runs
both passes strip by strip (:class:`SeparableSum`, which the steerable pyramid uses too),
with a Laplacian band's subtraction or a collapse's addition fused in while the strip is in
cache.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Literal, NamedTuple

import numpy as np
import scipy.sparse as sp
from numpy.lib.stride_tricks import as_strided
from numpy.typing import ArrayLike, DTypeLike

from .arrays import as_float_image
from .kernels import DEFAULT_KERNEL, KernelLike, resolve_kernel

__all__ = [
    "BOUNDARIES",
    "Boundary",
    "apply_separable",
    "blur_downsample_matrix",
    "expand",
    "expand_matrix",
    "fold_indices",
    "get_num_threads",
    "reduce",
    "reduce_matrix",
    "set_num_threads",
    "upsample_blur_matrix",
]

Boundary = Literal["reflect", "symmetric", "nearest", "periodic", "zero"]
#: ``(ufunc, base)``: combine an operator's output with ``base`` as ``ufunc(base, output)``.
Combine = tuple[np.ufunc, np.ndarray]
BOUNDARIES: tuple[str, ...] = ("reflect", "symmetric", "nearest", "periodic", "zero")

#: Cost of a width-pass multiply-add relative to a height-pass one (strided reads);
#: measured on 2048² float32 images (see benchmarks/).
_WIDTH_COST = 1.5
#: Output elements per block of work: small enough to stay in cache, large enough to
#: amortise the per-call overhead of numpy and BLAS.
_BLOCK_ELEMENTS = 1 << 17
#: Rows per dense tile of each operator (see :class:`BandTiles`): the tile of ``G`` reads
#: ``2·8 + 3`` columns, that of ``F`` ``16 / 2 + 2``; measured on 2048² float32 images.
_TILE = {"reduce": 8, "expand": 16}
#: With ``c`` interleaved channels a tile of ``kron(M, I_c)`` does ``c`` times the
#: multiply-adds of the grey one (the kron's zeros); tiles of a quarter of the pixels
#: keep it cheap (measured: a 2048² colour collapse 2.5× faster than with full tiles).
_CHANNEL_TILE_DIVISOR = 4
#: Values of the width-pass array of one strip of a :class:`SeparableSum` (cache-sized).
_STRIP_ELEMENTS = 1 << 18
#: Below this many output elements, threads cost more than they save.
_THREAD_MIN_ELEMENTS = 1 << 16


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
        The extension (DESIGN.md §1): ``reflect`` mirrors without repeating the edge sample,
        ``symmetric`` repeats it, ``nearest`` clamps, ``periodic`` wraps, ``zero`` pads with 0.

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


# --------------------------------------------------------------------------- 1-D operators


def _check_length(n: int, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"{name} must be at least 1, got {n}")
    return int(n)


def _float_dtype(dtype: DTypeLike) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _fold_matrix(
    rows: np.ndarray, positions: np.ndarray, weights: np.ndarray, n: int, boundary: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fold the taps ``(row, position, weight)`` of an extended signal into ``0 … n-1``."""
    cols, valid = fold_indices(positions, n, boundary)
    return rows[valid], cols[valid], weights[valid]


class TileBatch(NamedTuple):
    """The interior tiles of a :class:`BandTiles`, applied by one batched product."""

    start: int  #: first output row
    count: int  #: number of tiles
    first: int  #: first input row (column of the matrix) read by the first tile
    step: int  #: how many input rows each tile's window starts after the one before
    dense: np.ndarray  #: the tiles, shape (count, tile, window)

    @property
    def window(self) -> int:
        """Input rows read by each tile."""
        return self.dense.shape[2]


class BandTiles:
    """A banded sparse matrix cut into dense tiles of rows, so that BLAS can apply it.

    The rows are cut into tiles of ``tile`` rows. In the interior every tile's weights sit
    in a short window of ``width`` columns, and the windows step by the same number of
    columns from tile to tile (``2·tile`` for ``G``, ``tile / 2`` for ``F``): the input
    read through a strided view holds every window at once, and one batched matrix product
    applies all the interior tiles (numpy hands each to BLAS's dense ``gemm``). A dense tile
    multiplies a few zeros, but BLAS does that far faster than a sparse product gathers the
    nonzeros. The tiles at the ends, where the boundary folding moves weights, are applied
    one by one on the columns they use. The result equals ``matrix @ x`` up to rounding.

    Parameters
    ----------
    matrix : scipy.sparse.csr_array, shape (m, n)
    tile : int
        Rows per tile.
    """

    def __init__(self, matrix: sp.csr_array, tile: int):
        m, n = matrix.shape
        self.shape, self.tile = (m, n), tile
        bounds = list(range(0, m, tile))
        blocks = [matrix[a : a + tile] for a in bounds]
        first = np.array([b.indices.min() if b.nnz else -1 for b in blocks])
        last = np.array([b.indices.max() if b.nnz else -1 for b in blocks])
        # The interior pattern, read off the middle tile: window starts step by `step`.
        mid = len(blocks) // 2
        step = int(first[mid + 1] - first[mid]) if mid + 1 < len(blocks) else 0
        ks = np.arange(len(blocks))
        regular = (first == first[mid] + (ks - mid) * step) & (first >= 0) & (step > 0)
        regular[-1] &= m % tile == 0  # a partial last tile cannot join the batch
        self.batch: TileBatch | None = None
        self.batch_t: np.ndarray | None = None  # the batch tiles transposed, for apply_cols
        a, b = _longest_run(regular, mid)
        width = int((last[a:b] - first[a:b]).max()) + 1 if b - a >= 2 else 0
        while b - a >= 2 and first[b - 1] + width > n:  # every window must fit the input
            b -= 1
        if b - a >= 2:
            dense = np.stack(
                [blocks[k].toarray()[:, first[k] : first[k] + width] for k in range(a, b)]
            )
            self.batch = TileBatch(a * tile, b - a, int(first[a]), step, dense)
            self.batch_t = np.ascontiguousarray(dense.transpose(0, 2, 1))
        else:
            a = b = 0
        # Every other tile on its own: (rows, the columns it reads, its weights on them).
        self.rest: list[tuple[slice, slice | np.ndarray, np.ndarray]] = []
        for k in [*range(a), *range(b, len(blocks))]:
            used = np.unique(blocks[k].indices)
            cols: slice | np.ndarray = used
            if used.size and used[-1] - used[0] < 2 * used.size:  # near-contiguous: a view
                cols = slice(int(used[0]), int(used[-1]) + 1)
                used = np.arange(cols.start, cols.stop)
            rows = slice(bounds[k], bounds[k] + blocks[k].shape[0])
            self.rest.append((rows, cols, blocks[k][:, used].toarray()))

    @property
    def macs(self) -> int:
        """Multiply-adds per output value in the batch tiles (the cost of one pass)."""
        return self.batch.window if self.batch is not None else self.shape[1]

    def pieces(self, group: int) -> list[tuple[slice, int, int]]:
        """Work items of a height pass: ``(output rows, first tile, last tile + 1)`` for
        groups of ``group`` batch tiles, ``(output rows, -1, i)`` for ``rest[i]``."""
        pieces = []
        if self.batch is not None:
            start, count = self.batch.start, self.batch.count
            for k0 in range(0, count, group):
                k1 = min(k0 + group, count)
                pieces.append((slice(start + k0 * self.tile, start + k1 * self.tile), k0, k1))
        return pieces + [(rows, -1, i) for i, (rows, _, _) in enumerate(self.rest)]

    def multiply_rows(
        self, x: np.ndarray, piece: tuple[slice, int, int], out: np.ndarray, offset: int = 0
    ) -> None:
        """``out = (matrix @ x)[rows]`` for one of :meth:`pieces`; ``x`` C-contiguous.

        ``x`` may hold only the rows ``offset …`` of the input, if a batch piece's reads
        all lie among them.
        """
        _, k0, k1 = piece
        if k0 < 0:
            _, cols, dense = self.rest[k1]
            np.matmul(dense, x[cols], out=out)
            return
        first, step, dense = self.batch.first, self.batch.step, self.batch.dense
        n_cols = x.shape[1]
        s0, s1 = x.strides
        view = as_strided(
            x[first + k0 * step - offset :],
            shape=(k1 - k0, self.batch.window, n_cols),
            strides=(step * s0, s0, s1),
            writeable=False,
        )
        np.matmul(dense[k0:k1], view, out=out.reshape(k1 - k0, self.tile, n_cols))

    def apply_cols(self, x: np.ndarray, out: np.ndarray) -> None:
        """``out = x @ matrixᵀ`` for ``x (N, n)``, ``out (N, m)``, both with unit column stride."""
        n_rows = x.shape[0]
        if self.batch is not None:
            start, count, first, step, _ = self.batch
            s0, s1 = x.strides
            view = as_strided(
                x[:, first:],
                shape=(count, n_rows, self.batch.window),
                strides=(step * s1, s0, s1),
                writeable=False,
            )
            target = out[:, start : start + count * self.tile]
            target = target.reshape(n_rows, count, self.tile).transpose(1, 0, 2)
            np.matmul(view, self.batch_t, out=target)
        for rows, cols, dense in self.rest:
            np.matmul(x[:, cols], dense.T, out=out[:, rows])


def _longest_run(mask: np.ndarray, around: int) -> tuple[int, int]:
    """``(a, b)``: the run of True in ``mask`` that contains ``around`` (empty if none)."""
    if not 0 <= around < len(mask) or not mask[around]:
        return 0, 0
    a = around
    while a > 0 and mask[a - 1]:
        a -= 1
    b = around + 1
    while b < len(mask) and mask[b]:
        b += 1
    return a, b


class PreparedOperator:
    """A cached 1-D sparse operator and the dense tiles derived from it for fast application.

    The tiles (:class:`BandTiles`, for each channel count) are built once, on first use.
    """

    def __init__(self, matrix: sp.csr_array, tile: int):
        self.matrix = matrix
        self.tile = tile
        self._tiles: dict[int, BandTiles] = {}

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    def tiles(self, channels: int = 1) -> BandTiles:
        """The tiles of ``kron(matrix, I_channels)`` (channels interleaved, as in an image row)."""
        if channels not in self._tiles:
            self._tiles[channels] = _channel_tiles(self.matrix, channels, self.tile)
        return self._tiles[channels]


def _channel_tiles(matrix: sp.csr_array, channels: int, pixels: int) -> BandTiles:
    """The band tiles of ``kron(matrix, I_channels)`` (channels interleaved, as in a row)."""
    if channels > 1:
        matrix = sp.kron(matrix, sp.eye_array(channels, dtype=matrix.dtype), "csr")
        pixels = max(2, pixels // _CHANNEL_TILE_DIVISOR)  # even: F's windows step by half
    return BandTiles(matrix, pixels * channels)


class SeparableSum:
    """``Y = Σ_t U_t X V_tᵀ`` on ``(h, w)`` or ``(h, w, c)`` images, through dense band tiles.

    Strip by strip of output rows: the width pass of every term, on just the input rows the
    strip needs, writes one slot of a small array ``Z (rows, R, m_w·c)``; read as
    ``(rows·R, m_w·c)``, its rows are ordered (input row, term), so the vertical factors
    interleaved the same way, ``U_int[i, k·R + t] = U_t[i, k]``, form one banded matrix whose
    height pass applies every term *and* sums them. Both passes are BLAS products over band
    tiles (:class:`BandTiles`); ``Z`` stays in cache, and the strips are split over the
    thread pool. With one term it is a plain separable operator (the Laplacian pyramid's
    expansions); the steerable pyramid's stages have several.

    Parameters
    ----------
    rows, cols : list of scipy.sparse.csr_array
        The factors ``U_t (m_h × h)`` and ``V_t (m_w × w)``, one pair per term.
    dtype : float32 or float64
    tile : int
        Output rows per band tile of the height pass (and pixels per tile of the width pass).
    """

    def __init__(
        self, rows: list[sp.csr_array], cols: list[sp.csr_array], dtype: DTypeLike, tile: int
    ):
        self.terms = len(rows)
        self.shape_in = (rows[0].shape[1], cols[0].shape[1])
        self.shape_out = (rows[0].shape[0], cols[0].shape[0])
        picks = [sp.csr_array(np.eye(1, self.terms, t)) for t in range(self.terms)]
        interleaved = sum(sp.kron(r, e, format="csr") for r, e in zip(rows, picks))
        self.tile = tile
        self.height = BandTiles(sp.csr_array(interleaved).astype(dtype), tile)
        self.cols = [c.astype(dtype) for c in cols]
        self._plans: dict[int, tuple[list[BandTiles], list[tuple]]] = {}

    def _plan(self, channels: int) -> tuple[list[BandTiles], list[tuple]]:
        """The width tiles of each term, and the strips.

        A strip is ``(output rows, input rows, payload)``: input rows are a slice for a
        group of batch tiles (payload ``(k0, k1, offset)``) or an index array for a border
        tile (payload its dense weights on those rows' ``Z``).
        """
        if channels not in self._plans:
            widths = [_channel_tiles(c, channels, self.tile) for c in self.cols]
            r, tiles = self.terms, self.height
            # A batch tile reads `step` more rows of Z than the one before, and a strip reads
            # `window - step` rows that the next strip makes again: group the tiles so that
            # a strip's Z holds about _STRIP_ELEMENTS values, but at least enough tiles
            # that the rows made twice cost under a quarter more.
            group = 1
            if tiles.batch is not None:
                step, window = tiles.batch.step, tiles.batch.window
                group = max(
                    _STRIP_ELEMENTS // (step * self.shape_out[1] * channels),
                    -(-4 * (window - step) // step),
                )
            strips = []
            for out_rows, k0, k1 in tiles.pieces(group):
                if k0 >= 0:  # Z rows first + k0·step … of the batch, whole input rows
                    first, step, window = tiles.batch.first, tiles.batch.step, tiles.batch.window
                    lo = (first + k0 * step) // r
                    hi = -(-(first + (k1 - 1) * step + window) // r)
                    strips.append((out_rows, slice(lo, hi), (k0, k1, lo * r)))
                    continue
                _, cols, dense = tiles.rest[k1]
                cols = np.arange(cols.start, cols.stop) if isinstance(cols, slice) else cols
                needed = np.unique(cols // r)
                local = np.zeros((dense.shape[0], len(needed) * r), dense.dtype)
                local[:, np.searchsorted(needed, cols // r) * r + cols % r] = dense
                strips.append((out_rows, needed, local))
            self._plans[channels] = (widths, strips)
        return self._plans[channels]

    def __call__(
        self,
        image: np.ndarray,
        into: np.ndarray | None = None,
        combine: Combine | None = None,
    ) -> np.ndarray:
        """``Y`` for ``image`` of shape ``(h, w[, c])``.

        With ``into``, ``into += Y`` (and ``into`` is returned); with ``combine = (ufunc,
        base)``, ``ufunc(base, Y)``, strip by strip while the strip is in cache.
        """
        h, w = image.shape[:2]
        c = image.shape[2] if image.ndim == 3 else 1
        m, m_w = self.shape_out
        widths, strips = self._plan(c)
        x = np.ascontiguousarray(image).reshape(h, w * c)
        # into is a contiguous array made by this module, so the reshape is a view.
        out = np.empty((m, m_w * c), image.dtype) if into is None else into.reshape(m, m_w * c)

        if combine is not None:
            ufunc, base = combine
            base = np.ascontiguousarray(base).reshape(m, m_w * c)

        def task(a: int, b: int) -> None:
            for out_rows, in_rows, payload in strips[a:b]:
                rows = x[in_rows]
                z = np.empty((len(rows), self.terms, m_w * c), image.dtype)
                for t, tiles in enumerate(widths):
                    tiles.apply_cols(rows, z[:, t])
                z = z.reshape(-1, m_w * c)
                n = out_rows.stop - out_rows.start
                target = out[out_rows] if into is None else np.empty((n, m_w * c), out.dtype)
                if isinstance(payload, tuple):
                    k0, k1, offset = payload
                    self.height.multiply_rows(z, (out_rows, k0, k1), target, offset)
                else:
                    np.matmul(payload, z, out=target)
                if into is not None:
                    out[out_rows] += target
                elif combine is not None:
                    ufunc(base[out_rows], target, out=target)

        run_split(task, len(strips), out.size)
        return out.reshape((m, m_w, *image.shape[2:])) if into is None else into


@lru_cache(maxsize=512)
def _operator(
    kind: str, n: int, kernel_key: tuple[float, ...], boundary: str, dtype: str
) -> PreparedOperator:
    weights = np.asarray(kernel_key)
    radius = len(weights) // 2
    taps = np.arange(-radius, radius + 1)
    m = (n + 1) // 2
    if kind == "reduce":
        # (G x)[i] = sum_k w[k] x[ext(2i + k)]                                  (§1)
        rows = np.repeat(np.arange(m), len(taps))
        positions = (2 * np.arange(m)[:, None] + taps).ravel()
        rows, cols, data = _fold_matrix(rows, positions, np.tile(weights, m), n, boundary)
        shape = (m, n)
    else:
        # (F y)[j] = sum_k 2 w[k] u[ext(j + k)], u[2i] = y[i], odd samples of u zero  (§1)
        rows = np.repeat(np.arange(n), len(taps))
        positions = (np.arange(n)[:, None] + taps).ravel()
        rows, targets, data = _fold_matrix(rows, positions, np.tile(2.0 * weights, n), n, boundary)
        even = targets % 2 == 0
        rows, cols, data = rows[even], targets[even] // 2, data[even]
        shape = (n, m)
    matrix = sp.csr_array((data, (rows, cols)), shape=shape)  # sums folded duplicates
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    return PreparedOperator(matrix.astype(dtype), _TILE[kind])


def _prepared(
    kind: str, n: int, weights: np.ndarray, boundary: str, dtype: DTypeLike
) -> PreparedOperator:
    """The cached operator for validated ``weights`` (from :func:`resolve_kernel`)."""
    n = _check_length(n)
    key = tuple(weights.tolist())
    return _operator(kind, n, key, check_boundary(boundary), _float_dtype(dtype).name)


def blur_downsample_matrix(
    n: int,
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
    dtype: DTypeLike = np.float64,
) -> sp.csr_array:
    """The 1-D blur-and-downsample matrix ``G`` of DESIGN.md §1.

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
    return _prepared("reduce", n, resolve_kernel(kernel), boundary, dtype).matrix.copy()


def upsample_blur_matrix(
    n: int,
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
    dtype: DTypeLike = np.float64,
) -> sp.csr_array:
    """The 1-D upsample-and-blur matrix ``F`` of DESIGN.md §1.

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
    return _prepared("expand", n, resolve_kernel(kernel), boundary, dtype).matrix.copy()


def _kron_2d(ops: Sequence[sp.csr_array], channels: int) -> sp.csr_array:
    rows, cols = ops
    if channels > 1:
        cols = sp.kron(cols, sp.eye_array(channels, dtype=cols.dtype))
    return sp.kron(rows, cols, format="csr")


def _shape_hw_c(shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"shape must be (h, w) or (h, w, c) with positive sides, got {shape}")
    return shape[0], shape[1], shape[2] if len(shape) == 3 else 1


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
    h, w, c = _shape_hw_c(shape)
    weights = resolve_kernel(kernel)
    ops = [_prepared("reduce", n, weights, boundary, dtype).matrix for n in (h, w)]
    return _kron_2d(ops, c)


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
    h, w, c = _shape_hw_c(shape)
    weights = resolve_kernel(kernel)
    ops = [_prepared("expand", n, weights, boundary, dtype).matrix for n in (h, w)]
    return _kron_2d(ops, c)


# --------------------------------------------------------------------------- threads

_num_threads = max(1, int(os.environ.get("PYRAMIDS_NUM_THREADS", min(4, os.cpu_count() or 1))))
_executor: ThreadPoolExecutor | None = None
_executor_size = 0
_executor_lock = threading.Lock()


def set_num_threads(n: int) -> None:
    """Set how many threads the separable operators may use (default: up to 4 cores).

    The environment variable ``PYRAMIDS_NUM_THREADS`` sets the initial value.
    """
    global _num_threads
    _num_threads = _check_length(n, "n")  # the pool grows to it on its next use


def get_num_threads() -> int:
    """How many threads the separable operators may use."""
    return _num_threads


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None
_blas_controller = None


def _controller():
    global _blas_controller
    if _blas_controller is None:
        from threadpoolctl import ThreadpoolController

        _blas_controller = ThreadpoolController()
    return _blas_controller


def blas_threads() -> int:
    """How many threads BLAS may use now (threadpoolctl's view of every BLAS loaded)."""
    libs = _controller().select(user_api="blas").lib_controllers
    return max([lib.num_threads for lib in libs] or [1])


@contextlib.contextmanager
def single_threaded_blas():
    """Hold BLAS to one thread while the package's own threads split the work.

    The passes hand many small products to BLAS from several threads at once; BLAS threads
    of its own would only compete with them for the cores (on a busy machine a product can
    then stall for a whole scheduler slice). The limit is process-wide (threadpoolctl), so
    the calls share it, nested or from several threads: the first one in sets it and the
    last one out restores the original. (OpenBLAS was seen to ignore a raise of its thread
    count asked from a worker thread; the package enters this first from the caller's.)
    """
    global _blas_users, _blas_limiter
    with _blas_lock:
        if _blas_users == 0:
            _blas_limiter = _controller().limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


def _pool(workers: int) -> ThreadPoolExecutor:
    """The shared pool, grown to at least ``workers`` threads."""
    global _executor, _executor_size
    with _executor_lock:
        if _executor is None or _executor_size < workers:
            # The old pool is not shut down: another caller may still be submitting to it;
            # its idle threads exit once it is garbage-collected.
            _executor_size = max(workers, _num_threads)
            _executor = ThreadPoolExecutor(_executor_size, thread_name_prefix="pyramids")
        return _executor


def run_split(task, n_items: int, out_elements: int = 0, *, parts: int | None = None) -> None:
    """Run ``task(start, stop)`` over ``0 … n_items`` split into contiguous parts.

    ``parts`` defaults to the package's thread count when the output has at least
    ``_THREAD_MIN_ELEMENTS`` elements, else 1. BLAS is held to one thread throughout, also
    when the parts run one after the other, so every product is computed the same way.
    """
    if parts is None:
        parts = _num_threads if out_elements >= _THREAD_MIN_ELEMENTS else 1
    parts = min(parts, n_items)
    with single_threaded_blas():
        if parts <= 1:
            task(0, n_items)
            return
        bounds = np.linspace(0, n_items, parts + 1).round().astype(int)
        pool = _pool(parts)
        futures = [pool.submit(task, a, b) for a, b in itertools.pairwise(bounds) if b > a]
        for future in futures:
            future.result()


# --------------------------------------------------------------------------- 2-D application


def height_pass(x: np.ndarray, tiles: BandTiles) -> np.ndarray:
    """``M @ x`` for the matrix ``M`` of ``tiles`` and ``x (h, N)``, in row groups over threads."""
    x = np.ascontiguousarray(x)
    out = np.empty((tiles.shape[0], x.shape[1]), dtype=x.dtype)
    pieces = tiles.pieces(max(1, _BLOCK_ELEMENTS // (tiles.tile * x.shape[1])))

    def task(a: int, b: int) -> None:
        for piece in pieces[a:b]:
            tiles.multiply_rows(x, piece, out[piece[0]])

    run_split(task, len(pieces), out.size)
    return out


def width_pass(x: np.ndarray, tiles: BandTiles) -> np.ndarray:
    """``x @ Mᵀ`` for the matrix ``M`` of ``tiles`` and ``x (N, w)``, in row blocks (threads)."""
    h = x.shape[0]
    out = np.empty((h, tiles.shape[0]), dtype=x.dtype)
    block = max(1, _BLOCK_ELEMENTS // out.shape[1])

    def task(a: int, b: int) -> None:
        for i in range(a, b):
            rows = slice(i * block, min((i + 1) * block, h))
            tiles.apply_cols(x[rows], out[rows])

    run_split(task, -(-h // block), out.size)
    return out


def _apply(image: np.ndarray, rows: PreparedOperator, cols: PreparedOperator) -> np.ndarray:
    """``rows · X · colsᵀ`` for ``(h, w)`` or ``(h, w, c)`` in two passes, cheaper order first.

    (The expansions of the Laplacian pyramid go through :class:`SeparableSum` instead, which
    fuses the passes strip by strip; for the reductions the two full passes measured faster.)
    """
    h, w = image.shape[:2]
    c = image.shape[2] if image.ndim == 3 else 1
    (h_out, _), (w_out, _) = rows.shape, cols.shape
    # Multiply-adds per output of each pass's dense tiles; the width pass pays for its
    # strided reads (_WIDTH_COST) and, with channels interleaved, for the kron with I_c.
    cost_h, cost_w = rows.tiles().macs, cols.tiles(c).macs * _WIDTH_COST
    height_first = cost_h * h_out * w + cost_w * h_out * w_out
    width_first = cost_w * h * w_out + cost_h * h_out * w_out
    x = np.ascontiguousarray(image).reshape(h, w * c)
    shape = (h_out, w_out, *image.shape[2:])
    if height_first <= width_first:
        return width_pass(height_pass(x, rows.tiles()), cols.tiles(c)).reshape(shape)
    return height_pass(width_pass(x, cols.tiles(c)), rows.tiles()).reshape(shape)


def apply_separable(
    image: ArrayLike, rows: sp.sparray | sp.spmatrix, cols: sp.sparray | sp.spmatrix
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
    prepared = [PreparedOperator(sp.csr_array(m).astype(x.dtype), 16) for m in (rows, cols)]
    return _apply(x, *prepared)


@lru_cache(maxsize=256)
def _separable(
    kind: str, h: int, w: int, kernel_key: tuple[float, ...], boundary: str, dtype: str
) -> SeparableSum:
    """The 2-D operator ``M_h · X · M_wᵀ`` of ``kind`` for an ``(h, w)`` signal, strip-fused."""
    rows, cols = (_operator(kind, n, kernel_key, boundary, dtype).matrix for n in (h, w))
    return SeparableSum([rows], [cols], dtype, _TILE[kind])


def reduce_unchecked(image: np.ndarray, weights: np.ndarray, boundary: str) -> np.ndarray:
    """:func:`reduce` on a validated float image and kernel (internal fast path)."""
    h, w = image.shape[:2]
    ops = [_prepared("reduce", n, weights, boundary, image.dtype) for n in (h, w)]
    return _apply(image, *ops)


def expand_unchecked(
    image: np.ndarray,
    shape: tuple[int, int],
    weights: np.ndarray,
    boundary: str,
    combine: Combine | None = None,
) -> np.ndarray:
    """:func:`expand` on a validated float image and kernel (internal fast path).

    ``combine = (ufunc, base)`` returns ``ufunc(base, F_h · Y · F_wᵀ)``, with ``base`` of the
    output's shape: ``np.subtract`` gives a Laplacian band, ``np.add`` a collapse step.
    """
    h, w = (_check_length(n) for n in shape)
    key = tuple(weights.tolist())
    op = _separable("expand", h, w, key, check_boundary(boundary), _float_dtype(image.dtype).name)
    return op(image, combine=combine)


def reduce(
    image: ArrayLike, kernel: KernelLike = DEFAULT_KERNEL, boundary: Boundary = "reflect"
) -> np.ndarray:
    """Blur and downsample an image by 2: ``G_h · X · G_wᵀ`` (DESIGN.md §1).

    Parameters
    ----------
    image : array_like, shape (h, w) or (h, w, c)
        Grey or multichannel image. Float32 and float64 keep their dtype; integer images are
        scaled to [0, 1] (see :func:`pyramids.arrays.as_float_image`).
    kernel : str, float or array_like
        Low-pass kernel; default the 5-tap binomial ``[1, 4, 6, 4, 1] / 16``.
    boundary : {'reflect', 'symmetric', 'nearest', 'periodic', 'zero'}
        Boundary mode; default ``reflect`` (OpenCV's ``BORDER_REFLECT_101``).

    Returns
    -------
    ndarray, shape (ceil(h/2), ceil(w/2)[, c])

    Examples
    --------
    >>> reduce(np.ones((5, 4), np.float32)).shape
    (3, 2)
    """
    x = as_float_image(image)
    return reduce_unchecked(x, resolve_kernel(kernel), check_boundary(boundary))


def expand(
    image: ArrayLike,
    shape: Sequence[int],
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
) -> np.ndarray:
    """Upsample by 2 and blur: ``F_h · Y · F_wᵀ`` (DESIGN.md §1).

    Parameters
    ----------
    image : array_like, shape (m_h, m_w) or (m_h, m_w, c)
        The coarse image.
    shape : (h, w)
        Output height and width; ``m_h`` must equal ``ceil(h / 2)`` and ``m_w``
        ``ceil(w / 2)``, so odd sizes come back exactly.
    kernel, boundary
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
    h, w = (_check_length(int(s), "shape") for s in shape)
    if x.shape[:2] != ((h + 1) // 2, (w + 1) // 2):
        raise ValueError(
            f"an image of shape {x.shape[:2]} cannot expand to {(h, w)}: "
            f"it must have shape {((h + 1) // 2, (w + 1) // 2)}"
        )
    return expand_unchecked(x, (h, w), resolve_kernel(kernel), check_boundary(boundary))

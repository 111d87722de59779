"""Applying a separable operator to images: one small interface, three engines.

An operator here is a sum of separable terms, ``Y = Σ_t U_t X V_tᵀ`` (:class:`Separable`),
whose factors ``U_t`` (along the height) and ``V_t`` (along the width) are the sparse 1-D
matrices of :mod:`pyramids.operators`: ``G`` and ``F`` are one term each, a steerable stage
a few (the SVD split of its 2-D filter). An engine applies it to an ``(h, w)`` or
``(h, w, c)`` array, every channel alike::

    get_engine(name).apply(op, x, out=None, combine=None, threads=None)

``combine = (ufunc, base)`` returns ``ufunc(base, Y)`` instead of ``Y``: ``np.subtract`` makes
a Laplacian band ``g - F c``, ``np.add`` a collapse step ``L + F g``.

``'compiled'`` (:class:`CompiledEngine`, the default where numba imports)
    A numba kernel (:mod:`pyramids.compiled`) that makes each output row from the sparse
    factors' own entries, in their order: equal to the matrix engine bit for bit, the
    combine applied in the same loop, rows split over ``threads`` threads
    (docs/design.md §9). :func:`default_engine` names it.
``'separable'`` (:class:`TiledEngine`, the fallback without numba)
    BLAS products over dense tiles of the banded factors (:class:`BandTiles`): a banded
    matrix is a short run of dense blocks along its diagonal, and one batched product over a
    strided view of the image applies them all, several times faster than a sparse product
    that gathers each nonzero. A reduction runs as two whole passes, the cheaper first; an
    expansion or a sum of terms strip by strip (:class:`_Strips`), with ``combine`` applied
    while the strip is in cache. The work is split over ``threads`` threads
    (:func:`pyramids.parallel.run_parts`, which holds BLAS to one thread meanwhile).
``'matrix'`` (:class:`MatrixEngine`)
    The formula itself: a ``scipy.sparse`` product along each axis for each term, summed in
    term order. The reference the other engines are tested against (tests/test_engine.py,
    tests/test_compiled_engine.py).

Every tuning constant of the package's operators is defined here, once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from numpy.lib.stride_tricks import as_strided

from .parallel import resolve_threads, run_parts

__all__ = [
    "ENGINES",
    "ENGINE_VAR",
    "BandTiles",
    "Combine",
    "CompiledEngine",
    "MatrixEngine",
    "Separable",
    "TiledEngine",
    "apply",
    "collapse_by_level",
    "default_engine",
    "get_engine",
    "mix",
]

#: ``(ufunc, base)``: combine an operator's output ``Y`` with ``base`` as ``ufunc(base, Y)``.
Combine = tuple[np.ufunc, np.ndarray]

#: Cost of a width-pass multiply-add relative to a height-pass one (strided reads);
#: measured on 2048² float32 images (see benchmarks/).
_WIDTH_COST = 1.5
#: Output elements per block of work: small enough to stay in cache, large enough to
#: amortise the per-call overhead of numpy and BLAS.
_BLOCK_ELEMENTS = 1 << 17
#: Rows per dense tile (see :class:`BandTiles`) of a reduction (a tile of ``G`` reads
#: ``2·8 + 3`` columns), of a one-term expansion (a tile of ``F`` reads ``16 / 2 + 2``) and of
#: a sum of several terms (the steerable stages); measured on 2048² float32 images.
_TILE = {"reduce": 8, "expand": 16, "terms": 8}
#: With ``c`` interleaved channels a tile of ``kron(M, I_c)`` does ``c`` times the
#: multiply-adds of the grey one (the kron's zeros); tiles of a quarter of the pixels
#: keep it cheap (measured: a 2048² colour collapse 2.5× faster than with full tiles).
_CHANNEL_TILE_DIVISOR = 4
#: Values of the width-pass array of one strip of :class:`_Strips`, and of the block of
#: bands :func:`mix` combines at once (cache-sized).
_STRIP_ELEMENTS = 1 << 18
#: Below this many output elements, threads cost more than they save.
_THREAD_MIN_ELEMENTS = 1 << 16
#: The same for the compiled engine, whose kernels make a 512² output in about 0.1 ms on
#: one thread, less than handing half of it to another thread costs. Measured on the 2-core
#: AMD EPYC of benchmarks/, quiet, medians of interleaved 2-thread runs: a 512² Laplacian
#: build took 977 µs when outputs were split from 2¹⁸ values and 621 µs from 2²⁰ (its
#: collapse 840 and 499 µs); from 2²¹, a 2048² build took 9.7 ms against 8.2 ms.
_COMPILED_THREAD_MIN_ELEMENTS = 1 << 20


# --------------------------------------------------------------------------- the operator


@dataclass(frozen=True, eq=False)
class Separable:
    """The 2-D operator ``Y = Σ_t U_t X V_tᵀ`` on ``(h, w)`` or ``(h, w, c)`` arrays.

    Parameters
    ----------
    rows : sequence of sparse matrices, each shape (m_h, h)
        The height factors ``U_t``.
    cols : sequence of sparse matrices, each shape (m_w, w)
        The width factors ``V_t``, one per height factor.

    Attributes
    ----------
    prepared : dict
        What the engines derive from the factors to apply them (tiles, strips, per dtype),
        kept with the operator so that it is derived once.
    """

    rows: tuple[sp.csr_array, ...]
    cols: tuple[sp.csr_array, ...]
    prepared: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        rows = tuple(sp.csr_array(m) for m in self.rows)
        cols = tuple(sp.csr_array(m) for m in self.cols)
        if not rows or len(rows) != len(cols):
            raise ValueError(
                f"an operator needs as many width factors as height factors (at least one), "
                f"got {len(rows)} and {len(cols)}"
            )
        for name, factors in (("rows", rows), ("cols", cols)):
            if any(m.shape != factors[0].shape for m in factors):
                raise ValueError(f"{name} must share one shape, got {[m.shape for m in factors]}")
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "cols", cols)
        # read on every application: kept as plain tuples (a sparse shape is slower to read)
        object.__setattr__(self, "_shapes", (
            (rows[0].shape[1], cols[0].shape[1]), (rows[0].shape[0], cols[0].shape[0])
        ))  # fmt: skip

    @property
    def terms(self) -> int:
        """Number of separable terms."""
        return len(self.rows)

    @property
    def shape_in(self) -> tuple[int, int]:
        """``(h, w)`` of the arrays it acts on."""
        return self._shapes[0]

    @property
    def shape_out(self) -> tuple[int, int]:
        """``(m_h, m_w)`` of the arrays it makes."""
        return self._shapes[1]

    @property
    def T(self) -> Separable:
        """The transpose, ``Σ_t U_tᵀ X V_t``."""
        return Separable(
            tuple(m.T.tocsr() for m in self.rows), tuple(m.T.tocsr() for m in self.cols)
        )


def _check_call(
    op: Separable, x: np.ndarray, out: np.ndarray | None, combine: Combine | None
) -> tuple[int, ...]:
    """The output shape of ``op`` on ``x``; a ``ValueError`` if the arrays do not fit."""
    if x.ndim not in (2, 3) or x.shape[:2] != op.shape_in:
        raise ValueError(
            f"x must have shape (h, w) or (h, w, c) with (h, w) = {op.shape_in}, got {x.shape}"
        )
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    shape = (*op.shape_out, *x.shape[2:])
    if out is not None and (out.shape != shape or out.dtype != x.dtype):
        raise ValueError(f"out must have shape {shape} and dtype {x.dtype}, got {out.shape}")
    if out is not None and not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    if combine is not None and np.shape(combine[1]) != shape:
        raise ValueError(f"combine's base must have shape {shape}, got {np.shape(combine[1])}")
    return shape


def _finish(y: np.ndarray, out: np.ndarray | None, combine: Combine | None) -> np.ndarray:
    """``y``, or ``ufunc(base, y)``, written to ``out`` when given."""
    if combine is not None:
        ufunc, base = combine
        return ufunc(base, y, out=y if out is None else out)
    if out is not None:
        out[...] = y
        return out
    return y


def _run(task, n_items: int, out_elements: int, threads: int) -> None:
    """:func:`pyramids.parallel.run_parts`, on one thread for outputs too small to split."""
    run_parts(task, n_items, threads if out_elements >= _THREAD_MIN_ELEMENTS else 1)


# --------------------------------------------------------------------------- band tiles


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


def _channel_tiles(matrix: sp.csr_array, channels: int, pixels: int) -> BandTiles:
    """The band tiles of ``kron(matrix, I_channels)`` (channels interleaved, as in a row)."""
    if channels > 1:
        matrix = sp.kron(matrix, sp.eye_array(channels, dtype=matrix.dtype), "csr")
        pixels = max(2, pixels // _CHANNEL_TILE_DIVISOR)  # even: F's windows step by half
    return BandTiles(matrix, pixels * channels)


# --------------------------------------------------------------------------- two passes


def height_pass(x: np.ndarray, tiles: BandTiles, threads: int) -> np.ndarray:
    """``M @ x`` for the matrix ``M`` of ``tiles`` and ``x (h, N)``, in row groups over threads."""
    x = np.ascontiguousarray(x)
    out = np.empty((tiles.shape[0], x.shape[1]), dtype=x.dtype)
    pieces = tiles.pieces(max(1, _BLOCK_ELEMENTS // (tiles.tile * x.shape[1])))

    def task(a: int, b: int) -> None:
        for piece in pieces[a:b]:
            tiles.multiply_rows(x, piece, out[piece[0]])

    _run(task, len(pieces), out.size, threads)
    return out


def width_pass(x: np.ndarray, tiles: BandTiles, threads: int) -> np.ndarray:
    """``x @ Mᵀ`` for the matrix ``M`` of ``tiles`` and ``x (N, w)``, in row blocks (threads)."""
    h = x.shape[0]
    out = np.empty((h, tiles.shape[0]), dtype=x.dtype)
    block = max(1, _BLOCK_ELEMENTS // out.shape[1])

    def task(a: int, b: int) -> None:
        for i in range(a, b):
            rows = slice(i * block, min((i + 1) * block, h))
            tiles.apply_cols(x[rows], out[rows])

    _run(task, -(-h // block), out.size, threads)
    return out


class _TwoPasses:
    """``U · X · Vᵀ`` in two whole passes, the cheaper order first (the reductions: for them
    the two passes measured faster than the strips of :class:`_Strips`)."""

    def __init__(self, rows: sp.csr_array, cols: sp.csr_array, tile: int):
        self.rows, self.cols, self.tile = rows, cols, tile
        self._tiles: dict[int, BandTiles] = {}  # channels -> tiles of kron(cols, I_c)
        self.height = BandTiles(rows, tile)

    def width(self, channels: int) -> BandTiles:
        if channels not in self._tiles:
            self._tiles[channels] = _channel_tiles(self.cols, channels, self.tile)
        return self._tiles[channels]

    def __call__(
        self, image: np.ndarray, out: np.ndarray | None, combine: Combine | None, threads: int
    ) -> np.ndarray:
        h, w = image.shape[:2]
        c = image.shape[2] if image.ndim == 3 else 1
        h_out, w_out = self.rows.shape[0], self.cols.shape[0]
        # Multiply-adds per output of each pass's dense tiles; the width pass pays for its
        # strided reads (_WIDTH_COST) and, with channels interleaved, for the kron with I_c.
        rows, cols = self.height, self.width(c)
        cost_h, cost_w = rows.macs, cols.macs * _WIDTH_COST
        height_first = cost_h * h_out * w + cost_w * h_out * w_out
        width_first = cost_w * h * w_out + cost_h * h_out * w_out
        x = np.ascontiguousarray(image).reshape(h, w * c)
        if height_first <= width_first:
            y = width_pass(height_pass(x, rows, threads), cols, threads)
        else:
            y = height_pass(width_pass(x, cols, threads), rows, threads)
        return _finish(y.reshape(h_out, w_out, *image.shape[2:]), out, combine)


# --------------------------------------------------------------------------- strips


class _Strips:
    """``Y = Σ_t U_t X V_tᵀ`` through dense band tiles, strip by strip of output rows.

    The width pass of every term, on just the input rows the strip needs, writes one slot
    of a small array ``Z (rows, R, m_w·c)``; read as ``(rows·R, m_w·c)``, its rows are
    ordered (input row, term), so the height factors interleaved the same way,
    ``U_int[i, k·R + t] = U_t[i, k]``, form one banded matrix whose height pass applies every
    term *and* sums them. Both passes are BLAS products over band tiles (:class:`BandTiles`);
    ``Z`` stays in cache, ``combine`` is applied to the strip while it is there too, and the
    strips are split over the threads. With one term it is a plain separable operator (the
    Laplacian pyramid's expansions); the steerable pyramid's stages have several.
    """

    def __init__(self, rows: list[sp.csr_array], cols: list[sp.csr_array], tile: int):
        self.terms = len(rows)
        self.shape_out = (rows[0].shape[0], cols[0].shape[0])
        picks = [sp.csr_array(np.eye(1, self.terms, t)) for t in range(self.terms)]
        interleaved = sum(sp.kron(r, e, format="csr") for r, e in zip(rows, picks))
        self.tile = tile
        self.height = BandTiles(sp.csr_array(interleaved).astype(rows[0].dtype), tile)
        self.cols = cols
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
        self, image: np.ndarray, out: np.ndarray | None, combine: Combine | None, threads: int
    ) -> np.ndarray:
        h, w = image.shape[:2]
        c = image.shape[2] if image.ndim == 3 else 1
        m, m_w = self.shape_out
        widths, strips = self._plan(c)
        x = np.ascontiguousarray(image).reshape(h, w * c)
        # out is C-contiguous (checked), so the reshape is a view.
        result = np.empty((m, m_w * c), image.dtype) if out is None else out.reshape(m, m_w * c)
        # out may be combine's base itself (an accumulation): then a strip is made apart.
        apart = False
        if combine is not None:
            ufunc, base = combine
            base = np.ascontiguousarray(base).reshape(m, m_w * c)
            apart = out is not None and np.shares_memory(out, base)

        def task(a: int, b: int) -> None:
            for out_rows, in_rows, payload in strips[a:b]:
                rows = x[in_rows]
                z = np.empty((len(rows), self.terms, m_w * c), image.dtype)
                for t, tiles in enumerate(widths):
                    tiles.apply_cols(rows, z[:, t])
                z = z.reshape(-1, m_w * c)
                n = out_rows.stop - out_rows.start
                target = np.empty((n, m_w * c), image.dtype) if apart else result[out_rows]
                if isinstance(payload, tuple):
                    k0, k1, offset = payload
                    self.height.multiply_rows(z, (out_rows, k0, k1), target, offset)
                else:
                    np.matmul(payload, z, out=target)
                if combine is not None:
                    ufunc(base[out_rows], target, out=result[out_rows])

        _run(task, len(strips), result.size, threads)
        return result.reshape((m, m_w, *image.shape[2:])) if out is None else out


# --------------------------------------------------------------------------- the engines


class TiledEngine:
    """Applies a :class:`Separable` through dense band tiles, threaded (module docstring)."""

    name = "separable"

    @staticmethod
    def _prepare(op: Separable, dtype: np.dtype) -> _TwoPasses | _Strips:
        """The operator's tiles for ``dtype``, made on first use and kept on the operator."""
        key = ("tiled", dtype.str)
        if key not in op.prepared:
            rows = [m.astype(dtype) for m in op.rows]
            cols = [m.astype(dtype) for m in op.cols]
            grows = any(m > n for m, n in zip(op.shape_out, op.shape_in))
            if op.terms == 1 and not grows:
                op.prepared[key] = _TwoPasses(rows[0], cols[0], _TILE["reduce"])
            else:
                tile = _TILE["expand"] if op.terms == 1 else _TILE["terms"]
                op.prepared[key] = _Strips(rows, cols, tile)
        return op.prepared[key]

    def apply(
        self,
        op: Separable,
        x: np.ndarray,
        *,
        out: np.ndarray | None = None,
        combine: Combine | None = None,
        threads: int | None = None,
    ) -> np.ndarray:
        """``Y = Σ_t U_t X V_tᵀ``, or ``ufunc(base, Y)`` with ``combine = (ufunc, base)``.

        Parameters
        ----------
        op : Separable
            The operator, acting on ``(h, w)``.
        x : ndarray, shape (h, w) or (h, w, c), float32 or float64
            The input; the result has its dtype.
        out : ndarray, optional
            C-contiguous, of the result's shape and dtype, to write the result to; it may
            be ``combine``'s base (``combine=(np.add, acc), out=acc`` adds ``Y`` to ``acc``),
            but must not overlap ``x``.
        combine : (ufunc, ndarray), optional
            ``(np.subtract, g)`` returns ``g - Y``, ``(np.add, g)`` returns ``g + Y``.
        threads : int, optional
            Threads to split the work over; default
            :func:`pyramids.parallel.default_threads`. The result does not depend on it.

        Returns
        -------
        ndarray, shape (m_h, m_w) or (m_h, m_w, c)
            ``out`` if given.
        """
        _check_call(op, x, out, combine)
        return self._prepare(op, x.dtype)(x, out, combine, resolve_threads(threads))


class MatrixEngine:
    """Applies a :class:`Separable` as written: ``Σ_t (U_t X) V_tᵀ`` by ``scipy.sparse``.

    The reference for :class:`TiledEngine`: each term is a sparse product along the height
    then one along the width, and the terms are summed in order. Single-threaded; the same
    :meth:`apply` as :class:`TiledEngine`.
    """

    name = "matrix"

    def apply(
        self,
        op: Separable,
        x: np.ndarray,
        *,
        out: np.ndarray | None = None,
        combine: Combine | None = None,
        threads: int | None = None,
    ) -> np.ndarray:
        """As :meth:`TiledEngine.apply` (``threads`` is checked and otherwise unused)."""
        shape = _check_call(op, x, out, combine)
        resolve_threads(threads)
        (h, w), (m_h, m_w) = op.shape_in, op.shape_out
        c = x.shape[2] if x.ndim == 3 else 1
        y = np.zeros((m_h, m_w, c), x.dtype)
        for u, v in zip(op.rows, op.cols):
            z = u.astype(x.dtype) @ x.reshape(h, w * c)  # (m_h, w·c)
            z = z.reshape(m_h, w, c).transpose(1, 0, 2).reshape(w, m_h * c)
            y += (v.astype(x.dtype) @ z).reshape(m_w, m_h, c).transpose(1, 0, 2)
        return _finish(y.reshape(shape), out, combine)


#: The kernels' ``checks`` when no finite check is asked for: empty, one per dtype.
_NO_CHECKS = {np.dtype(t).char: np.empty(0, t) for t in (np.float32, np.float64)}


def collapse_by_level(
    apply: Callable,
    apply_finite: Callable,
    ops: list[Separable],
    bases: list[np.ndarray],
    x: np.ndarray,
    threads: int,
    check: bool,
) -> tuple[np.ndarray, bool]:
    """The collapse ``g_K = x``, ``g_k = bases[k] + F_k g_{k+1}`` of the expansions ``ops``
    (``F_k``, finest first; at least one), one pass per level: ``g_0`` (a new array) and,
    with ``check``, whether it is finite (else ``True``).

    ``apply(op, x, combine, threads)`` makes a pass and ``apply_finite`` a pass with its
    finite check (the compiled kernel's, made as it writes each row, or a pass of its own);
    ``x`` and ``bases`` are arrays the build has checked, in one dtype.
    """
    g = x
    for op, base in zip(reversed(ops[1:]), reversed(bases[1:])):
        g = apply(op, g, (np.add, base), threads)
    if check:
        return apply_finite(ops[0], g, (np.add, bases[0]), threads)
    return apply(ops[0], g, (np.add, bases[0]), threads), True


#: The most levels :meth:`CompiledEngine.collapse` makes in one compiled call: the bands
#: travel as one tuple of this length, padded with an empty array, so that one compiled
#: variant serves every count. More levels need a side of 2¹⁶ pixels; the levels beyond
#: these (the coarsest) are made one call each.
_CHAIN_LEVELS = 16
_CHAIN_PADDING = {
    np.dtype(t).char: [np.empty((0, 0), t)] * _CHAIN_LEVELS for t in (np.float32, np.float64)
}


def _kernel_array(a: np.ndarray) -> np.ndarray:
    """``a``, or a copy where it is not C-contiguous, writeable and aligned: the one kind
    of array the kernels are compiled for."""
    flags = a.flags
    if flags.c_contiguous and flags.writeable and flags.aligned:
        return a
    return np.array(a)


class CompiledEngine:
    """Applies a :class:`Separable` with a compiled kernel, row by row (docs/design.md §9).

    :func:`pyramids.compiled.apply_rows` (numba) makes each output row from the sparse
    factors' own entries, in their order, so the result equals :class:`MatrixEngine`'s bit
    for bit; ``np.subtract`` and ``np.add`` combines are applied in the same loop. Rows are
    split over ``threads`` threads by :func:`pyramids.parallel.run_parts` (the kernel
    releases the GIL), so no numba thread setting is touched. numba is imported on first
    use; :func:`default_engine` falls back to ``'separable'`` where it cannot be.
    """

    name = "compiled"
    _apply_rows = None
    _reduce_rows = None
    _expand_rows = None
    _expand_levels = None
    _reduce_levels = None

    def _kernels(self) -> tuple:
        """The kernels of :mod:`pyramids.compiled` (``apply_rows``, ``reduce_rows``,
        ``expand_rows``, ``expand_levels``, ``reduce_levels``), imported on first use
        (numba with them)."""
        if self._apply_rows is None:
            from . import compiled

            self._apply_rows, self._reduce_rows = compiled.apply_rows, compiled.reduce_rows
            self._expand_rows, self._expand_levels = compiled.expand_rows, compiled.expand_levels
            self._reduce_levels = compiled.reduce_levels
        return (
            self._apply_rows,
            self._reduce_rows,
            self._expand_rows,
            self._expand_levels,
            self._reduce_levels,
        )

    @staticmethod
    def _prepare(op: Separable, dtype: np.dtype):
        """The factors packed for the kernels in ``dtype``, and which kernel applies them:
        1 :func:`pyramids.compiled.reduce_rows` (one term whose width factor reads every
        second pixel in its interior: a reduction), 2 :func:`pyramids.compiled.expand_rows`
        (one term, period 2, step 1, 3 and 2 taps: the expansion of a 5-tap kernel), 0
        :func:`pyramids.compiled.apply_rows` (any other); made once, kept on ``op``."""
        key = ("compiled", dtype.str)
        packed = op.prepared.get(key)
        if packed is None:
            from .compiled import factors

            packed = factors(list(op.rows), list(op.cols), dtype)
            period, step, q0, q1 = (int(v) for v in packed.v_band[0])
            kind = 0  # apply_rows
            if op.terms == 1 and q1 > q0:
                lengths = tuple(int(n) for n in packed.v_len[0])
                if (period, step) == (1, 2):
                    kind = 1  # reduce_rows
                elif (period, step, lengths) == (2, 1, (3, 2)):
                    kind = 2  # expand_rows
            packed = op.prepared[key] = (packed, kind)
        return packed

    def apply(
        self,
        op: Separable,
        x: np.ndarray,
        *,
        out: np.ndarray | None = None,
        combine: Combine | None = None,
        threads: int | None = None,
    ) -> np.ndarray:
        """As :meth:`TiledEngine.apply`."""
        shape = _check_call(op, x, out, combine)
        if out is not None and not out.flags.writeable:
            raise ValueError("out must be writeable")
        threads = resolve_threads(threads)
        c = x.shape[2] if x.ndim == 3 else 1
        image = _kernel_array(x.reshape(op._shapes[0][0], -1))
        mode, base = 0, None
        fused = combine is not None and combine[0] in (np.subtract, np.add)
        if fused:
            base = np.asarray(combine[1])
            fused = base.dtype == x.dtype
        if fused:
            mode = 1 if combine[0] is np.subtract else 2
        else:
            base = None  # numpy's combine, after the kernel: the kernel never sees its base
        result = out if out is not None and (fused or combine is None) else None
        if result is None:
            result = np.empty(shape, x.dtype)
        self._rows(op, image, c, result, mode, base, threads)
        if combine is not None and not fused:
            return _finish(result, out, combine)
        return result

    def run(
        self, op: Separable, x: np.ndarray, combine: Combine | None, threads: int
    ) -> np.ndarray:
        """:meth:`apply` without its checks, for the passes of a build (docs/design.md §9).

        ``x`` (float32 or float64, of ``op``'s input shape) and the base of ``combine``
        (``np.subtract`` or ``np.add``; of the output's shape and ``x``'s dtype) are
        arrays the build itself has checked or made; ``threads`` is resolved. Returns a
        new array.
        """
        return self._run(op, x, combine, threads)

    def run_finite(
        self, op: Separable, x: np.ndarray, combine: Combine, threads: int
    ) -> tuple[np.ndarray, bool]:
        """:meth:`run` with a ``combine``, and whether every value of the result is finite.

        The kernel tests each output row as it writes it, from the cache
        (:func:`pyramids.compiled.apply_rows`' ``checks``), so that the finite check of a
        collapse costs no pass of its own over the image (docs/design.md §9.1).
        """
        checks = np.empty(op._shapes[1][0], x.dtype)
        result = self._run(op, x, combine, threads, checks)
        return result, bool(np.isfinite(checks).all())

    def _run(self, op, x, combine, threads, checks=None) -> np.ndarray:
        """:meth:`run`, with the kernels' row ``checks`` where given (a combine only)."""
        c = x.shape[2] if x.ndim == 3 else 1
        image = _kernel_array(x.reshape(op._shapes[0][0], -1))
        result = np.empty((*op._shapes[1], *x.shape[2:]), x.dtype)
        if combine is None:
            self._rows(op, image, c, result, 0, None, threads)
        else:
            mode = 1 if combine[0] is np.subtract else 2
            self._rows(op, image, c, result, mode, combine[1], threads, checks)
        return result

    def reduce_levels(self, ops: list[Separable], x: np.ndarray, threads: int) -> list[np.ndarray]:
        """``[G_1 x, G_2 G_1 x, …]`` for the reductions ``ops`` (finest first), as
        :meth:`run` makes them level by level, bit for bit.

        Where no level is large enough to be split over threads, one compiled call makes
        the levels whose reduction has a kernel of its own (``reduce_rows``: all but the
        last few, where a side has shrunk to a few pixels;
        :func:`pyramids.compiled.reduce_levels`, into one buffer: each level is a view of
        it), without a Python call per level, and :meth:`run` the others.
        """
        c = x.shape[2] if x.ndim == 3 else 1
        first = ops[0]._shapes[1] if ops else (0, 0)
        chained = 0
        if ops and (threads == 1 or first[0] * first[1] * c < _COMPILED_THREAD_MIN_ELEMENTS):
            key = ("compiled levels", len(ops), x.shape[2:], x.dtype.char)
            chain = ops[0].prepared.get(key)
            if chain is None:
                chain = ops[0].prepared[key] = self._reduce_chain(ops, x)
            chained, plan, shapes, size, stacked = chain
        levels, source = [], x
        if chained:
            image = _kernel_array(x.reshape(x.shape[0], -1))
            buffer = np.empty(size, x.dtype)
            (self._reduce_levels or self._kernels()[4])(image, c, buffer, plan, *stacked)
            levels = [buffer[a:b].reshape(shape) for a, b, shape in shapes]
            source = levels[-1]
        for op in ops[chained:]:
            levels.append(self.run(op, source, None, threads))
            source = levels[-1]
        return levels

    def _reduce_chain(self, ops: list[Separable], x: np.ndarray) -> tuple:
        """What :meth:`reduce_levels` keeps for ``ops`` and ``x``'s channels and dtype: how
        many leading levels ``reduce_rows`` makes, their plan (``(start, rows, values per
        row)``), their places in the buffer and shapes, the buffer's size, their factors."""
        from .compiled import stack_factors

        c = x.shape[2] if x.ndim == 3 else 1
        packs = [self._prepare(op, x.dtype) for op in ops]
        chained = next((k for k, (_, kind) in enumerate(packs) if kind != 1), len(ops))
        plan, shapes, start = np.zeros((chained, 3), np.int64), [], 0
        for k, op in enumerate(ops[:chained]):
            m_h, m_w = op._shapes[1]
            plan[k] = start, m_h, m_w * c
            shapes.append((start, start + m_h * m_w * c, (m_h, m_w, *x.shape[2:])))
            start += m_h * m_w * c
        stacked = stack_factors([pack for pack, _ in packs[:chained]]) if chained else None
        return chained, plan, shapes, start, stacked

    def collapse(
        self,
        ops: list[Separable],
        bases: list[np.ndarray],
        x: np.ndarray,
        threads: int,
        check: bool,
    ) -> tuple[np.ndarray, bool]:
        """:func:`collapse_by_level` with :meth:`run` and :meth:`run_finite`, bit for bit.

        Where no level is large enough to be split over threads, one compiled call
        (:func:`pyramids.compiled.expand_levels`) makes the levels whose expansion has a
        kernel of its own (``expand_rows``: the 5-tap kernels, all but the first few from
        the residual, where a side is a few pixels), up to :data:`_CHAIN_LEVELS` of them,
        without a Python call per level; :meth:`run` makes the others first.
        """
        c = x.shape[2] if x.ndim == 3 else 1
        first = ops[0]._shapes[1]
        chained = 0
        if threads == 1 or first[0] * first[1] * c < _COMPILED_THREAD_MIN_ELEMENTS:
            key = ("compiled collapse", len(ops), c, x.dtype.char)
            chain = ops[0].prepared.get(key)
            if chain is None:
                chain = ops[0].prepared[key] = self._expand_chain(ops, x.dtype, c)
            chained, plan, stacked = chain
        if not chained:
            return collapse_by_level(self.run, self.run_finite, ops, bases, x, threads, check)
        g = x
        for op, base in zip(reversed(ops[chained:]), reversed(bases[chained:])):
            g = self._run(op, g, (np.add, base), threads)
        rows = [_kernel_array(base if base.ndim == 2 else base.reshape(base.shape[0], -1))
                for base in bases[:chained]]  # fmt: skip
        rows += _CHAIN_PADDING[x.dtype.char][: _CHAIN_LEVELS - len(rows)]
        image = _kernel_array(g if g.ndim == 2 else g.reshape(g.shape[0], -1))
        expand_levels = self._expand_levels or self._kernels()[3]
        g, finite = expand_levels(image, tuple(rows), c, plan, check, *stacked)
        return (g if x.ndim == 2 else g.reshape(*first, *x.shape[2:])), finite

    def _expand_chain(self, ops: list[Separable], dtype: np.dtype, c: int) -> tuple:
        """What :meth:`collapse` keeps for ``ops``, ``c`` channels and ``dtype``: how many
        leading (finest) levels ``expand_rows`` makes (at most :data:`_CHAIN_LEVELS`;
        none where the finest cannot), their plan (``(rows, values per row)``) and
        factors."""
        from .compiled import stack_factors

        packs = [self._prepare(op, dtype) for op in ops]
        chained = next((k for k, (_, kind) in enumerate(packs) if kind != 2), len(ops))
        chained = min(chained, _CHAIN_LEVELS)
        plan = np.array([(op._shapes[1][0], op._shapes[1][1] * c) for op in ops[:chained]],
                        np.int64).reshape(chained, 2)  # fmt: skip
        stacked = stack_factors([pack for pack, _ in packs[:chained]]) if chained else None
        return chained, plan, stacked

    def _rows(
        self,
        op: Separable,
        image: np.ndarray,
        c: int,
        result: np.ndarray,
        mode: int,
        base: np.ndarray | None,
        threads: int,
        checks: np.ndarray | None = None,
    ) -> None:
        """``result`` (C-contiguous) ``= Y``, ``base - Y`` (mode 1) or ``base + Y`` (2) of
        ``image`` as ``(h, w·c)`` (C-contiguous, writeable, aligned), on ``threads``; with
        ``checks`` (one value per output row, and a mode 1 or 2), the finite check of every
        row as well (:func:`pyramids.compiled.apply_rows`)."""
        apply_rows = self._apply_rows or self._kernels()[0]
        packed, kind = op.prepared.get(("compiled", image.dtype.str)) or self._prepare(
            op, image.dtype
        )
        m_h = op._shapes[1][0]
        target = result.reshape(m_h, -1)
        base = target if base is None else _kernel_array(base.reshape(m_h, -1))
        if kind == 1 and mode == 0:  # a reduction, no combine: its own kernel
            reduce_rows = self._reduce_rows

            def task(a: int, b: int) -> None:
                reduce_rows(image, c, target, a, b, *packed)
        else:
            rows = self._expand_rows if kind == 2 else apply_rows
            if checks is None:
                checks = _NO_CHECKS[image.dtype.char]

            def task(a: int, b: int) -> None:
                rows(image, c, target, base, mode, checks, a, b, *packed)

        if threads == 1 or result.size < _COMPILED_THREAD_MIN_ELEMENTS:
            task(0, m_h)  # no thread, no BLAS
        else:
            run_parts(task, m_h, threads, hold_blas=False, in_caller=True)


#: The engines by name: ``'compiled'`` (numba, the default where it imports),
#: ``'separable'`` (tiled BLAS products, the fallback) and ``'matrix'`` (the reference).
ENGINES: dict[str, CompiledEngine | TiledEngine | MatrixEngine] = {
    "compiled": CompiledEngine(),
    "separable": TiledEngine(),
    "matrix": MatrixEngine(),
}

#: The environment variable that names the default engine (read on every call).
ENGINE_VAR = "PYRAMIDS_ENGINE"
_numba: list[bool] = []  # whether pyramids.compiled (numba) imports, found on first use


def default_engine() -> str:
    """The engine used where a call names none.

    ``$PYRAMIDS_ENGINE`` if set (read now, on every call; a name of :data:`ENGINES`), else
    ``'compiled'`` where numba imports (tried once, on the first call), else
    ``'separable'``.

    Raises
    ------
    ValueError
        If ``$PYRAMIDS_ENGINE`` names no engine.
    """
    named = os.environ.get(ENGINE_VAR, "").strip()
    if named:
        if named not in ENGINES:
            raise ValueError(f"${ENGINE_VAR} must be one of {', '.join(ENGINES)}; got {named!r}")
        return named
    if not _numba:
        try:
            import pyramids.compiled  # noqa: F401  (imports numba)

            _numba.append(True)
        except ImportError:
            _numba.append(False)
    return "compiled" if _numba[0] else "separable"


def get_engine(name: str | None = None) -> CompiledEngine | TiledEngine | MatrixEngine:
    """The engine called ``name`` (:data:`ENGINES`), :func:`default_engine` for ``None``;
    a ``ValueError`` for another name."""
    if name is None:
        name = default_engine()
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {name!r}")
    return ENGINES[name]


def apply(
    op: Separable,
    x: np.ndarray,
    *,
    out: np.ndarray | None = None,
    combine: Combine | None = None,
    threads: int | None = None,
    engine: str | None = None,
) -> np.ndarray:
    """Apply ``op`` to ``x`` with the engine called ``engine`` (default
    :func:`default_engine`), as :meth:`TiledEngine.apply` describes."""
    return get_engine(engine).apply(op, x, out=out, combine=combine, threads=threads)


def mix(
    arrays: list[np.ndarray], matrix: np.ndarray, *, threads: int | None = None
) -> list[np.ndarray]:
    """``out[i] = Σ_j matrix[i, j] arrays[j]`` for arrays of one shape and dtype.

    Row block by row block (in cache), the blocks split over ``threads`` threads; each
    block is one BLAS product, so the result does not depend on ``threads``.
    """
    threads = resolve_threads(threads)
    matrix = np.asarray(matrix, dtype=arrays[0].dtype)
    if matrix.ndim != 2 or matrix.shape[1] != len(arrays):
        raise ValueError(
            f"matrix must have one column per array ({len(arrays)}), got shape {matrix.shape}"
        )
    shape = arrays[0].shape
    flat = [a.reshape(shape[0], -1) for a in arrays]
    out = [np.empty_like(flat[0]) for _ in range(len(matrix))]
    rows = max(1, _STRIP_ELEMENTS // (len(arrays) * flat[0].shape[1]))

    def task(a: int, b: int) -> None:
        for start in range(a * rows, min(b * rows, shape[0]), rows):
            block = np.stack([f[start : start + rows] for f in flat])
            mixed = np.tensordot(matrix, block, 1)
            for o, m in zip(out, mixed):
                o[start : start + rows] = m

    _run(task, -(-shape[0] // rows), flat[0].size * len(out), threads)
    return [o.reshape(shape) for o in out]

"""Gaussian and Laplacian pyramids of images larger than memory, on Dask (docs/design.md §7).

The functions here mirror :func:`pyramids.gaussian_pyramid`, :func:`pyramids.laplacian_pyramid`,
:func:`pyramids.reconstruct_laplacian` and :func:`pyramids.blend`, but take a
``dask.array.Array`` (or any array, wrapped into one) and return lazy Dask arrays, one per
level: nothing is computed until the caller computes, stores or writes them
(:mod:`pyramids.ngff` writes them as an OME-Zarr multiscale). It is a parallel API rather
than a dispatch from the in-memory functions, so that those keep returning their pyramid
objects and ``dask`` stays an optional dependency (``pip install "pyramids-convnet[big]"``);
importing this module needs it.

How a level is cut into blocks (§7): every output block of a reduction (or an expansion)
applies the *rows of the whole image's operator* that make it, ``G[a:b]`` with the columns
it reads, to exactly the input samples those rows read, gathered from as many input blocks
as they touch. So the boundary mode acts at the image's true border only (a border block
gets the folded border rows, an interior block the plain taps; with ``periodic`` a border
block reads the far side too), the halo is whatever the operator reads (``r`` samples per
reduction, ``⌈r/2⌉`` coarse samples per expansion, per level) and any chunking works, blocks
smaller than the halo included. Each block goes through :func:`pyramids.engine.apply`.

Exactness (§7). With the compiled engine (the default where numba imports) or the matrix
engine the result equals the in-memory pyramid bit for bit, in float64 and float32: those
engines make each output from its sparse row's entries, added in their stored order to a
zero start, whatever the extent of the array, and a block's submatrix keeps each row's
entries, values and order (the operators are canonical CSR, so keeping ascending columns
keeps the order); the band's ``g - F c``, the collapse's ``L + F g`` and the blend's
mixing are the same operations on the same values. The engine is the one
:func:`pyramids.engine.default_engine` names where the block runs (``$PYRAMIDS_ENGINE``
on that worker). The numpy ``'separable'`` engine (the fallback without numba) sums an
output's taps in BLAS tiles whose order depends on where the tiles fall in the block, so
its blocks differ from the whole image by an ulp or two; :func:`chunking_error_bound`
bounds that difference. The tests assert equality for the first two engines and the bound
for the third, for every chunking.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from .arrays import as_float_image
from .engine import Separable, apply
from .kernels import DEFAULT_KERNEL, KernelLike, resolve_kernel
from .laplacian import _check_chain, _check_levels, _coefficient_names, _reduced, _row_norm
from .operators import Boundary, blur_downsample_matrix, check_boundary, upsample_blur_matrix
from .parallel import blas_limited

try:
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("pyramids.chunked needs dask: pip install 'pyramids-convnet[big]'") from exc

__all__ = [
    "ChunkedLaplacian",
    "blend",
    "chunking_error_bound",
    "float_dtype_of",
    "gaussian_pyramid",
    "laplacian_pyramid",
    "reconstruct_laplacian",
]

#: Block side used when an in-memory array is wrapped and no ``chunks`` is given.
DEFAULT_CHUNK = 1024
#: Each level's blocks have half the sides of the level before, down to this side (or the
#: first level's, if smaller): a block then feeds mostly one block of the next level, so
#: few blocks of each level wait in memory for their neighbours (docs/design.md §7).
MIN_CHUNK = 256


class ChunkedLaplacian(NamedTuple):
    """A Laplacian pyramid as lazy Dask arrays: ``bands`` (finest first) and ``residual``."""

    bands: list
    residual: da.Array


def float_dtype_of(dtype: np.dtype | type | str) -> np.dtype:
    """The float dtype :func:`pyramids.arrays.as_float_image` gives an image of ``dtype``.

    Integers and booleans become float64, float16 and float32 float32, float64 stays.

    Raises
    ------
    TypeError
        For a dtype that is not real and numeric.
    """
    dt = np.dtype(dtype)
    if dt.kind == "b" or np.issubdtype(dt, np.integer):
        return np.dtype(np.float64)
    if dt.kind == "f" and dt.itemsize in (2, 4):
        return np.dtype(np.float32)
    if dt.kind == "f" and dt.itemsize == 8:
        return np.dtype(np.float64)
    raise TypeError(f"image must be a real numeric array, got dtype {dt}")


def _regular(n: int, size: int) -> tuple[int, ...]:
    """Chunks of ``size`` covering ``n`` samples (the last one shorter)."""
    return (size,) * (n // size) + ((n % size,) if n % size else ())


class _Source(NamedTuple):
    """An image as given, in blocks (one along channels), and what its levels are made of."""

    raw: da.Array  # the samples as given: integer images are converted block by block
    dtype: np.dtype  # their float dtype (float_dtype_of)
    target: tuple[int, int]  # block sides of level 0

    @property
    def image(self) -> da.Array:
        """The image as floats (:func:`pyramids.arrays.as_float_image`, block by block)."""
        if self.raw.dtype == self.dtype:
            return self.raw
        meta = np.empty((0,) * self.raw.ndim, self.dtype)
        return self.raw.map_blocks(_float_block, dtype=self.dtype, meta=meta)


def _source(image: ArrayLike, chunks: int | None, name: str) -> _Source:
    """``image`` as a Dask array with one block along channels (checked, not converted)."""
    if chunks is not None and (
        isinstance(chunks, bool) or not isinstance(chunks, int | np.integer) or chunks < 1
    ):
        raise ValueError(f"chunks must be a positive integer or None, got {chunks!r}")
    x = image if isinstance(image, da.Array) else da.asarray(np.asarray(image))
    if x.ndim not in (2, 3):
        raise ValueError(f"{name} must have shape (h, w) or (h, w, c), got shape {x.shape}")
    if any(np.isnan(s) for s in x.shape):
        raise ValueError(f"{name} must have a known shape, got {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    if not isinstance(image, da.Array) and chunks is None:
        chunks = DEFAULT_CHUNK
    dtype = float_dtype_of(x.dtype)
    if chunks is not None:
        # no wider than the image: dask cannot size a block of more than 2**63 samples
        side = (min(int(chunks), x.shape[0]), min(int(chunks), x.shape[1]))
        x = x.rechunk((*side, *(-1,) * (x.ndim - 2)))
    elif x.ndim == 3:
        x = x.rechunk({2: -1})
    return _Source(x, dtype, (x.chunks[0][0], x.chunks[1][0]))


def _float_block(block: np.ndarray) -> np.ndarray:
    return as_float_image(block)


def _halved(target: tuple[int, int]) -> tuple[int, int]:
    """Block sides of the next level: half, but not below :data:`MIN_CHUNK` (or the first)."""
    return tuple(max(t // 2, min(t, MIN_CHUNK)) for t in target)


# --------------------------------------------------------------------------- blocks


class _AxisPlan(NamedTuple):
    """How the output blocks along one axis read the input blocks."""

    inputs: list[list[int]]  # input block indices each output block reads, ascending
    local: list[slice | np.ndarray]  # the samples it reads, in the concatenation of those
    matrices: list[sp.csr_array]  # the rows of the operator it applies, on those samples


def _axis_plan(
    matrix: sp.csr_array, in_chunks: Sequence[int], out_chunks: Sequence[int]
) -> _AxisPlan:
    """Cut the 1-D operator ``matrix`` (output × input) along its output blocks."""
    starts = np.cumsum((0, *in_chunks))
    sizes = np.asarray(in_chunks)
    known: dict[tuple, sp.csr_array] = {}  # one object per distinct block of rows
    plan = _AxisPlan([], [], [])
    a = 0
    for size in out_chunks:
        rows = matrix[a : a + size]
        a += size
        # ascending, as the operators' rows are stored (canonical CSR): each row of the
        # submatrix keeps its entries in the whole matrix's order, so an engine that sums
        # in stored order makes the block's outputs bit for bit as the whole image's
        used = np.unique(rows.indices)
        if used.size == 0:
            used = np.zeros(1, np.int64)
        block = sp.csr_array(rows[:, used])
        owner = np.searchsorted(starts, used, side="right") - 1
        chosen = np.unique(owner)
        offsets = np.cumsum((0, *sizes[chosen]))
        local = offsets[np.searchsorted(chosen, owner)] + used - starts[owner]
        contiguous = local[-1] - local[0] + 1 == local.size
        key = (block.shape, block.data.tobytes(), block.indices.tobytes(), block.indptr.tobytes())
        plan.inputs.append([int(q) for q in chosen])
        plan.local.append(slice(int(local[0]), int(local[-1]) + 1) if contiguous else local)
        plan.matrices.append(known.setdefault(key, block))
    return plan


def _block(
    parts: list[list[np.ndarray]],
    rows: slice | np.ndarray,
    cols: slice | np.ndarray,
    op: Separable,
    base: np.ndarray | None,
    ufunc: np.ufunc | None,
) -> np.ndarray:
    """One output block: gather the samples it reads, apply ``op`` (and ``ufunc(base, ·)``)."""
    x = np.concatenate([np.concatenate(row, axis=1) for row in parts], axis=0)
    # an integer image is converted here, so that its float copy is never kept
    x = as_float_image(np.ascontiguousarray(x[rows][:, cols]))
    if base is not None:
        base = as_float_image(base)
    with blas_limited():  # Dask runs the blocks in parallel: one thread each
        return apply(op, x, combine=None if base is None else (ufunc, base), threads=1)


def _apply_blocks(
    x: da.Array,
    rows: sp.csr_array,
    cols: sp.csr_array,
    out_chunks: tuple[tuple[int, ...], tuple[int, ...]],
    base: da.Array | None = None,
    ufunc: np.ufunc | None = None,
    label: str = "pyramid",
    dtype: np.dtype | None = None,
) -> da.Array:
    """``rows · X · colsᵀ`` (or ``ufunc(base, ·)`` of it) as a Dask array of ``out_chunks``."""
    colour = (0,) * (x.ndim - 2)
    plan_h = _axis_plan(rows, x.chunks[0], out_chunks[0])
    plan_w = _axis_plan(cols, x.chunks[1], out_chunks[1])
    if base is not None:
        base = base.rechunk((*out_chunks, *(-1,) * (x.ndim - 2)))
    token = tokenize(x.name, None if base is None else base.name, rows, cols, out_chunks, ufunc)
    name = f"{label}-{token}"
    ops: dict[tuple[int, int], Separable] = {}
    dsk = {}
    for i in range(len(out_chunks[0])):
        for j in range(len(out_chunks[1])):
            u, v = plan_h.matrices[i], plan_w.matrices[j]
            op = ops.setdefault((id(u), id(v)), Separable((u,), (v,)))
            parts = [
                [(x.name, qi, qj, *colour) for qj in plan_w.inputs[j]] for qi in plan_h.inputs[i]
            ]
            base_key = None if base is None else (base.name, i, j, *colour)
            dsk[(name, i, j, *colour)] = (
                _block,
                parts,
                plan_h.local[i],
                plan_w.local[j],
                op,
                base_key,
                ufunc,
            )
    dependencies = [x] if base is None else [x, base]
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=dependencies)
    chunks = (*out_chunks, *x.chunks[2:])
    dtype = x.dtype if dtype is None else dtype
    return da.Array(graph, name, chunks, meta=np.empty((0,) * x.ndim, dtype))


def _reduce(
    g: da.Array, weights: np.ndarray, boundary: str, target: tuple[int, int], dtype: np.dtype
) -> da.Array:
    h, w = g.shape[:2]
    out = (_regular(_reduced(h), target[0]), _regular(_reduced(w), target[1]))
    rows = blur_downsample_matrix(h, weights, boundary)
    cols = blur_downsample_matrix(w, weights, boundary)
    return _apply_blocks(g, rows, cols, out, label="reduce", dtype=dtype)


def _expand(
    coarse: da.Array, base: da.Array, weights: np.ndarray, boundary: str, ufunc: np.ufunc
) -> da.Array:
    """``ufunc(base, F coarse)``, in ``base``'s blocks (``base`` has the fine shape)."""
    h, w = base.shape[:2]
    rows = upsample_blur_matrix(h, weights, boundary)
    cols = upsample_blur_matrix(w, weights, boundary)
    label = "band" if ufunc is np.subtract else "collapse"
    return _apply_blocks(coarse, rows, cols, base.chunks[:2], base, ufunc, label, coarse.dtype)


# --------------------------------------------------------------------------- pyramids


def gaussian_pyramid(
    image: ArrayLike,
    levels: int | None = None,
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
    *,
    chunks: int | None = None,
) -> list:
    """Gaussian pyramid ``g_0 = x``, ``g_{k+1} = G g_k`` as lazy Dask arrays (§2, §7).

    Parameters
    ----------
    image : dask.array.Array or array_like, shape (h, w) or (h, w, c)
        Grey or channels-last image, any dtype :func:`pyramids.gaussian_pyramid` takes
        (integers scaled to [0, 1] by their dtype's maximum, as float64). An array that is
        not a Dask array is wrapped in blocks of ``chunks`` (default 1024).
    levels, kernel, boundary
        As for :func:`pyramids.gaussian_pyramid`.
    chunks : int, optional
        Block side of level 0 (default: the image's own blocks). Each coarser level has
        blocks of half the sides of the level before, down to 256 (or level 0's, if less).

    Returns
    -------
    list of dask.array.Array
        ``levels + 1`` lazy arrays, level ``k`` of shape ``(ceil(h/2**k), ceil(w/2**k)[, c])``,
        float (float64 for integer images). Each equals the in-memory level bit for bit
        with the compiled or matrix engine, to within :func:`chunking_error_bound` with the
        separable one (module docstring).

    Examples
    --------
    >>> import dask.array as da
    >>> pyr = gaussian_pyramid(da.ones((100, 70), chunks=32), levels=2)
    >>> [g.shape for g in pyr], pyr[1].chunks
    ([(100, 70), (50, 35), (25, 18)], ((32, 18), (32, 3)))
    >>> float(pyr[2].sum().compute())
    450.0
    """
    source = _source(image, chunks, "image")
    check_boundary(boundary)
    weights = resolve_kernel(kernel)
    levels = _check_levels(levels, source.raw.shape, weights)
    return _gaussian_in(source, levels, weights, boundary)


def laplacian_pyramid(
    image: ArrayLike,
    levels: int | None = None,
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
    *,
    chunks: int | None = None,
) -> ChunkedLaplacian:
    """Laplacian pyramid ``L_k = g_k - F_k g_{k+1}``, residual ``g_K``, lazily (§2, §7).

    Parameters
    ----------
    image, levels, kernel, boundary, chunks
        As for :func:`gaussian_pyramid`.

    Returns
    -------
    ChunkedLaplacian
        ``bands`` (finest first; band ``k`` in the blocks of Gaussian level ``k``) and
        ``residual``, lazy Dask arrays of the image's float dtype. Each equals the
        in-memory coefficient bit for bit with the compiled or matrix engine, to within
        :func:`chunking_error_bound` with the separable one (module docstring).
    """
    source = _source(image, chunks, "image")
    check_boundary(boundary)
    weights = resolve_kernel(kernel)
    levels = _check_levels(levels, source.raw.shape, weights)
    return _laplacian_in(source, levels, weights, boundary)


def reconstruct_laplacian(
    bands: Sequence,
    residual,
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
) -> da.Array:
    """Collapse Laplacian coefficients lazily: ``g_K = residual``, ``g_k = L_k + F g_{k+1}``.

    Parameters
    ----------
    bands : sequence of dask.array.Array or array_like
        Band-pass images, finest first, shapes chaining as for
        :func:`pyramids.reconstruct_laplacian`.
    residual : dask.array.Array or array_like
    kernel, boundary
        Those the pyramid was built with.

    Returns
    -------
    dask.array.Array
        The image, in the blocks of ``bands[0]`` and the common float dtype of the
        coefficients: :func:`pyramids.reconstruct_laplacian` of the same coefficients,
        bit for bit with the compiled or matrix engine. Its error against the image is
        bounded by :func:`pyramids.reconstruction_error_bound` with any engine (that bound
        holds for any order of summation, so for the chunked analysis and collapse too).
    """
    check_boundary(boundary)
    weights = resolve_kernel(kernel)
    g = _source(residual, None, "residual").image
    layers = [_source(b, None, f"bands[{k}]").image for k, b in enumerate(bands)]
    _check_chain([*layers, g], _coefficient_names(len(layers)))
    dtype = np.result_type(g.dtype, *(b.dtype for b in layers))
    g = g.astype(dtype)
    for band in reversed(layers):
        g = _expand(g, band.astype(dtype), weights, boundary, np.add)
    return g


def _check_mask_block(block: np.ndarray) -> np.ndarray:
    if block.size and (block.min() < 0.0 or block.max() > 1.0):
        low, high = float(block.min()), float(block.max())
        raise ValueError(f"mask values must lie in [0, 1], got a block with range [{low}, {high}]")
    return block


def blend(
    a: ArrayLike,
    b: ArrayLike,
    mask: ArrayLike,
    levels: int | None = None,
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
    *,
    chunks: int | None = None,
) -> da.Array:
    """Laplacian blend of ``a`` and ``b`` under ``mask``, lazily (§3, §7).

    The same computation as :func:`pyramids.blend`, level by level in blocks: the pyramids
    of ``a``, ``b`` and the mask, the mix ``GM·LA + (1 - GM)·LB`` and the collapse. The mask
    is checked (values in [0, 1]) block by block when the result is computed.

    Parameters
    ----------
    a, b : dask.array.Array or array_like, shape (h, w) or (h, w, c)
    mask : dask.array.Array or array_like, shape (h, w) or (h, w, c)
    levels, kernel, boundary
        As for :func:`pyramids.blend`.
    chunks : int, optional
        As for :func:`gaussian_pyramid`; ``b`` and ``mask`` take ``a``'s blocks.

    Returns
    -------
    dask.array.Array, shape of ``a``
        In the common float dtype of ``a`` and ``b``: :func:`pyramids.blend`'s result, bit
        for bit with the compiled or matrix engine (module docstring).
    """
    source = _source(a, chunks, "a")
    x, y = source.image, _source(b, chunks, "b").image
    if x.shape != y.shape:
        raise ValueError(f"a and b must have the same shape, got {x.shape} and {y.shape}")
    m = _source(mask, None, "mask").image
    if m.shape != x.shape and m.shape != x.shape[:2]:
        allowed = f"{x.shape[:2]} or {x.shape}" if x.ndim == 3 else f"{x.shape}"
        raise ValueError(f"mask must have shape {allowed} to match the images, got {m.shape}")
    check_boundary(boundary)
    weights = resolve_kernel(kernel)
    levels = _check_levels(levels, x.shape, weights)
    dtype = np.result_type(x.dtype, y.dtype)
    x = x.astype(dtype)
    y = y.rechunk(x.chunks).astype(dtype)
    m = m.map_blocks(_check_mask_block, dtype=m.dtype)
    m = m.rechunk((*x.chunks[:2], *m.chunks[2:])).astype(dtype)
    la = _laplacian_in(_Source(x, dtype, source.target), levels, weights, boundary)
    lb = _laplacian_in(_Source(y, dtype, source.target), levels, weights, boundary)
    gm = _gaussian_in(_Source(m, dtype, source.target), levels, weights, boundary)
    if boundary == "zero":
        # normalised convolution, as pyramids.blend (docs/design.md §3)
        ones = da.ones(m.shape[:2], dtype=dtype, chunks=m.chunks[:2])
        norm = _gaussian_in(_Source(ones, dtype, source.target), levels, weights, boundary)
        gm = [g / (o if g.ndim == 2 else o[..., None]) for g, o in zip(gm, norm)]
    if m.ndim == 2 and x.ndim == 3:
        gm = [g[..., None] for g in gm]
    bands = [g * pa + (1 - g) * pb for g, pa, pb in zip(gm, la.bands, lb.bands)]
    residual = gm[-1] * la.residual + (1 - gm[-1]) * lb.residual
    g = residual
    for band in reversed(bands):
        g = _expand(g, band, weights, boundary, np.add)
    return g


def _gaussian_in(source: _Source, levels: int, weights, boundary) -> list:
    """The levels; level 1 is reduced from the samples as given (converted block by block)."""
    pyramid, g, target = [source.image], source.raw, source.target
    for _ in range(levels):
        target = _halved(target)
        g = _reduce(g, weights, boundary, target, source.dtype)
        pyramid.append(g)
    return pyramid


def _laplacian_in(source: _Source, levels: int, weights, boundary) -> ChunkedLaplacian:
    """The bands and residual; band 0 reads the samples as given (converted per block)."""
    bands, g, target = [], source.raw, source.target
    for _ in range(levels):
        target = _halved(target)
        coarse = _reduce(g, weights, boundary, target, source.dtype)
        bands.append(_expand(coarse, g, weights, boundary, np.subtract))
        g = coarse
    residual = g if levels else source.image
    return ChunkedLaplacian(bands, residual)


# --------------------------------------------------------------------------- error bound


def chunking_error_bound(
    shape: Sequence[int],
    levels: int | None = None,
    kernel: KernelLike = DEFAULT_KERNEL,
    boundary: Boundary = "reflect",
    dtype: type | np.dtype | str = np.float64,
    scale: float = 1.0,
) -> tuple[list[float], list[float]]:
    """How far the chunked pyramid may lie from the in-memory one, level by level.

    Both compute the same sums. With the compiled and matrix engines they add each output's
    products in the same order, and the two are equal (the bound then holds trivially); with
    the numpy ``'separable'`` engine only the order differs (docs/design.md §7), and this
    bounds the difference. Notation of docs/design.md §8: ``u`` the unit roundoff,
    ``γ_s = s·u/(1 - s·u)``; for level ``k`` ``b_k = ‖G_k‖∞`` and ``a_k = ‖F_k‖∞`` (largest
    absolute row sums of the 2-D operators), ``q_k`` (``p_k``) the most nonzeros in a row
    of ``G_h`` plus of ``G_w`` (of ``F_h``, ``F_w``). A two-pass product in any order errs
    by at most ``γ_q·|G||X|`` (§8), so, with ``n_k`` bounding the in-memory level
    (``n_0 = scale``, ``n_{k+1} = (1 + γ_q) b_k n_k``) and ``δ_k`` the chunked level's
    distance to it (``δ_0 = 0``: level 0 is the same conversion of the same samples):

    - ``δ_{k+1} = b_k·((1 + γ_{q_k}) δ_k + 2 γ_{q_k} n_k)``: the chunked product of the
      chunked level against the in-memory product of the in-memory level;
    - a band ``L_k = fl(g_k - fl(F g_{k+1}))`` differs by at most
      ``λ_k = (1 + u) D_k + 2u ℓ_k``, with
      ``D_k = δ_k + a_k((1 + γ_{p_k}) δ_{k+1} + 2 γ_{p_k} n_{k+1})`` (the two exact
      differences) and ``ℓ_k = n_k + (1 + γ_{p_k}) a_k n_{k+1}`` (their size), the two
      subtractions each rounding by at most ``u`` times their result.

    Parameters
    ----------
    shape, levels, kernel, boundary, dtype, scale
        As for :func:`pyramids.reconstruction_error_bound` (``scale`` bounds ``max|x|``).

    Returns
    -------
    gaussian : list of float
        ``δ_0 … δ_K``, for the Gaussian levels (the Laplacian residual is ``δ_K``).
    bands : list of float
        ``λ_0 … λ_{K-1}``, for the Laplacian bands.
    """
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    weights = resolve_kernel(kernel)
    check_boundary(boundary)
    levels = _check_levels(levels, shape, weights)
    u = float(np.finfo(dt).eps) / 2

    def gamma(n: int) -> float:
        return n * u / (1 - n * u)

    h, w = int(shape[0]), int(shape[1])
    norms, deltas, ops = [float(scale)], [0.0], []
    for _ in range(levels):
        (gh, qh), (gw, qw) = (
            _row_norm(blur_downsample_matrix(n, weights, boundary)) for n in (h, w)
        )
        (fh, ph), (fw, pw) = (
            _row_norm(upsample_blur_matrix(n, weights, boundary)) for n in (h, w)
        )
        b, q = gh * gw, gamma(qh + qw)
        ops.append((fh * fw, gamma(ph + pw)))
        deltas.append(b * ((1 + q) * deltas[-1] + 2 * q * norms[-1]))
        norms.append((1 + q) * b * norms[-1])
        h, w = _reduced(h), _reduced(w)
    bands = []
    for k, (a, p) in enumerate(ops):
        diff = deltas[k] + a * ((1 + p) * deltas[k + 1] + 2 * p * norms[k + 1])
        size = norms[k] + (1 + p) * a * norms[k + 1]
        bands.append((1 + u) * diff + 2 * u * size)
    return deltas, bands

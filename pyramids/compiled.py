"""The compiled engine's kernel: a separable operator applied row by row (docs/design.md §9).

:class:`pyramids.engine.CompiledEngine` applies ``Y = Σ_t U_t X V_tᵀ`` with one numba
function, :func:`apply_rows`, that makes output rows ``row0 … row1 - 1`` of ``Y`` from the
sparse factors themselves, so that every output is the same sum, in the same order, as
the matrix engine's ``scipy.sparse`` products make it:

1. the height pass of term ``t`` for output row ``i``: ``z = Σ_a U_t[i, a] X[a, :]``, one
   scaled row added at a time, in the order of the row's stored entries (scipy's
   ``csr_matvecs`` adds them in that order to a zero start);
2. its width pass: ``y_t[j] = Σ_b V_t[i, b] z[b]``, in the order of row ``j``'s entries.
   Where the rows of ``V_t`` repeat one pattern (the interior, see :func:`band_plan`), the
   pass runs tap by tap over whole rows, which the compiler vectorises; the border rows,
   where the boundary folds taps together, are summed entry by entry;
3. ``y = ((0 + y_0) + y_1) + …`` over the terms, then ``base - y`` or ``base + y``.

Nothing is reassociated (numba compiles without fast-math, so no fused multiply-adds), so
in float64 and float32 the result equals the matrix engine's bit for bit. The function
releases the GIL; :mod:`pyramids.parallel` runs it on row ranges side by side.

Compiled code is cached next to this file (numba's ``cache=True``, in ``__pycache__``),
or in numba's user-wide cache when that folder is not writable; where no cache location
is writable at all, the functions are compiled in every process instead.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import scipy.sparse as sp

__all__ = [
    "MAX_PERIOD",
    "BandPlan",
    "Factors",
    "apply_rows",
    "band_plan",
    "expand_levels",
    "expand_rows",
    "factors",
    "mix_weighted",
    "reduce_levels",
    "reduce_rows",
    "stack_factors",
]

#: The longest row pattern :func:`band_plan` looks for (``G``: 1 row, ``F``: 2).
MAX_PERIOD = 4

#: How many rows :func:`reduce_rows` makes before their border columns
#: (:func:`_border_columns`): enough for a vectorised loop, few enough that the rows are
#: still in cache (64 rows of a 4096² image's reduction: 512 KB).
_BORDER_BLOCK = 64


def _jit(function=None, **options):
    """``numba.njit(cache=True, nogil=True, **options)``, without the cache where none can
    be written (numba refuses ``cache=True`` when it finds no writable location)."""
    if function is None:
        return lambda f: _jit(f, **options)
    try:
        return numba.njit(cache=True, nogil=True, **options)(function)
    except RuntimeError:
        return numba.njit(nogil=True, **options)(function)


class BandPlan(NamedTuple):
    """The regular interior of a sparse matrix's rows (:func:`band_plan`).

    Rows ``P·q + p`` for ``q0 ≤ q < q1`` read columns ``S·q + offsets[p, l]`` with weights
    ``weights[p, l]``, ``l < lengths[p]``, exactly as their stored entries do.
    """

    period: int  #: P
    step: int  #: S
    q0: int
    q1: int
    lengths: np.ndarray  #: (P,)
    offsets: np.ndarray  #: (P, L)
    weights: np.ndarray  #: (P, L)


def band_plan(matrix: sp.csr_array) -> BandPlan:
    """Find the rows of ``matrix`` that repeat one pattern, shifted, every ``P`` rows.

    A reduction ``G`` has ``P = 1`` and shifts by ``S = 2`` columns, an expansion ``F``
    ``P = 2`` (even and odd rows) and ``S = 1``. The interior is the longest run of whole
    periods around the middle in which every row's stored columns and weights equal the
    pattern's exactly; the rows outside it (where the boundary folds taps, or a matrix
    too small to have an interior) are left to the entry-by-entry sum.
    """
    m = matrix.shape[0]
    lengths_all = np.diff(matrix.indptr)
    for period in range(1, MAX_PERIOD + 1):
        periods = m // period
        q_mid = periods // 2
        for qa in (q_mid, q_mid - 1):  # two neighbouring periods give the shift
            plan = _band_around(matrix, period, qa, lengths_all)
            if plan is not None:
                return plan
    return BandPlan(
        1,
        1,
        0,
        0,
        np.zeros(1, np.int64),
        np.zeros((1, 1), np.int64),
        np.zeros((1, 1), matrix.dtype),
    )


def _band_around(
    matrix: sp.csr_array, period: int, qa: int, lengths_all: np.ndarray
) -> BandPlan | None:
    """The band plan of rows ``P·q + p`` whose pattern is that of period ``qa``, shifted
    by the columns between periods ``qa`` and ``qa + 1``; None if those two differ."""
    indptr, indices, data = matrix.indptr, matrix.indices, matrix.data
    periods = matrix.shape[0] // period
    if qa < 0 or qa + 1 >= periods:
        return None
    first, second = period * qa, period * (qa + 1)
    if lengths_all[first] == 0 or lengths_all[second] == 0:
        return None
    step = int(indices[indptr[second]] - indices[indptr[first]])
    if step < 1:
        return None
    lengths = lengths_all[first : first + period].astype(np.int64)
    width = max(int(lengths.max()), 1)
    offsets = np.zeros((period, width), np.int64)
    weights = np.zeros((period, width), data.dtype)
    match = np.ones(periods, bool)
    q = np.arange(periods)
    for p in range(period):
        row = first + p
        n = int(lengths[p])
        offsets[p, :n] = indices[indptr[row] : indptr[row] + n] - step * qa
        weights[p, :n] = data[indptr[row] : indptr[row] + n]
        rows = period * q + p
        same = lengths_all[rows] == n
        at = np.where(same[:, None], indptr[rows][:, None] + np.arange(n), 0)
        same &= np.all(indices[at] == step * q[:, None] + offsets[p, :n], axis=1)
        same &= np.all(data[at] == weights[p, :n], axis=1)
        match &= same
    if not match[qa] or not match[qa + 1]:
        return None
    q0, q1 = qa, qa + 2
    while q0 > 0 and match[q0 - 1]:
        q0 -= 1
    while q1 < periods and match[q1]:
        q1 += 1
    return BandPlan(period, step, q0, q1, lengths, offsets, weights)


class Factors(NamedTuple):
    """The factors of every term, packed as arrays for :func:`apply_rows` (:func:`factors`)."""

    u_ptr: np.ndarray  #: (R, m_h + 1) int64, into u_idx / u_val
    u_idx: np.ndarray
    u_val: np.ndarray
    v_ptr: np.ndarray  #: (R, m_w + 1) int64, into v_idx / v_val
    v_idx: np.ndarray
    v_val: np.ndarray
    v_band: np.ndarray  #: (R, 4) int64: period, step, q0, q1 of each term's band_plan
    v_len: np.ndarray  #: (R, P) int64
    v_off: np.ndarray  #: (R, P, L) int64
    v_wt: np.ndarray  #: (R, P, L)


def _pack(matrices: list[sp.csr_array]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ptr = np.zeros((len(matrices), matrices[0].shape[0] + 1), np.int64)
    start = 0
    for t, matrix in enumerate(matrices):
        ptr[t] = matrix.indptr + start
        start += matrix.nnz
    indices = np.concatenate([matrix.indices for matrix in matrices]).astype(np.int64)
    values = np.concatenate([matrix.data for matrix in matrices])
    return ptr, indices, values


def factors(rows: list[sp.csr_array], cols: list[sp.csr_array], dtype: np.dtype) -> Factors:
    """Pack the terms' factors in ``dtype``: CSR arrays, and the band plans of ``cols``.

    Each row's entries keep their stored order, duplicates and explicit zeros included:
    that is the order in which scipy's product (the matrix engine) adds them.
    """
    rows = [sp.csr_array(m, dtype=dtype) for m in rows]
    cols = [sp.csr_array(m, dtype=dtype) for m in cols]
    plans = [band_plan(m) for m in cols]
    terms, period = len(cols), max(p.period for p in plans)
    width = max(p.offsets.shape[1] for p in plans)
    lengths = np.zeros((terms, period), np.int64)
    offsets = np.zeros((terms, period, width), np.int64)
    weights = np.zeros((terms, period, width), dtype)
    for t, plan in enumerate(plans):
        lengths[t, : plan.period] = plan.lengths
        offsets[t, : plan.period, : plan.offsets.shape[1]] = plan.offsets
        weights[t, : plan.period, : plan.offsets.shape[1]] = plan.weights
    band = np.array([[p.period, p.step, p.q0, p.q1] for p in plans], np.int64)
    return Factors(*_pack(rows), *_pack(cols), band, lengths, offsets, weights)


def stack_factors(packs: list[Factors]) -> Factors:
    """The one-term factors of several operators as one :class:`Factors`, term ``k`` the
    ``k``-th operator's: the CSR arrays concatenated (row pointers shifted to match), the
    band plans padded to a common size. :func:`reduce_levels` reads term ``k`` for level
    ``k``; each row's entries keep their order."""
    rows = max(p.u_ptr.shape[1] for p in packs)
    cols = max(p.v_ptr.shape[1] for p in packs)
    period = max(p.v_len.shape[1] for p in packs)
    width = max(p.v_off.shape[2] for p in packs)
    k = len(packs)
    u_ptr, v_ptr = np.zeros((k, rows), np.int64), np.zeros((k, cols), np.int64)
    lengths = np.zeros((k, period), np.int64)
    offsets = np.zeros((k, period, width), np.int64)
    weights = np.zeros((k, period, width), packs[0].v_wt.dtype)
    u_start = v_start = 0
    for t, p in enumerate(packs):
        u_ptr[t, : p.u_ptr.shape[1]] = p.u_ptr[0] + u_start
        v_ptr[t, : p.v_ptr.shape[1]] = p.v_ptr[0] + v_start
        u_start += p.u_idx.shape[0]
        v_start += p.v_idx.shape[0]
        lengths[t, : p.v_len.shape[1]] = p.v_len[0]
        offsets[t, : p.v_off.shape[1], : p.v_off.shape[2]] = p.v_off[0]
        weights[t, : p.v_wt.shape[1], : p.v_wt.shape[2]] = p.v_wt[0]
    return Factors(
        u_ptr,
        np.concatenate([p.u_idx for p in packs]),
        np.concatenate([p.u_val for p in packs]),
        v_ptr,
        np.concatenate([p.v_idx for p in packs]),
        np.concatenate([p.v_val for p in packs]),
        np.concatenate([p.v_band for p in packs]),
        lengths,
        offsets,
        weights,
    )


@_jit
def _add_rows(target, first, rows, picks, starts, weights, lo, hi, count, zero):
    """``target[k] (+)= Σ_{lo ≤ tap < hi} weights[tap] · rows[picks[tap], starts[tap - lo] + k]``
    for ``k < count``: the products added one after the other to ``target`` (with
    ``first``, to zero), three taps per sweep over the row, still in that order."""
    tap = lo
    while tap < hi:
        left = hi - tap
        a = starts[tap - lo]
        r0 = rows[picks[tap], a : a + count]
        d0 = weights[tap]
        if left >= 3:
            b, e = starts[tap + 1 - lo], starts[tap + 2 - lo]
            r1 = rows[picks[tap + 1], b : b + count]
            r2 = rows[picks[tap + 2], e : e + count]
            d1, d2 = weights[tap + 1], weights[tap + 2]
            if first:
                for k in range(count):
                    target[k] = (d0 * r0[k] + zero) + d1 * r1[k] + d2 * r2[k]
            else:
                for k in range(count):
                    target[k] = target[k] + d0 * r0[k] + d1 * r1[k] + d2 * r2[k]
            tap += 3
        elif left == 2:
            b = starts[tap + 1 - lo]
            r1 = rows[picks[tap + 1], b : b + count]
            d1 = weights[tap + 1]
            if first:
                for k in range(count):
                    target[k] = (d0 * r0[k] + zero) + d1 * r1[k]
            else:
                for k in range(count):
                    target[k] = target[k] + d0 * r0[k] + d1 * r1[k]
            tap += 2
        else:
            if first:
                for k in range(count):
                    target[k] = d0 * r0[k] + zero
            else:
                for k in range(count):
                    target[k] = target[k] + d0 * r0[k]
            tap += 1
        first = False
    if first:  # no taps
        for k in range(count):
            target[k] = zero


@_jit
def _add_rows_halves(even, odd, rows, picks, weights, lo, hi, w):
    """:func:`_add_rows` for ``starts = 0`` and a grey row, into the two pixel phases of
    the sum, ``even`` (pixels 0, 2, …) and ``odd`` (1, 3, …), which must hold zeros: the
    products are added one after the other, three taps per sweep, in order. This is the
    height pass of a grey reduction, whose width pass reads the phases (else a stride-2
    read per tap, or a pass that splits the row)."""
    pairs = w // 2  # pixels of odd; even has one more for an odd w
    tap = lo
    while tap < hi:
        n = min(hi - tap, 3)
        r0, r1, r2 = rows[picks[tap]], rows[picks[tap]], rows[picks[tap]]
        d0, d1, d2 = weights[tap], weights[tap], weights[tap]
        if n >= 2:
            r1, d1 = rows[picks[tap + 1]], weights[tap + 1]
        if n == 3:
            r2, d2 = rows[picks[tap + 2]], weights[tap + 2]
        if n == 3:
            for b in range(pairs):
                even[b] = even[b] + d0 * r0[2 * b] + d1 * r1[2 * b] + d2 * r2[2 * b]
                odd[b] = odd[b] + d0 * r0[2 * b + 1] + d1 * r1[2 * b + 1] + d2 * r2[2 * b + 1]
        elif n == 2:
            for b in range(pairs):
                even[b] = even[b] + d0 * r0[2 * b] + d1 * r1[2 * b]
                odd[b] = odd[b] + d0 * r0[2 * b + 1] + d1 * r1[2 * b + 1]
        else:
            for b in range(pairs):
                even[b] = even[b] + d0 * r0[2 * b]
                odd[b] = odd[b] + d0 * r0[2 * b + 1]
        if w % 2:  # the last pixel of an odd w, even
            even[pairs] = even[pairs] + d0 * r0[2 * pairs]
            if n >= 2:
                even[pairs] = even[pairs] + d1 * r1[2 * pairs]
            if n == 3:
                even[pairs] = even[pairs] + d2 * r2[2 * pairs]
        tap += n


@_jit
def apply_rows(x, channels, out, base, mode, checks, row0, row1, f_u_ptr, f_u_idx, f_u_val,
               f_v_ptr, f_v_idx, f_v_val, f_v_band, f_v_len, f_v_off, f_v_wt):  # fmt: skip
    """Rows ``row0 … row1 - 1`` of ``Y = Σ_t U_t X V_tᵀ`` (module docstring) into ``out``.

    ``x`` is the image as ``(h, w·c)``, ``out`` and ``base`` ``(m_h, m_w·c)``, all
    C-contiguous of one float dtype; ``mode`` 0 writes ``Y``, 1 ``base - Y``, 2
    ``base + Y`` (``out`` may be ``base``). ``checks`` is empty, or one value per output
    row, of ``out``'s dtype, set to :func:`_zero_sum` of every row made (0 where all its
    values are finite). The ``f_*`` arrays are a :class:`Factors`.
    """
    c = channels
    terms = f_u_ptr.shape[0]
    n_in = x.shape[1]
    w = n_in // c
    n_out = out.shape[1]
    m_w = n_out // c
    zero = np.zeros(1, x.dtype)[0]
    steps = max(f_v_band[:, 1].max(), 1)
    # Loops run over row views indexed from 0: numba then knows that no index is negative
    # (no wraparound test), and the compiler vectorises them.
    z2 = np.empty((1, n_in), x.dtype)  # a height-pass row
    z = z2[0]
    phases = np.empty((steps, (w // steps + 1) * c), x.dtype)
    acc = np.empty((f_v_len.shape[1], n_out), x.dtype)
    y_t = np.empty(n_out, x.dtype)
    y = np.empty(n_out, x.dtype)
    taps = max(f_v_off.shape[2], 1)
    tap_rows = np.zeros(taps, np.int64)
    tap_starts = np.zeros(taps, np.int64)
    longest = 1
    for t in range(terms):
        for i in range(row0, row1):
            longest = max(longest, f_u_ptr[t, i + 1] - f_u_ptr[t, i])
    height_starts = np.zeros(longest, np.int64)  # the height pass reads whole rows
    for i in range(row0, row1):
        single = terms == 1
        direct = single and mode == 0
        for t in range(terms):
            # 1. height pass, z = Σ_a U_t[i, a] X[a, :]
            lo, hi = f_u_ptr[t, i], f_u_ptr[t, i + 1]
            period, step, q0, q1 = f_v_band[t, 0], f_v_band[t, 1], f_v_band[t, 2], f_v_band[t, 3]
            # a grey reduction: z made as its two pixel phases
            halves = step == 2 and q1 > q0 and c == 1
            if halves:
                phases[:] = zero
                _add_rows_halves(phases[0], phases[1], x, f_u_idx, f_u_val, lo, hi, w)
            else:
                _add_rows(z, True, x, f_u_idx, height_starts, f_u_val, lo, hi, n_in, zero)
            # 2. width pass: the band's interior tap by tap over whole rows ...
            row_t = out[i] if direct else y_t  # one term, no combine: straight to out
            if q1 > q0:
                if step == 1:
                    src = z2
                else:  # the pixels of z split by their index mod S, each phase contiguous
                    src = phases
                    for s in range(step if not halves else 0):
                        phase = phases[s]
                        if c == 1:
                            for b in range((w - s + step - 1) // step):
                                phase[b] = z[step * b + s]
                        else:
                            for ch in range(c):
                                for b in range((w - s + step - 1) // step):
                                    phase[b * c + ch] = z[(step * b + s) * c + ch]
                count = (q1 - q0) * c
                for p in range(period):
                    # period 1: accumulate in place; else per phase, interleaved below
                    part = row_t[q0 * c : q0 * c + count] if period == 1 else acc[p, :count]
                    n_taps = f_v_len[t, p]
                    for tap in range(n_taps):  # it reads phase o % S from pixel q + o // S
                        o = f_v_off[t, p, tap]
                        tap_rows[tap] = o % step
                        tap_starts[tap] = (q0 + o // step) * c
                    weights = f_v_wt[t, p]
                    _add_rows(part, True, src, tap_rows, tap_starts, weights, 0, n_taps, count,
                              zero)  # fmt: skip
                if period > 1:  # interleave the phases; one term: combined, into out
                    lo = period * q0 * c
                    if single:
                        _interleave(out[i][lo:], base[i][lo:], mode, acc, period, q1 - q0, c)
                    else:
                        _interleave(y_t[lo:], y_t[lo:], 0, acc, period, q1 - q0, c)
            # ... and every other row entry by entry
            for border in range(2):
                j0, j1 = (0, period * q0) if border == 0 else (period * q1, m_w)
                for j in range(j0, j1):
                    for ch in range(c):
                        row_t[j * c + ch] = zero
                    for jj in range(f_v_ptr[t, j], f_v_ptr[t, j + 1]):
                        pixel = f_v_idx[jj]
                        d = f_v_val[jj]
                        for ch in range(c):
                            if halves:
                                value = phases[pixel % 2, (pixel // 2) * c + ch]
                            else:
                                value = z[pixel * c + ch]
                            row_t[j * c + ch] += d * value
            # 3. the sum over the terms, from zero
            if terms > 1:
                if t == 0:
                    for k in range(n_out):
                        y[k] = y_t[k] + zero
                else:
                    for k in range(n_out):
                        y[k] += y_t[k]
        if direct:
            if checks.size:
                checks[i] = _zero_sum(out[i], zero)
            continue
        total = y_t if single else y
        target, given = out[i], base[i]
        # what is left to write: everything, or (one term, phases interleaved into out
        # already) the border columns
        done0, done1 = 0, 0
        if single and f_v_band[0, 0] > 1 and f_v_band[0, 3] > f_v_band[0, 2]:
            done0 = f_v_band[0, 0] * f_v_band[0, 2] * c
            done1 = f_v_band[0, 0] * f_v_band[0, 3] * c
        for side in range(2):
            k0, k1 = (0, done0) if side == 0 else (done1, n_out)
            if done1 == 0:
                k0, k1 = (0, n_out) if side == 0 else (0, 0)
            if mode == 1:
                for k in range(k0, k1):
                    target[k] = given[k] - total[k]
            elif mode == 2:
                for k in range(k0, k1):
                    target[k] = given[k] + total[k]
            else:
                for k in range(k0, k1):
                    target[k] = total[k]
        if checks.size:
            checks[i] = _zero_sum(target, zero)


@_jit(fastmath={"reassoc"})
def _zero_sum(row, zero):
    """``Σ 0·row[k]``: 0 where every value of ``row`` is finite, NaN where one is not
    (``0·±inf`` and ``0·NaN`` are NaN). A sum of zeros and NaNs does not depend on its
    order, so this one function may reassociate (and vectorise) its sum; no other flag is
    set, so ``0·x`` is never folded to 0. It reads a row just written, from the cache:
    the finite check of a result at no pass of its own over memory."""
    acc = zero
    for k in range(row.shape[0]):
        acc += row[k] * zero
    return acc


@_jit
def _sweep(target, first, rows, picks, starts, weights, lo, hi, count, zero):
    """``target[k] (+)= Σ_{lo ≤ tap < hi} weights[tap] · rows[picks[tap], starts[tap - lo] + k]``
    for ``k < count``, as :func:`_add_rows` makes it (the products added one after the
    other, from zero with ``first``), but up to five taps per sweep over the row: a 5-tap
    kernel's pass is then one sweep, each value loaded and stored once."""
    tap = lo
    while tap < hi:
        n = min(hi - tap, 5)
        a = starts[tap - lo]
        r0, d0 = rows[picks[tap], a : a + count], weights[tap]
        r1, r2, r3, r4 = r0, r0, r0, r0
        d1, d2, d3, d4 = d0, d0, d0, d0
        if n >= 2:
            a = starts[tap + 1 - lo]
            r1, d1 = rows[picks[tap + 1], a : a + count], weights[tap + 1]
        if n >= 3:
            a = starts[tap + 2 - lo]
            r2, d2 = rows[picks[tap + 2], a : a + count], weights[tap + 2]
        if n >= 4:
            a = starts[tap + 3 - lo]
            r3, d3 = rows[picks[tap + 3], a : a + count], weights[tap + 3]
        if n == 5:
            a = starts[tap + 4 - lo]
            r4, d4 = rows[picks[tap + 4], a : a + count], weights[tap + 4]
        if first:  # 0 + d0·r0, written d0·r0 + 0: the same value, signed zeros included
            if n == 5:
                for k in range(count):
                    target[k] = (
                        (d0 * r0[k] + zero) + d1 * r1[k] + d2 * r2[k] + d3 * r3[k] + d4 * r4[k]
                    )
            elif n == 4:
                for k in range(count):
                    target[k] = (d0 * r0[k] + zero) + d1 * r1[k] + d2 * r2[k] + d3 * r3[k]
            elif n == 3:
                for k in range(count):
                    target[k] = (d0 * r0[k] + zero) + d1 * r1[k] + d2 * r2[k]
            elif n == 2:
                for k in range(count):
                    target[k] = (d0 * r0[k] + zero) + d1 * r1[k]
            else:
                for k in range(count):
                    target[k] = d0 * r0[k] + zero
        elif n == 5:
            for k in range(count):
                target[k] = (
                    target[k] + d0 * r0[k] + d1 * r1[k] + d2 * r2[k] + d3 * r3[k] + d4 * r4[k]
                )
        elif n == 4:
            for k in range(count):
                target[k] = target[k] + d0 * r0[k] + d1 * r1[k] + d2 * r2[k] + d3 * r3[k]
        elif n == 3:
            for k in range(count):
                target[k] = target[k] + d0 * r0[k] + d1 * r1[k] + d2 * r2[k]
        elif n == 2:
            for k in range(count):
                target[k] = target[k] + d0 * r0[k] + d1 * r1[k]
        else:
            for k in range(count):
                target[k] = target[k] + d0 * r0[k]
        tap += n
        first = False
    if first:  # no taps
        for k in range(count):
            target[k] = zero


@_jit
def _split_pixels(z, even, odd, pixels, c):
    """Pixels ``2b`` of ``z`` (``c`` values each) to ``even[b]``, pixels ``2b + 1`` to
    ``odd[b]``, for ``pixels`` pixels of ``z``."""
    pairs = pixels // 2
    if c == 1:
        for b in range(pairs):
            even[b] = z[2 * b]
            odd[b] = z[2 * b + 1]
    elif c == 3:
        for b in range(pairs):
            for ch in range(3):
                even[3 * b + ch] = z[6 * b + ch]
                odd[3 * b + ch] = z[6 * b + 3 + ch]
    else:
        for b in range(pairs):
            for ch in range(c):
                even[c * b + ch] = z[2 * c * b + ch]
                odd[c * b + ch] = z[2 * c * b + c + ch]
    if pixels % 2:
        for ch in range(c):
            even[c * pairs + ch] = z[2 * c * pairs + ch]


@_jit
def reduce_rows(x, channels, out, row0, row1, f_u_ptr, f_u_idx, f_u_val, f_v_ptr, f_v_idx,
                f_v_val, f_v_band, f_v_len, f_v_off, f_v_wt):  # fmt: skip
    """Rows ``row0 … row1 - 1`` of ``Y = U X Vᵀ`` into ``out``, for one term whose width
    factor's interior reads every second pixel (a reduction ``G``: band period 1, step 2,
    a nonempty interior); the same sums as :func:`apply_rows` makes, in the same order.

    Per output row: the height pass ``z`` as one sweep of up to five input rows, ``z``
    split into its even and odd pixels, then the interior of the width pass as one sweep
    of up to five shifted reads of those. The border columns are made every
    :data:`_BORDER_BLOCK` rows, for those rows at once, from the few pixels of each
    ``z`` they read (:func:`_border_columns`).
    """
    c = channels
    n_in = x.shape[1]
    w = n_in // c
    m_w = out.shape[1] // c
    zero = np.zeros(1, x.dtype)[0]
    q0, q1 = f_v_band[0, 2], f_v_band[0, 3]
    n_taps = f_v_len[0, 0]
    z2 = np.empty((1, n_in), x.dtype)
    z = z2[0]
    phases = np.empty((2, ((w + 1) // 2) * c), x.dtype)
    height_starts = np.zeros(max(f_u_idx.shape[0], 1), np.int64)
    tap_rows = np.zeros(max(n_taps, 1), np.int64)
    tap_starts = np.zeros(max(n_taps, 1), np.int64)
    for tap in range(n_taps):  # tap o reads phase o % 2 from pixel q + o // 2
        o = f_v_off[0, 0, tap]
        tap_rows[tap] = o % 2
        tap_starts[tap] = (q0 + o // 2) * c
    weights = f_v_wt[0, 0]
    count = (q1 - q0) * c
    v_ptr, v_idx, v_val = f_v_ptr[0], f_v_idx, f_v_val
    d0, d1, d2, d3, d4 = weights[0], weights[0], weights[0], weights[0], weights[0]
    if n_taps == 5:
        d0, d1, d2, d3, d4 = weights[0], weights[1], weights[2], weights[3], weights[4]
    # the split writes two arrays of their own (rows of one 2-D array, which the compiler
    # cannot tell apart, kept the colour split from being vectorised: 8× slower)
    even = np.empty(phases.shape[1], x.dtype)
    odd = np.empty(phases.shape[1], x.dtype)
    p0, p1, p2, p3, p4 = even[:0], even[:0], even[:0], even[:0], even[:0]
    if n_taps == 5:  # the width pass's five reads, the same for every row
        p0 = (even if tap_rows[0] == 0 else odd)[tap_starts[0] : tap_starts[0] + count]
        p1 = (even if tap_rows[1] == 0 else odd)[tap_starts[1] : tap_starts[1] + count]
        p2 = (even if tap_rows[2] == 0 else odd)[tap_starts[2] : tap_starts[2] + count]
        p3 = (even if tap_rows[3] == 0 else odd)[tap_starts[3] : tap_starts[3] + count]
        p4 = (even if tap_rows[4] == 0 else odd)[tap_starts[4] : tap_starts[4] + count]
    z_next = np.empty(n_in, x.dtype)  # the next row's height pass, made with this one's
    pixels, slots = _border_reads(v_ptr, v_idx, q0, q1, m_w)
    kept = np.empty((pixels.shape[0] * c, _BORDER_BLOCK), x.dtype)
    block = row0  # the first row whose border columns are still to make
    ready = False
    for i in range(row0, row1):
        lo, hi = f_u_ptr[0, i], f_u_ptr[0, i + 1]
        if ready:  # made with the row before
            z, z_next = z_next, z
            ready = False
        elif hi - lo == 5:  # the interior of a 5-tap kernel: one sweep, written out
            a2, a3, a4 = f_u_idx[lo + 2], f_u_idx[lo + 3], f_u_idx[lo + 4]
            r0, r1, r2, r3, r4 = x[f_u_idx[lo]], x[f_u_idx[lo + 1]], x[a2], x[a3], x[a4]
            u0, u1, u2, u3, u4 = (
                f_u_val[lo],
                f_u_val[lo + 1],
                f_u_val[lo + 2],
                f_u_val[lo + 3],
                f_u_val[lo + 4],
            )
            nxt = f_u_ptr[0, i + 1]
            if (
                i + 1 < row1
                and f_u_ptr[0, i + 2] - nxt == 5
                and f_u_idx[nxt] == a2
                and f_u_idx[nxt + 1] == a3
                and f_u_idx[nxt + 2] == a4
            ):  # the next row reads rows 2..4 of these and two more: both in one sweep
                r5, r6 = x[f_u_idx[nxt + 3]], x[f_u_idx[nxt + 4]]
                t0, t1, t2, t3, t4 = (
                    f_u_val[nxt],
                    f_u_val[nxt + 1],
                    f_u_val[nxt + 2],
                    f_u_val[nxt + 3],
                    f_u_val[nxt + 4],
                )
                for k in range(n_in):
                    z[k] = (u0 * r0[k] + zero) + u1 * r1[k] + u2 * r2[k] + u3 * r3[k] + u4 * r4[k]
                    z_next[k] = (
                        (t0 * r2[k] + zero) + t1 * r3[k] + t2 * r4[k] + t3 * r5[k] + t4 * r6[k]
                    )
                ready = True
            else:
                for k in range(n_in):
                    z[k] = (u0 * r0[k] + zero) + u1 * r1[k] + u2 * r2[k] + u3 * r3[k] + u4 * r4[k]
        else:
            _sweep(z, True, x, f_u_idx, height_starts, f_u_val, lo, hi, n_in, zero)
        if c == 1:
            for b in range(w // 2):
                even[b] = z[2 * b]
                odd[b] = z[2 * b + 1]
            if w % 2:
                even[w // 2] = z[w - 1]
        elif c == 3:
            for b in range(w // 2):
                even[3 * b] = z[6 * b]
                even[3 * b + 1] = z[6 * b + 1]
                even[3 * b + 2] = z[6 * b + 2]
                odd[3 * b] = z[6 * b + 3]
                odd[3 * b + 1] = z[6 * b + 4]
                odd[3 * b + 2] = z[6 * b + 5]
            if w % 2:
                even[3 * (w // 2) : 3 * (w // 2) + 3] = z[3 * w - 3 : 3 * w]
        else:
            _split_pixels(z, even, odd, w, c)
        if n_taps != 5:
            phases[0] = even
            phases[1] = odd
        row = out[i]
        if n_taps == 5:
            target = row[q0 * c : q1 * c]
            for k in range(count):
                target[k] = (d0 * p0[k] + zero) + d1 * p1[k] + d2 * p2[k] + d3 * p3[k] + d4 * p4[k]
        else:
            _sweep(row[q0 * c : q1 * c], True, phases, tap_rows, tap_starts, weights, 0, n_taps,
                   count, zero)  # fmt: skip
        _keep_pixels(kept, i - block, z, pixels, c)
        if i + 1 - block == _BORDER_BLOCK or i + 1 == row1:  # while the rows are in cache
            _border_columns(out, kept, i + 1 - block, slots, v_ptr, v_idx, v_val, q0, q1, c,
                            block, zero)  # fmt: skip
            block = i + 1


@_jit
def expand_rows(x, channels, out, base, mode, checks, row0, row1, f_u_ptr, f_u_idx, f_u_val,
                f_v_ptr, f_v_idx, f_v_val, f_v_band, f_v_len, f_v_off, f_v_wt):  # fmt: skip
    """:func:`apply_rows` for one term whose width factor's interior has period 2, step 1,
    and three taps on even outputs, two on odd ones (the expansion ``F`` of a 5-tap
    kernel): the same sums, in the same order, with the same ``mode``, ``base`` and
    ``checks``.

    The rows are made by :func:`_expand_block`, inlined once for each of the common
    cases, grey and three channels with ``base - y`` and ``base + y``, where the channel
    count and the mode are constants: the compiler then drops their branches from the
    row loop, and keeps fewer values on the stack (measured: a 512² grey collapse's
    expansions 8% faster than one loop with the branches inside).
    """
    z = np.empty(x.shape[1], x.dtype)
    q0, q1 = f_v_band[0, 2], f_v_band[0, 3]
    even = np.empty(max((q1 - q0) * channels, 1), x.dtype)
    odd = np.empty(max((q1 - q0) * channels, 1), x.dtype)
    height_starts = np.zeros(max(f_u_idx.shape[0], 1), np.int64)
    if channels == 1 and mode == 2:
        _expand_block(x, 1, out, base, 2, checks, row0, row1, f_u_ptr, f_u_idx, f_u_val,
                      f_v_ptr, f_v_idx, f_v_val, f_v_band, f_v_off, f_v_wt, z, even, odd,
                      height_starts)  # fmt: skip
    elif channels == 1 and mode == 1:
        _expand_block(x, 1, out, base, 1, checks, row0, row1, f_u_ptr, f_u_idx, f_u_val,
                      f_v_ptr, f_v_idx, f_v_val, f_v_band, f_v_off, f_v_wt, z, even, odd,
                      height_starts)  # fmt: skip
    elif channels == 3 and mode == 2:
        _expand_block(x, 3, out, base, 2, checks, row0, row1, f_u_ptr, f_u_idx, f_u_val,
                      f_v_ptr, f_v_idx, f_v_val, f_v_band, f_v_off, f_v_wt, z, even, odd,
                      height_starts)  # fmt: skip
    elif channels == 3 and mode == 1:
        _expand_block(x, 3, out, base, 1, checks, row0, row1, f_u_ptr, f_u_idx, f_u_val,
                      f_v_ptr, f_v_idx, f_v_val, f_v_band, f_v_off, f_v_wt, z, even, odd,
                      height_starts)  # fmt: skip
    else:
        _expand_block(x, channels, out, base, mode, checks, row0, row1, f_u_ptr, f_u_idx,
                      f_u_val, f_v_ptr, f_v_idx, f_v_val, f_v_band, f_v_off, f_v_wt, z, even,
                      odd, height_starts)  # fmt: skip


@_jit(inline="always")
def _expand_block(x, c, out, base, mode, checks, row0, row1, f_u_ptr, f_u_idx, f_u_val,
                  f_v_ptr, f_v_idx, f_v_val, f_v_band, f_v_off, f_v_wt, z, even, odd,
                  height_starts):  # fmt: skip
    """Rows ``row0 … row1 - 1`` of :func:`expand_rows`, with ``z``, ``even`` and ``odd``
    its scratch rows. Inlined where it is called (numba's ``inline="always"``), so that a
    constant ``c`` or ``mode`` is folded into the loops.

    Per output row: the height pass ``z`` (two or three input rows, one sweep); then the
    interior. For one channel each output pair is made and written in one loop, the even
    output's three products and the odd output's two, each summed from zero in the row's
    order, with ``base`` (the combine): every value is read once and written once. For
    more channels the even and odd outputs are first two contiguous sweeps over ``z``,
    then interleaved into ``out`` with ``base`` (written out for three channels: one loop
    over pixels is vectorised, a loop over each pixel's channels inside it is not). Last,
    the border columns, entry by entry from the matrix's rows.
    """
    n_in = x.shape[1]
    m_w = out.shape[1] // c
    zero = np.zeros(1, x.dtype)[0]
    q0, q1 = f_v_band[0, 2], f_v_band[0, 3]
    count = (q1 - q0) * c
    # tap l of phase p reads pixel q + offset: value k + offset·c for k = q·c + ch
    e0, e1, e2 = (
        (q0 + f_v_off[0, 0, 0]) * c,
        (q0 + f_v_off[0, 0, 1]) * c,
        (q0 + f_v_off[0, 0, 2]) * c,
    )
    o0, o1 = (q0 + f_v_off[0, 1, 0]) * c, (q0 + f_v_off[0, 1, 1]) * c
    a0, a1, a2 = f_v_wt[0, 0, 0], f_v_wt[0, 0, 1], f_v_wt[0, 0, 2]
    b0, b1 = f_v_wt[0, 1, 0], f_v_wt[0, 1, 1]
    p0, p1, p2 = z[e0 : e0 + count], z[e1 : e1 + count], z[e2 : e2 + count]
    s0, s1 = z[o0 : o0 + count], z[o1 : o1 + count]
    v_ptr = f_v_ptr[0]
    lo_col, hi_col = 2 * q0 * c, 2 * q1 * c  # the interior's output values
    for i in range(row0, row1):
        lo, hi = f_u_ptr[0, i], f_u_ptr[0, i + 1]
        if hi - lo == 3:
            r0, r1, r2 = x[f_u_idx[lo]], x[f_u_idx[lo + 1]], x[f_u_idx[lo + 2]]
            u0, u1, u2 = f_u_val[lo], f_u_val[lo + 1], f_u_val[lo + 2]
            for k in range(n_in):
                z[k] = (u0 * r0[k] + zero) + u1 * r1[k] + u2 * r2[k]
        elif hi - lo == 2:
            r0, r1 = x[f_u_idx[lo]], x[f_u_idx[lo + 1]]
            u0, u1 = f_u_val[lo], f_u_val[lo + 1]
            for k in range(n_in):
                z[k] = (u0 * r0[k] + zero) + u1 * r1[k]
        else:
            _sweep(z, True, x, f_u_idx, height_starts, f_u_val, lo, hi, n_in, zero)
        target = out[i, lo_col:hi_col]
        given = base[i, lo_col:hi_col]
        if c == 1:
            for q in range(count):
                y_even = (a0 * p0[q] + zero) + a1 * p1[q] + a2 * p2[q]
                y_odd = (b0 * s0[q] + zero) + b1 * s1[q]
                if mode == 1:
                    target[2 * q] = given[2 * q] - y_even
                    target[2 * q + 1] = given[2 * q + 1] - y_odd
                elif mode == 2:
                    target[2 * q] = given[2 * q] + y_even
                    target[2 * q + 1] = given[2 * q + 1] + y_odd
                else:
                    target[2 * q] = y_even
                    target[2 * q + 1] = y_odd
        else:
            for k in range(count):
                even[k] = (a0 * p0[k] + zero) + a1 * p1[k] + a2 * p2[k]
            for k in range(count):
                odd[k] = (b0 * s0[k] + zero) + b1 * s1[k]
            if c == 3:  # a constant channel count: the compiler unrolls it
                for q in range(count // 3):
                    for ch in range(3):
                        t, k = 6 * q + ch, 3 * q + ch
                        if mode == 1:
                            target[t] = given[t] - even[k]
                            target[t + 3] = given[t + 3] - odd[k]
                        elif mode == 2:
                            target[t] = given[t] + even[k]
                            target[t + 3] = given[t + 3] + odd[k]
                        else:
                            target[t] = even[k]
                            target[t + 3] = odd[k]
            else:
                for q in range(count // c):
                    for ch in range(c):
                        t, k = 2 * q * c + ch, q * c + ch
                        if mode == 1:
                            target[t] = given[t] - even[k]
                            target[t + c] = given[t + c] - odd[k]
                        elif mode == 2:
                            target[t] = given[t] + even[k]
                            target[t + c] = given[t + c] + odd[k]
                        else:
                            target[t] = even[k]
                            target[t + c] = odd[k]
        row, given = out[i], base[i]
        for side in range(2):  # the border columns, j < 2·q0 and j ≥ 2·q1
            j0, j1 = (0, 2 * q0) if side == 0 else (2 * q1, m_w)
            for j in range(j0, j1):
                for ch in range(c):
                    total = zero
                    for jj in range(v_ptr[j], v_ptr[j + 1]):
                        total += f_v_val[jj] * z[f_v_idx[jj] * c + ch]
                    t = j * c + ch
                    if mode == 1:
                        row[t] = given[t] - total
                    elif mode == 2:
                        row[t] = given[t] + total
                    else:
                        row[t] = total
        if checks.size:
            checks[i] = _zero_sum(row, zero)


@_jit
def reduce_levels(x, channels, buffer, plan, f_u_ptr, f_u_idx, f_u_val, f_v_ptr, f_v_idx, f_v_val,
                  f_v_band, f_v_len, f_v_off, f_v_wt):  # fmt: skip
    """Levels of a Gaussian pyramid in one call: level ``k + 1`` is operator ``k`` (term
    ``k`` of :func:`stack_factors`, each a reduction :func:`reduce_rows` applies) applied
    to level ``k``, exactly as one call per level makes it.

    ``plan[k]`` is ``(start, rows, values per row)`` of level ``k + 1``, which is written
    to ``buffer[start : start + rows · values]``. For small images, where a call per level
    costs as much as the level. Only :func:`reduce_rows` is called: numba optimises again
    the code of every kernel a function calls, and :func:`apply_rows` (the coarsest
    levels, where a reduction has no interior) would add seconds to the first compile.
    """
    source = x
    first = np.int64(0)  # not a literal: no variant of reduce_rows of its own
    for k in range(plan.shape[0]):
        start, m_h, m_n = plan[k, 0], plan[k, 1], plan[k, 2]
        out = buffer[start : start + m_h * m_n].reshape((m_h, m_n))
        reduce_rows(source, channels, out, first, m_h, f_u_ptr[k : k + 1], f_u_idx, f_u_val,
                    f_v_ptr[k : k + 1], f_v_idx, f_v_val, f_v_band[k : k + 1],
                    f_v_len[k : k + 1], f_v_off[k : k + 1], f_v_wt[k : k + 1])  # fmt: skip
        source = out


@_jit
def expand_levels(x, bases, channels, plan, check, f_u_ptr, f_u_idx, f_u_val, f_v_ptr,
                  f_v_idx, f_v_val, f_v_band, f_v_len, f_v_off, f_v_wt):  # fmt: skip
    """A collapse in one call: ``g = x``, then for ``k = K - 1 … 0``,
    ``g ← bases[k] + F_k g`` with ``F_k`` term ``k`` of :func:`stack_factors`, each an
    expansion :func:`expand_rows` applies, exactly as one call per level makes it. Returns
    the last ``g`` (a new array) and, with ``check``, whether it is finite, from the row
    checks of the last pass (else ``True``).

    ``bases`` is a tuple of 2-D arrays (the bands as ``(h_k, w_k·c)``), longer than ``K``
    where the caller pads it (one tuple length, one compiled variant); ``plan[k]`` is
    ``(rows, values per row)`` of ``g_k``. For small images, where a call per level costs
    as much as the level. Only :func:`expand_rows` is called, as in
    :func:`reduce_levels`.
    """
    source = x
    skip = np.empty(0, x.dtype)  # no finite check before the last pass
    checks = np.empty(plan[0, 0] if check else 0, x.dtype)
    add, first = np.int64(2), np.int64(0)  # not literals: no variant of expand_rows of its own
    for k in range(plan.shape[0] - 1, -1, -1):
        m_h, m_n = plan[k, 0], plan[k, 1]
        out = np.empty((m_h, m_n), x.dtype)
        expand_rows(source, channels, out, bases[k], add, checks if k == 0 else skip, first,
                    m_h, f_u_ptr[k : k + 1], f_u_idx, f_u_val, f_v_ptr[k : k + 1], f_v_idx,
                    f_v_val, f_v_band[k : k + 1], f_v_len[k : k + 1], f_v_off[k : k + 1],
                    f_v_wt[k : k + 1])  # fmt: skip
        source = out
    finite = True
    for k in range(checks.size):
        finite = finite and checks[k] == checks[k]  # 0, or NaN where a row is not finite
    return source, finite


@_jit
def _border_reads(ptr, idx, j0, j1, m_w):
    """The pixels that columns ``j < j0`` and ``j ≥ j1`` of a CSR matrix with ``m_w`` rows
    read (each once, in increasing order), and ``slots[p]``, the place of pixel ``p``
    among them (-1 for a pixel no border column reads)."""
    top = 0
    for j in range(m_w):
        if j < j0 or j >= j1:
            for e in range(ptr[j], ptr[j + 1]):
                top = max(top, idx[e] + 1)
    slots = np.full(top, -1, np.int64)
    for j in range(m_w):
        if j < j0 or j >= j1:
            for e in range(ptr[j], ptr[j + 1]):
                slots[idx[e]] = 0
    pixels = np.empty(top, np.int64)
    count = 0
    for p in range(top):
        if slots[p] == 0:
            slots[p] = count
            pixels[count] = p
            count += 1
    return pixels[:count], slots


@_jit(inline="always")
def _keep_pixels(kept, r, z, pixels, c):
    """The values of ``pixels`` in row ``z`` (``c`` each) to column ``r`` of ``kept``."""
    for s in range(pixels.shape[0]):
        for ch in range(c):
            kept[s * c + ch, r] = z[pixels[s] * c + ch]


@_jit
def _border_columns(out, kept, rows, slots, ptr, idx, val, j0, j1, c, row0, zero):
    """The border columns ``j < j0`` and ``j ≥ j1`` of rows ``row0 … row0 + rows - 1`` of
    ``out``: value ``j·c + ch`` is ``Σ val[e] · z[idx[e]·c + ch]`` over row ``j``'s stored
    entries, in their order, from zero, as :func:`apply_rows` sums it, with the pixels of
    each row's ``z`` read from the first ``rows`` columns of ``kept``
    (:func:`_keep_pixels`, :func:`_border_reads`).

    :func:`reduce_rows` makes them every :data:`_BORDER_BLOCK` rows, one column for all
    those rows at a time (a loop the compiler vectorises), not a few values at the end of
    every row: there these short sums cost a 512² reduction a quarter of its time.
    """
    m_w = out.shape[1] // c
    total = np.empty(rows, out.dtype)
    for j in range(m_w):
        if j0 <= j < j1:
            continue
        for ch in range(c):
            for r in range(rows):
                total[r] = zero
            for e in range(ptr[j], ptr[j + 1]):
                column, weight = kept[slots[idx[e]] * c + ch], val[e]
                for r in range(rows):
                    total[r] = total[r] + weight * column[r]
            for r in range(rows):
                out[row0 + r, j * c + ch] = total[r]


@_jit
def _interleave(target, given, mode, acc, period, count, c):
    """Pixel ``q`` of phase ``p`` (``acc[p, q·c + ch]``) to pixel ``period·q + p`` of
    ``target``; mode 0 writes it, 1 ``given - it``, 2 ``given + it``."""
    if period == 2 and c == 1:  # one sweep over both phases: the compiler pairs the stores
        even, odd = acc[0], acc[1]
        if mode == 1:
            for q in range(count):
                target[2 * q] = given[2 * q] - even[q]
                target[2 * q + 1] = given[2 * q + 1] - odd[q]
        elif mode == 2:
            for q in range(count):
                target[2 * q] = given[2 * q] + even[q]
                target[2 * q + 1] = given[2 * q + 1] + odd[q]
        else:
            for q in range(count):
                target[2 * q] = even[q]
                target[2 * q + 1] = odd[q]
    elif period == 2 and c == 3:
        even, odd = acc[0], acc[1]
        if mode == 1:
            for q in range(count):
                for ch in range(3):
                    target[6 * q + ch] = given[6 * q + ch] - even[3 * q + ch]
                    target[6 * q + 3 + ch] = given[6 * q + 3 + ch] - odd[3 * q + ch]
        elif mode == 2:
            for q in range(count):
                for ch in range(3):
                    target[6 * q + ch] = given[6 * q + ch] + even[3 * q + ch]
                    target[6 * q + 3 + ch] = given[6 * q + 3 + ch] + odd[3 * q + ch]
        else:
            for q in range(count):
                for ch in range(3):
                    target[6 * q + ch] = even[3 * q + ch]
                    target[6 * q + 3 + ch] = odd[3 * q + ch]
    else:
        for p in range(period):
            part = acc[p]
            for ch in range(c):
                for q in range(count):
                    k = (period * q + p) * c + ch
                    if mode == 1:
                        target[k] = given[k] - part[q * c + ch]
                    elif mode == 2:
                        target[k] = given[k] + part[q * c + ch]
                    else:
                        target[k] = part[q * c + ch]


@_jit
def _mix(weight, a, b, out, channels):
    one = np.ones(1, a.dtype)[0]
    if weight.size == a.size:
        for q in range(a.size):
            out[q] = weight[q] * a[q] + (one - weight[q]) * b[q]
    elif channels == 3:  # a constant count lets the compiler unroll the channels
        for p in range(weight.size):
            wt, rest = weight[p], one - weight[p]
            for ch in range(3):
                out[3 * p + ch] = wt * a[3 * p + ch] + rest * b[3 * p + ch]
    else:
        for p in range(weight.size):
            wt, rest = weight[p], one - weight[p]
            for ch in range(channels):
                q = p * channels + ch
                out[q] = wt * a[q] + rest * b[q]


def mix_weighted(weight: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``weight · a + (1 - weight) · b`` (a blend's band, docs/design.md §3), in one pass.

    ``a`` and ``b`` have one shape and float dtype, ``weight`` that dtype and either their
    shape or, for ``(h, w, c)`` images, ``(h, w)`` or ``(h, w, 1)`` (one weight for every
    channel). Each value is the same four roundings as numpy's expression makes, in the
    same order, so the result equals it bit for bit; numpy's broadcasting of a weight over
    the channels is many times slower (a short inner loop per pixel).
    """
    if not (a.shape == b.shape and a.dtype == b.dtype == weight.dtype):
        raise ValueError(
            f"a, b and weight must share a float dtype, a and b a shape; got {a.shape} "
            f"{a.dtype}, {b.shape} {b.dtype}, weight {weight.dtype}"
        )
    if weight.size != a.size and weight.shape[:2] != a.shape[:2]:
        raise ValueError(f"weight of shape {weight.shape} does not fit images of {a.shape}")
    channels = a.shape[2] if a.ndim == 3 and weight.size != a.size else 1
    out = np.empty(a.shape, a.dtype)
    _mix(
        np.ascontiguousarray(weight).reshape(-1),
        np.ascontiguousarray(a).reshape(-1),
        np.ascontiguousarray(b).reshape(-1),
        out.reshape(-1),
        channels,
    )
    return out

"""The compiled engine (numba) against the matrix engine, OpenCV, and itself on threads.

The compiled engine makes every output as the matrix engine's ``scipy.sparse`` products do:
the height factor's entries of a row added in their stored order to a zero start, then the
width factor's, then the terms summed from zero (docs/design.md §9). Neither reassociates
nor fuses a multiply-add, so the two agree bit for bit in float64 (and float32). That holds
where scipy's compiled sparse product does not fuse multiply-adds either, as on x86-64,
whose baseline has no FMA instruction; elsewhere (aarch64 compilers contract ``y += a·x``
into one FMA by default) the comparison falls back to the rounding bound of
tests/test_engine.py, which both engines meet.
"""

from __future__ import annotations

import itertools
import platform

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from requires import require_module
from test_engine import KINDS, SHAPES, _input, _operator, _rounding_bound

import pyramids
from pyramids import engine, operators
from pyramids.compiled import band_plan
from pyramids.engine import apply, get_engine
from pyramids.laplacian import reconstruction_error_bound

BOUNDARIES = operators.BOUNDARIES
#: Bit-for-bit agreement needs a sparse product without fused multiply-adds (docstring).
EXACT = platform.machine().lower() in ("x86_64", "amd64")
KERNELS = ["binomial", "binomial3", "binomial7", "binomial1", 0.4, 0.6, [0.25, 0.5, 0.25]]


def _assert_same(fast: np.ndarray, reference: np.ndarray, bound: np.ndarray) -> None:
    assert fast.dtype == reference.dtype and fast.shape == reference.shape
    if EXACT:
        np.testing.assert_array_equal(fast, reference)
        assert np.array_equal(np.signbit(fast), np.signbit(reference))  # even the zeros
    else:
        assert np.all(np.abs(fast - reference) <= bound)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize(
    ("kind", "boundary"),
    [(k, b) for k in KINDS for b in BOUNDARIES if k != "mirror" or b == "reflect"],
)
def test_compiled_engine_equals_matrix_engine_bit_for_bit(kind, boundary, shape, dtype):
    op = _operator(kind, shape, boundary)
    x = _input(op, shape, dtype)
    compiled, matrix = get_engine("compiled"), get_engine("matrix")
    bound = _rounding_bound(op, x)
    _assert_same(compiled.apply(op, x), matrix.apply(op, x), bound)
    # combine: the same one rounding of the same result
    base = np.random.default_rng(1).standard_normal(bound.shape).astype(dtype)
    for ufunc in (np.subtract, np.add, np.multiply):  # multiply: not fused, numpy's
        fast = compiled.apply(op, x, combine=(ufunc, base))
        reference = matrix.apply(op, x, combine=(ufunc, base))
        u = np.finfo(dtype).eps / 2
        slack = bound * np.maximum(1, np.abs(base)) + u * (np.abs(fast) + np.abs(reference))
        _assert_same(fast, reference, slack)


@given(
    h=st.integers(1, 70),
    w=st.integers(1, 70),
    kernel=st.sampled_from(KERNELS),
    boundary=st.sampled_from(BOUNDARIES),
    channels=st.sampled_from([(), (1,), (2,), (3,), (4,)]),
    dtype=st.sampled_from([np.float64, np.float32]),
    levels=st.integers(1, 4),
)
@example(h=1, w=1, kernel="binomial", boundary="reflect", channels=(), dtype=np.float64, levels=1)
@example(h=70, w=3, kernel="binomial7", boundary="zero", channels=(3,), dtype=np.float32, levels=4)
def test_pyramid_levels_equal_the_matrix_engine(h, w, kernel, boundary, channels, dtype, levels):
    """Level by level, the Gaussian levels and the Laplacian bands that the library makes
    (with the default engine, the compiled one) are the matrix engine's."""
    x = np.random.default_rng(h * 71 + w).random((h, w, *channels)).astype(dtype)
    levels = min(levels, pyramids.max_levels(x.shape))
    pyr = pyramids.laplacian_pyramid(x, levels, kernel, boundary)
    gauss = pyramids.gaussian_pyramid(x, levels, kernel, boundary)
    for k in range(levels):  # each step from the library's own previous level
        g = gauss[k]
        reduce = operators.reduce_operator(g.shape, kernel, boundary)
        coarse = apply(reduce, g, engine="matrix")
        expand = operators.expand_operator(g.shape, kernel, boundary)
        band = apply(expand, gauss[k + 1], combine=(np.subtract, g), engine="matrix")
        _assert_same(gauss[k + 1], coarse, _rounding_bound(reduce, g))
        slack = _rounding_bound(expand, gauss[k + 1]) + np.finfo(dtype).eps * np.abs(band)
        _assert_same(pyr.bands[k], band, slack)
    np.testing.assert_array_equal(pyr.residual, gauss[levels])
    # the collapse adds each band to the expansion, as the matrix engine's combine does;
    # both are within reconstruction_error_bound of x, so within twice it of each other
    fine = pyr.residual
    for band in reversed(pyr.bands):
        expand = operators.expand_operator(band.shape, kernel, boundary)
        fine = apply(expand, fine, combine=(np.add, band), engine="matrix")
    bound = reconstruction_error_bound(x.shape, levels, kernel, boundary, dtype)
    _assert_same(pyr.reconstruct(), fine, np.full(fine.shape, 2 * bound))


def test_the_default_engine_is_the_compiled_one(monkeypatch):
    monkeypatch.delenv(engine.ENGINE_VAR, raising=False)
    assert engine.default_engine() == "compiled"
    assert get_engine() is get_engine("compiled")
    op = operators.reduce_operator((64, 48))
    pyramids.reduce(np.zeros((64, 48), np.float32))
    assert ("compiled", "<f4") in op.prepared


def test_the_environment_names_the_default_engine(monkeypatch):
    monkeypatch.setenv(engine.ENGINE_VAR, "separable")
    assert engine.default_engine() == "separable"
    op = operators.reduce_operator((32, 24))
    pyramids.reduce(np.zeros((32, 24)))
    assert ("tiled", "<f8") in op.prepared
    monkeypatch.setenv(engine.ENGINE_VAR, "fft")
    with pytest.raises(ValueError, match="PYRAMIDS_ENGINE must be one of"):
        pyramids.reduce(np.zeros((32, 24)))


def test_without_numba_the_default_is_the_numpy_engine(monkeypatch):
    import sys

    monkeypatch.delenv(engine.ENGINE_VAR, raising=False)
    monkeypatch.setattr(engine, "_numba", [])  # not tried yet
    monkeypatch.setitem(sys.modules, "pyramids.compiled", None)  # importing it now fails
    assert engine.default_engine() == "separable"
    x = np.random.default_rng(4).random((20, 17))
    op = operators.reduce_operator(x.shape)
    np.testing.assert_array_equal(pyramids.reduce(x), apply(op, x, engine="separable"))


@pytest.mark.parametrize("kind", ["reduce-binomial", "expand-binomial", "terms-step1", "mirror"])
def test_compiled_result_does_not_depend_on_the_thread_count(kind, monkeypatch):
    monkeypatch.setattr(engine, "_COMPILED_THREAD_MIN_ELEMENTS", 0)  # split even small ones
    shape = (300, 260, 3)
    op = _operator(kind, shape, "reflect" if kind == "mirror" else "symmetric")
    x = _input(op, shape, np.float32)
    one = apply(op, x, threads=1, engine="compiled")
    for threads in (2, 3, 5):
        np.testing.assert_array_equal(apply(op, x, threads=threads, engine="compiled"), one)


def test_out_in_place_accumulation_and_odd_inputs():
    op = operators.expand_operator((41, 30, 2))
    x = np.random.default_rng(2).standard_normal((21, 15, 2))
    y = apply(op, x, engine="compiled")
    acc = np.random.default_rng(3).standard_normal(y.shape)
    expected = acc + y
    assert apply(op, x, out=acc, combine=(np.add, acc), engine="compiled") is acc
    np.testing.assert_array_equal(acc, expected)
    frozen = x.copy()
    frozen.setflags(write=False)  # read-only and strided inputs give the same result
    np.testing.assert_array_equal(apply(op, frozen, engine="compiled"), y)
    strided = np.zeros((21, 30, 2))[:, ::2]
    strided[...] = x
    np.testing.assert_array_equal(apply(op, strided, engine="compiled"), y)
    locked = np.zeros_like(y)
    locked.setflags(write=False)
    with pytest.raises(ValueError, match="out must be writeable"):
        apply(op, x, out=locked, engine="compiled")


def test_entries_are_added_in_their_stored_order_as_scipy_adds_them():
    """A factor whose rows store their entries out of order, with a duplicate and an
    explicit zero: the matrix engine's scipy product adds them as stored, and so does
    the compiled kernel (no canonical reordering), so the two still agree bit for bit."""
    import scipy.sparse as sp

    rng = np.random.default_rng(12)

    def scrambled(n_out: int, n_in: int) -> sp.csr_array:
        indptr, indices, data = [0], [], []
        for i in range(n_out):
            picks = np.flatnonzero(rng.random(n_in) < 0.4)[::-1]  # decreasing columns
            indices += picks.tolist()
            data += rng.standard_normal(len(picks)).tolist()
            if i == 0:  # a duplicate and an explicit zero
                indices += [n_in - 1, 1]
                data += [0.5, 0.0]
            indptr.append(len(indices))
        return sp.csr_array((data, indices, indptr), shape=(n_out, n_in))

    op = engine.Separable([scrambled(13, 17)], [scrambled(11, 9)])
    assert not op.rows[0].has_sorted_indices
    x = rng.standard_normal((17, 9, 2))
    _assert_same(
        apply(op, x, engine="compiled"), apply(op, x, engine="matrix"), _rounding_bound(op, x)
    )


@pytest.mark.parametrize("n", [9, 10, 64, 203])
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_band_plan_finds_the_regular_interior(n, boundary):
    """G repeats every row, shifted by 2 columns; F every 2 rows, shifted by 1. Only the
    rows that read past an edge (radius 2) are left to the entry-by-entry sum."""
    for matrix, period, step in (
        (operators.blur_downsample_matrix(n, boundary=boundary), 1, 2),
        (operators.upsample_blur_matrix(n, boundary=boundary), 2, 1),
    ):
        plan = band_plan(matrix)
        m = matrix.shape[0]
        assert (plan.period, plan.step) == (period, step)
        assert plan.q0 <= 2 and plan.q1 >= m // period - 2
        dense = matrix.toarray()
        for q in range(plan.q0, plan.q1):
            for p in range(period):
                n_taps = plan.lengths[p]
                columns = step * q + plan.offsets[p, :n_taps]
                np.testing.assert_array_equal(
                    dense[period * q + p, columns], plan.weights[p, :n_taps]
                )
                assert np.count_nonzero(dense[period * q + p]) == n_taps


@pytest.mark.parametrize("channels", [(), (3,)])
@pytest.mark.parametrize(("h", "w"), [(64, 64), (33, 45), (2, 7)])
def test_compiled_reduce_and_expand_match_opencv(h, w, channels):
    """OpenCV's pyrDown / pyrUp: the same 5-tap kernel and BORDER_REFLECT_101. Both compute
    each output as a sum of at most 25 products of [0, 1] values with weights summing to 1
    (pyrUp: 4 per phase, summing to 4), so each is within γ_25 (γ_25·4) of the exact value.
    pyrUp crops an odd size from the even one (docs/design.md §1.4): even sizes only."""
    cv2 = require_module("cv2", "OpenCV is the reference for pyrDown/pyrUp")
    x = np.random.default_rng(9).random((h, w, *channels)).astype(np.float32)
    u = np.finfo(np.float32).eps / 2
    gamma = 25 * u / (1 - 25 * u)
    ours = apply(operators.reduce_operator(x.shape), x, engine="compiled")
    theirs = cv2.pyrDown(x)
    assert np.abs(ours - theirs).max() <= 2 * gamma
    if h % 2 == 0 and w % 2 == 0:
        up = apply(operators.expand_operator(x.shape), theirs, engine="compiled")
        assert np.abs(up - cv2.pyrUp(theirs, dstsize=(w, h))).max() <= 2 * gamma * 4


def test_kernels_compile_without_a_cache_where_none_is_writable(monkeypatch):
    """numba refuses ``cache=True`` (a RuntimeError) where it finds no writable cache
    location, e.g. a read-only install with a read-only home: the kernels are then
    compiled without a cache rather than failing at import."""
    import numba

    from pyramids import compiled

    real = numba.njit

    def njit(**options):
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available")
        return real(**options)

    monkeypatch.setattr(numba, "njit", njit)

    def twice(a):
        return 2 * a

    assert compiled._jit(twice)(21) == 42


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("channels", [(), (1,), (2,), (3,), (4,)], ids=str)
@pytest.mark.parametrize("kernel", KERNELS, ids=str)
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_the_reduction_kernel_equals_the_matrix_engine(boundary, kernel, channels, dtype):
    """``compiled.reduce_rows``, the kernel of every reduction (one term, every second
    pixel), makes the matrix engine's sums in its order: for every kernel (3, 5 and 7
    taps, written-out and general sweeps), boundary, channel count, sizes from 1 pixel
    and odd sides, on any row range, more rows than one block of border columns
    (``_BORDER_BLOCK``, 64: 131 and 300 rows give 66 and 150), NaN and infinities included
    (they propagate through the same operations, so their positions agree; a NaN's sign
    bit is the hardware's choice, not compared)."""
    from pyramids import compiled

    rng = np.random.default_rng(len(BOUNDARIES) * 7 + len(channels))
    sizes = [(1, 1), (1, 2), (2, 1), (3, 5), (6, 9), (17, 16), (40, 51), (64, 3), (9, 70)]
    sizes += [(131, 6), (300, 11)]
    for (h, w), special in [(size, special) for size in sizes for special in (False, True)]:
        x = rng.standard_normal((h, w, *channels)).astype(dtype)
        if special:  # NaN, +inf, -inf at three pixels (fewer in a smaller image)
            at = rng.permutation(x.size)[:3]
            x.reshape(-1)[at] = np.array([np.nan, np.inf, -np.inf])[: at.size]
        op = operators.reduce_operator(x.shape, kernel, boundary)
        packed, kind = get_engine("compiled")._prepare(op, np.dtype(dtype))
        with np.errstate(invalid="ignore"):
            reference = apply(op, x, engine="matrix")
        nothing = np.zeros(reference.shape)
        reference[np.isnan(reference)] = np.nan  # one NaN, its sign bit cleared
        _assert_same(_plain_nan(apply(op, x, engine="compiled")), reference, nothing)
        if kind != 1:  # too small for an interior: the general kernel made it
            assert min(h, w) < 8
            continue
        c = channels[0] if channels else 1
        m_h = reference.shape[0]
        target = np.full((m_h, reference[0].size), 7, dtype)
        image = np.ascontiguousarray(x).reshape(h, -1)
        for a, b in ((0, m_h // 3), (m_h // 3, m_h)):  # any row range, in two calls
            compiled.reduce_rows(image, c, target, a, b, *packed)
        _assert_same(_plain_nan(target.reshape(reference.shape)), reference, nothing)


def _plain_nan(y: np.ndarray) -> np.ndarray:
    """``y`` with every NaN replaced by ``np.nan`` (sign bit cleared)."""
    y[np.isnan(y)] = np.nan
    return y


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("channels", [(), (1,), (2,), (3,), (4,)], ids=str)
@pytest.mark.parametrize("kernel", KERNELS, ids=str)
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_the_expansion_kernel_equals_the_matrix_engine(boundary, kernel, channels, dtype):
    """``compiled.expand_rows``, the kernel of the expansion of a 5-tap kernel (3 taps on
    even outputs, 2 on odd ones), with each combine (none, ``base - Y``, ``base + Y``, in
    place), against the matrix engine, as for the reduction kernel; other kernels' F
    are left to ``apply_rows``, and must be too."""
    from pyramids import compiled

    rng = np.random.default_rng(len(BOUNDARIES) * 5 + len(channels))
    sizes = [(1, 1), (2, 3), (5, 2), (6, 9), (17, 16), (40, 51), (64, 3), (9, 70)]
    five = len(pyramids.kernels.resolve_kernel(kernel)) == 5
    for (h, w), special in [(size, special) for size in sizes for special in (False, True)]:
        op = operators.expand_operator((h, w, *channels), kernel, boundary)
        x = rng.standard_normal((*op.shape_in, *channels)).astype(dtype)
        if special:  # NaN, +inf, -inf at three pixels (fewer in a smaller image)
            at = rng.permutation(x.size)[:3]
            x.reshape(-1)[at] = np.array([np.nan, np.inf, -np.inf])[: at.size]
        base = rng.standard_normal((h, w, *channels)).astype(dtype)
        packed, kind = get_engine("compiled")._prepare(op, np.dtype(dtype))
        assert kind == 2 or not five or min(h, w) < 8
        assert kind != 2 or five
        nothing = np.zeros(base.shape)
        for mode, combine in ((0, None), (1, (np.subtract, base)), (2, (np.add, base))):
            with np.errstate(invalid="ignore"):
                reference = _plain_nan(apply(op, x, combine=combine, engine="matrix"))
            fast = _plain_nan(apply(op, x, combine=combine, engine="compiled"))
            _assert_same(fast, reference, nothing)
            # each row's finite check, as the kernel makes it (either kernel)
            finite_rows = np.isfinite(reference.reshape(h, -1)).all(axis=1)
            if combine is not None:
                checked, finite = get_engine("compiled").run_finite(op, x, combine, 1)
                _assert_same(_plain_nan(checked), reference, nothing)
                assert finite == finite_rows.all()
            if kind != 2:
                continue
            target = np.full(base.shape, 7, dtype).reshape(h, -1)
            image = np.ascontiguousarray(x).reshape(x.shape[0], -1)
            checks = np.full(h, 7, dtype)
            for a, b in ((0, h // 3), (h // 3, h)):  # any row range, in two calls
                compiled.expand_rows(image, x.size // x.shape[0] // x.shape[1], target,
                                     base.reshape(h, -1), mode, checks, a, b, *packed)  # fmt: skip
            _assert_same(_plain_nan(target.reshape(base.shape)), reference, nothing)
            # 0 for a row of finite values, NaN for a row with NaN or ±inf
            np.testing.assert_array_equal(checks[finite_rows], 0)
            assert np.isnan(checks[~finite_rows]).all()
        acc = base.copy()  # in place: out is the base
        apply(op, x, out=acc, combine=(np.add, acc), engine="compiled")
        with np.errstate(invalid="ignore"):
            reference = _plain_nan(apply(op, x, combine=(np.add, base), engine="matrix"))
        _assert_same(_plain_nan(acc), reference, nothing)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (64, 48), (33, 70, 3), (130, 9, 2)], ids=str)
def test_all_levels_in_one_call_equal_one_call_per_level(shape, dtype, monkeypatch):
    """``CompiledEngine.reduce_levels`` makes a small pyramid in one compiled call
    (``compiled.reduce_levels``) down to the levels that have no interior, which are
    made one ``run`` each, down to 1 × 1: it equals one ``run`` per level (the path of
    images split over threads); each level is an array of its own."""
    compiled = get_engine("compiled")
    x = np.random.default_rng(3).standard_normal(shape).astype(dtype)
    ops = [operators.reduce_operator(x.shape)]
    for _ in range(pyramids.max_levels(shape) - 1):
        ops.append(operators.reduce_operator((*ops[-1].shape_out, *shape[2:])))
    at_once = compiled.reduce_levels(ops, x, 1)
    monkeypatch.setattr(engine, "_COMPILED_THREAD_MIN_ELEMENTS", 0)  # one call per level
    per_level = compiled.reduce_levels(ops, x, 2)
    assert len(at_once) == len(per_level) == len(ops)
    for a, b, op in zip(at_once, per_level, ops):
        assert a.shape == b.shape == (*op.shape_out, *shape[2:]) and a.dtype == dtype
        np.testing.assert_array_equal(a, b)
    for a, b in itertools.pairwise(at_once):
        assert not np.shares_memory(a, b)


def test_levels_at_once_keep_each_image_shape():
    """The plan of ``reduce_levels`` is kept per operator list, channel shape and dtype:
    an ``(h, w)`` image and an ``(h, w, 1)`` one of the same size share the operators
    but not the level shapes."""
    for shape in [(40, 36), (40, 36, 1), (40, 36), (40, 36, 3)]:
        x = np.random.default_rng(5).random(shape)
        levels = pyramids.gaussian_pyramid(x, 3)
        expected = [pyramids.gaussian_pyramid(x, 3, copy=False)[0].shape]
        for _ in range(3):
            h, w = expected[-1][:2]
            expected.append(((h + 1) // 2, (w + 1) // 2, *shape[2:]))
        assert [g.shape for g in levels] == expected


def _collapse_inputs(shape, kernel, dtype, levels=None):
    """A Laplacian pyramid of noise, its expansions and the engine's arguments."""
    x = np.random.default_rng(6).standard_normal(shape).astype(dtype)
    levels = pyramids.max_levels(shape) if levels is None else levels  # down to 1 × 1
    pyr = pyramids.laplacian_pyramid(x, levels, kernel)
    ops = [operators.expand_operator(band.shape, kernel, "reflect") for band in pyr.bands]
    return pyr, ops


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel", ["binomial", "binomial3", "binomial7"])
@pytest.mark.parametrize(
    "shape", [(2, 2), (7, 3), (64, 48), (33, 70, 3), (130, 9, 2), (40, 36, 1)], ids=str
)
def test_a_collapse_in_one_call_equals_one_call_per_level(shape, kernel, dtype, monkeypatch):
    """``CompiledEngine.collapse`` makes a small collapse in one compiled call
    (``compiled.expand_levels``, for the levels ``expand_rows`` makes: the 5-tap kernel's,
    after the first few from a 1 × 1 residual; the others one ``run`` each): it equals one
    ``run`` per level (the path of images split over threads), even the signs of zeros,
    with the same finite check, in a new array."""
    compiled = get_engine("compiled")
    pyr, ops = _collapse_inputs(shape, kernel, dtype)
    bands = list(pyr.bands)
    at_once, finite = compiled.collapse(ops, bands, pyr.residual, 1, True)
    monkeypatch.setattr(engine, "_COMPILED_THREAD_MIN_ELEMENTS", 0)  # one call per level
    per_level, finite_per_level = compiled.collapse(ops, bands, pyr.residual, 2, True)
    assert at_once.shape == per_level.shape == shape and at_once.dtype == dtype
    _assert_same(at_once, per_level, np.zeros(shape))
    assert finite and finite_per_level
    assert not any(np.shares_memory(at_once, a) for a in [*bands, pyr.residual])
    # a NaN in any band, or an infinity in the residual, reaches the result's check
    for k in range(len(bands)):
        spoilt = [band.copy() for band in bands]
        spoilt[k][-1, -1] = np.nan
        monkeypatch.setattr(engine, "_COMPILED_THREAD_MIN_ELEMENTS", 1 << 20)
        assert compiled.collapse(ops, spoilt, pyr.residual, 1, True)[1] is False
    residual = pyr.residual.copy()
    residual.flat[0] = np.inf
    assert compiled.collapse(ops, bands, residual, 1, True)[1] is False
    assert compiled.collapse(ops, bands, residual, 1, False)[1] is True  # not checked


@pytest.mark.parametrize("levels", [16, 17])
def test_a_collapse_longer_than_one_call_takes_makes_its_coarsest_levels_first(levels):
    """The bands travel as one tuple of ``_CHAIN_LEVELS`` arrays; the coarsest levels of a
    longer collapse (a side of 2¹⁶ pixels or more) are made one call each first. Both
    equal the matrix engine."""
    assert engine._CHAIN_LEVELS == 16
    pyr, ops = _collapse_inputs((1, 2**levels), "binomial", np.float64, levels)
    assert len(ops) == levels
    result, finite = get_engine("compiled").collapse(ops, list(pyr.bands), pyr.residual, 1, True)
    expected = pyr.residual
    for band, op in zip(reversed(pyr.bands), reversed(ops)):
        expected = apply(op, expected, combine=(np.add, band), engine="matrix")
    assert finite
    _assert_same(result, expected, np.zeros(expected.shape))


def test_a_collapse_copies_only_the_bands_the_kernel_cannot_read():
    """Read-only, strided and big-endian coefficients give the same image as plain ones
    (a strided or read-only band is copied for the kernel; the caller's arrays are left
    as they were)."""
    pyr, _ = _collapse_inputs((45, 38, 3), "binomial", np.float32, 4)
    expected = pyr.reconstruct()
    odd = [band.copy() for band in pyr.bands]
    odd[0].flags.writeable = False
    odd[1] = np.asfortranarray(odd[1])
    odd[2] = odd[2].astype(">f4")
    residual = np.repeat(pyr.residual, 2, axis=1)[:, ::2]  # a strided view
    kept = [band.copy() for band in odd]
    result = pyramids.reconstruct_laplacian(odd, residual, threads=1)
    np.testing.assert_array_equal(result, expected)
    for band, copy in zip(odd, kept):
        np.testing.assert_array_equal(band, copy)


@pytest.mark.parametrize("base_dtype", [np.float16, ">f8", np.int32, np.bool_, np.float32])
@pytest.mark.parametrize("op_kind", ["expand", "reduce"])
def test_a_combine_the_kernel_does_not_fuse_never_hands_its_base_to_the_kernel(
    op_kind, base_dtype
):
    """A ``combine`` whose base has another dtype than ``x`` (float16, big-endian, an
    integer, a bool) is numpy's, after the kernel, as the matrix engine makes it: the kernel
    never sees that base (numba types neither float16 nor a big-endian array, and every
    other dtype would compile a variant of its own)."""
    shape = (12, 10, 3)
    make = operators.expand_operator if op_kind == "expand" else operators.reduce_operator
    op = make(shape)
    x = np.random.default_rng(8).standard_normal((*op.shape_in, 3))
    base = (np.random.default_rng(9).random((*op.shape_out, 3)) * 4).astype(base_dtype)
    expected = apply(op, x, combine=(np.add, base), engine="matrix")
    apply(op, x, engine="compiled")  # the variant the call needs, loaded or compiled
    signatures = [len(f.signatures) for f in _kernels()]
    result = apply(op, x, combine=(np.add, base), engine="compiled")
    _assert_same(result, expected, np.zeros(expected.shape))
    assert [len(f.signatures) for f in _kernels()] == signatures  # no variant of its own


def _kernels():
    from pyramids import compiled

    return [compiled.apply_rows, compiled.reduce_rows, compiled.expand_rows]

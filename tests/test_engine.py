"""The tiled engine against the matrix engine (the formula as written), and its pieces.

Both engines compute ``Y = Σ_t U_t X V_tᵀ``; they differ only in the order of the roundings.
An output that sums ``N`` products along its longest path errs by at most
``γ_N · (Σ_t |U_t| |X| |V_t|ᵀ)`` elementwise, ``γ_N = N·u / (1 - N·u)`` with ``u`` the unit
roundoff: for the tiled engine ``N = n_U + n_V`` with one term (two whole passes; the zeros
of its dense tiles add nothing) or ``n_V + R·n_U`` with ``R`` terms (each term's width pass,
then one interleaved height pass over all of them), for the matrix engine
``N = n_U + n_V + R`` (a sparse product along each axis, then the sum of the terms), with
``n_U``, ``n_V`` the most nonzeros in a row of a factor. The engines therefore differ by at
most the sum of the two bounds; ``combine`` adds one rounding of each result.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from pyramids import engine, operators
from pyramids.engine import BandTiles, Separable, apply, get_engine, mix

BOUNDARIES = operators.BOUNDARIES
SHAPES = [(1, 1), (1, 7), (6, 1), (5, 4), (9, 14, 3), (70, 133), (97, 64, 3), (203, 37)]
RNG_TAPS = np.random.default_rng(11)
# Three separable terms of 7 × 5 taps (a steerable stage has 3 to 9).
TERMS = (RNG_TAPS.standard_normal((3, 7)), RNG_TAPS.standard_normal((3, 5)))


def _operator(kind: str, shape: tuple[int, ...], boundary: str) -> Separable:
    """An operator acting on ``shape`` (or, for the expansions, onto it)."""
    h, w = shape[:2]
    if kind.startswith("reduce-"):
        return operators.reduce_operator(shape, _kernel(kind), boundary)
    if kind.startswith("expand-"):
        return operators.expand_operator(shape, _kernel(kind), boundary)
    us, vs = TERMS
    if kind == "mirror":  # even and odd factors on each axis; boundary 'reflect' only
        rows = [
            operators.correlation_matrix(u, h, step=2, upsample=True, parity=p)
            for u, p in zip(us, (1, -1, 1))
        ]
        cols = [
            operators.correlation_matrix(v, w, step=2, upsample=True, parity=p)
            for v, p in zip(vs, (-1, 1, 1))
        ]
        return Separable(rows, cols)
    step = 2 if kind.endswith("step2") or kind == "adjoint" else 1
    rows = [operators.correlation_matrix(u, h, boundary, step=step) for u in us]
    cols = [operators.correlation_matrix(v, w, boundary, step=step) for v in vs]
    op = Separable(rows, cols)
    return op.T if kind == "adjoint" else op


def _kernel(kind: str) -> str | float:
    name = kind.split("-", 1)[1]
    return float(name) if name[0].isdigit() else name


def _input(op: Separable, shape: tuple[int, ...], dtype, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((*op.shape_in, *shape[2:])).astype(dtype)


def _rounding_bound(op: Separable, x: np.ndarray) -> np.ndarray:
    """Elementwise bound on |tiled - matrix| (module docstring)."""
    u = np.finfo(x.dtype).eps / 2

    def gamma(n: int) -> float:
        return n * u / (1 - n * u)

    n_u = max(int(np.diff(m.indptr).max(initial=0)) for m in op.rows)
    n_v = max(int(np.diff(m.indptr).max(initial=0)) for m in op.cols)
    r = op.terms
    grows = any(m > n for m, n in zip(op.shape_out, op.shape_in))
    tiled = n_u + n_v if r == 1 and not grows else n_v + r * n_u
    absolute = Separable([abs(m) for m in op.rows], [abs(m) for m in op.cols])
    magnitude = get_engine("matrix").apply(absolute, np.abs(x.astype(np.float64)))
    return (gamma(tiled) + gamma(n_u + n_v + r)) * magnitude


KINDS = [
    "reduce-binomial",
    "reduce-binomial7",
    "reduce-0.6",
    "expand-binomial",
    "expand-0.4",
    "terms-step1",
    "terms-step2",
    "adjoint",
    "mirror",
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize(
    ("kind", "boundary"),
    [(k, b) for k in KINDS for b in BOUNDARIES if k != "mirror" or b == "reflect"],
)
def test_tiled_engine_equals_matrix_engine_within_rounding(kind, boundary, shape, dtype):
    op = _operator(kind, shape, boundary)
    x = _input(op, shape, dtype)
    tiled, matrix = get_engine("separable"), get_engine("matrix")
    bound = _rounding_bound(op, x)
    fast, reference = tiled.apply(op, x), matrix.apply(op, x)
    assert fast.dtype == reference.dtype == dtype
    assert fast.shape == reference.shape == (*op.shape_out, *shape[2:])
    assert np.all(np.abs(fast - reference) <= bound)
    # combine: one more rounding of each result, u·(|r_tiled| + |r_matrix|)
    u = np.finfo(dtype).eps / 2
    base = np.random.default_rng(1).standard_normal(fast.shape).astype(dtype)
    for ufunc in (np.subtract, np.add):
        fast = tiled.apply(op, x, combine=(ufunc, base))
        reference = matrix.apply(op, x, combine=(ufunc, base))
        slack = bound + u * (np.abs(fast) + np.abs(reference))
        assert np.all(np.abs(fast - reference) <= slack)


@given(
    kind=st.sampled_from(KINDS),
    boundary=st.sampled_from(BOUNDARIES),
    h=st.integers(1, 60),
    w=st.integers(1, 60),
    channels=st.sampled_from([(), (1,), (2,), (3,)]),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_tiled_engine_equals_matrix_engine_on_random_shapes(kind, boundary, h, w, channels, dtype):
    if kind == "mirror":
        boundary = "reflect"
    shape = (h, w, *channels)
    op = _operator(kind, shape, boundary)
    x = _input(op, shape, dtype)
    fast, reference = apply(op, x, engine="separable"), apply(op, x, engine="matrix")
    assert fast.shape == reference.shape and fast.dtype == dtype
    assert np.all(np.abs(fast - reference) <= _rounding_bound(op, x))


def test_the_rounding_bound_catches_a_wrong_weight():
    # The comparison has teeth: one weight off by 1e-6 of the operator's scale is seen.
    shape = (40, 33)
    op = _operator("terms-step1", shape, "reflect")
    x = _input(op, shape, np.float64)
    wrong = op.rows[1].copy()
    wrong.data[len(wrong.data) // 2] += 1e-6 * np.abs(wrong.data).max()
    changed = Separable([op.rows[0], wrong, op.rows[2]], op.cols)
    difference = np.abs(apply(op, x) - apply(changed, x, engine="matrix"))
    assert not np.all(difference <= _rounding_bound(op, x))


@pytest.mark.parametrize("name", ["separable", "matrix"])
@pytest.mark.parametrize("kind", ["reduce-binomial", "expand-binomial", "terms-step2", "adjoint"])
def test_out_and_in_place_accumulation_equal_the_separate_sum(kind, name):
    # Same arithmetic, so exactly equal: Y written to out, and base + Y written over base.
    shape = (70, 45, 2)
    op = _operator(kind, shape, "reflect")
    eng = get_engine(name)
    x = _input(op, shape, np.float32)
    y = eng.apply(op, x)
    out = np.full_like(y, np.nan)
    assert eng.apply(op, x, out=out) is out
    np.testing.assert_array_equal(out, y)
    base = np.random.default_rng(3).standard_normal(y.shape).astype(np.float32)
    expected = base + y
    assert eng.apply(op, x, out=base, combine=(np.add, base)) is base
    np.testing.assert_array_equal(base, expected)


@pytest.mark.parametrize("kind", ["reduce-binomial", "expand-binomial", "terms-step1", "adjoint"])
def test_tiled_result_does_not_depend_on_the_thread_count(kind):
    shape = (300, 260, 3)  # large enough to be split over threads
    op = _operator(kind, shape, "symmetric")
    x = _input(op, shape, np.float32)
    one = apply(op, x, threads=1, engine="separable")
    for threads in (2, 3, 5):
        np.testing.assert_array_equal(apply(op, x, threads=threads, engine="separable"), one)


def test_mix_equals_the_weighted_sum_for_any_thread_count():
    rng = np.random.default_rng(4)
    arrays = [rng.standard_normal((300, 250, 2)) for _ in range(4)]
    matrix = rng.standard_normal((4, 4))
    one = mix(arrays, matrix, threads=1)
    for i, out in enumerate(one):
        expected = sum(matrix[i, j] * a for j, a in enumerate(arrays))
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-13)
    for threads in (2, 3):
        for a, b in zip(mix(arrays, matrix, threads=threads), one):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("outputs", [1, 3, 5])
def test_mix_makes_one_array_per_row_of_the_matrix(outputs):
    """Once cut to the number of arrays: 3 arrays and a 5 × 3 matrix gave 3 outputs."""
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal((7, 6)) for _ in range(3)]
    matrix = rng.standard_normal((outputs, 3))
    mixed = mix(arrays, matrix, threads=1)
    assert len(mixed) == outputs
    for i, out in enumerate(mixed):
        expected = sum(matrix[i, j] * a for j, a in enumerate(arrays))
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="one column per array"):
        mix(arrays, rng.standard_normal((3, 2)))


# --------------------------------------------------------------------------- band tiles


@pytest.mark.parametrize("tile", [1, 4, 16])
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("kind", ["reduce", "expand"])
def test_band_tiles_equal_the_sparse_product(kind, boundary, tile):
    builder = {
        "reduce": operators.blur_downsample_matrix,
        "expand": operators.upsample_blur_matrix,
    }
    matrix = builder[kind](203, "binomial7", boundary)
    tiles = BandTiles(matrix, tile)
    assert tiles.batch is not None  # the interior really goes through the batched product
    rng = np.random.default_rng(5)
    x = rng.random((matrix.shape[1], 6))
    out = np.empty((matrix.shape[0], 6))
    tiles.apply_cols(x.T.copy(), out.T)
    np.testing.assert_allclose(out, matrix @ x, rtol=0, atol=1e-14)
    out[:] = np.nan
    for piece in tiles.pieces(group=3):
        tiles.multiply_rows(x, piece, out[piece[0]])
    np.testing.assert_allclose(out, matrix @ x, rtol=0, atol=1e-14)


def test_band_tiles_of_a_matrix_with_no_band_still_multiply_exactly():
    matrix = sp.random_array((37, 50), density=0.1, rng=6, format="csr")
    tiles = BandTiles(matrix, 8)
    x = np.random.default_rng(7).random((3, 50))
    out = np.empty((3, 37))
    tiles.apply_cols(x, out)
    np.testing.assert_allclose(out, x @ matrix.toarray().T, rtol=0, atol=1e-14)


def test_engine_keeps_its_tiles_with_the_operator():
    op = operators.reduce_operator((64, 48))
    apply(op, np.zeros((64, 48), np.float32), engine="separable")
    assert any("tiled" in key for key in op.prepared)


# --------------------------------------------------------------------------- bad calls


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda op: apply(op, np.zeros((5, 4))), ValueError, "x must have shape"),
        (lambda op: apply(op, np.zeros((6, 4), np.int32)), TypeError, "float32 or float64"),
        (lambda op: apply(op, np.zeros((6, 4)), out=np.zeros((3, 3))), ValueError, "out must"),
        (
            lambda op: apply(op, np.zeros((6, 4)), out=np.zeros((2, 3)).T),
            ValueError,
            "C-contiguous",
        ),
        (
            lambda op: apply(op, np.zeros((6, 4)), combine=(np.add, np.zeros(3))),
            ValueError,
            "base",
        ),
        (lambda op: apply(op, np.zeros((6, 4)), threads=0), ValueError, "threads"),
        (lambda op: apply(op, np.zeros((6, 4)), engine="fft"), ValueError, "engine"),
        (lambda op: Separable([op.rows[0]], []), ValueError, "as many"),
        (
            lambda op: Separable([op.rows[0], op.cols[0]], [op.cols[0]] * 2),
            ValueError,
            "share one shape",
        ),
    ],
)
def test_bad_calls_are_clear_errors(call, error, message):
    op = operators.reduce_operator((6, 4))
    with pytest.raises(error, match=message):
        call(op)


def test_every_tuning_constant_lives_in_the_engine():
    import pyramids.laplacian
    import pyramids.operators
    import pyramids.steerable

    for module in (pyramids.operators, pyramids.steerable, pyramids.laplacian):
        for name in (
            "_TILE",
            "_STRIP_ELEMENTS",
            "_BLOCK_ELEMENTS",
            "_THREAD_MIN_ELEMENTS",
            "_COMPILED_THREAD_MIN_ELEMENTS",
        ):
            assert not hasattr(module, name), (module.__name__, name)
    assert engine._TILE and engine._STRIP_ELEMENTS

"""The sparse operators (the one builder, G and F) against independent references.

See docs/design.md §1. How the operators are applied fast is tested in test_engine.py.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import ndimage

import pyramids
from pyramids import operators
from pyramids.kernels import binomial_kernel, burt_adelson_kernel, resolve_kernel

# package boundary name -> (scipy.ndimage mode, numpy.pad mode)
MODES = {
    "reflect": ("mirror", "reflect"),
    "symmetric": ("reflect", "symmetric"),
    "nearest": ("nearest", "edge"),
    "periodic": ("wrap", "wrap"),
    "zero": ("constant", "constant"),
}
KERNELS = ["binomial", 0.4, "binomial3", "binomial7", [0.25, 0.5, 0.25]]
SIZES = [1, 2, 3, 4, 5, 8, 13, 32]


def reference_reduce_1d(x, weights, boundary):
    """Correlate the extended signal with ``w`` (scipy.ndimage), keep the even samples."""
    return ndimage.correlate1d(x, weights, axis=0, mode=MODES[boundary][0])[::2]


def reference_expand_1d(y, n, weights, boundary):
    """Zero-stuff to length ``n``, pad with numpy, correlate with ``2·w``, keep the middle."""
    u = np.zeros((n, *y.shape[1:]))
    u[::2] = y
    r = len(weights) // 2
    pad = [(r, r)] + [(0, 0)] * (u.ndim - 1)
    extended = np.pad(u, pad, mode=MODES[boundary][1])
    out = ndimage.correlate1d(extended, 2 * np.asarray(weights), axis=0, mode="constant")
    return out[r : r + n]


def rounding_tolerance(kron, x, separable_products):
    """Elementwise bound on |separable - Kronecker| (and on |separable - float64 reference|).

    A product of ``n`` terms per output errs by at most ``γ_n · |M| |x|`` (``γ_n = n·u /
    (1 - n·u)``, ``u`` the dtype's unit roundoff): the Kronecker matrix's sparse product sums
    a row's nonzeros, the separable operator ``separable_products`` terms over its two
    passes (a row of each 1-D matrix). The float64 references (5 taps per axis) err by no
    more than the Kronecker product, and the default kernel's weights are exact in float32,
    so the same bound holds against them.
    """
    u = np.finfo(kron.dtype).eps / 2
    n_kron = int(np.diff(kron.indptr).max())
    gamma = sum(n * u / (1 - n * u) for n in (n_kron, separable_products))
    return gamma * (abs(kron.astype(np.float64)) @ np.abs(x.astype(np.float64).ravel()))


def _products(matrices):
    return sum(int(np.diff(m.indptr).max()) for m in matrices)


@pytest.mark.parametrize("boundary", operators.BOUNDARIES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kernel", KERNELS, ids=str)
def test_blur_downsample_equals_direct_correlation(n, boundary, kernel):
    w = resolve_kernel(kernel)
    x = np.random.default_rng(n).random((n, 3))
    g = pyramids.blur_downsample_matrix(n, kernel, boundary)
    assert g.shape == ((n + 1) // 2, n)
    np.testing.assert_allclose(g @ x, reference_reduce_1d(x, w, boundary), rtol=0, atol=1e-14)


@pytest.mark.parametrize("boundary", operators.BOUNDARIES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kernel", KERNELS, ids=str)
def test_upsample_blur_equals_direct_correlation(n, boundary, kernel):
    w = resolve_kernel(kernel)
    y = np.random.default_rng(n).random(((n + 1) // 2, 2))
    f = pyramids.upsample_blur_matrix(n, kernel, boundary)
    assert f.shape == (n, (n + 1) // 2)
    expected = reference_expand_1d(y, n, w, boundary)
    np.testing.assert_allclose(f @ y, expected, rtol=0, atol=1e-14)


def test_upsample_matrix_is_the_lecture_matrix():
    lecture = [[6, 1, 0, 0], [4, 4, 0, 0], [1, 6, 1, 0], [0, 4, 4, 0]]
    lecture += [[0, 1, 6, 1], [0, 0, 4, 4], [0, 0, 1, 6], [0, 0, 0, 4]]
    f = pyramids.upsample_blur_matrix(8, boundary="zero")
    np.testing.assert_array_equal(8 * f.toarray(), lecture)


def test_upsample_is_twice_the_transpose_in_the_interior():
    g = pyramids.blur_downsample_matrix(32).toarray()
    f = pyramids.upsample_blur_matrix(32).toarray()
    np.testing.assert_allclose(f[4:-4, 3:-3], 2 * g.T[4:-4, 3:-3], atol=1e-15)


@pytest.mark.parametrize("boundary", operators.BOUNDARIES)
@pytest.mark.parametrize("n", [1, 2, 7, 16])
def test_every_row_of_blur_sums_to_one_except_zero_padding(n, boundary):
    g = pyramids.blur_downsample_matrix(n, boundary=boundary)
    sums = np.asarray(g.sum(axis=1)).ravel()
    if boundary == "zero":
        assert np.all(sums <= 1 + 1e-15)
    else:
        np.testing.assert_allclose(sums, 1.0, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("boundary", operators.BOUNDARIES)
# The larger shapes span several dense tiles, so the batched path of BandTiles runs too.
@pytest.mark.parametrize(
    "shape", [(1, 1), (1, 7), (6, 1), (9, 14), (16, 11, 3), (5, 4, 2), (70, 133), (97, 64, 3)]
)
def test_separable_reduce_equals_kronecker_and_ndimage(shape, boundary, dtype):
    x = np.random.default_rng(1).random(shape).astype(dtype)
    y = pyramids.reduce(x, boundary=boundary)
    assert y.dtype == dtype
    assert y.shape == ((shape[0] + 1) // 2, (shape[1] + 1) // 2, *shape[2:])
    kron = pyramids.reduce_matrix(shape, boundary=boundary, dtype=dtype)
    sides = [pyramids.blur_downsample_matrix(n, boundary=boundary) for n in shape[:2]]
    tol = rounding_tolerance(kron, x, _products(sides))
    assert np.all(np.abs(y.ravel() - kron @ x.ravel()) <= tol)
    w = binomial_kernel(5)
    mode = MODES[boundary][0]
    ref = ndimage.correlate1d(x.astype(np.float64), w, axis=0, mode=mode)
    ref = ndimage.correlate1d(ref, w, axis=1, mode=mode)[::2, ::2]
    assert np.all(np.abs(y - ref).ravel() <= tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("boundary", operators.BOUNDARIES)
@pytest.mark.parametrize("shape", [(1, 1), (2, 9), (9, 14), (16, 11, 3), (70, 133), (97, 64, 3)])
def test_separable_expand_equals_kronecker_and_reference(shape, boundary, dtype):
    small = ((shape[0] + 1) // 2, (shape[1] + 1) // 2, *shape[2:])
    y = np.random.default_rng(2).random(small).astype(dtype)
    x = pyramids.expand(y, shape[:2], boundary=boundary)
    assert x.dtype == dtype and x.shape == shape
    kron = pyramids.expand_matrix(shape, boundary=boundary, dtype=dtype)
    sides = [pyramids.upsample_blur_matrix(n, boundary=boundary) for n in shape[:2]]
    tol = rounding_tolerance(kron, y, _products(sides))
    assert np.all(np.abs(x.ravel() - kron @ y.ravel()) <= tol)
    w = binomial_kernel(5)
    ref = reference_expand_1d(y.astype(np.float64), shape[0], w, boundary)
    ref = np.moveaxis(reference_expand_1d(np.moveaxis(ref, 1, 0), shape[1], w, boundary), 0, 1)
    assert np.all(np.abs(x - ref).ravel() <= tol)


@pytest.mark.parametrize("op", ["reduce", "expand"])
def test_large_image_uses_threads_and_matches_single_thread(op):
    x = np.random.default_rng(3).random((300, 517, 3)).astype(np.float32)
    run = {
        "reduce": pyramids.reduce,
        "expand": lambda y, threads: pyramids.expand(y, (599, 1033), threads=threads),
    }[op]
    one = run(x, threads=1)
    for threads in (2, 3):
        np.testing.assert_array_equal(run(x, threads=threads), one)
    if op == "expand":  # and the strip-fused path equals the Kronecker matrix
        kron = pyramids.expand_matrix((599, 1033, 3), dtype=np.float32)
        sides = [pyramids.upsample_blur_matrix(n) for n in (599, 1033)]
        tol = rounding_tolerance(kron, x, _products(sides))
        assert np.all(np.abs(one.ravel() - kron @ x.ravel()) <= tol)


def test_apply_separable_matches_dense_product():
    x = np.random.default_rng(4).random((10, 7))
    a = sp.random_array((4, 10), density=0.5, rng=0, format="csr")
    b = sp.random_array((3, 7), density=0.5, rng=1, format="csr")
    np.testing.assert_allclose(
        pyramids.apply_separable(x, a, b), a.toarray() @ x @ b.toarray().T, atol=1e-14
    )
    with pytest.raises(ValueError, match="do not fit"):
        pyramids.apply_separable(x, b, a)


def test_operators_are_cached_and_copies_are_handed_out():
    a = pyramids.blur_downsample_matrix(64)
    a.data[:] = 0
    b = pyramids.blur_downsample_matrix(64)
    assert b.data.max() > 0
    by_name = resolve_kernel("binomial")
    by_taps = np.array([1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16])
    first = operators.reduce_operator((64, 48), by_name)
    assert operators.reduce_operator((64, 48, 3), by_taps) is first  # so are its tiles


def test_integer_images_are_scaled_to_unit_range():
    x = np.full((4, 4), 255, dtype=np.uint8)
    y = pyramids.reduce(x)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, 1.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: pyramids.reduce(np.zeros((0, 4))), "empty"),
        (lambda: pyramids.reduce(np.full((4, 4), np.nan)), "NaN"),
        (lambda: pyramids.reduce(np.zeros(4)), "shape"),
        (lambda: pyramids.reduce(np.zeros((4, 4)), boundary="wrap"), "boundary"),
        (lambda: pyramids.reduce(np.zeros((4, 4)), kernel=[1, 2]), "odd"),
        (lambda: pyramids.reduce(np.zeros((4, 4)), kernel=[0.2, 0.5, 0.2]), "sum to 1"),
        (lambda: pyramids.reduce(np.zeros((4, 4)), kernel=[0.2, 0.7, 0.1]), "symmetric"),
        (lambda: pyramids.reduce(np.zeros((4, 4)), kernel="gauss"), "unknown kernel"),
        (lambda: pyramids.expand(np.zeros((3, 3)), (8, 6)), "cannot expand"),
        (lambda: pyramids.blur_downsample_matrix(0), "at least 1"),
    ],
)
def test_bad_input_raises_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_complex_image_is_a_type_error():
    with pytest.raises(TypeError, match="real numeric"):
        pyramids.reduce(np.zeros((4, 4), complex))


def test_burt_adelson_binomial_case():
    np.testing.assert_allclose(burt_adelson_kernel(0.375), binomial_kernel(5))


# --------------------------------------------------------------------------- the one builder

TAPS = {1: [1.0], 3: [0.2, -0.5, 0.9], 7: [0.1, -0.3, 0.25, 1.0, -0.7, 0.05, 0.4]}


@pytest.mark.parametrize("boundary", operators.BOUNDARIES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("step", [1, 2, 3])
@pytest.mark.parametrize("length", sorted(TAPS))
def test_correlation_matrix_equals_strided_ndimage_correlation(length, step, n, boundary):
    taps = np.array(TAPS[length])
    x = np.random.default_rng(n).standard_normal((n, 2))
    matrix = operators.correlation_matrix(taps, n, boundary, step=step)
    assert matrix.shape == (-(-n // step), n)
    expected = ndimage.correlate1d(x, taps, axis=0, mode=MODES[boundary][0])[::step]
    np.testing.assert_allclose(matrix @ x, expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("boundary", operators.BOUNDARIES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("step", [1, 2, 3])
@pytest.mark.parametrize("length", sorted(TAPS))
def test_upsampling_correlation_matrix_equals_zero_stuffing_then_padding(
    length, step, n, boundary
):
    taps = np.array(TAPS[length])
    y = np.random.default_rng(n).standard_normal((-(-n // step), 2))
    matrix = operators.correlation_matrix(taps, n, boundary, step=step, upsample=True)
    assert matrix.shape == (n, len(y))
    u = np.zeros((n, 2))
    u[::step] = y
    r = length // 2
    extended = np.pad(u, [(r, r), (0, 0)], mode=MODES[boundary][1])
    expected = ndimage.correlate1d(extended, taps, axis=0, mode="constant")[r : r + n]
    np.testing.assert_allclose(matrix @ y, expected, rtol=0, atol=1e-14)


def _odd_extension(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``x`` extended as an odd signal about each end sample, ``x[-i] = -x[i]``: one period
    ``x_0 … x_{n-1}, -x_{n-2} … -x_1`` repeated."""
    period = np.concatenate([x, -x[-2:0:-1]]) if len(x) > 1 else x
    return period[np.mod(positions, len(period))]


@pytest.mark.parametrize("n", [2, 3, 4, 9, 16])
@pytest.mark.parametrize("step", [1, 2])
@pytest.mark.parametrize("upsample", [False, True])
def test_odd_parity_reads_through_the_mirror_with_a_sign_change(n, step, upsample):
    taps = np.array(TAPS[7])
    r = len(taps) // 2
    rng = np.random.default_rng(n)
    m = -(-n // step)
    matrix = operators.correlation_matrix(
        taps, n, "reflect", step=step, upsample=upsample, parity=-1
    )
    if upsample:
        y = rng.standard_normal(m)
        u = np.zeros(n)
        u[::step] = y
        expected = [taps @ _odd_extension(u, np.arange(j - r, j + r + 1)) for j in range(n)]
        np.testing.assert_allclose(matrix @ y, expected, rtol=0, atol=1e-14)
    else:
        x = rng.standard_normal(n)
        centres = step * np.arange(m)
        expected = [taps @ _odd_extension(x, np.arange(c - r, c + r + 1)) for c in centres]
        np.testing.assert_allclose(matrix @ x, expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("boundary", operators.BOUNDARIES)
@pytest.mark.parametrize("step", [1, 2])
@pytest.mark.parametrize("shape", [(1, 1), (7, 4), (12, 9)])
def test_2d_builder_equals_ndimage_and_kron_of_the_1d_builder(shape, step, boundary):
    rng = np.random.default_rng(8)
    kernel = rng.standard_normal((5, 3))
    x = rng.standard_normal(shape)
    matrix = operators.correlation_matrix_2d(kernel, shape, boundary, step=step)
    expected = ndimage.correlate(x, kernel, mode=MODES[boundary][0])[::step, ::step]
    np.testing.assert_allclose(matrix @ x.ravel(), expected.ravel(), rtol=0, atol=1e-13)
    # A separable filter u vᵀ: the 2-D matrix is the Kronecker product of the 1-D ones.
    u, v = rng.standard_normal(5), rng.standard_normal(3)
    for upsample in (False, True):
        outer = operators.correlation_matrix_2d(
            np.outer(u, v), shape, boundary, step=step, upsample=upsample
        )
        sides = [
            operators.correlation_matrix(t, n, boundary, step=step, upsample=upsample)
            for t, n in zip((u, v), shape)
        ]
        kron = sp.kron(*sides)
        np.testing.assert_allclose(outer.toarray(), kron.toarray(), rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: operators.correlation_matrix([1.0, 1.0], 5), "odd length"),
        (lambda: operators.correlation_matrix([1.0], 0), "at least 1"),
        (lambda: operators.correlation_matrix([1.0], 5, step=0), "step"),
        (lambda: operators.correlation_matrix([1.0], 5, "wrap"), "boundary"),
        (lambda: operators.correlation_matrix([1.0], 5, "zero", parity=-1), "reflect"),
        (lambda: operators.correlation_matrix([1.0], 5, parity=0), "parity"),
        (lambda: operators.correlation_matrix_2d(np.ones((2, 3)), (4, 4)), "odd sides"),
    ],
)
def test_builder_refuses_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_resolved_kernel_handed_back_is_not_validated_again_and_cannot_be_edited():
    """resolve_kernel returns its own read-only arrays as they are (the fast path a
    pyramid's reconstruct takes). No caller can edit one and hand it back unvalidated:
    made writeable, edited and made read-only again, it used to pass as [5, -3, 7];
    and a name's array, shared by every caller, used to be editable for all of them."""
    from pyramids.kernels import resolve_kernel

    for description in ("binomial", [0.25, 0.5, 0.25], 0.4):
        weights = resolve_kernel(description)
        assert resolve_kernel(weights) is weights and not weights.flags.writeable
        with pytest.raises(ValueError, match="WRITEABLE"):
            weights.setflags(write=True)
        with pytest.raises(ValueError, match="WRITEABLE"):
            weights.view().setflags(write=True)
    np.testing.assert_array_equal(resolve_kernel("binomial") * 16, [1, 4, 6, 4, 1])
    edited = resolve_kernel([0.25, 0.5, 0.25]).copy()  # a copy is writeable, and new
    edited[:] = [5, -3, 7]
    edited.setflags(write=False)
    with pytest.raises(ValueError, match="symmetric"):
        resolve_kernel(edited)

"""Pyramids in blocks on Dask (pyramids.chunked, docs/design.md §7) against the in-memory ones.

Every block applies the rows of the whole image's operator that make it to exactly the
samples they read. The compiled engine (the default) and the matrix engine sum each output's
products in the sparse row's stored order whatever the array's extent, so with them a block
gives the in-memory bits: the tests assert ``np.array_equal`` for the Gaussian levels,
Laplacian bands, residual, collapse and blend, float64 and float32. The numpy
``'separable'`` engine (the fallback without numba) sums in BLAS tiles whose order depends
on where the tiles fall in the block; for it the tests assert the derived bound of
:func:`pyramids.chunked.chunking_error_bound`, a few units of rounding. A block that read
the wrong samples or folded at a block edge would be off by O(1) under either assertion.
The engine is chosen through ``$PYRAMIDS_ENGINE``, which :func:`pyramids.engine.apply`
reads on every call, so the blocks (run here by Dask's synchronous scheduler, in this
process) and the in-memory pyramid use the same one.
"""

import platform
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from requires import require_module

import pyramids
from pyramids import operators
from pyramids.engine import ENGINE_VAR

KERNELS = ["binomial", 0.4, 0.6, "binomial3", "binomial7"]
#: Engines whose blocks equal the in-memory result bit for bit. The compiled kernel never
#: fuses a multiply-add (numba without fast-math), on any machine. The matrix engine is
#: scipy's sparse product, which compilers for other machines than x86-64 may build with
#: fused multiply-adds (tests/test_compiled_engine.py), possibly only in some lanes: there
#: it is left to the bound, as the separable engine is.
EXACT_ENGINES = ["compiled"] + (
    ["matrix"] if platform.machine().lower() in ("x86_64", "amd64") else []
)
ENGINES = ["compiled", "matrix", "separable"]


def modules():
    da = require_module("dask.array", "dask runs the chunked pyramids (the 'big' extra)")
    chunked = require_module("pyramids.chunked", "pyramids.chunked needs dask")
    return da, chunked


@contextmanager
def engine_in_use(name):
    """Run the block with ``$PYRAMIDS_ENGINE`` set to ``name`` (both paths read it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENGINE_VAR, name)
        yield


def compute(arrays):
    import dask

    return dask.compute(*arrays, scheduler="sync")


def image(shape, dtype, seed=0):
    return np.random.default_rng(seed).random(shape).astype(dtype)


def dask_image(x, rows, cols):
    da, _ = modules()
    return da.from_array(x, chunks=(rows, cols, *(-1,) * (x.ndim - 2)))


def assert_same(chunked, memory, what):
    """The chunked array has the in-memory one's shape, dtype and every bit."""
    assert chunked.shape == memory.shape and chunked.dtype == memory.dtype, what
    assert np.array_equal(chunked, memory), f"{what}: max diff {np.abs(chunked - memory).max()}"


PYRAMID_CASES = {
    "h": st.integers(1, 60),
    "w": st.integers(1, 60),
    "channels": st.sampled_from([0, 1, 3]),
    "rows": st.integers(1, 25),
    "cols": st.integers(1, 25),
    "boundary": st.sampled_from(operators.BOUNDARIES),
    "kernel": st.sampled_from(KERNELS),
    "dtype": st.sampled_from([np.float32, np.float64]),
    "levels": st.integers(0, 6),
}
SMALL_CHUNKS = {  # blocks of one sample; the 3-pixel side is 1 pixel from level 2 on
    "h": 64,
    "w": 3,
    "channels": 0,
    "rows": 1,
    "cols": 1,
    "boundary": "symmetric",
    "kernel": 0.6,
    "dtype": np.float32,
    "levels": 6,
}
ONE_PIXEL = {
    "h": 1,
    "w": 1,
    "channels": 3,
    "rows": 1,
    "cols": 1,
    "boundary": "reflect",
    "kernel": "binomial",
    "dtype": np.float64,
    "levels": 0,
}


@example(**SMALL_CHUNKS, engine="compiled", grey_mask=False)
@example(**SMALL_CHUNKS, engine=EXACT_ENGINES[-1], grey_mask=True)
@example(**ONE_PIXEL, engine="compiled", grey_mask=True)
@given(**PYRAMID_CASES, engine=st.sampled_from(EXACT_ENGINES), grey_mask=st.booleans())
def test_chunked_pyramids_equal_in_memory_bit_for_bit(
    h, w, channels, rows, cols, boundary, kernel, dtype, levels, engine, grey_mask
):
    _, chunked = modules()
    shape = (h, w) if channels == 0 else (h, w, channels)
    levels = min(levels, pyramids.max_levels(shape))
    x, y = image(shape, dtype), image(shape, dtype, 1)
    mask = image(shape[:2], np.float64, 2) if grey_mask else image(shape, np.float64, 2) > 0.5
    xd = dask_image(x, rows, cols)
    with engine_in_use(engine):
        g_mem = pyramids.gaussian_pyramid(x, levels, kernel, boundary)
        l_mem = pyramids.laplacian_pyramid(x, levels, kernel, boundary)
        back_mem = pyramids.reconstruct_laplacian(l_mem.bands, l_mem.residual, kernel, boundary)
        blend_mem = pyramids.blend(x, y, mask, levels, kernel, boundary)

        g_chunked = chunked.gaussian_pyramid(xd, levels, kernel, boundary)
        lap = chunked.laplacian_pyramid(xd, levels, kernel, boundary)
        back = chunked.reconstruct_laplacian(lap.bands, lap.residual, kernel, boundary)
        mixed = chunked.blend(xd, y, mask, levels, kernel, boundary)
        *levels_out, residual, back, mixed = compute(
            [*g_chunked, *lap.bands, lap.residual, back, mixed]
        )
    for k, g in enumerate(g_mem):
        assert_same(levels_out[k], g, f"level {k}")
    for k, band in enumerate(l_mem.bands):
        assert_same(levels_out[levels + 1 + k], band, f"band {k}")
    assert_same(residual, l_mem.residual, "residual")
    assert_same(back, back_mem, "collapse")
    assert_same(mixed, blend_mem, "blend")


# The numpy engine is only the fallback here, and its examples are the slowest in the file
# (tiled BLAS passes per block): a quarter of the profile's examples.
@settings(max_examples=max(1, settings.default.max_examples // 4))
@example(**SMALL_CHUNKS)
@example(**ONE_PIXEL)
@given(**PYRAMID_CASES)
def test_separable_engine_chunks_within_the_derived_bound(
    h, w, channels, rows, cols, boundary, kernel, dtype, levels
):
    _, chunked = modules()
    shape = (h, w) if channels == 0 else (h, w, channels)
    levels = min(levels, pyramids.max_levels(shape))
    x = image(shape, dtype)
    xd = dask_image(x, rows, cols)
    gauss, bands = chunked.chunking_error_bound(shape, levels, kernel, boundary, dtype)

    with engine_in_use("separable"):
        g_mem = pyramids.gaussian_pyramid(x, levels, kernel, boundary)
        l_mem = pyramids.laplacian_pyramid(x, levels, kernel, boundary)
        g_chunked = compute(chunked.gaussian_pyramid(xd, levels, kernel, boundary))
        lap = chunked.laplacian_pyramid(xd, levels, kernel, boundary)
        *l_bands, l_residual = compute([*lap.bands, lap.residual])
        # the collapse, chunked too: §8's bound holds for any order of summation
        back = chunked.reconstruct_laplacian(lap.bands, lap.residual, kernel, boundary)
        (out,) = compute([back])
    for k, (a, b) in enumerate(zip(g_mem, g_chunked)):
        assert b.shape == a.shape and b.dtype == a.dtype
        assert np.abs(a - b).max() <= gauss[k], f"level {k}"
    for k, (a, b) in enumerate(zip(l_mem.bands, l_bands)):
        assert b.shape == a.shape and b.dtype == a.dtype
        assert np.abs(a - b).max() <= bands[k], f"band {k}"
    assert np.abs(l_mem.residual - l_residual).max() <= gauss[-1]
    assert out.dtype == x.dtype
    bound = pyramids.reconstruction_error_bound(shape, levels, kernel, boundary, dtype)
    assert np.abs(out - x).max() <= bound


@pytest.mark.parametrize("boundary", operators.BOUNDARIES)
@pytest.mark.parametrize("kernel", KERNELS)
def test_block_rows_keep_the_whole_operators_entries_in_order(kernel, boundary):
    # What bit-for-bit equality rests on (pyramids/chunked.py): each row of a block's
    # submatrix holds the whole operator's row, the same values in the same stored order,
    # on the columns it reads; the operators are canonical CSR, so keeping ascending
    # columns keeps that order.
    _, chunked = modules()
    weights = pyramids.kernels.resolve_kernel(kernel)
    for n in (1, 2, 5, 16, 37):
        for matrix in (
            operators.blur_downsample_matrix(n, weights, boundary),
            operators.upsample_blur_matrix(n, weights, boundary),
        ):
            assert matrix.has_canonical_format
            for size in (1, 3, 7):
                in_chunks = chunked._regular(matrix.shape[1], size)
                out_chunks = chunked._regular(matrix.shape[0], 2)
                plan = chunked._axis_plan(matrix, in_chunks, out_chunks)
                starts = np.cumsum([0, *in_chunks])
                a = 0
                for inputs, local, block in zip(plan.inputs, plan.local, plan.matrices):
                    gathered = np.concatenate(
                        [np.arange(starts[q], starts[q + 1]) for q in inputs]
                    )
                    columns = gathered[local]  # the whole matrix's column of each local one
                    for i in range(block.shape[0]):
                        row = slice(block.indptr[i], block.indptr[i + 1])
                        whole = slice(matrix.indptr[a + i], matrix.indptr[a + i + 1])
                        assert np.array_equal(columns[block.indices[row]], matrix.indices[whole])
                        assert np.array_equal(block.data[row], matrix.data[whole])
                    a += block.shape[0]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, bool])
def test_integer_images_are_scaled_as_in_memory(dtype, engine):
    _, chunked = modules()
    rng = np.random.default_rng(2)
    x = (
        (rng.random((41, 30)) * 300).astype(dtype)
        if dtype is not bool
        else rng.random((41, 30)) > 0.5
    )
    levels = 3
    with engine_in_use(engine):
        g_mem = pyramids.gaussian_pyramid(x, levels)
        g_chunked = compute(chunked.gaussian_pyramid(dask_image(x, 8, 13), levels))
    gauss, _ = chunked.chunking_error_bound(x.shape, levels)
    assert g_chunked[0].dtype == np.float64
    assert np.array_equal(g_chunked[0], g_mem[0])  # the same conversion, sample by sample
    for k in range(levels + 1):
        if engine in EXACT_ENGINES:
            assert_same(g_chunked[k], g_mem[k], f"level {k}")
        else:
            assert np.abs(g_chunked[k] - g_mem[k]).max() <= gauss[k]


def test_level_blocks_have_the_target_side():
    da, chunked = modules()
    pyr = chunked.gaussian_pyramid(da.zeros((1000, 700), chunks=(256, 300)), levels=3)
    assert pyr[0].chunks == ((256,) * 3 + (232,), (300, 300, 100))
    assert pyr[1].chunks == ((256, 244), (256, 94))  # halved, but not below 256
    pyr = chunked.gaussian_pyramid(da.zeros((3000, 2100), chunks=1024), levels=3)
    assert [g.chunks[0][0] for g in pyr] == [1024, 512, 256, 256]
    lap = chunked.laplacian_pyramid(da.zeros((1000, 700), chunks=(256, 300)), 3, chunks=128)
    assert lap.bands[0].chunks == ((128,) * 7 + (104,), (128,) * 5 + (60,))
    assert lap.residual.chunks == ((125,), (88,))


@pytest.mark.parametrize("boundary", ["reflect", "periodic", "nearest"])
@pytest.mark.parametrize("mask_channels", [0, 3])
def test_blending_an_image_with_itself_returns_it(boundary, mask_channels):
    # GM in [0, 1] (non-negative kernel, modes other than zero), so GM·LA + (1 - GM)·LA is
    # LA up to γ_3 relatively: reconstruction_error_bound's coefficient_error (its docstring).
    _, chunked = modules()
    x = image((45, 38, 3), np.float64, 3)
    mask = image((45, 38) if mask_channels == 0 else (45, 38, 3), np.float64, 4)
    out = chunked.blend(
        dask_image(x, 10, 7), dask_image(x, 10, 7), mask, levels=4, boundary=boundary, chunks=9
    )
    (result,) = compute([out])
    u = np.finfo(np.float64).eps / 2
    bound = pyramids.reconstruction_error_bound(
        x.shape, 4, "binomial", boundary, np.float64, coefficient_error=3 * u / (1 - 3 * u)
    )
    assert np.abs(result - x).max() <= bound


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("boundary", operators.BOUNDARIES)
def test_blend_matches_in_memory(boundary, engine):
    # The exact engines give the same bits. For the separable engine, each blended band is
    # GM·LA + (1 - GM)·LB with every factor within the chunking bound of the in-memory one
    # (δ for GM, λ for LA and LB; |LA|, |LB| ≤ ℓ), and the collapse carries a band
    # difference to the image with gain ‖F_0⋯F_{k-1}‖∞ ≤ 1 here (non-negative kernel; a
    # 2-D mask keeps GM ≤ 1 up to rounding), plus the two collapses' own rounding
    # (reconstruction_error_bound, with coefficient_error γ_3 for the mixing).
    _, chunked = modules()
    a, b = image((37, 29), np.float64, 5), image((37, 29), np.float64, 6)
    mask = image((37, 29), np.float64, 7) > 0.5
    levels = 3
    with engine_in_use(engine):
        expected = pyramids.blend(a, b, mask, levels, boundary=boundary)
        (result,) = compute(
            [chunked.blend(dask_image(a, 6, 11), b, mask, levels, boundary=boundary, chunks=8)]
        )
    if engine in EXACT_ENGINES:
        assert_same(result, expected, "blend")
        return
    gauss, bands = chunked.chunking_error_bound(a.shape, levels, boundary=boundary)
    growth = 1.5**2 if boundary in ("symmetric", "nearest", "periodic") else 1.0  # §1.4 rows
    u = np.finfo(np.float64).eps / 2
    ell = 1 + growth  # |L_k| ≤ ‖g_k‖ + ‖F‖‖g_{k+1}‖
    per_level = [2 * d * ell + 2 * lam for d, lam in zip(gauss, [*bands, gauss[-1]])]
    tolerance = sum(growth**k * e for k, e in enumerate(per_level)) + 2 * (
        pyramids.reconstruction_error_bound(
            a.shape, levels, "binomial", boundary, np.float64, 1.0, 3 * u / (1 - 3 * u)
        )
    )
    if boundary == "zero":  # GM / ones: relative perturbation of the quotient
        tolerance *= 4
    assert np.abs(result - expected).max() <= tolerance


def test_bad_input_is_refused():
    da, chunked = modules()
    with pytest.raises(ValueError, match="shape"):
        chunked.gaussian_pyramid(da.zeros((4, 4, 3, 2)))
    with pytest.raises(ValueError, match="empty"):
        chunked.gaussian_pyramid(da.zeros((0, 4)))
    with pytest.raises(TypeError, match="dtype"):
        chunked.gaussian_pyramid(da.zeros((4, 4), dtype=complex))
    with pytest.raises(ValueError, match="levels"):
        chunked.laplacian_pyramid(da.zeros((4, 4)), levels=5)
    with pytest.raises(ValueError, match="chunks"):
        chunked.gaussian_pyramid(da.zeros((4, 4)), chunks=0)
    x = np.zeros((8, 8))
    x[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compute(chunked.gaussian_pyramid(dask_image(x, 4, 4), 1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        compute([chunked.blend(np.zeros((8, 8)), np.zeros((8, 8)), np.full((8, 8), 2.0), 1)])

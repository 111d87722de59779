"""The builders' check for NaN and infinity, made on the coarsest level (docs/design.md §9).

A Gaussian or Laplacian build, a collapse and a blend check their inputs for NaN and
infinity on their (small) result where every operator spreads a non-finite value to the
output, and on the inputs themselves otherwise: either way, a NaN or an infinity in any
pixel must give the same one-line error as before, naming the argument. A finite input
whose Gaussian levels overflow gives none; a Laplacian band or a collapse that overflows
gives its own.
"""

import re

import numpy as np
import pytest

import pyramids
from pyramids import engine, operators
from pyramids.arrays import all_finite
from pyramids.laplacian import _spreads

#: Kernel families; [0.5, 0, 0, 0, 0.5] reads only even pixels in a reduction, so its
#: operators do not spread every pixel and the check falls back to the input itself.
KERNELS = ["binomial", 0.4, 0.5, "binomial3", "binomial7", [0.5, 0.0, 0.0, 0.0, 0.5]]
BAD = [np.nan, np.inf, -np.inf]
#: sides from 1 pixel, odd and even
SHAPES = [(1, 1), (5, 1), (7, 6), (5, 4, 3)]


def every_pixel(shape, value, dtype=np.float64):
    """Copies of a finite random image with ``value`` at one pixel each, every pixel."""
    image = np.random.default_rng(1).random(shape).astype(dtype)
    for index in np.ndindex(*shape):
        bad = image.copy()
        bad[index] = value
        yield bad


def test_the_coverage_test_sees_a_kernel_that_skips_pixels():
    shape = (8, 8)
    assert _spreads(operators.reduce_operator(shape, "binomial", "reflect"))
    assert _spreads(operators.expand_operator(shape, "binomial", "zero"))
    assert not _spreads(operators.reduce_operator(shape, [0.5, 0, 0, 0, 0.5], "reflect"))


@pytest.mark.parametrize("kernel", KERNELS, ids=str)
@pytest.mark.parametrize("boundary", operators.BOUNDARIES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("value", BAD, ids=str)
def test_a_non_finite_pixel_anywhere_is_refused_by_every_builder(kernel, boundary, shape, value):
    levels = pyramids.max_levels(shape)
    dtype = np.float32 if len(shape) == 3 else np.float64
    for bad in every_pixel(shape, value, dtype):
        for k in sorted({0, levels}):
            with pytest.raises(ValueError, match=r"^image contains NaN or infinite values$"):
                pyramids.gaussian_pyramid(bad, k, kernel, boundary)
            with pytest.raises(ValueError, match=r"^image contains NaN or infinite values$"):
                pyramids.laplacian_pyramid(bad, k, kernel, boundary)
        with pytest.raises(ValueError, match=r"^image contains NaN or infinite values$"):
            pyramids.reduce(bad, kernel, boundary)  # checked as the builds check


@pytest.mark.parametrize("kernel", KERNELS, ids=str)
@pytest.mark.parametrize("boundary", operators.BOUNDARIES)
@pytest.mark.parametrize("value", BAD, ids=str)
def test_a_non_finite_coefficient_anywhere_is_refused_by_the_collapse(kernel, boundary, value):
    image = np.random.default_rng(2).random((5, 6))
    pyr = pyramids.laplacian_pyramid(image, 2, kernel, boundary)
    names = [f"bands[{k}]" for k in range(2)] + ["residual"]
    for name, array in zip(names, [*pyr.bands, pyr.residual]):
        for index in np.ndindex(*array.shape):
            saved = array[index]
            array[index] = value
            with pytest.raises(ValueError, match="^" + re.escape(name) + " contains NaN"):
                pyramids.reconstruct_laplacian(pyr.bands, pyr.residual, kernel, boundary)
            array[index] = saved
    # the residual is named first, as before, when both hold one
    pyr.bands[0][0, 0] = value
    pyr.residual[0, 0] = value
    with pytest.raises(ValueError, match=r"^residual contains NaN"):
        pyramids.reconstruct_laplacian(pyr.bands, pyr.residual, kernel, boundary)


@pytest.mark.parametrize("boundary", ["reflect", "zero"])
@pytest.mark.parametrize("value", BAD, ids=str)
def test_blend_names_the_image_that_holds_a_non_finite_pixel(boundary, value):
    rng = np.random.default_rng(3)
    a, b = rng.random((6, 9, 3)), rng.random((6, 9, 3))
    mask = rng.random((6, 9))
    for name, image in (("a", a), ("b", b)):
        for bad in every_pixel(image.shape, value):
            args = (bad, b, mask) if name == "a" else (a, bad, mask)
            with pytest.raises(ValueError, match=f"^{name} contains NaN or infinite values$"):
                pyramids.blend(*args, levels=2, boundary=boundary)


def test_finite_values_that_overflow_in_the_gaussian_levels_are_no_error():
    # kernel 0.6 = [-0.05, 0.25, 0.6, 0.25, -0.05]: the partial sum reaches 1.05·x, above
    # float32's maximum (3.40e38) for x = 3.3e38, so the levels overflow from finite values
    # (numpy's engines warn of the overflow, as they always did; the compiled one does not)
    x = np.full((16, 16), 3.3e38, np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        pyr = pyramids.gaussian_pyramid(x, 2, kernel=0.6)
    assert np.isfinite(pyr[0]).all() and not np.isfinite(pyr[2]).all()


OVERFLOW = r"^image's Laplacian band 0 overflows float32: the values are too large; convert"


@pytest.mark.parametrize("name", ["compiled", "separable", "matrix"])
def test_a_laplacian_band_that_overflows_is_named_and_float64_holds_it(monkeypatch, name):
    # A band is g - F G g: one bright pixel in a dark float32 image near the type's limit
    # makes it about 1.6 times the limit, so the band overflows although the image, its
    # Gaussian levels and the residual are finite. No collapse could use such a band; the
    # build says so instead of returning it (the kernel checks each band row as it writes
    # it, numpy's engines the band), with the Gaussian levels' kernel 0.6 case as well.
    # One thread: numpy's engines warn of the overflow, and errstate holds in this thread.
    monkeypatch.setenv(engine.ENGINE_VAR, name)
    x = np.full((40, 33, 3), -3e38, np.float32)
    x[20, 11, 1] = 3e38
    with np.errstate(over="ignore", invalid="ignore"):
        with pytest.raises(ValueError, match=OVERFLOW):
            pyramids.laplacian_pyramid(x, 3, threads=1)
        with pytest.raises(ValueError, match=OVERFLOW):
            pyramids.laplacian_pyramid(np.full((16, 16), 3.3e38, np.float32), 2, kernel=0.6,
                                       threads=1)  # fmt: skip
        with pytest.raises(ValueError, match=r"^a's Laplacian band 0 overflows float32"):
            pyramids.blend(x, x, np.ones(x.shape[:2], np.float32), 3, threads=1)
    wide = x.astype(np.float64)  # the same image in float64: its bands fit, and it returns
    pyr = pyramids.laplacian_pyramid(wide, 3)
    assert np.abs(pyr.bands[0]).max() > np.finfo(np.float32).max
    bound = pyramids.reconstruction_error_bound(wide.shape, 3, scale=3e38)
    assert np.abs(pyr.reconstruct() - wide).max() <= bound


@pytest.mark.parametrize("name", ["compiled", "separable", "matrix"])
def test_a_collapse_of_finite_coefficients_that_overflows_is_named(monkeypatch, name):
    monkeypatch.setenv(engine.ENGINE_VAR, name)
    big = np.float32(3e38)
    for shape in [(16, 16), (9, 7, 3)]:
        pyr = pyramids.laplacian_pyramid(np.zeros(shape, np.float32), 2)
        bands = [np.full(b.shape, big) for b in pyr.bands]
        residual = np.full(pyr.residual.shape, big)
        with (
            np.errstate(over="ignore", invalid="ignore"),
            pytest.raises(
                ValueError,
                match=r"^the reconstruction overflows float32: the values are too large",
            ),
        ):
            pyramids.reconstruct_laplacian(bands, residual, threads=1)  # numpy warns here
        half = [b / 4 for b in bands]  # a sum that fits is no error
        assert np.isfinite(pyramids.reconstruct_laplacian(half, residual / 4)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.float16])
def test_level_zero_never_aliases_the_callers_image(dtype):
    image = (np.random.default_rng(4).random((9, 8)) * 200).astype(dtype)
    before = image.copy()
    pyr = pyramids.gaussian_pyramid(image, 2)
    assert not np.may_share_memory(pyr[0], image)
    pyr[0][:] = 0  # editing the level leaves the image alone
    np.testing.assert_array_equal(image, before)
    assert pyr.dtype == pyramids.arrays.as_float_image(image).dtype
    lap = pyramids.laplacian_pyramid(image, 0)
    assert not np.may_share_memory(lap.residual, image)


@pytest.mark.parametrize("name", ["compiled", "separable", "matrix"])
@pytest.mark.parametrize("shape", [(1, 1), (9, 8), (40, 33, 3), (70, 64)], ids=str)
def test_level_zero_is_a_copy_made_with_the_first_reduction_or_a_view_on_request(
    monkeypatch, name, shape
):
    """By default level 0 is a new array equal to the image (the compiled engine copies
    the rows as its first reduction reads them); with ``copy=False`` a float image that
    needs no conversion is level 0 itself, as a read-only view; a converted one is new.
    The other levels are the same either way."""
    monkeypatch.setenv(engine.ENGINE_VAR, name)
    rng = np.random.default_rng(8)
    wide = rng.random((shape[0], 2 * shape[1], *shape[2:]))
    frozen = np.ascontiguousarray(wide[:, ::2]).astype(np.float32)
    frozen.flags.writeable = False  # a read-only image is read, never written
    for image in (wide[:, ::2], frozen.copy(), frozen):
        before = image.copy()
        for levels in (0, pyramids.max_levels(shape)):
            pyr = pyramids.gaussian_pyramid(image, levels)
            view = pyramids.gaussian_pyramid(image, levels, copy=False)
            np.testing.assert_array_equal(pyr[0], image)
            assert pyr[0].flags.writeable and not np.may_share_memory(pyr[0], image)
            assert np.shares_memory(view[0], image) and not view[0].flags.writeable
            with pytest.raises(ValueError, match="read-only"):
                view[0][...] = 0
            for a, b in zip(pyr, view):
                np.testing.assert_array_equal(a, b)
            pyr[0][...] = 0  # the copy is the caller's to edit
            np.testing.assert_array_equal(image, before)
    converted = pyramids.gaussian_pyramid((wide * 255).astype(np.uint8), 1, copy=False)
    assert converted[0].flags.writeable and converted[0].dtype == np.float64


@pytest.mark.parametrize("name", ["compiled", "separable", "matrix"])
@pytest.mark.parametrize("value", BAD, ids=str)
def test_every_engine_refuses_a_non_finite_pixel_without_a_numpy_warning(monkeypatch, name, value):
    # The passes run on the NaN before the check sees it: numpy's engines must not turn
    # that into an "invalid value" warning (an error under this suite's filters).
    monkeypatch.setenv(engine.ENGINE_VAR, name)
    rng = np.random.default_rng(6)
    for boundary in ("reflect", "zero"):
        for shape in [(7, 6), (5, 4, 3)]:
            for bad in every_pixel(shape, value):
                with pytest.raises(ValueError, match=r"^image contains NaN"):
                    pyramids.gaussian_pyramid(bad, 2, boundary=boundary)
                with pytest.raises(ValueError, match=r"^image contains NaN"):
                    pyramids.laplacian_pyramid(bad, 2, boundary=boundary)
                with pytest.raises(ValueError, match=r"^image contains NaN"):
                    pyramids.reduce(bad, boundary=boundary)
                with pytest.raises(ValueError, match=r"^a contains NaN"):
                    pyramids.blend(bad, bad, rng.random(shape[:2]), 2, boundary=boundary)
                pyr = pyramids.laplacian_pyramid(np.nan_to_num(bad, posinf=0, neginf=0), 2)
                pyr.bands[0][...] = bad
                with pytest.raises(ValueError, match=r"^bands\[0\] contains NaN"):
                    pyramids.reconstruct_laplacian(pyr.bands, pyr.residual, boundary=boundary)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_finds_every_non_finite_value_and_no_other(dtype):
    image = np.random.default_rng(7).standard_normal((6, 5, 2)).astype(dtype)
    layouts = [lambda a: a, lambda a: a[:, ::2], lambda a: np.asfortranarray(a)]
    for layout in layouts:
        assert all_finite(layout(image))
        for value in BAD:
            for bad in every_pixel(image.shape, value, dtype):
                view = layout(bad)
                assert all_finite(view) == bool(np.isfinite(view).all())
    # finite values whose sum and sum of squares overflow: the elementwise test decides
    huge = np.full((4, 4), np.finfo(dtype).max, dtype)
    assert all_finite(huge) and all_finite(np.asfortranarray(huge))
    huge[1, 2] = np.inf
    assert not all_finite(huge)


@pytest.mark.parametrize("name", ["separable", "matrix"])
def test_numpy_engines_check_first_so_their_threads_never_see_a_nan(monkeypatch, name):
    # Large enough that the tiled engine splits its passes over threads, whose numpy calls
    # would warn of an invalid value (an error under this suite's filters) on their own.
    monkeypatch.setenv(engine.ENGINE_VAR, name)
    image = np.random.default_rng(8).random((600, 610))
    image[200, 100], image[5, 7] = np.inf, -np.inf
    with pytest.raises(ValueError, match=r"^image contains NaN"):
        pyramids.gaussian_pyramid(image, 3, threads=2)
    with pytest.raises(ValueError, match=r"^image contains NaN"):
        pyramids.laplacian_pyramid(image, 3, threads=2)
    pyr = pyramids.laplacian_pyramid(np.nan_to_num(image, posinf=0, neginf=0), 3)
    pyr.bands[1][9, 9] = np.nan
    with pytest.raises(ValueError, match=r"^bands\[1\] contains NaN"):
        pyr.reconstruct(threads=2)

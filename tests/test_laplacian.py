"""Gaussian and Laplacian pyramids: structure, exact reconstruction, identities (§2)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from requires import require_module

import pyramids
from pyramids import operators

KERNELS = ["binomial", 0.4, 0.5, "binomial3", "binomial7"]


@pytest.mark.parametrize("kernel", KERNELS, ids=str)
@pytest.mark.parametrize("boundary", operators.BOUNDARIES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (13, 1), (37, 50), (64, 64), (21, 8, 3)])
def test_reconstruction_is_exact_float64(shape, boundary, kernel):
    x = np.random.default_rng(0).random(shape)
    pyr = pyramids.laplacian_pyramid(x, levels=pyramids.max_levels(shape), kernel=kernel,
                                     boundary=boundary)  # fmt: skip
    assert np.abs(pyr.reconstruct() - x).max() <= 1e-12


@pytest.mark.parametrize("kernel", KERNELS, ids=str)
@pytest.mark.parametrize("boundary", operators.BOUNDARIES)
def test_reconstruction_is_exact_float32(boundary, kernel):
    x = np.random.default_rng(1).random((45, 62, 3)).astype(np.float32)
    pyr = pyramids.laplacian_pyramid(x, levels=4, kernel=kernel, boundary=boundary)
    out = pyr.reconstruct()
    assert out.dtype == np.float32
    assert all(band.dtype == np.float32 for band in pyr.bands)
    assert np.abs(out - x).max() <= 1e-5


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 70),
    w=st.integers(1, 70),
    channels=st.sampled_from([0, 1, 3]),
    boundary=st.sampled_from(operators.BOUNDARIES),
    kernel=st.sampled_from(KERNELS),
    dtype=st.sampled_from([np.float32, np.float64]),
    data=st.data(),
)
def test_reconstruction_property(h, w, channels, boundary, kernel, dtype, data):
    shape = (h, w) if channels == 0 else (h, w, channels)
    levels = data.draw(st.integers(0, pyramids.max_levels(shape)))
    x = np.random.default_rng(h * 100 + w).random(shape).astype(dtype)
    pyr = pyramids.laplacian_pyramid(x, levels, kernel, boundary)
    assert len(pyr.bands) == levels
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert np.abs(pyr.reconstruct() - x).max() <= tol


def test_band_identity_from_design():
    """L_k = g_k - F g_{k+1}, computed here with the dense Kronecker matrices."""
    x = np.random.default_rng(2).random((19, 26))
    gauss = pyramids.gaussian_pyramid(x, levels=3)
    pyr = pyramids.laplacian_pyramid(x, levels=3)
    for k in range(3):
        f = pyramids.expand_matrix(gauss[k].shape).toarray()
        expected = gauss[k].ravel() - f @ gauss[k + 1].ravel()
        np.testing.assert_allclose(pyr.bands[k].ravel(), expected, atol=1e-14)
    np.testing.assert_allclose(pyr.residual, gauss[3], atol=1e-15)


def test_gaussian_levels_are_repeated_reductions_with_kron():
    x = np.random.default_rng(3).random((17, 9, 3))
    levels = pyramids.gaussian_pyramid(x, levels=3)
    assert len(levels) == 4
    np.testing.assert_array_equal(levels[0], x)
    assert levels[0] is not x
    for k in range(3):
        g = pyramids.reduce_matrix(levels[k].shape)
        np.testing.assert_allclose(levels[k + 1].ravel(), g @ levels[k].ravel(), atol=1e-14)
    assert [lvl.shape[:2] for lvl in levels] == [(17, 9), (9, 5), (5, 3), (3, 2)]


def test_default_and_maximum_levels():
    assert pyramids.default_levels((512, 512)) == 7
    assert pyramids.max_levels((512, 512)) == 9
    pyr = pyramids.laplacian_pyramid(np.zeros((512, 384)))
    assert pyr.levels == pyramids.default_levels((512, 384))
    assert min(pyr.residual.shape) < 5 <= min(pyr.bands[-1].shape)
    assert pyramids.laplacian_pyramid(np.zeros((1, 1))).levels == 0


def test_too_many_levels_is_a_clear_error():
    with pytest.raises(ValueError, match="levels must be between 0 and 6"):
        pyramids.laplacian_pyramid(np.zeros((40, 33)), levels=7)
    with pytest.raises(ValueError, match="levels"):
        pyramids.gaussian_pyramid(np.zeros((4, 4)), levels=-1)
    with pytest.raises(TypeError, match="levels"):
        pyramids.gaussian_pyramid(np.zeros((4, 4)), levels=1.5)


def test_zero_levels_keeps_the_image_as_residual():
    x = np.random.default_rng(4).random((6, 5))
    pyr = pyramids.laplacian_pyramid(x, levels=0)
    assert pyr.bands == []
    np.testing.assert_array_equal(pyr.residual, x)
    pyr.residual[0, 0] = 99
    assert x[0, 0] != 99


def test_edited_bands_collapse_to_the_edit():
    """Reconstruction is linear: zeroing the finest band removes exactly F-less detail."""
    x = np.random.default_rng(5).random((32, 32))
    pyr = pyramids.laplacian_pyramid(x, levels=3)
    pyr.bands[0] = np.zeros_like(pyr.bands[0])
    smooth = pyr.reconstruct()
    g1 = pyramids.reduce(x)
    np.testing.assert_allclose(smooth, pyramids.expand(g1, x.shape), atol=1e-12)


def test_reconstruct_rejects_bands_that_do_not_chain():
    x = np.random.default_rng(6).random((20, 20))
    pyr = pyramids.laplacian_pyramid(x, levels=2)
    with pytest.raises(ValueError, match="does not fit"):
        pyramids.reconstruct_laplacian(pyr.bands[::-1], pyr.residual)


def test_input_is_not_modified_and_integers_are_scaled():
    x = (np.arange(64, dtype=np.uint8).reshape(8, 8)) * 4
    copy = x.copy()
    pyr = pyramids.laplacian_pyramid(x, levels=2)
    np.testing.assert_array_equal(x, copy)
    np.testing.assert_allclose(pyr.reconstruct(), x / 255.0, atol=1e-12)


def test_to_arrays_round_trip():
    x = np.random.default_rng(7).random((11, 13, 3)).astype(np.float32)
    pyr = pyramids.laplacian_pyramid(x, levels=3, kernel=0.4, boundary="periodic")
    back = pyramids.LaplacianPyramid.from_arrays(pyr.to_arrays())
    assert back.boundary == "periodic"
    np.testing.assert_array_equal(back.reconstruct(), pyr.reconstruct())
    with pytest.raises(ValueError, match="not a Laplacian pyramid"):
        pyramids.LaplacianPyramid.from_arrays({"kind": np.array("x")})


def test_matches_opencv_when_available():
    """Same kernel and BORDER_REFLECT_101 boundary as OpenCV's pyrDown/pyrUp.

    For an odd output length OpenCV upsamples to the even length and crops, so its last
    row and column differ from F of DESIGN.md §1, which reflects on the exact length.
    """
    cv2 = require_module("cv2", "OpenCV is the reference for pyrDown/pyrUp")
    for h, w in [(34, 46), (33, 45)]:
        x = np.random.default_rng(8).random((h, w)).astype(np.float32)
        np.testing.assert_allclose(pyramids.reduce(x), cv2.pyrDown(x), atol=1e-6)
        y = cv2.pyrDown(x)
        ours, theirs = pyramids.expand(y, x.shape), cv2.pyrUp(y, dstsize=(w, h))
        keep = (slice(None, h - h % 2), slice(None, w - w % 2))
        np.testing.assert_allclose(ours[keep], theirs[keep], atol=1e-6)

"""Laplacian blending (docs/design.md §3)."""

import numpy as np
import pytest

import pyramids
from pyramids import operators
from pyramids.laplacian import reconstruction_error_bound


def two_images(shape=(64, 80, 3), dtype=np.float64):
    rng = np.random.default_rng(0)
    return rng.random(shape).astype(dtype), rng.random(shape).astype(dtype)


def collapse_bound(x, levels=None, boundary="reflect", coefficient_error=0.0):
    """The derived bound on the collapse of ``x``'s own pyramid (pyramids.laplacian)."""
    return reconstruction_error_bound(
        x.shape, levels, "binomial", boundary, x.dtype, float(np.abs(x).max()), coefficient_error
    )


# With the default kernel (dyadic weights: every row of G sums to exactly 1 in floating
# point) a mask of ones has a Gaussian pyramid of exact ones, also under 'zero', where it
# is divided by the identical computation on ones; a mask of zeros one of exact zeros. Then
# GM·LA + (1 - GM)·LB is exactly LA (or LB), and the blend is the collapse of one image's
# own pyramid: its error is that of the reconstruction, bounded in pyramids.laplacian.


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("boundary", operators.BOUNDARIES)
@pytest.mark.parametrize("shape", [(64, 80, 3), (37, 51), (1, 30)])
def test_all_ones_mask_returns_a_and_all_zeros_returns_b(shape, boundary, dtype):
    a, b = two_images(shape, dtype)
    ones, zeros = np.ones(shape[:2], bool), np.zeros(shape[:2])
    assert np.abs(pyramids.blend(a, b, ones, boundary=boundary) - a).max() <= collapse_bound(
        a, boundary=boundary
    )
    assert np.abs(pyramids.blend(a, b, zeros, boundary=boundary) - b).max() <= collapse_bound(
        b, boundary=boundary
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("boundary", operators.BOUNDARIES)
@pytest.mark.parametrize("shape", [(64, 80, 3), (37, 51)])
def test_blending_an_image_with_itself_returns_it(shape, boundary, dtype):
    """For any mask, GM·LA + (1 - GM)·LA = LA up to γ_3 relative (three roundings), which
    the collapse carries as :func:`reconstruction_error_bound`'s ``coefficient_error``."""
    a, _ = two_images(shape, dtype)
    mask = np.random.default_rng(1).random(shape[:2])
    gamma3 = 3 * (np.finfo(dtype).eps / 2) / (1 - 3 * np.finfo(dtype).eps / 2)
    out = pyramids.blend(a, a, mask, boundary=boundary)
    assert np.abs(out - a).max() <= collapse_bound(a, None, boundary, gamma3)


def test_blend_follows_the_design_formula():
    """Band by band, GM·LA + (1 - GM)·LB, collapsed — computed here by hand.

    The same floating-point operations on the same arrays, in the same order: the results
    are equal, so the tolerance is zero.
    """
    a, b = two_images((30, 41))
    mask = np.random.default_rng(1).random((30, 41))
    la, lb = pyramids.laplacian_pyramid(a, 3), pyramids.laplacian_pyramid(b, 3)
    gm = pyramids.gaussian_pyramid(mask, 3)
    bands = [g * x + (1 - g) * y for g, x, y in zip(gm, la.bands, lb.bands)]
    residual = gm[3] * la.residual + (1 - gm[3]) * lb.residual
    expected = pyramids.reconstruct_laplacian(bands, residual)
    np.testing.assert_array_equal(pyramids.blend(a, b, mask, levels=3), expected)


def test_each_side_is_unchanged_far_from_the_seam():
    a, b = two_images((128, 128, 3))
    mask = np.zeros((128, 128), bool)
    mask[:, :64] = True
    out = pyramids.blend(a, b, mask, levels=3)
    # 3 reductions with a 5-tap kernel reach about 2·(2 + 4 + 8 + 16) = 60 pixels at most;
    # the residual spreads further, so compare far columns with a tolerance
    np.testing.assert_allclose(out[:, :8], a[:, :8], atol=0.02)
    np.testing.assert_allclose(out[:, -8:], b[:, -8:], atol=0.02)


def test_seam_is_smoother_than_a_hard_cut():
    h, w = 64, 128
    a, b = np.zeros((h, w)), np.ones((h, w))
    mask = np.zeros((h, w), bool)
    mask[:, : w // 2] = True
    hard = np.where(mask, a, b)
    soft = pyramids.blend(a, b, mask)
    hard_step = np.abs(np.diff(hard, axis=1)).max()
    soft_step = np.abs(np.diff(soft, axis=1)).max()
    assert hard_step == 1.0
    assert soft_step < 0.25 * hard_step
    # the transition is spread over many columns, and still goes from a to b
    assert np.count_nonzero(np.abs(np.diff(soft[h // 2])) > 1e-3) >= 8
    assert soft[:, 0].max() < 0.05 and soft[:, -1].min() > 0.95


def test_colour_images_with_per_channel_mask():
    # Each channel's mask pyramid is exact ones or zeros (see above), and a channel's
    # collapse involves only that channel: each side errs as its own reconstruction.
    a, b = two_images((32, 32, 3))
    mask = np.zeros((32, 32, 3))
    mask[..., 0] = 1  # red from a, green and blue from b
    out = pyramids.blend(a, b, mask)
    assert np.abs(out[..., 0] - a[..., 0]).max() <= collapse_bound(a[..., :1])
    assert np.abs(out[..., 1:] - b[..., 1:]).max() <= collapse_bound(b[..., 1:])


def test_float32_stays_float32_and_integers_scale():
    a, b = two_images((20, 24), np.float32)
    assert pyramids.blend(a, b, np.ones((20, 24), bool)).dtype == np.float32
    ai = np.full((8, 8), 255, np.uint8)
    bi = np.zeros((8, 8), np.uint8)
    out = pyramids.blend(ai, bi, np.ones((8, 8), bool))
    assert np.abs(out - 1.0).max() <= collapse_bound(np.ones((8, 8)))


@pytest.mark.parametrize(
    ("a_shape", "mask", "error", "message"),
    [
        ((10, 12), np.ones((10, 13)), ValueError, "mask must have shape"),
        ((10, 12), np.full((10, 12), 1.5), ValueError, r"\[0, 1\]"),
        ((10, 12), np.full((10, 12), np.nan), ValueError, "NaN"),
        ((10, 12), np.full((10, 12), -1, np.int8), ValueError, r"\[0, 1\]"),
    ],
)
def test_bad_masks_are_clear_errors(a_shape, mask, error, message):
    a, b = two_images(a_shape)
    with pytest.raises(error, match=message):
        pyramids.blend(a, b, mask)


def test_mismatched_or_empty_images_are_clear_errors():
    a, b = two_images((10, 12))
    with pytest.raises(ValueError, match="same shape"):
        pyramids.blend(a, b[:, :11], np.ones((10, 12)))
    with pytest.raises(ValueError, match="empty"):
        pyramids.blend(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3)))

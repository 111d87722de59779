"""Laplacian blending (DESIGN.md §3)."""

import numpy as np
import pytest

import pyramids
from pyramids import operators


def two_images(shape=(64, 80, 3), dtype=np.float64):
    rng = np.random.default_rng(0)
    return rng.random(shape).astype(dtype), rng.random(shape).astype(dtype)


@pytest.mark.parametrize("boundary", operators.BOUNDARIES)
@pytest.mark.parametrize("shape", [(64, 80, 3), (37, 51), (1, 30)])
def test_all_ones_mask_returns_a_and_all_zeros_returns_b(shape, boundary):
    a, b = two_images(shape)
    ones, zeros = np.ones(shape[:2], bool), np.zeros(shape[:2])
    assert np.abs(pyramids.blend(a, b, ones, boundary=boundary) - a).max() <= 1e-12
    assert np.abs(pyramids.blend(a, b, zeros, boundary=boundary) - b).max() <= 1e-12


def test_blend_follows_the_design_formula():
    """Band by band, GM·LA + (1 - GM)·LB, collapsed — computed here by hand."""
    a, b = two_images((30, 41))
    mask = np.random.default_rng(1).random((30, 41))
    la, lb = pyramids.laplacian_pyramid(a, 3), pyramids.laplacian_pyramid(b, 3)
    gm = pyramids.gaussian_pyramid(mask, 3)
    bands = [g * x + (1 - g) * y for g, x, y in zip(gm, la.bands, lb.bands)]
    residual = gm[3] * la.residual + (1 - gm[3]) * lb.residual
    expected = pyramids.reconstruct_laplacian(bands, residual)
    np.testing.assert_allclose(pyramids.blend(a, b, mask, levels=3), expected, atol=1e-14)


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
    a, b = two_images((32, 32, 3))
    mask = np.zeros((32, 32, 3))
    mask[..., 0] = 1  # red from a, green and blue from b
    out = pyramids.blend(a, b, mask)
    np.testing.assert_allclose(out[..., 0], a[..., 0], atol=1e-12)
    np.testing.assert_allclose(out[..., 1:], b[..., 1:], atol=1e-12)


def test_float32_stays_float32_and_integers_scale():
    a, b = two_images((20, 24), np.float32)
    assert pyramids.blend(a, b, np.ones((20, 24), bool)).dtype == np.float32
    ai = np.full((8, 8), 255, np.uint8)
    bi = np.zeros((8, 8), np.uint8)
    out = pyramids.blend(ai, bi, np.ones((8, 8), bool))
    np.testing.assert_allclose(out, 1.0, atol=1e-12)


@pytest.mark.parametrize(
    ("a_shape", "mask", "error", "message"),
    [
        ((10, 12), np.ones((10, 13)), ValueError, "mask must have shape"),
        ((10, 12), np.full((10, 12), 1.5), ValueError, r"\[0, 1\]"),
        ((10, 12), np.full((10, 12), np.nan), ValueError, "NaN"),
        ((10, 12), np.ones((10, 12), np.uint8), TypeError, "boolean or float"),
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

"""The derived rounding bounds are bounds, and not absurdly loose ones.

:func:`pyramids.laplacian.reconstruction_error_bound` is a worst case: every rounding of a
level (two two-pass products of ``p_k`` terms each, a subtraction, an addition) at its
largest and of the same sign at the same pixel, every level adding up, carried through the
``F`` of the finer levels by their max norms. On images whose values use the whole mantissa
the observed error is a half-ulp or so of ``max|x|``; so where ``‖F_k‖∞ ≤ 1`` the bound is
about ``(3 + 2·p_k)·K`` half-ulps, 75 for 5 levels of the default kernel. We ask for at most
100 times the observed error on such images, at their default number of levels (5 at most
here). Where ``‖F_k‖∞ > 1`` (``symmetric``, ``nearest``, 1-pixel sides) the bound's
geometric growth can be real: the known counterexample is within 25 times its bound.
"""

import numpy as np
import pytest

import pyramids
from pyramids.laplacian import reconstruction_error_bound

#: Largest accepted ratio of bound to observed error on full-mantissa random images.
LOOSENESS = 100


def _error_and_bound(x, levels, kernel, boundary):
    pyr = pyramids.laplacian_pyramid(x, levels, kernel, boundary)
    error = float(np.abs(pyr.reconstruct() - x).max())
    bound = reconstruction_error_bound(
        x.shape, levels, kernel, boundary, x.dtype, float(np.abs(x).max())
    )
    return error, bound


# Where every ‖F_k‖∞ ≤ 1: 'reflect' and 'zero', and 'periodic' on even sides (an odd side
# wraps an even sample next to an even one, and a row of F sums to 1.375).
CASES = [
    (shape, boundary)
    for shape in [(64, 64), (37, 50), (45, 62, 3), (128, 96)]
    for boundary in ["reflect", "zero", "periodic"]
    if boundary != "periodic" or shape[0] % 2 == shape[1] % 2 == 0
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", ["binomial", 0.4, "binomial7"], ids=str)
@pytest.mark.parametrize(("shape", "boundary"), CASES)
def test_laplacian_bound_is_within_a_hundred_times_the_observed_error(
    shape, boundary, kernel, dtype
):
    x = np.random.default_rng(0).random(shape).astype(dtype)
    levels = pyramids.default_levels(shape, kernel)
    error, bound = _error_and_bound(x, levels, kernel, boundary)
    assert 0 < error <= bound <= LOOSENESS * error


def test_laplacian_bound_is_close_where_border_amplification_is_real():
    # The counterexample of issue 13: F doubles the 1-pixel width at every level above the
    # second and a 'symmetric' border row of F sums to 1.5, so errors grow 2-3x per level.
    x = np.random.default_rng(6403).random((64, 3)).astype(np.float32)
    error, bound = _error_and_bound(x, 6, 0.5, "symmetric")
    assert 1e-5 < error <= bound <= 25 * error


def test_laplacian_bound_has_its_closed_form_for_the_default_kernel():
    """About ``15·K·u·scale`` where every ‖F_k‖∞ = ‖G_k‖∞ = 1 and p_k = 6 (docs/design.md §2)."""
    for dtype in (np.float32, np.float64):
        u = np.finfo(dtype).eps / 2
        for levels in (1, 4, 7):
            bound = reconstruction_error_bound((512, 512), levels, dtype=dtype, scale=2.0)
            assert bound == pytest.approx(15 * levels * u * 2.0, rel=1e-4)


def test_laplacian_bound_rejects_bad_arguments():
    with pytest.raises(ValueError, match="dtype"):
        reconstruction_error_bound((8, 8), 2, dtype=np.float16)
    with pytest.raises(ValueError, match="scale"):
        reconstruction_error_bound((8, 8), 2, scale=-1.0)
    with pytest.raises(ValueError, match="levels"):
        reconstruction_error_bound((8, 8), 9)

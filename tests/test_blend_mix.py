"""The blend's mixing of bands, ``GM·LA + (1 - GM)·LB``, in the compiled kernel.

:func:`pyramids.compiled.mix_weighted` makes the same four roundings, in the same order,
as numpy's expression (docs/design.md §9), so the two agree bit for bit, zeros' signs
included, for every layout the blend hands it; and a blend with the compiled engine equals
one with the matrix engine (numpy's mixing) wherever the engines' products agree bit for
bit (x86-64, see tests/test_compiled_engine.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_compiled_engine import EXACT

import pyramids
from pyramids import engine
from pyramids.compiled import mix_weighted


def _numpy_mix(weight, a, b):
    return weight * a + (1 - weight) * b


def _arrays(shape, weight_shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(shape).astype(dtype)
    weight = rng.random(weight_shape).astype(dtype)
    # the exact ends and signed zeros: GM = 1 must give LA and GM = 0 LB exactly
    weight.reshape(-1)[:4] = [0.0, 1.0, -0.0, 0.5][: weight.size]
    a.reshape(-1)[:2] = [-0.0, 0.0][: a.size]
    b.reshape(-1)[:2] = [0.0, -0.0][: b.size]
    return weight, a, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("shape", "weight_shape"),
    [
        ((1, 1), (1, 1)),
        ((7, 5), (7, 5)),
        ((7, 5, 3), (7, 5, 1)),  # a 2-D mask over colour, as the blend passes it
        ((7, 5, 3), (7, 5, 3)),  # a mask per channel
        ((6, 4, 4), (6, 4, 1)),
        ((6, 4, 2), (6, 4)),
        ((9, 8, 1), (9, 8, 1)),
    ],
    ids=str,
)
def test_mix_equals_numpys_expression_bit_for_bit(shape, weight_shape, dtype):
    weight, a, b = _arrays(shape, weight_shape, dtype)
    numpy_weight = weight if len(weight_shape) == len(shape) else weight[..., None]
    expected = _numpy_mix(numpy_weight, a, b)
    got = mix_weighted(weight, a, b)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    assert np.array_equal(np.signbit(got), np.signbit(expected))


def test_mix_reads_strided_arrays_and_leaves_its_inputs_alone():
    weight, a, b = _arrays((10, 12, 3), (10, 12, 1), np.float32)
    views = weight[::2, 1::3], a[::2, 1::3], b[::2, 1::3]
    saved = [v.copy() for v in views]
    np.testing.assert_array_equal(mix_weighted(*views), _numpy_mix(*views))
    for view, before in zip(views, saved):
        np.testing.assert_array_equal(view, before)


def test_mix_refuses_arrays_that_do_not_fit():
    weight, a, b = _arrays((4, 5, 3), (4, 5, 1), np.float32)
    with pytest.raises(ValueError, match="share a float dtype"):
        mix_weighted(weight.astype(np.float64), a, b)
    with pytest.raises(ValueError, match="share a float dtype"):
        mix_weighted(weight, a, b[:3])
    with pytest.raises(ValueError, match="does not fit"):
        mix_weighted(weight[:3], a, b)


@pytest.mark.skipif(not EXACT, reason="the engines agree bit for bit on x86-64 only")
@pytest.mark.parametrize("boundary", ["reflect", "zero"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "mask_3d"), [((33, 40), False), ((30, 21, 3), False),
                                                ((30, 21, 3), True)], ids=str)  # fmt: skip
def test_blend_with_the_compiled_engine_equals_the_matrix_engines(
    monkeypatch, shape, mask_3d, dtype, boundary
):
    rng = np.random.default_rng(5)
    a, b = rng.random(shape).astype(dtype), rng.random(shape).astype(dtype)
    mask = rng.random(shape if mask_3d else shape[:2])
    results = {}
    for name in ("compiled", "matrix"):
        monkeypatch.setenv(engine.ENGINE_VAR, name)
        results[name] = pyramids.blend(a, b, mask, 3, boundary=boundary)
    np.testing.assert_array_equal(results["compiled"], results["matrix"])

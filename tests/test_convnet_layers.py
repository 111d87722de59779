"""Layers: finite-difference gradients, the loop reference, DESIGN.md §5 identities."""

import numpy as np
import pytest
from scipy import signal

from convnet import (
    AvgPool2D,
    Conv2D,
    Dropout,
    Flatten,
    Linear,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Tanh,
    check_gradients,
    conv2d_reference,
)

TOL = 1e-6

CONV_CASES = [
    # (in, out, kernel, stride, padding, H, W)
    (1, 6, 5, 1, 2, 12, 12),  # LeNet conv1 geometry on a small image
    (6, 4, 5, 1, 0, 9, 9),
    (2, 3, 3, 2, 1, 9, 7),  # stride 2, padding, odd non-square input
    (3, 2, (3, 2), (2, 1), (1, 2), 8, 9),  # non-square kernel, stride and padding
    (2, 3, 1, 1, 0, 4, 5),  # 1×1 kernel
    (2, 3, (3, 2), 1, (1, 0), 7, 8),  # stride 1 with a non-square kernel and padding
    (1, 1, 3, 3, 0, 7, 10),  # windows that do not cover the whole input
]


def _conv(case, dtype=np.float64, seed=0):
    cin, cout, k, s, p, h, w = case
    rng = np.random.default_rng(seed)
    conv = Conv2D(cin, cout, k, s, p, dtype=dtype, rng=rng)
    conv.params["bias"][...] = rng.standard_normal(cout)
    x = rng.standard_normal((3, cin, h, w)).astype(dtype)
    return conv, x


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_gradient_matches_finite_differences(case):
    conv, x = _conv(case)
    errors = check_gradients(conv, x)
    assert max(errors.values()) <= TOL, errors


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_conv_equals_loop_reference(case, dtype):
    conv, x = _conv(case, dtype)
    s, p = case[3:5]
    ref = conv2d_reference(x, conv.params["weight"], conv.params["bias"], s, p)
    out = conv.forward(x)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_conv_equals_scipy_correlation():
    conv, x = _conv((2, 3, 3, 1, 0, 7, 8))
    w, b = conv.params["weight"], conv.params["bias"]
    expected = np.stack(
        [
            np.stack(
                [
                    sum(signal.correlate2d(xi[c], w[o, c], "valid") for c in range(2)) + b[o]
                    for o in range(3)
                ]
            )
            for xi in x
        ]
    )
    np.testing.assert_allclose(conv.forward(x), expected, rtol=1e-12)


@pytest.mark.parametrize("padding", [0, 2])
def test_weight_gradient_is_correlation_of_input_and_error(padding):
    """DESIGN.md §5: dL/dw[o, c] = Σ_n correlate(x_padded[n, c], δ[n, o])."""
    conv, x = _conv((2, 3, 5, 1, padding, 9, 8))
    out = conv.forward(x)
    delta = np.random.default_rng(5).standard_normal(out.shape)
    conv.backward(delta)
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    expected = np.array(
        [
            [
                sum(signal.correlate2d(xp[n, c], delta[n, o], "valid") for n in range(3))
                for c in range(2)
            ]
            for o in range(3)
        ]
    )
    np.testing.assert_allclose(conv.grads["weight"], expected, rtol=1e-10)
    np.testing.assert_allclose(conv.grads["bias"], delta.sum(axis=(0, 2, 3)), rtol=1e-12)


@pytest.mark.parametrize("padding", [0, 1])
def test_input_gradient_is_full_convolution_with_flipped_kernel(padding):
    """DESIGN.md §5: dL/dx[n, c] = Σ_o full convolution of δ[n, o] with w[o, c].

    ``scipy.signal.convolve2d`` flips the kernel itself; the same result from ndimage's
    correlation with an explicitly flipped kernel checks the flip independently.
    """
    from scipy import ndimage

    conv, x = _conv((2, 3, 3, 1, padding, 7, 6))
    w = conv.params["weight"]
    out = conv.forward(x)
    delta = np.random.default_rng(6).standard_normal(out.shape)
    dx = conv.backward(delta)
    full = np.array(
        [
            [
                sum(signal.convolve2d(delta[n, o], w[o, c], "full") for o in range(3))
                for c in range(2)
            ]
            for n in range(3)
        ]
    )
    crop = full[:, :, padding : padding + 7, padding : padding + 6]
    np.testing.assert_allclose(dx, crop, rtol=1e-10, atol=1e-12)
    # The same sum through ndimage: correlation with the flipped kernel on δ padded by k-1.
    d = np.pad(delta[0, 1], 2)
    one = ndimage.correlate(d, w[1, 0, ::-1, ::-1], mode="constant")[1:-1, 1:-1]
    np.testing.assert_allclose(
        signal.convolve2d(delta[0, 1], w[1, 0], "full"), one, rtol=1e-10, atol=1e-12
    )


def test_one_dimensional_weight_gradient_formula():
    """The 1-D lecture formula with a squared loss, in cross-correlation convention:
    ŷ[i] = Σ_m h[m] x[i + m] gives dL/dh[m] = Σ_i x[i + m] (ŷ[i] - y[i])."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(12)
    y = rng.standard_normal(10)
    conv = Conv2D(1, 1, (1, 3), dtype=np.float64, rng=rng)
    yhat = conv.forward(x.reshape(1, 1, 1, 12)).ravel()
    err = yhat - y
    conv.backward(err.reshape(1, 1, 1, 10))
    expected = [sum(x[i + m] * err[i] for i in range(10)) for m in range(3)]
    np.testing.assert_allclose(conv.grads["weight"].ravel(), expected, rtol=1e-12)


def _distinct(shape, seed=0):
    """Values at least 0.01 apart, so that ±1e-6 never changes a max or a ReLU's sign."""
    rng = np.random.default_rng(seed)
    values = (rng.permutation(np.prod(shape)) - np.prod(shape) / 2 + 0.5) * 0.01
    return values.reshape(shape).astype(np.float64)


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (MaxPool2D(2), (2, 3, 6, 8)),  # the 2×2 tiling fast path
        (MaxPool2D(2), (2, 2, 7, 5)),  # odd sides: last row and column dropped
        (MaxPool2D(3, 2), (2, 2, 7, 9)),  # overlapping windows
        (MaxPool2D((2, 3)), (1, 2, 6, 9)),
        (AvgPool2D(2), (2, 3, 6, 8)),
        (AvgPool2D(3, 2), (2, 2, 7, 9)),
        (ReLU(), (3, 4, 5, 2)),
        (Tanh(), (3, 7)),
        (Sigmoid(), (3, 7)),
        (Flatten(), (2, 3, 4, 5)),
    ],
    ids=repr,
)
def test_layer_gradient_matches_finite_differences(layer, shape):
    errors = check_gradients(layer, _distinct(shape))
    assert max(errors.values()) <= TOL, errors


@pytest.mark.parametrize(("fan_in", "fan_out", "batch"), [(7, 5, 3), (1, 1, 1), (400, 120, 2)])
def test_linear_gradient_matches_finite_differences(fan_in, fan_out, batch):
    rng = np.random.default_rng(3)
    layer = Linear(fan_in, fan_out, dtype=np.float64, rng=rng)
    layer.params["bias"][...] = rng.standard_normal(fan_out)
    errors = check_gradients(layer, rng.standard_normal((batch, fan_in)), samples=200)
    assert max(errors.values()) <= TOL, errors


def _first_max_reference(x, k, s):
    """Loop version of PyTorch's rule: a window's gradient goes to its first maximum."""
    n, c, h, w = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    dx = np.zeros_like(x)
    for b in range(n):
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    win = x[b, ch, i * s : i * s + k, j * s : j * s + k]
                    r, q = np.unravel_index(np.argmax(win), win.shape)  # first in row-major
                    dx[b, ch, i * s + r, j * s + q] += 1.0 + i + 10 * j
    return dx


@pytest.mark.parametrize(("k", "s"), [(2, 2), (3, 3), (3, 2), (2, 1)])
def test_max_pool_routes_gradient_to_first_maximum(k, s):
    rng = np.random.default_rng(4)
    # Few distinct values, so most windows hold ties; an all-zero batch entry, like
    # MNIST's background after a ReLU.
    x = rng.integers(0, 3, size=(3, 2, 8, 8)).astype(np.float32)
    x[2] = 0
    pool = MaxPool2D(k, s)
    out = pool.forward(x)
    ho, wo = out.shape[2:]
    dout = (1.0 + np.arange(ho)[:, None] + 10 * np.arange(wo)[None, :]).astype(np.float32)
    dx = pool.backward(np.broadcast_to(dout, out.shape).copy())
    np.testing.assert_array_equal(dx, _first_max_reference(x, k, s))
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    np.testing.assert_array_equal(out, windows.max(axis=(4, 5)))


def test_max_pool_tie_in_each_position_of_a_2x2_window():
    for flat in [[1, 1, 1, 1], [0, 1, 1, 1], [0, 0, 1, 1], [0, 1, 0, 1], [1, 0, 0, 1]]:
        x = np.array(flat, np.float64).reshape(1, 1, 2, 2)
        pool = MaxPool2D(2)
        pool.forward(x)
        dx = pool.backward(np.ones((1, 1, 1, 1))).ravel()
        expected = np.zeros(4)
        expected[int(np.argmax(flat))] = 1
        np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize(
    "layer",
    [
        Conv2D(3, 4, 3, padding=1, rng=np.random.default_rng(0)),
        MaxPool2D(2),
        AvgPool2D(2),
        ReLU(),
        Tanh(),
        Sigmoid(),
        Flatten(),
    ],
    ids=repr,
)
def test_layers_keep_float32(layer):
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    y = layer.forward(x)
    assert y.dtype == np.float32
    assert layer.backward(np.ones_like(y)).dtype == np.float32
    assert all(g.dtype == np.float32 for g in layer.grads.values())


def test_linear_keeps_float32():
    layer = Linear(5, 3, rng=np.random.default_rng(0))
    x = np.ones((2, 5), np.float32)
    assert layer.forward(x).dtype == np.float32
    assert layer.backward(np.ones((2, 3), np.float32)).dtype == np.float32


def test_sigmoid_does_not_overflow():
    y = Sigmoid().forward(np.array([[-1e4, 0.0, 1e4]]))
    np.testing.assert_array_equal(y, [[0.0, 0.5, 1.0]])


def test_dropout_scales_in_training_and_is_identity_in_eval():
    layer = Dropout(0.25, rng=np.random.default_rng(0))
    x = np.ones((200, 50))
    y = layer.forward(x)
    assert set(np.unique(y)) == {0.0, 1 / 0.75}
    assert abs(y.mean() - 1) < 0.05
    dx = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(dx, y)
    layer.training = False
    np.testing.assert_array_equal(layer.forward(x), x)


def test_conv_params_have_pytorch_layouts():
    conv = Conv2D(3, 8, (5, 4), rng=np.random.default_rng(0))
    assert conv.params["weight"].shape == (8, 3, 5, 4)
    assert conv.params["bias"].shape == (8,)
    assert Linear(400, 120).params["weight"].shape == (120, 400)


@pytest.mark.parametrize(
    ("make", "x", "error", "match"),
    [
        (lambda: Conv2D(3, 4, 3), np.zeros((1, 2, 5, 5), np.float32), ValueError, "3 input"),
        (lambda: Conv2D(1, 4, 3), np.zeros((1, 5, 5), np.float32), ValueError, "shape"),
        (lambda: Conv2D(1, 4, 3), np.zeros((1, 1, 5, 5), np.int64), TypeError, "float"),
        (lambda: Conv2D(1, 4, 3), np.zeros((1, 1, 5, 5)), TypeError, "dtype"),
        (lambda: Conv2D(1, 4, 7), np.zeros((1, 1, 5, 5), np.float32), ValueError, "fit"),
        (lambda: Linear(4, 2), np.zeros((3, 5), np.float32), ValueError, "4 input"),
        (lambda: MaxPool2D(3), np.zeros((1, 1, 2, 2), np.float32), ValueError, "fit"),
    ],
)
def test_layers_reject_bad_input(make, x, error, match):
    with pytest.raises(error, match=match):
        make().forward(x)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kernel_size": 0}, "kernel_size"),
        ({"stride": 0}, "stride"),
        ({"padding": -1}, "padding"),
        ({"kernel_size": 2.5}, "kernel_size"),
        ({"kernel_size": 3, "dtype": np.int32}, "dtype"),
    ],
)
def test_conv_rejects_bad_arguments(kwargs, match):
    kwargs = {"kernel_size": 3, **kwargs}
    with pytest.raises((TypeError, ValueError), match=match):
        Conv2D(1, 1, **kwargs)


def test_backward_before_forward_is_an_error():
    with pytest.raises(RuntimeError, match="before forward"):
        MaxPool2D(2).backward(np.zeros((1, 1, 1, 1)))

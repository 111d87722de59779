"""Layers: finite-difference gradients, the loop reference, docs/design.md §5 identities, and
the fast layers against the reference ones."""

import copy

import numpy as np
import pytest
from scipy import signal

from convnet import (
    AvgPool2D,
    Conv2D,
    Dropout,
    FastConv2D,
    FastMaxPool2D,
    FastReLU,
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

CONVS = [Conv2D, FastConv2D]
POOLS = [MaxPool2D, FastMaxPool2D]


def _conv(case, dtype=np.float64, seed=0, kind=Conv2D):
    cin, cout, k, s, p, h, w = case
    rng = np.random.default_rng(seed)
    conv = kind(cin, cout, k, s, p, dtype=dtype)
    params = conv.init_params(rng)
    params["bias"][...] = rng.standard_normal(cout)
    x = rng.standard_normal((3, cin, h, w)).astype(dtype)
    return conv, params, x


def _backward(layer, params, x, dout, need_dx=True):
    """Forward then backward of one layer: output, input gradient, parameter gradients."""
    out, cache = layer.forward(params, x)
    dx, grads = layer.backward(params, cache, dout, need_dx=need_dx)
    return out, dx, grads


# --------------------------------------------------------------------------- convolution


@pytest.mark.parametrize("kind", CONVS)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_gradient_matches_finite_differences(case, kind):
    conv, params, x = _conv(case, kind=kind)
    errors = check_gradients(conv, x, params=params)
    assert max(errors.values()) <= TOL, errors


@pytest.mark.parametrize("kind", CONVS)
@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_equals_loop_reference(case, dtype, kind):
    conv, params, x = _conv(case, dtype, kind=kind)
    s, p = case[3:5]
    ref = conv2d_reference(x, params["weight"], params["bias"], s, p)
    out, _ = conv.forward(params, x)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-5)


@pytest.mark.parametrize("case", CONV_CASES)
def test_fast_conv_equals_reference_conv(case):
    """Output, input gradient and parameter gradients of FastConv2D equal Conv2D's up to
    the order of the sums (float64)."""
    conv, params, x = _conv(case)
    fast = FastConv2D(*case[:5], dtype=np.float64)
    dout = np.random.default_rng(9).standard_normal((3, *conv.output_shape(x.shape[1:])))
    out, dx, grads = _backward(conv, params, x, dout)
    fast_out, fast_dx, fast_grads = _backward(fast, params, x, dout)
    np.testing.assert_allclose(fast_out, out, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(fast_dx, dx, rtol=1e-12, atol=1e-13)
    for name, g in grads.items():
        assert fast_grads[name].shape == g.shape
        np.testing.assert_allclose(fast_grads[name], g, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("kind", CONVS)
def test_conv_equals_scipy_correlation(kind):
    conv, params, x = _conv((2, 3, 3, 1, 0, 7, 8), kind=kind)
    w, b = params["weight"], params["bias"]
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
    np.testing.assert_allclose(conv.forward(params, x)[0], expected, rtol=1e-12)


@pytest.mark.parametrize("kind", CONVS)
@pytest.mark.parametrize("padding", [0, 2])
def test_weight_gradient_is_correlation_of_input_and_error(padding, kind):
    """docs/design.md §5: dL/dw[o, c] = Σ_n correlate(x_padded[n, c], δ[n, o])."""
    conv, params, x = _conv((2, 3, 5, 1, padding, 9, 8), kind=kind)
    out, cache = conv.forward(params, x)
    delta = np.random.default_rng(5).standard_normal(out.shape)
    _, grads = conv.backward(params, cache, delta)
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
    np.testing.assert_allclose(grads["weight"], expected, rtol=1e-10)
    np.testing.assert_allclose(grads["bias"], delta.sum(axis=(0, 2, 3)), rtol=1e-12)


@pytest.mark.parametrize("kind", CONVS)
@pytest.mark.parametrize("padding", [0, 1])
def test_input_gradient_is_full_convolution_with_flipped_kernel(padding, kind):
    """docs/design.md §5: dL/dx[n, c] = Σ_o full convolution of δ[n, o] with w[o, c].

    ``scipy.signal.convolve2d`` flips the kernel itself; the same result from ndimage's
    correlation with an explicitly flipped kernel checks the flip independently.
    """
    from scipy import ndimage

    conv, params, x = _conv((2, 3, 3, 1, padding, 7, 6), kind=kind)
    w = params["weight"]
    out, cache = conv.forward(params, x)
    delta = np.random.default_rng(6).standard_normal(out.shape)
    dx, _ = conv.backward(params, cache, delta)
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


@pytest.mark.parametrize("kind", CONVS)
def test_one_dimensional_weight_gradient_formula(kind):
    """The 1-D lecture formula with a squared loss, in cross-correlation convention:
    ŷ[i] = Σ_m h[m] x[i + m] gives dL/dh[m] = Σ_i x[i + m] (ŷ[i] - y[i])."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(12)
    y = rng.standard_normal(10)
    conv = kind(1, 1, (1, 3), dtype=np.float64)
    params = conv.init_params(rng)
    yhat, cache = conv.forward(params, x.reshape(1, 1, 1, 12))
    err = yhat.ravel() - y
    _, grads = conv.backward(params, cache, err.reshape(1, 1, 1, 10))
    expected = [sum(x[i + m] * err[i] for i in range(10)) for m in range(3)]
    np.testing.assert_allclose(grads["weight"].ravel(), expected, rtol=1e-12)


@pytest.mark.parametrize("kind", [*CONVS, Linear])
def test_skipping_the_input_gradient_keeps_the_parameter_gradients(kind):
    layer = kind(4, 3) if kind is Linear else kind(2, 3, 3, padding=1)
    params = layer.init_params(0)
    shape = (2, 4) if kind is Linear else (2, 2, 5, 5)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    dout = np.ones((2, *layer.output_shape(shape[1:])), np.float32)
    _, dx, grads = _backward(layer, params, x, dout)
    _, none, same = _backward(layer, params, x, dout, need_dx=False)
    assert dx.shape == x.shape and none is None
    for name, g in grads.items():
        np.testing.assert_array_equal(same[name], g)


# --------------------------------------------------------------------------- other layers


def _distinct(shape, seed=0):
    """Values at least 0.01 apart, so that ±1e-6 never changes a max or a ReLU's sign."""
    rng = np.random.default_rng(seed)
    values = (rng.permutation(np.prod(shape)) - np.prod(shape) / 2 + 0.5) * 0.01
    return values.reshape(shape).astype(np.float64)


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (MaxPool2D(2), (2, 3, 6, 8)),
        (FastMaxPool2D(2), (2, 3, 6, 8)),  # the 2×2 tiling fast path
        (FastMaxPool2D(2), (2, 2, 7, 5)),  # odd sides: the reference path
        (MaxPool2D(2), (2, 2, 7, 5)),  # odd sides: last row and column dropped
        (MaxPool2D(3, 2), (2, 2, 7, 9)),  # overlapping windows
        (MaxPool2D((2, 3)), (1, 2, 6, 9)),
        (AvgPool2D(2), (2, 3, 6, 8)),
        (AvgPool2D(3, 2), (2, 2, 7, 9)),
        (ReLU(), (3, 4, 5, 2)),
        (FastReLU(), (3, 4, 5, 2)),
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
    layer = Linear(fan_in, fan_out, dtype=np.float64)
    params = layer.init_params(rng)
    params["bias"][...] = rng.standard_normal(fan_out)
    x = rng.standard_normal((batch, fan_in))
    errors = check_gradients(layer, x, params=params, samples=200)
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


@pytest.mark.parametrize("kind", POOLS)
@pytest.mark.parametrize(("k", "s"), [(2, 2), (3, 3), (3, 2), (2, 1)])
def test_max_pool_routes_gradient_to_first_maximum(k, s, kind):
    rng = np.random.default_rng(4)
    # Few distinct values, so most windows hold ties; an all-zero batch entry, like
    # MNIST's background after a ReLU.
    x = rng.integers(0, 3, size=(3, 2, 8, 8)).astype(np.float32)
    x[2] = 0
    pool = kind(k, s)
    out, cache = pool.forward({}, x)
    ho, wo = out.shape[2:]
    dout = (1.0 + np.arange(ho)[:, None] + 10 * np.arange(wo)[None, :]).astype(np.float32)
    dx, grads = pool.backward({}, cache, np.broadcast_to(dout, out.shape).copy())
    assert grads == {}
    np.testing.assert_array_equal(dx, _first_max_reference(x, k, s))
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    np.testing.assert_array_equal(out, windows.max(axis=(4, 5)))


@pytest.mark.parametrize("shape", [(3, 4, 8, 6), (2, 3, 28, 28), (1, 2, 10, 2)])
def test_fast_max_pool_equals_reference_bit_for_bit(shape):
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, size=shape).astype(np.float32)  # ties everywhere
    x[0, 0] = 0
    dout = rng.standard_normal((shape[0], shape[1], shape[2] // 2, shape[3] // 2))
    dout = dout.astype(np.float32)
    out, dx, _ = _backward(MaxPool2D(2), {}, x, dout)
    fast_out, fast_dx, _ = _backward(FastMaxPool2D(2), {}, x, dout)
    assert fast_out.dtype == fast_dx.dtype == np.float32
    np.testing.assert_array_equal(fast_out, out)
    np.testing.assert_array_equal(fast_dx, dx)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_max_pool_treats_nan_as_the_reference_does(dtype):
    """np.argmax takes the first NaN of a window as its maximum; so does the compiled pass."""
    x = np.zeros((1, 1, 2, 8), dtype)
    x[0, 0, :, 0:2] = [[1, np.nan], [np.nan, 2]]  # the first NaN wins
    x[0, 0, :, 2:4] = [[np.nan, 5], [1, 1]]  # a NaN first stays the winner
    x[0, 0, :, 4:6] = [[1, 2], [3, np.nan]]  # a NaN last beats every number
    x[0, 0, :, 6:8] = [[-np.inf, -np.inf], [-np.inf, -np.inf]]  # ties of -inf: the first
    dout = np.arange(1, 5, dtype=dtype).reshape(1, 1, 1, 4)
    out, dx, _ = _backward(MaxPool2D(2), {}, x, dout)
    fast_out, fast_dx, _ = _backward(FastMaxPool2D(2), {}, x, dout)
    np.testing.assert_array_equal(fast_out, out)
    np.testing.assert_array_equal(fast_dx, dx)
    assert np.isnan(fast_out[0, 0, 0, :3]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_relu_equals_reference_bit_for_bit(dtype):
    x = np.random.default_rng(8).integers(-2, 3, size=(3, 4, 5, 6)).astype(dtype)  # zeros too
    x[0, 0, 0, :3] = [np.nan, -0.0, np.inf]
    dout = np.random.default_rng(9).standard_normal(x.shape).astype(dtype)
    out, dx, _ = _backward(ReLU(), {}, x, dout)
    fast_out, fast_dx, _ = _backward(FastReLU(), {}, x, dout)
    assert fast_out.dtype == fast_dx.dtype == dtype
    np.testing.assert_array_equal(fast_out, out)
    np.testing.assert_array_equal(fast_dx, dx)
    # a strided view is read as its values
    view = x[:, ::2, :, ::-1]
    np.testing.assert_array_equal(FastReLU().forward({}, view)[0], ReLU().forward({}, view)[0])


@pytest.mark.parametrize("kind", POOLS)
def test_max_pool_tie_in_each_position_of_a_2x2_window(kind):
    for flat in [[1, 1, 1, 1], [0, 1, 1, 1], [0, 0, 1, 1], [0, 1, 0, 1], [1, 0, 0, 1]]:
        x = np.array(flat, np.float64).reshape(1, 1, 2, 2)
        _, dx, _ = _backward(kind(2), {}, x, np.ones((1, 1, 1, 1)))
        expected = np.zeros(4)
        expected[int(np.argmax(flat))] = 1
        np.testing.assert_array_equal(dx.ravel(), expected)


ALL_LAYERS = [
    Conv2D(3, 4, 3, padding=1),
    FastConv2D(3, 4, 3, padding=1),
    MaxPool2D(2),
    FastMaxPool2D(2),
    AvgPool2D(2),
    ReLU(),
    FastReLU(),
    Tanh(),
    Sigmoid(),
    Flatten(),
]


@pytest.mark.parametrize("layer", ALL_LAYERS, ids=repr)
def test_layers_keep_float32(layer):
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    params = layer.init_params(0)
    y, cache = layer.forward(params, x)
    assert y.dtype == np.float32
    dx, grads = layer.backward(params, cache, np.ones_like(y))
    assert dx.dtype == np.float32
    assert grads.keys() == params.keys()
    assert all(g.dtype == np.float32 for g in grads.values())


@pytest.mark.parametrize("layer", ALL_LAYERS, ids=repr)
def test_layers_keep_nothing_between_forward_and_backward(layer):
    """A layer's attributes are its configuration: no call changes them, and the passes
    of two batches interleaved give what each gives alone."""
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((2, 3, 6, 6)).astype(np.float32) for _ in range(2))
    params = layer.init_params(0)
    before = copy.deepcopy(vars(layer))
    alone = [_backward(layer, params, x, np.full_like(layer.forward(params, x)[0], 0.5))
             for x in (a, b)]  # fmt: skip
    out_a, cache_a = layer.forward(params, a)
    out_b, cache_b = layer.forward(params, b)
    dx_b, grads_b = layer.backward(params, cache_b, np.full_like(out_b, 0.5))
    dx_a, grads_a = layer.backward(params, cache_a, np.full_like(out_a, 0.5))
    for (out, dx, grads), (o, d, g) in zip(
        alone, [(out_a, dx_a, grads_a), (out_b, dx_b, grads_b)], strict=True
    ):
        np.testing.assert_array_equal(o, out)
        np.testing.assert_array_equal(d, dx)
        for name in grads:
            np.testing.assert_array_equal(g[name], grads[name])
    after = vars(layer)
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert (
            np.array_equal(after[key], value)
            if isinstance(value, np.ndarray)
            else (after[key] == value)
        ), key


def test_linear_keeps_float32():
    layer = Linear(5, 3)
    params = layer.init_params(0)
    x = np.ones((2, 5), np.float32)
    out, dx, grads = _backward(layer, params, x, np.ones((2, 3), np.float32))
    assert out.dtype == dx.dtype == grads["weight"].dtype == np.float32


def test_sigmoid_does_not_overflow():
    y, _ = Sigmoid().forward({}, np.array([[-1e4, 0.0, 1e4]]))
    np.testing.assert_array_equal(y, [[0.0, 0.5, 1.0]])


def test_dropout_scales_in_training_and_is_identity_in_eval():
    layer = Dropout(0.25, rng=np.random.default_rng(0))
    x = np.ones((200, 50))
    y, cache = layer.forward({}, x)
    assert set(np.unique(y)) == {0.0, 1 / 0.75}
    assert abs(y.mean() - 1) < 0.05
    dx, _ = layer.backward({}, cache, np.ones_like(x))
    np.testing.assert_array_equal(dx, y)
    np.testing.assert_array_equal(layer.forward({}, x, training=False)[0], x)


def test_dropout_draws_from_the_generator_it_is_given():
    layer = Dropout(0.5, rng=np.random.default_rng(0))
    x = np.ones((4, 30))
    given = layer.forward({}, x, rng=np.random.default_rng(5))[0]
    again = Dropout(0.5).forward({}, x, rng=np.random.default_rng(5))[0]
    np.testing.assert_array_equal(given, again)
    # its own generator was not touched
    np.testing.assert_array_equal(
        layer.forward({}, x)[0], Dropout(0.5, rng=np.random.default_rng(0)).forward({}, x)[0]
    )


def test_params_have_pytorch_layouts_and_he_initialisation():
    params = Conv2D(3, 8, (5, 4)).init_params(0)
    assert params["weight"].shape == (8, 3, 5, 4)
    assert params["bias"].shape == (8,)
    assert not params["bias"].any()
    weight = Linear(400, 120).init_params(0)["weight"]
    assert weight.shape == (120, 400)
    assert weight.std() == pytest.approx(np.sqrt(2 / 400), rel=0.05)
    assert ReLU().init_params(0) == {}


@pytest.mark.parametrize(
    ("make", "x", "error", "match"),
    [
        (lambda: Conv2D(3, 4, 3), np.zeros((1, 2, 5, 5), np.float32), ValueError, "3 input"),
        (lambda: Conv2D(1, 4, 3), np.zeros((1, 5, 5), np.float32), ValueError, "shape"),
        (lambda: Conv2D(1, 4, 3), np.zeros((1, 1, 5, 5), np.int64), TypeError, "float"),
        (lambda: Conv2D(1, 4, 3), np.zeros((1, 1, 5, 5)), TypeError, "dtype"),
        (lambda: FastConv2D(1, 4, 3), np.zeros((1, 1, 5, 5)), TypeError, "dtype"),
        (lambda: Conv2D(1, 4, 7), np.zeros((1, 1, 5, 5), np.float32), ValueError, "fit"),
        (lambda: FastConv2D(1, 4, 7), np.zeros((1, 1, 5, 5), np.float32), ValueError, "fit"),
        (lambda: Linear(4, 2), np.zeros((3, 5), np.float32), ValueError, "4 input"),
        (lambda: MaxPool2D(3), np.zeros((1, 1, 2, 2), np.float32), ValueError, "fit"),
        (lambda: FastMaxPool2D(2), np.zeros((1, 1, 1, 2), np.float32), ValueError, "fit"),
        (lambda: FastMaxPool2D(2), np.zeros((1, 2, 2), np.float32), ValueError, "shape"),
    ],
)
def test_layers_reject_bad_input(make, x, error, match):
    layer = make()
    with pytest.raises(error, match=match):
        layer.forward(layer.init_params(0), x)


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


def test_check_gradients_refuses_params_for_a_model_and_other_objects():
    from convnet import Sequential

    with pytest.raises(ValueError, match="params"):
        check_gradients(Sequential([ReLU()]), np.ones((1, 2)), params={})
    with pytest.raises(TypeError, match="Layer or a Sequential"):
        check_gradients(object(), np.ones((1, 2)))

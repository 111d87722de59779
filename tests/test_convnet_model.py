"""Loss, gradient checker, LeNet-5 and optimisers."""

import itertools
import math

import numpy as np
import pytest

from convnet import (
    SGD,
    Adam,
    Conv2D,
    CosineLR,
    Dropout,
    FastConv2D,
    Flatten,
    Layer,
    Linear,
    MaxPool2D,
    ReLU,
    Sequential,
    StepLR,
    check_gradients,
    cross_entropy,
    lenet5,
    numerical_gradient,
    relative_error,
)

# --------------------------------------------------------------------------- loss


def test_cross_entropy_matches_direct_formula():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, 4))
    y = np.array([0, 3, 1, 1, 2])
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    loss, d = cross_entropy(z, y)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(5), y])), rel=1e-12)
    onehot = np.eye(4)[y]
    np.testing.assert_allclose(d, (p - onehot) / 5, rtol=1e-12)


def test_cross_entropy_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((3, 6))
    y = np.array([5, 0, 2])
    _, d = cross_entropy(z, y)
    numeric = numerical_gradient(lambda: cross_entropy(z, y)[0], z)
    assert relative_error(d, numeric) <= 1e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hostile_logits_give_finite_loss_and_gradient(dtype):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype)
    loss, d = cross_entropy(z, np.array([1, 0, 2]))
    assert math.isfinite(loss) and np.isfinite(d).all()
    assert d.dtype == dtype
    assert loss == pytest.approx((2e4 + math.log(3) + (2e4 + math.log(2))) / 3, rel=1e-6)
    np.testing.assert_allclose(d.sum(axis=1), 0, atol=1e-6)


@pytest.mark.parametrize(
    ("logits", "labels", "match"),
    [
        (np.zeros((2, 3)), [0, 3], "labels must lie"),
        (np.zeros((2, 3)), [0], "labels must have shape"),
        (np.zeros(3), [0], "logits must have shape"),
        (np.array([[np.nan, 0.0]]), [0], "NaN"),
    ],
)
def test_cross_entropy_rejects_bad_input(logits, labels, match):
    with pytest.raises(ValueError, match=match):
        cross_entropy(logits, labels)


# --------------------------------------------------------------------------- checker


def test_checker_reproduces_the_lecture_worked_example():
    """h0 = cos x, h1 = (h0³ + sin x)/√2, ŷ = √(h0² + h1²): backprop equals d ŷ/dx."""
    for x0 in (-1.3, 0.2, 0.7, 2.5):
        x = np.array([x0])
        h0 = math.cos(x0)
        h1 = (h0**3 + math.sin(x0)) / math.sqrt(2)
        y = math.sqrt(h0**2 + h1**2)
        # Backward pass, node by node, as in the lecture.
        dy_dh1 = h1 / y
        dy_dh0 = h0 / y + dy_dh1 * 3 * h0**2 / math.sqrt(2)
        dy_dx = dy_dh0 * -math.sin(x0) + dy_dh1 * math.cos(x0) / math.sqrt(2)
        # Closed form from ŷ² = cos²x + (cos³x + sin x)² / 2.
        c, s = math.cos(x0), math.sin(x0)
        analytic = (-2 * c * s + (c**3 + s) * (-3 * c**2 * s + c)) / (2 * y)
        assert dy_dx == pytest.approx(analytic, rel=1e-12)

        def f(x=x):
            h0 = np.cos(x[0])
            h1 = (h0**3 + np.sin(x[0])) / np.sqrt(2)
            return float(np.sqrt(h0**2 + h1**2))

        assert relative_error([dy_dx], numerical_gradient(f, x)) <= 1e-6


class _WrongLinear(Linear):
    def backward(self, params, cache, dout, *, need_dx=True):
        dx, grads = super().backward(params, cache, dout, need_dx=need_dx)
        return dx, {**grads, "weight": grads["weight"] * 1.01}  # a 1% error to be seen


def test_checker_detects_a_wrong_gradient():
    layer = _WrongLinear(4, 3, dtype=np.float64)
    errors = check_gradients(layer, np.random.default_rng(1).standard_normal((2, 4)))
    assert errors["input"] <= 1e-6
    assert errors["weight"] > 1e-3


def _digits_on_flat_background(n: int = 2) -> np.ndarray:
    """Normalised float64 digits: strokes on an exactly flat background, as MNIST's."""
    x = np.zeros((n, 28, 28))
    x[:, 8:20, 12:15] = 1.0  # a "1"
    x[1:, 8:11, 8:20] = 0.7  # and a bar on the second
    return ((x - 0.1307) / 0.3081)[:, None]


def test_checker_leaves_out_max_pool_ties_of_a_flat_background_and_says_so():
    net = lenet5(np.float64, seed=1)
    x = _digits_on_flat_background()
    labels = np.array([1, 7])
    errors = check_gradients(net, x, labels=labels, samples=120)
    assert max(errors.values()) <= 1e-6, errors
    # Most background pixels sit on a four-way tie of a pooling window: left out, counted.
    assert errors.kinks["input"] > 60 and errors.checked["input"] > 0
    assert errors.checked["input"] + errors.kinks["input"] == 120
    assert "kinks" in repr(errors)
    # Those entries are where a plain finite difference is no derivative at all.
    net.forward(x)
    dx = net.backward(cross_entropy(net.forward(x), labels)[1])
    x_nudged = x.copy()
    numeric = numerical_gradient(lambda: cross_entropy(net.forward(x_nudged), labels)[0],
                                 x_nudged, indices=np.arange(0, 784, 7))  # fmt: skip
    picked = np.zeros(x.size, bool)
    picked[np.arange(0, 784, 7)] = True
    assert relative_error(dx.reshape(-1)[picked], numeric.reshape(-1)[picked]) > 1e-2


def test_checker_finds_a_wrong_gradient_even_among_ties():
    net = Sequential(
        [
            ("conv", Conv2D(1, 2, 3, padding=1, dtype=np.float64)),
            ("relu", ReLU()),
            ("pool", MaxPool2D(2)),
            ("flatten", Flatten()),
            ("fc", _WrongLinear(2 * 14 * 14, 10, dtype=np.float64)),
        ],
        rng=0,
    )
    errors = check_gradients(net, _digits_on_flat_background(), labels=np.array([1, 7]),
                             samples=400)  # fmt: skip
    assert errors.kinks["input"] > 0
    assert errors["fc.weight"] > 1e-3
    assert errors["input"] <= 1e-6


def test_checker_counts_relu_inputs_at_zero_as_kinks():
    x = np.array([[-1.0, 0.0, 2.0, 0.0, 3.0]])
    errors = check_gradients(ReLU(), x)
    assert errors.kinks == {"input": 2} and errors.checked == {"input": 3}
    assert errors["input"] <= 1e-6
    everything_at_zero = check_gradients(ReLU(), np.zeros((1, 3)))
    assert math.isnan(everything_at_zero["input"])  # nothing was checked: no claim


def test_checker_on_real_mnist_digits():
    from convnet_data import mnist5k_dir

    from convnet.data import load_mnist, normalise

    data = load_mnist(mnist5k_dir())
    x = normalise(data.test_images[:2], np.float64)
    errors = check_gradients(lenet5(np.float64, seed=0), x, labels=data.test_labels[:2],
                             samples=100)  # fmt: skip
    assert max(errors.values()) <= 1e-6, errors
    assert errors.kinks["input"] > 0


def test_numerical_gradient_needs_float64():
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(lambda: 0.0, np.zeros(3, np.float32))


# --------------------------------------------------------------------------- LeNet-5

LENET_SHAPES = {
    "conv1.weight": (6, 1, 5, 5),
    "conv1.bias": (6,),
    "conv2.weight": (16, 6, 5, 5),
    "conv2.bias": (16,),
    "fc1.weight": (120, 400),
    "fc1.bias": (120,),
    "fc2.weight": (84, 120),
    "fc2.bias": (84,),
    "fc3.weight": (10, 84),
    "fc3.bias": (10,),
}


def test_lenet5_has_pytorch_names_and_shapes():
    net = lenet5(seed=0)
    state = net.state_dict()
    assert {k: v.shape for k, v in state.items()} == LENET_SHAPES
    assert all(v.dtype == np.float32 for v in state.values())
    assert net.num_parameters() == 61706
    assert net.grads().keys() == state.keys()


def test_lenet5_output_and_float32():
    net = lenet5(seed=0)
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    out = net.forward(x)
    assert out.shape == (3, 10) and out.dtype == np.float32
    _, d = cross_entropy(out, [1, 2, 3])
    dx = net.backward(d)
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert net.backward(d, input_grad=False) is None


def test_lenet5_gradient_matches_finite_differences():
    net = lenet5(np.float64, seed=1)
    x = np.random.default_rng(2).standard_normal((2, 1, 28, 28))
    errors = check_gradients(net, x, labels=np.array([3, 8]), samples=30)
    assert max(errors.values()) <= 1e-6, errors


def test_lenet5_initialisation_is_seeded_he_normal():
    a, b, c = lenet5(seed=3), lenet5(seed=3), lenet5(seed=4)
    for k in LENET_SHAPES:
        np.testing.assert_array_equal(a.state_dict()[k], b.state_dict()[k])
    assert not np.array_equal(a.state_dict()["fc1.weight"], c.state_dict()["fc1.weight"])
    w = lenet5(seed=0).state_dict()["fc1.weight"]
    assert w.std() == pytest.approx(math.sqrt(2 / 400), rel=0.05)
    assert not lenet5(seed=0).state_dict()["conv1.bias"].any()


def test_state_dict_round_trip_and_copy_semantics():
    a, b = lenet5(seed=0), lenet5(seed=1)
    state = a.state_dict()
    state["fc3.bias"][0] = 123.0  # a copy: the model must not change
    assert a.state_dict()["fc3.bias"][0] == 0
    b.load_state_dict(a.state_dict())
    x = np.ones((1, 1, 28, 28), np.float32)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))


def test_load_state_dict_names_every_mismatch():
    net = lenet5(seed=0)
    state = net.state_dict()
    del state["fc3.bias"]
    state["fc4.weight"] = np.zeros((2, 2))
    state["conv1.weight"] = np.zeros((6, 1, 3, 3))
    with pytest.raises(ValueError) as info:
        net.load_state_dict(state)
    message = str(info.value)
    assert "missing fc3.bias" in message
    assert "unexpected fc4.weight" in message
    assert "conv1.weight: expected (6, 1, 5, 5), got (6, 1, 3, 3)" in message


def test_load_state_dict_rejects_nan():
    net = lenet5(seed=0)
    state = net.state_dict()
    state["fc1.bias"][3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        net.load_state_dict(state)


def test_summary_lists_layers_shapes_and_counts():
    text = lenet5(seed=0).summary()
    for piece in ["conv1", "(6, 28, 28)", "(16, 5, 5)", "(400,)", "48,120", "61,706"]:
        assert piece in text


def test_train_and_eval_modes_reach_every_layer():
    net = Sequential([("fc", Linear(4, 4)), ("drop", Dropout(0.5, rng=np.random.default_rng(0)))])
    x = np.ones((3, 4), np.float32)
    whole = Sequential([("fc", Linear(4, 4))], rng=None)
    whole.load_state_dict(net.state_dict())
    assert net.eval() is net and not net.training
    np.testing.assert_array_equal(net.forward(x), whole.forward(x))  # no dropout
    assert net.train() is net and net.training
    assert (net.forward(x) == 0).any()  # dropout again


def test_sequential_rejects_duplicates_and_non_layers():
    with pytest.raises(ValueError, match="unique"):
        Sequential([("a", ReLU()), ("a", ReLU())])
    with pytest.raises(TypeError, match="Layer"):
        Sequential([("a", object())])
    assert isinstance(ReLU(), Layer)


# --------------------------------------------------------------------------- chunked batches


def _step(net, x, labels, threads=None):
    """Logits, parameter gradients (copies) and input gradient of one training step."""
    logits = net.forward(x, threads=threads)
    _, d = cross_entropy(logits, labels)
    dx = net.backward(d, threads=threads)
    return logits, {k: g.copy() for k, g in net.grads().items()}, dx


def _batch(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 28, 28)).astype(dtype), rng.integers(0, 10, n)


class _Recording(ReLU):
    """A user's subclass of a layer: records the batch sizes it is run on."""

    def __init__(self):
        self.sizes = []  # configuration aside, only for the test to read

    def forward(self, params, x, *, training=True, rng=None):
        self.sizes.append(len(x))
        return super().forward(params, x, training=training, rng=rng)


class _MyConv(Conv2D):
    """A user's subclass of the reference convolution, with a forward of its own."""

    def forward(self, params, x, *, training=True, rng=None):
        out, cache = super().forward(params, x, training=training, rng=rng)
        return out, cache


def _reference_lenet5(dtype=np.float64, relu1=None):
    """LeNet-5 of the reference layers (``relu1`` in place of the first ReLU)."""
    return Sequential(
        [
            ("conv1", Conv2D(1, 6, 5, padding=2, dtype=dtype)),
            ("relu1", relu1 or ReLU()),
            ("pool1", MaxPool2D(2)),
            ("conv2", Conv2D(6, 16, 5, dtype=dtype)),
            ("relu2", ReLU()),
            ("pool2", MaxPool2D(2)),
            ("flatten", Flatten()),
            ("fc1", Linear(400, 120, dtype=dtype)),
            ("relu3", ReLU()),
            ("fc2", Linear(120, 84, dtype=dtype)),
            ("relu4", ReLU()),
            ("fc3", Linear(84, 10, dtype=dtype)),
        ]
    )


@pytest.mark.parametrize("batch", [33, 64, 70])
def test_chunked_step_equals_whole_batch_step(batch):
    """Chunks change only the order of the gradient sums: equal to rounding in float64."""
    x, labels = _batch(batch, np.float64)
    recorder = _Recording()
    chunked, whole = _reference_lenet5(relu1=recorder), lenet5(np.float64, seed=1)
    chunked.load_state_dict(whole.state_dict())
    whole.chunk_size = None
    logits, grads, dx = _step(chunked, x, labels, threads=2)
    ref_logits, ref_grads, ref_dx = _step(whole, x, labels)
    sizes = [min(32, batch - start) for start in range(0, batch, 32)]
    assert sorted(recorder.sizes) == sorted(sizes) and len(sizes) > 1  # it did chunk
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-12, atol=1e-15)
    for name, g in ref_grads.items():
        np.testing.assert_allclose(grads[name], g, rtol=1e-11, atol=1e-14, err_msg=name)


def test_chunked_gradients_do_not_depend_on_thread_count():
    """The split depends on the batch size only and chunk gradients are summed in order,
    so float32 results are bit-for-bit the same with any thread count and on every run."""
    x, labels = _batch(100, np.float32)
    results = []
    for threads in (1, 2, 3, 2):
        results.append(_step(lenet5(seed=0, threads=threads), x, labels))
    results.append(_step(lenet5(seed=0), x, labels, threads=4))
    logits, grads, dx = results[0]
    assert logits.dtype == dx.dtype == np.float32
    for other_logits, other_grads, other_dx in results[1:]:
        np.testing.assert_array_equal(other_logits, logits)
        np.testing.assert_array_equal(other_dx, dx)
        for name, g in grads.items():
            np.testing.assert_array_equal(other_grads[name], g, err_msg=name)


@pytest.mark.parametrize(
    ("batch", "dtype"), [(100, np.float32), (20, np.float32), (70, np.float64)]
)
def test_train_step_equals_forward_loss_backward(batch, dtype):
    """The fused step runs each chunk's passes and loss in one go; with cross_entropy over
    the whole batch's count its logits and gradients are those of the three separate
    calls bit for bit, on any thread count, and its loss is the batch's to rounding."""
    x, labels = _batch(batch, dtype)
    logits, grads, _ = _step(lenet5(dtype, seed=0), x, labels)
    loss, _ = cross_entropy(logits, labels)
    for threads in (1, 2, 3):
        net = lenet5(dtype, seed=0, threads=threads)

        def chunk_loss(z, rows):
            return cross_entropy(z, labels[rows], count=batch)

        fused_loss, fused_logits = net.train_step(x, chunk_loss)
        np.testing.assert_array_equal(fused_logits, logits)
        for name, g in grads.items():
            np.testing.assert_array_equal(net.grads()[name], g, err_msg=name)
        # float64 sums of ≤ 100 terms of size ≤ ~10 in another order: a few ulps
        assert fused_loss == pytest.approx(loss, rel=1e-14)
        # the caches are kept as after forward: backward can run again
        assert net.backward(np.ones_like(logits), input_grad=False) is None


def test_cross_entropy_count_splits_a_batch_into_parts_that_add_up():
    rng = np.random.default_rng(5)
    logits, labels = rng.standard_normal((7, 4)), rng.integers(0, 4, 7)
    loss, d = cross_entropy(logits, labels)
    parts = [cross_entropy(logits[r], labels[r], count=7) for r in (slice(0, 3), slice(3, 7))]
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), d)
    assert parts[0][0] + parts[1][0] == pytest.approx(loss, rel=1e-15)
    for count in (6, 2.0, True):
        with pytest.raises(ValueError, match="count"):
            cross_entropy(logits, labels, count=count)


def test_fast_layers_give_the_reference_network_up_to_rounding():
    """lenet5 runs on FastConv2D, FastReLU and FastMaxPool2D; the same network of reference layers
    with the same parameters gives the same logits and gradients (float64)."""
    fast, reference = lenet5(np.float64, seed=2), _reference_lenet5()
    reference.load_state_dict(fast.state_dict())
    x, labels = _batch(40, np.float64, seed=3)
    x[:, :, :8] = 0  # a flat background: ties in the pooling windows
    fast_logits, fast_grads, fast_dx = _step(fast, x, labels)
    logits, grads, dx = _step(reference, x, labels)
    np.testing.assert_allclose(fast_logits, logits, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(fast_dx, dx, rtol=1e-11, atol=1e-15)
    for name, g in grads.items():
        np.testing.assert_allclose(fast_grads[name], g, rtol=1e-11, atol=1e-14, err_msg=name)


def test_a_subclass_of_a_layer_runs_in_chunks():
    """Layers keep nothing between calls, so a user's subclass runs chunked on threads like
    any other layer, with the same results as the whole batch and for any thread count."""

    def make(chunk_size):
        return Sequential(
            [
                ("conv", _MyConv(2, 3, 3, padding=1, dtype=np.float64)),
                ("relu", _Recording()),
                ("pool", MaxPool2D(2)),
                ("flatten", Flatten()),
                ("fc", Linear(12, 4, dtype=np.float64)),
            ],
            rng=0,
            chunk_size=chunk_size,
        )

    x = np.random.default_rng(2).standard_normal((7, 2, 4, 4))
    labels = np.array([0, 3, 1, 2, 3, 0, 1])
    whole = _step(make(None), x, labels)
    for threads in (1, 3):
        net = make(2)
        logits, grads, dx = _step(net, x, labels, threads=threads)
        assert sorted(net.layers[1][1].sizes) == [1, 2, 2, 2]
        np.testing.assert_allclose(logits, whole[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dx, whole[2], rtol=1e-12, atol=1e-14)
        for name, g in whole[1].items():
            np.testing.assert_allclose(grads[name], g, rtol=1e-12, atol=1e-14, err_msg=name)


def test_chunked_model_gradient_matches_finite_differences():
    recorder = _Recording()
    net = Sequential(
        [
            ("conv", Conv2D(2, 3, 3, padding=1, dtype=np.float64)),
            ("relu", recorder),
            ("pool", MaxPool2D(2)),
            ("flatten", Flatten()),
            ("fc", Linear(12, 4, dtype=np.float64)),
        ],
        rng=0,
        chunk_size=2,
        threads=2,
    )
    x = np.random.default_rng(2).standard_normal((5, 2, 4, 4))
    errors = check_gradients(net, x, labels=np.array([0, 3, 1, 2, 3]))
    assert sorted(recorder.sizes[:3]) == [1, 2, 2]
    assert max(errors.values()) <= 1e-6, errors


def test_chunks_follow_loaded_parameters():
    a, b = lenet5(seed=0), lenet5(seed=1)
    x, _ = _batch(40, np.float32)
    b.forward(x)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(b.forward(x), a.forward(x))


def test_one_layer_object_serves_two_models():
    conv = FastConv2D(1, 6, 5, padding=2)
    a = Sequential([("conv", conv), ("flatten", Flatten())], rng=0)
    b = Sequential([("conv", conv), ("flatten", Flatten())], rng=1)
    x, _ = _batch(40, np.float32)
    out_a, out_b = a.forward(x), b.forward(x)
    dx_a = a.backward(np.ones_like(out_a))
    dx_b = b.backward(np.ones_like(out_b))
    alone = Sequential([("conv", FastConv2D(1, 6, 5, padding=2)), ("flatten", Flatten())])
    alone.load_state_dict(a.state_dict())
    out = alone.forward(x)
    np.testing.assert_array_equal(out_a, out)
    np.testing.assert_array_equal(dx_a, alone.backward(np.ones_like(out)))
    assert not np.array_equal(dx_a, dx_b)


def test_network_with_dropout_chunks_independently_of_threads():
    """Dropout draws its masks in training from one generator per chunk, each seeded by a
    draw from the layer's own generator in chunk order: the same for any thread count."""

    def make(chunk_size):
        layers = [("fc", Linear(6, 5)), ("drop", Dropout(0.5, rng=np.random.default_rng(1)))]
        return Sequential(layers, rng=0, chunk_size=chunk_size)

    x = np.random.default_rng(1).standard_normal((9, 6)).astype(np.float32)
    outs, states = [], []
    for threads in (1, 2, 3):
        net = make(2)
        outs.append(net.forward(x, threads=threads))
        states.append(net.layers[1][1].rng.bit_generator.state)
    for out, state in zip(outs[1:], states[1:], strict=True):
        np.testing.assert_array_equal(out, outs[0])
        assert state == states[0]
    assert (outs[0] == 0).any()
    # in evaluation there is nothing to draw: chunks give the whole batch's output
    np.testing.assert_allclose(make(2).eval().forward(x), make(None).eval().forward(x), rtol=1e-6)


def test_default_threads_come_from_pyramids_parallel_not_from_blas(monkeypatch):
    from threadpoolctl import threadpool_limits

    import convnet.model
    from pyramids import parallel

    used = []

    def recording(task, n_items, threads, **options):
        used.append(threads)
        return parallel.run_parts(task, n_items, threads, **options)

    monkeypatch.setattr(convnet.model, "run_parts", recording)
    x, labels = _batch(64, np.float32)
    monkeypatch.setenv(parallel.ENV_VAR, "3")
    with threadpool_limits(limits=1, user_api="blas"):
        _step(lenet5(seed=0), x, labels)
        _step(lenet5(seed=0, threads=2), x, labels)
        _step(lenet5(seed=0, threads=2), x, labels, threads=1)
    assert used == [3, 3, 2, 2, 1, 1]


def test_backward_rejects_another_batch_size():
    net = lenet5(seed=0)
    x, labels = _batch(40, np.float32)
    _, d = cross_entropy(net.forward(x), labels)
    with pytest.raises(ValueError, match="batch size 40"):
        net.backward(d[:39])


def test_backward_before_forward_is_an_error():
    with pytest.raises(RuntimeError, match="before forward"):
        lenet5(seed=0).backward(np.zeros((1, 10), np.float32))


def test_grads_are_zero_before_the_first_backward_pass():
    grads = lenet5(seed=0).grads()
    assert grads.keys() == LENET_SHAPES.keys()
    assert all(g.shape == LENET_SHAPES[k] and not g.any() for k, g in grads.items())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"chunk_size": 0}, "chunk_size"), ({"threads": 1.5}, "threads")],
)
def test_sequential_rejects_bad_chunking_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Sequential([ReLU()], **kwargs)


def test_forward_rejects_a_bad_thread_count():
    with pytest.raises(ValueError, match="threads"):
        lenet5(seed=0).forward(np.zeros((1, 1, 28, 28), np.float32), threads=0)


# --------------------------------------------------------------------------- optimisers


def test_sgd_momentum_nesterov_and_weight_decay_follow_pytorch_formulas():
    p = {"w": np.array([1.0, -2.0])}
    g = {"w": np.array([0.5, 0.25])}
    opt = SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    w, v = np.array([1.0, -2.0]), np.zeros(2)
    for _ in range(3):
        opt.step(g)
        grad = g["w"] + 0.01 * w
        v = 0.9 * v + grad
        w = w - 0.1 * (grad + 0.9 * v)
    np.testing.assert_allclose(p["w"], w, rtol=1e-12)


def test_adam_first_step_moves_by_lr_against_the_gradient_sign():
    p = {"w": np.array([1.0, 1.0], np.float32)}
    Adam(p, lr=0.01).step({"w": np.array([3.0, -0.2], np.float32)})
    np.testing.assert_allclose(p["w"], [0.99, 1.01], rtol=1e-5)
    assert p["w"].dtype == np.float32


@pytest.mark.parametrize("make", [lambda p: SGD(p, 0.1, momentum=0.9), lambda p: Adam(p, 0.1)])
def test_optimisers_minimise_a_quadratic(make):
    target = np.array([3.0, -1.0])
    p = {"w": np.zeros(2)}
    opt = make(p)
    for _ in range(300):
        opt.step({"w": p["w"] - target})
    np.testing.assert_allclose(p["w"], target, atol=1e-3)


def test_schedules():
    opt = SGD({"w": np.zeros(1)}, lr=1.0)
    step = StepLR(opt, step_size=2, gamma=0.5)
    assert [step.step() for _ in range(4)] == [1.0, 0.5, 0.5, 0.25]
    opt = SGD({"w": np.zeros(1)}, lr=1.0)
    cosine = CosineLR(opt, total=10, warmup=2, min_lr=0.1)
    assert opt.lr == pytest.approx(0.5)  # warm-up from the first step
    rates = [cosine.step() for _ in range(10)]
    assert rates[0] == pytest.approx(1.0)
    assert rates[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(rates))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1}, "lr"),
        ({"lr": 0.1, "momentum": 1.0}, "momentum"),
        ({"lr": 0.1, "nesterov": True}, "nesterov"),
        ({"lr": 0.1, "weight_decay": -1}, "weight"),
    ],
)
def test_sgd_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGD({"w": np.zeros(1)}, **kwargs)


@pytest.mark.parametrize("variant", ["relu", "classic"])
def test_an_empty_batch_gets_one_clear_line_and_the_model_still_works(variant):
    net = lenet5(seed=0, variant=variant)
    side = 28  # both variants take 28 × 28 digits (the classic one pads them to 32)
    for training in (True, False):
        net.train(training)
        with pytest.raises(ValueError, match=r"^forward needs at least one input, got a batch"):
            net.forward(np.zeros((0, 1, side, side), np.float32))
    x = np.random.default_rng(0).standard_normal((3, 1, side, side)).astype(np.float32)
    assert net.forward(x).shape == (3, 10)


def test_forward_of_what_is_no_array_is_refused_by_the_first_layer_in_one_line():
    # The empty-batch test reads len(x) only of arrays: a list, empty or not, and a scalar
    # reach the first layer's own type check, as they did before that test.
    net = lenet5(seed=0)
    with pytest.raises(ValueError, match=r"^forward needs at least one input, .* \(0,\)$"):
        net.forward([])
    for x in (np.float32(1), [[[[0.0] * 28] * 28]]):
        with pytest.raises(TypeError, match=r"^Conv2D: input must be a float32 or float64"):
            net.forward(x)


def test_predict_of_no_images_is_an_empty_table_of_class_probabilities():
    from convnet import Committee
    from convnet.train import predict

    nothing = np.zeros((0, 1, 28, 28), np.float32)
    for model in (lenet5(seed=0), Committee([lenet5(seed=0), lenet5(seed=1)])):
        probs = predict(model, nothing)
        assert probs.shape == (0, 10) and probs.dtype == np.float32


@pytest.mark.parametrize(
    "setting, match",
    [({"shift": 1e300}, "^shift must be at most 28"), ({"shear": np.nan}, "^shear must be")],
    ids=str,
)
def test_train_config_refuses_a_distortion_range_before_any_training(setting, match):
    from convnet.train import TrainConfig

    with pytest.raises(ValueError, match=match):
        TrainConfig(**setting).validate()
    TrainConfig(**setting, augment=False).validate()  # not used: no distortion to check


def test_predict_leaves_the_model_in_its_mode_when_a_batch_is_refused():
    from convnet.train import predict

    net = lenet5(seed=0)
    net.train()
    with pytest.raises(ValueError):
        predict(net, np.zeros((2, 1, 5, 5), np.float32))  # too small for conv2
    assert net.training


def test_a_refused_state_dict_leaves_every_parameter_as_it_was():
    # the last entry holds a NaN: nothing before it may have been loaded already
    net = lenet5(seed=0)
    before = net.state_dict()
    state = lenet5(seed=1).state_dict()
    last = list(state)[-1]
    state[last] = state[last].copy()
    state[last].reshape(-1)[0] = np.nan
    with pytest.raises(ValueError, match=rf"^state dict entry {last} contains NaN"):
        net.load_state_dict(state)
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[name])

"""The fused convolution → ReLU → 2×2 max-pool stage against the three fast layers it
replaces, and Sequential's use of it (docs/design.md §5.10)."""

import numpy as np
import pytest

from convnet import FastConv2D, FastMaxPool2D, FastReLU, Flatten, Linear, Sequential, lenet5
from convnet.fast_layers import ConvReLUPool
from convnet.kernels import bias_relu_pool2_backward, bias_relu_pool2_forward
from convnet.losses import cross_entropy
from convnet.model import backward_pass, forward_pass

STAGE_CASES = [
    # (in, out, kernel, padding, H, W)
    (1, 6, 5, 2, 28, 28),  # LeNet's conv1
    (6, 16, 5, 0, 14, 14),  # LeNet's conv2
    (2, 3, (3, 2), (1, 0), 8, 9),  # non-square kernel and padding, an 8×8 output
]


def _three(conv, params, x, dout, need_dx=True):
    """The three fast layers one after the other: output, input gradient, conv gradients."""
    relu, pool = FastReLU(), FastMaxPool2D(2)
    a, c1 = conv.forward(params, x)
    b, c2 = relu.forward({}, a)
    out, c3 = pool.forward({}, b)
    d, _ = pool.backward({}, c3, dout)
    d, _ = relu.backward({}, c2, d)
    dx, grads = conv.backward(params, c1, d, need_dx=need_dx)
    return out, dx, grads, d


def _sum_bound(terms, dtype):
    """Two sums of the same terms in different orders differ by at most (m - 1)·eps·Σ|t|
    (each is within (m - 1)·u·Σ|t| of the exact sum, u = eps/2; Higham, Accuracy and
    Stability, §4.2), per output channel."""
    m = terms.shape[0] * terms.shape[2] * terms.shape[3]
    return (m - 1) * np.finfo(dtype).eps * np.abs(terms).sum(axis=(0, 2, 3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", STAGE_CASES)
def test_fused_stage_equals_the_three_fast_layers(case, dtype):
    """Output, input gradient and weight gradient bit for bit; the bias gradient, the same
    terms summed in another order, within the bound of that reordering."""
    cin, cout, k, p, h, w = case
    rng = np.random.default_rng(3)
    conv = FastConv2D(cin, cout, k, padding=p, dtype=dtype)
    params = conv.init_params(rng)
    params["bias"][...] = rng.standard_normal(cout) / 4
    # Quantised input with a flat band: ties in the windows and ReLU inputs at exactly 0.
    x = (np.round(rng.standard_normal((5, cin, h, w)) * 2) / 2).astype(dtype)
    x[:, :, : h // 3] = 0
    params["bias"][0] = 0  # channel 0: whole windows of zeros after the ReLU
    stage = ConvReLUPool(conv, FastReLU(), FastMaxPool2D(2))
    out, cache = stage.forward(params, x)
    dout = rng.standard_normal(out.shape).astype(dtype)
    ref_out, ref_dx, ref_grads, conv_dout = _three(conv, params, x, dout)
    dx, grads = stage.backward(params, cache, dout)
    assert out.dtype == dx.dtype == grads["weight"].dtype == grads["bias"].dtype == dtype
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(dx, ref_dx)
    np.testing.assert_array_equal(grads["weight"], ref_grads["weight"])
    bound = _sum_bound(conv_dout, dtype)
    assert (np.abs(grads["bias"] - ref_grads["bias"]) <= bound).all()
    # without the input gradient, the same parameter gradients
    none, again = stage.backward(params, cache, dout, need_dx=False)
    assert none is None
    np.testing.assert_array_equal(again["weight"], grads["weight"])
    np.testing.assert_array_equal(again["bias"], grads["bias"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_kernels_follow_relu_and_pooling_on_special_values(dtype):
    """NaN, ±inf, -0.0 and ties through the compiled bias + ReLU + pooling pass give what
    FastReLU then FastMaxPool2D give; the grid's junk columns are never read, and get 0
    in the error."""
    rng = np.random.default_rng(4)
    n, o, ho, wo, wp = 2, 3, 4, 6, 9
    maps = rng.integers(-2, 3, size=(n, o, ho, wo)).astype(dtype)
    maps[0, 0, 0, :4] = [np.nan, 1, -np.inf, np.inf]
    maps[0, 1, :2, :2] = [[-0.0, 0.0], [-1, -0.0]]
    maps[1, 2, :2, 2:4] = [[np.inf, np.inf], [np.nan, np.nan]]
    bias = np.array([0.0, 0.0, 0.5], dtype)
    length = (ho - 1) * wp + wo
    grid = np.full((n, o, ho * wp), 7.0, dtype)  # junk columns: larger than every map value
    grid.reshape(n, o, ho, wp)[..., :wo] = maps
    grid = np.ascontiguousarray(grid[..., :length])
    out = np.empty((n, o, ho // 2, wo // 2), dtype)
    where = np.empty(out.shape, np.uint8)
    bias_relu_pool2_forward(grid, bias, wp, ho, wo, out, where)
    relu, pool = FastReLU(), FastMaxPool2D(2)
    r, rc = relu.forward({}, maps + bias[:, None, None])
    ref_out, pc = pool.forward({}, r)
    np.testing.assert_array_equal(out, ref_out)
    dout = rng.standard_normal(out.shape).astype(dtype)
    err = np.full((n, o, length), np.nan, dtype)  # every value must be written
    dbias = bias_relu_pool2_backward(dout, where, out, wp, err)
    ref_d, _ = relu.backward({}, rc, pool.backward({}, pc, dout)[0])
    full = np.zeros((n, o, ho * wp), dtype)
    full[..., :length] = err
    full = full.reshape(n, o, ho, wp)
    np.testing.assert_array_equal(full[..., :wo], ref_d)
    assert (full[..., wo:] == 0).all()
    assert (np.abs(dbias - ref_d.sum(axis=(0, 2, 3))) <= _sum_bound(ref_d, dtype)).all()


def _small_net(relu=None, size=12):
    return Sequential(
        [
            ("conv", FastConv2D(2, 4, 3, padding=1, dtype=np.float64)),
            ("relu", relu or FastReLU()),
            ("pool", FastMaxPool2D(2)),
            ("flatten", Flatten()),
            ("fc", Linear(4 * (size // 2) ** 2, 5, dtype=np.float64)),
        ],
        rng=0,
        chunk_size=3,
    )


class _PlainReLU(FastReLU):
    """A subclass: Sequential must not fuse it (it may change what the layer does)."""


def test_sequential_fuses_conv_relu_pool_and_matches_the_layers(monkeypatch):
    """A network whose convolution, ReLU and pooling run as one stage gives the logits,
    input gradient and weight gradients of the same layers run one by one bit for bit, its
    bias gradient to rounding; a subclass of a layer is left unfused."""
    calls = []
    forward = ConvReLUPool.forward

    def counting(self, params, x, **workspaces):
        calls.append(len(x))
        return forward(self, params, x, **workspaces)

    monkeypatch.setattr(ConvReLUPool, "forward", counting)
    rng = np.random.default_rng(5)
    x = np.round(rng.standard_normal((7, 2, 12, 12)) * 2) / 2
    labels = rng.integers(0, 5, 7)
    fused, plain = _small_net(), _small_net(_PlainReLU())
    results = []
    for net in (fused, plain):
        logits = net.forward(x, threads=2)
        _, d = cross_entropy(logits, labels)
        results.append((logits, net.backward(d, threads=2), net.grads()))
    assert sorted(calls) == [1, 3, 3]  # the fused net's three chunks, the plain net's none
    (logits, dx, grads), (ref_logits, ref_dx, ref_grads) = results
    np.testing.assert_array_equal(logits, ref_logits)
    np.testing.assert_array_equal(dx, ref_dx)
    for name in ("conv.weight", "fc.weight", "fc.bias"):
        np.testing.assert_array_equal(grads[name], ref_grads[name], err_msg=name)
    # float64, ≤ 7·6·6 terms of size ≤ ~1 summed in another order: far below 1e-12
    np.testing.assert_allclose(grads["conv.bias"], ref_grads["conv.bias"], rtol=0, atol=1e-12)


def test_odd_convolution_output_runs_the_layers_one_by_one():
    """A 2×2 pooling of an odd-sided map is not a tiling: the stage steps aside and the
    layers run as they would alone (the reference pooling drops the last row and column)."""
    net = _small_net(size=11)
    x = np.random.default_rng(6).standard_normal((4, 2, 11, 11))
    logits = net.forward(x)
    ref, caches = forward_pass(net.layers, net.params, x[:3])
    np.testing.assert_array_equal(logits[:3], ref)
    dx = net.backward(np.ones_like(logits))
    ref_dx, _ = backward_pass(net.layers, net.params, caches, np.ones_like(ref))
    np.testing.assert_array_equal(dx[:3], ref_dx)


def test_lenet5_relu_trains_on_fused_stages_and_classic_does_not(monkeypatch):
    calls = []
    forward = ConvReLUPool.forward
    monkeypatch.setattr(
        ConvReLUPool,
        "forward",
        lambda self, p, x, **ws: calls.append(1) or forward(self, p, x, **ws),
    )
    x = np.zeros((2, 1, 28, 28), np.float32)
    lenet5(seed=0).forward(x)
    assert len(calls) == 2  # conv1 and conv2
    lenet5(seed=0, variant="classic").forward(x)
    assert len(calls) == 2


def test_stage_refuses_layers_it_does_not_fuse():
    with pytest.raises(ValueError, match="ConvReLUPool needs"):
        ConvReLUPool(FastConv2D(1, 2, 3, stride=2), FastReLU(), FastMaxPool2D(2))
    assert not ConvReLUPool.joins(FastConv2D(1, 2, 3), FastReLU(), FastMaxPool2D(3))
    assert not ConvReLUPool.joins(FastConv2D(1, 2, 3), _PlainReLU(), FastMaxPool2D(2))


def test_workspaces_are_reused_without_changing_results():
    """The fused stages write into arrays kept on the model between passes: batches of
    other sizes in between, a second model sharing the layer objects, and a caller keeping
    an earlier output change nothing; backward uses the last forward's caches."""
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((7, 2, 12, 12)), rng.standard_normal((4, 2, 12, 12))

    def fresh(data):
        net = _small_net()
        out = net.forward(data)
        return out, net.backward(np.ones_like(out)), net.grads()

    (ref_x, ref_dx, ref_gx), (ref_y, ref_dy, ref_gy) = fresh(x), fresh(y)
    net = _small_net()
    first = net.forward(x)
    other = Sequential(list(net.layers), rng=0, chunk_size=3)  # the same layer objects
    other.forward(y)
    np.testing.assert_array_equal(net.forward(y), ref_y)
    np.testing.assert_array_equal(net.backward(np.ones_like(ref_y)), ref_dy)
    for name, g in ref_gy.items():
        np.testing.assert_array_equal(net.grads()[name], g, err_msg=name)
    np.testing.assert_array_equal(first, ref_x)  # not overwritten by the later passes
    np.testing.assert_array_equal(net.forward(x), ref_x)
    np.testing.assert_array_equal(net.backward(np.ones_like(ref_x)), ref_dx)
    for name, g in ref_gx.items():
        np.testing.assert_array_equal(net.grads()[name], g, err_msg=name)
    # a network that ends on a fused stage hands out its own output array, chunked or not
    for chunk_size in (None, 3):
        stage_only = Sequential(list(net.layers)[:3], rng=0, chunk_size=chunk_size)
        out_x = stage_only.forward(x[:2])
        kept = out_x.copy()
        stage_only.forward(y[:2])
        np.testing.assert_array_equal(out_x, kept)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("momentum", "nesterov", "weight_decay"),
    [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 5e-4), (0.5, False, 1e-2)],
)
def test_compiled_sgd_step_is_the_numpy_update_bit_for_bit(
    dtype, momentum, nesterov, weight_decay
):
    """SGD updates contiguous parameters in one compiled pass; the result is that of the
    numpy passes it replaces, written out here, bit for bit (and a non-contiguous
    parameter, which takes the numpy passes, agrees with a contiguous copy of itself)."""
    from convnet import SGD

    rng = np.random.default_rng(8)
    t = np.dtype(dtype).type
    start = rng.standard_normal((6, 5)).astype(dtype)
    start[0, :2] = [-0.0, 0.0]
    backing = np.zeros((6, 10), dtype)
    params = {"a": start.copy(), "b": backing[:, ::2]}  # b: a strided view
    params["b"][...] = start
    assert not params["b"].flags.c_contiguous
    opt = SGD(params, lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    p, v = start.copy(), np.zeros_like(start)
    for _ in range(4):
        grad = rng.standard_normal(start.shape).astype(dtype)
        opt.step({"a": grad, "b": grad})
        g = grad
        if weight_decay:
            g = g + t(weight_decay) * p
        if momentum:
            v = v * t(momentum)
            v = v + g
            g = g + t(momentum) * v if nesterov else v
        p = p - t(0.05) * g
        assert params["a"].dtype == dtype
        np.testing.assert_array_equal(params["a"], p)
        np.testing.assert_array_equal(params["b"], p)
        if momentum:
            np.testing.assert_array_equal(opt.velocity["a"], v)


def test_dense_columns_and_their_adjoint():
    """The junk-free im2col equals numpy's sliding windows; its col2im is its adjoint
    (⟨im2col x, d⟩ = ⟨x, col2im d⟩, float64 sums of ≤ 2,000 products: 1e-12 relative)
    and equals a plain tap-by-tap scatter bit for bit. LeNet's conv2 takes this layout,
    its conv1 the grid."""
    from numpy.lib.stride_tricks import sliding_window_view

    from convnet.fast_layers import _row_stride
    from convnet.kernels import col2im_dense, im2col_dense

    rng = np.random.default_rng(9)
    n, c, hp, wp, kh, kw = 3, 2, 9, 8, 3, 2
    ho, wo = hp - kh + 1, wp - kw + 1
    xp = rng.standard_normal((n, c, hp, wp))
    cols = np.empty((n, c * kh * kw, ho * wo))
    im2col_dense(xp, kh, kw, ho, wo, cols)
    windows = sliding_window_view(xp, (kh, kw), axis=(2, 3))  # (n, c, y, x, i, j)
    np.testing.assert_array_equal(cols, windows.transpose(0, 1, 4, 5, 2, 3).reshape(cols.shape))
    d = rng.standard_normal(cols.shape)
    dx = col2im_dense(d, c, kh, kw, hp, wp, ho, wo)
    assert np.vdot(cols, d) == pytest.approx(np.vdot(xp, dx), rel=1e-12)
    ref = np.zeros_like(xp)
    taps = d.reshape(n, c, kh, kw, ho, wo)
    for i in range(kh):
        for j in range(kw):
            ref[:, :, i : i + ho, j : j + wo] += taps[:, :, i, j]
    np.testing.assert_array_equal(dx, ref)
    assert _row_stride(28, 28, 32) == 32 and _row_stride(10, 10, 14) == 10


def test_backward_after_an_evaluation_pass_gathers_the_columns_again():
    """Out of training the fused stages keep no columns (inference reuses one buffer per
    thread); a backward pass after such a forward pass (a saliency map) gathers them again
    and gives what it gives after a training pass, bit for bit, on any thread count."""
    x, labels = np.random.default_rng(10).standard_normal((70, 1, 28, 28)), np.arange(70) % 10
    results = []
    for mode, threads in (("train", 1), ("eval", 1), ("eval", 2), ("eval", 3)):
        net = lenet5(np.float64, seed=4, threads=threads)
        net.train(mode == "train")
        logits = net.forward(x)
        _, d = cross_entropy(logits, labels)
        results.append((logits, net.backward(d), net.grads()))
    logits, dx, grads = results[0]
    for other_logits, other_dx, other_grads in results[1:]:
        np.testing.assert_array_equal(other_logits, logits)
        np.testing.assert_array_equal(other_dx, dx)
        for name, g in grads.items():
            np.testing.assert_array_equal(other_grads[name], g, err_msg=name)


@pytest.mark.parametrize("threads", [1, 2])
def test_backward_after_a_training_step_reads_or_regathers_the_right_columns(threads):
    """A training step leaves its columns in the threads' scratch, overwritten by later
    chunks; a backward pass after it gathers them again where they were overwritten and
    gives the gradients of a plain forward and backward pass, bit for bit."""
    rng = np.random.default_rng(11)
    x, labels = rng.standard_normal((100, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 100)
    plain = lenet5(seed=3, threads=threads)
    logits = plain.forward(x)
    _, d = cross_entropy(logits, labels)
    plain.backward(d, input_grad=False)
    stepped = lenet5(seed=3, threads=threads)
    _, step_logits = stepped.train_step(
        x, lambda z, rows: cross_entropy(z, labels[rows], count=100)
    )
    np.testing.assert_array_equal(step_logits, logits)
    for name, g in plain.grads().items():
        np.testing.assert_array_equal(stepped.grads()[name], g, err_msg=name)
    stepped.backward(np.ones_like(logits), input_grad=False)
    plain.backward(np.ones_like(logits), input_grad=False)
    for name, g in plain.grads().items():
        np.testing.assert_array_equal(stepped.grads()[name], g, err_msg=name)


def test_forward_passes_from_two_threads_do_not_write_each_others_outputs(monkeypatch):
    """Two threads sharing a model in evaluation (a server, a thread pool) each get their
    own batch's logits. The fused stages once wrote both threads' pooled maps into the
    model's one workspace per chunk, so a thread could read the other's maps. Forced here:
    the "first" thread writes its first stage's maps, the "second" thread then writes its
    own, and only then does the first go on."""
    import threading

    from convnet import fast_layers

    net = lenet5(seed=5, threads=1).eval()
    rng = np.random.default_rng(6)
    xs = {name: rng.standard_normal((4, 1, 28, 28)).astype(np.float32) for name in ("a", "b")}
    expected = {name: net.forward(x) for name, x in xs.items()}
    wrote = {"a": threading.Event(), "b": threading.Event()}
    original = fast_layers.bias_relu_pool2_forward

    def ordered(*args):
        me = threading.current_thread().name
        if me == "b":
            assert wrote["a"].wait(10)
        original(*args)
        wrote[me].set()
        if me == "a":
            wrote["b"].wait(2)  # the second thread's write comes first, if it can

    monkeypatch.setattr(fast_layers, "bias_relu_pool2_forward", ordered)
    got = {}

    def run(name):
        got[name] = net.forward(xs[name])

    threads = [threading.Thread(target=run, args=(name,), name=name) for name in xs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in xs:  # the same arithmetic on the same thread count: bit for bit
        np.testing.assert_array_equal(got[name], expected[name])


def test_a_model_copies_and_pickles_with_workspaces_of_its_own():
    """copy.deepcopy and pickle (a snapshot of a model, a model sent to a worker process)
    failed once the model kept its threads' workspaces ("cannot pickle '_thread._local'");
    a copy computes what the original does, and its passes leave the original's last pass
    (what the original's backward reads) as it was."""
    import copy
    import pickle

    net = lenet5(np.float64, seed=7, threads=1)
    rng = np.random.default_rng(8)
    x, other = rng.standard_normal((2, 3, 1, 28, 28))
    dout = rng.standard_normal((3, 10))
    logits = net.forward(x)
    for make in (copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m)), copy.copy):
        twin = make(net)
        np.testing.assert_array_equal(twin.forward(x), logits)
        twin.forward(other)
        net.backward(dout)
        reference = lenet5(np.float64, seed=7, threads=1)
        reference.forward(x)
        reference.backward(dout)
        for name, grads in reference.grads().items():
            np.testing.assert_array_equal(net.grads()[name], grads)

"""LeNet-5's classic variant (docs/design.md §5.9): its layers against finite differences and
PyTorch, the network against the same network built in PyTorch, and its checkpoints."""

import json

import numpy as np
import pytest
from requires import require_module

from convnet import Pad2D, ScaledTanh, Subsample2D, check_gradients, cross_entropy, lenet5
from convnet.checkpoint import CheckpointError, load_checkpoint, logit_bound, save_checkpoint
from convnet.model import lenet5_variant

TOL = 1e-6  # as tests/test_convnet_layers.py: central differences, h = 1e-6, float64

TORCH_REASON = "PyTorch is the reference for the classic variant's layers"


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (ScaledTanh(), (3, 2, 4, 4)),
        (Subsample2D(3, 2, dtype=np.float64), (2, 3, 6, 8)),
        (Subsample2D(2, 3, 2, dtype=np.float64), (2, 2, 7, 9)),  # overlapping windows
        (Pad2D(2, value=-0.4), (2, 1, 5, 3)),
        (Pad2D((1, 0)), (1, 2, 3, 3)),
    ],
    ids=repr,
)
def test_classic_layers_match_finite_differences(layer, shape):
    params = layer.init_params(0)
    rng = np.random.default_rng(1)
    for value in params.values():  # away from the start values, so that every term counts
        value[...] = rng.standard_normal(value.shape)
    errors = check_gradients(layer, _x(shape), params=params or None)
    assert max(errors.values()) <= TOL, errors


def test_classic_layers_keep_float32():
    x = _x((2, 6, 8, 8)).astype(np.float32)
    for layer in (ScaledTanh(), Subsample2D(6, 2), Pad2D(2, value=-0.4)):
        params = layer.init_params(0)
        y, cache = layer.forward(params, x)
        dx, grads = layer.backward(params, cache, np.ones_like(y))
        assert y.dtype == dx.dtype == np.float32, layer
        assert all(g.dtype == np.float32 for g in grads.values()), layer


def test_scaled_tanh_is_lecuns_function():
    y, _ = ScaledTanh().forward({}, np.array([[-1.0, 0.0, 1.0, 50.0]]))
    # f(±1) ≈ ±1 is why A and S were chosen (LeCun et al. 1998, appendix A); f saturates at A
    np.testing.assert_allclose(y, [[-1.0, 0.0, 1.0, 1.7159]], atol=1e-4)


def test_subsample_starts_as_average_pooling():
    from convnet import AvgPool2D

    x = _x((2, 3, 6, 6))
    sub = Subsample2D(3, 2, dtype=np.float64)
    np.testing.assert_allclose(
        sub.forward(sub.init_params(), x)[0], AvgPool2D(2).forward({}, x)[0], rtol=1e-15
    )
    with pytest.raises(ValueError, match="3 input channels"):
        sub.forward(sub.init_params(), _x((1, 2, 4, 4)))


def _torch_classic(torch, net):
    """The classic variant's forward pass written with torch.nn.functional, on ``net``'s
    parameters as leaf tensors (float64)."""
    f = torch.nn.functional
    p = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in net.state_dict().items()}
    pad = net.layers[0][1].value

    def squash(t):
        return 1.7159 * torch.tanh(t * (2 / 3))

    def subsample(t, name):
        c = t.shape[1]
        # a coefficient times each 2×2 window's sum, plus a bias: a grouped convolution
        # with a kernel of four equal taps
        kernel = p[f"{name}.weight"].view(c, 1, 1, 1).expand(c, 1, 2, 2)
        return f.conv2d(t, kernel, p[f"{name}.bias"], stride=2, groups=c)

    def run(x):
        h = f.pad(x, (2, 2, 2, 2), value=pad)
        h = squash(f.conv2d(h, p["conv1.weight"], p["conv1.bias"]))
        h = squash(subsample(h, "pool1"))
        h = squash(f.conv2d(h, p["conv2.weight"], p["conv2.bias"]))
        h = squash(subsample(h, "pool2")).flatten(1)
        h = squash(f.linear(h, p["fc1.weight"], p["fc1.bias"]))
        h = squash(f.linear(h, p["fc2.weight"], p["fc2.bias"]))
        return f.linear(h, p["fc3.weight"], p["fc3.bias"])

    return run, p


def test_classic_network_equals_pytorch():
    """Logits, parameter gradients and the input gradient of a training step equal
    PyTorch's for the same parameters, to float64 rounding, in chunks and whole."""
    torch = require_module("torch", TORCH_REASON)
    net = lenet5(np.float64, seed=3, variant="classic")
    rng = np.random.default_rng(4)
    for name, params in net.params.items():  # trained-looking subsampling coefficients
        if name.startswith("pool"):
            params["weight"][...] = rng.uniform(-1, 1, params["weight"].shape)
            params["bias"][...] = rng.uniform(-0.5, 0.5, params["bias"].shape)
    x, labels = _x((40, 1, 28, 28), seed=5), rng.integers(0, 10, 40)  # two chunks
    logits = net.forward(x)
    _, d = cross_entropy(logits, labels)
    dx = net.backward(d)
    run, p = _torch_classic(torch, net)
    tx = torch.from_numpy(x).requires_grad_()
    t_logits = run(tx)
    torch.nn.functional.cross_entropy(t_logits, torch.from_numpy(labels)).backward()
    # float64 sums of at most a few hundred terms in another order: relative 1e-12
    np.testing.assert_allclose(logits, t_logits.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-15)
    for name, g in net.grads().items():
        ref = p[name].grad.numpy()
        scale = np.abs(ref).max()
        np.testing.assert_allclose(g, ref, rtol=0, atol=1e-12 * scale, err_msg=name)


def test_classic_network_matches_finite_differences():
    net = lenet5(np.float64, seed=1, variant="classic")
    errors = check_gradients(net, _x((2, 1, 28, 28), seed=2), labels=np.array([3, 8]), samples=30)
    assert max(errors.values()) <= TOL, errors


def test_variants_are_told_apart_and_unknown_ones_refused():
    assert lenet5_variant(lenet5()) == "relu"
    assert lenet5_variant(lenet5(variant="classic")) == "classic"
    assert lenet5(variant="classic").state_dict().keys() >= lenet5().state_dict().keys()
    with pytest.raises(ValueError, match="variant must be one of relu, classic"):
        lenet5(variant="lenet1")


def test_classic_checkpoint_round_trip_records_the_variant(tmp_path):
    net = lenet5(seed=0, variant="classic")
    path = save_checkpoint(tmp_path / "m.npz", net)
    model, meta = load_checkpoint(path)
    assert meta["variant"] == "classic" and lenet5_variant(model) == "classic"
    x = _x((3, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(model.forward(x), net.eval().forward(x))
    assert logit_bound(model) < np.inf


def _rewrite_meta(path, change):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays["__metadata__"]))
    change(meta)
    arrays["__metadata__"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)


def test_checkpoint_without_a_variant_loads_as_relu(tmp_path):
    """Checkpoints written before the classic variant existed have no 'variant'."""
    path = save_checkpoint(tmp_path / "m.npz", lenet5(seed=0))
    _rewrite_meta(path, lambda meta: meta.pop("variant"))
    model, _ = load_checkpoint(path)
    assert lenet5_variant(model) == "relu"


@pytest.mark.parametrize(
    ("variant", "written", "match"),
    [
        ("classic", "relu", "unexpected pool1.bias, pool1.weight"),
        ("relu", "classic", r"do not fit LeNet-5 \(classic\): missing pool1.bias"),
        ("relu", "resnet", "variant 'resnet' is not one of relu, classic"),
    ],
)
def test_checkpoint_whose_parameters_are_another_variants(tmp_path, variant, written, match):
    path = save_checkpoint(tmp_path / "m.npz", lenet5(seed=0, variant=variant))
    _rewrite_meta(path, lambda meta: meta.update(variant=written))
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_checkpoint_refuses_a_network_that_is_no_variant(tmp_path):
    from convnet import Linear, Sequential

    with pytest.raises(CheckpointError, match="none of the LeNet-5 variants"):
        save_checkpoint(tmp_path / "m.npz", Sequential([("fc3", Linear(4, 10))]))
    assert not list(tmp_path.iterdir())

"""Optimisers against PyTorch's published update rules, written out by hand.

The references below follow the algorithms as ``torch.optim.SGD`` and ``torch.optim.Adam``
document them (dampening 0, ``maximize`` off, ``amsgrad`` off), step by step and in
float64, independently of :mod:`convnet.optim`. Where PyTorch is installed, the same
trajectories are also compared with ``torch.optim`` itself.

Tolerance: each step of the implementation and of the reference evaluates the same
formula, possibly in another association ((lr / c1) · m against lr · (m / c1), say); every
operation is within one unit roundoff ``u`` of its exact value relative to its operands, and
a step has fewer than 16 operations, all on values of magnitude at most ``scale`` (the
largest parameter, gradient or moment seen). An error made in one step feeds the next
only through ``lr · (1 + weight_decay)``-sized terms (< 1 here), so after ``steps`` steps
the two differ by at most ``16 · steps · u · scale``. A flipped sign or a wrong term moves a
parameter by about ``lr · weight_decay`` per step, nine orders of magnitude more.
"""

import numpy as np
import pytest

from convnet import SGD, Adam, CosineLR, StepLR

STEPS = 6
# The gradient of a quadratic 0.5 pᵀA p − bᵀp, so that the path depends on every update.
_A = np.array([[1.5, 0.3, 0.0], [0.3, 0.8, -0.2], [0.0, -0.2, 0.4]])
_B = np.array([0.5, -1.0, 0.25])
_P0 = np.array([1.0, -2.0, 0.5])


def _grad(p: np.ndarray) -> np.ndarray:
    return _A @ p.astype(np.float64) - _B


def _tolerance(dtype, scale: float) -> float:
    return 16 * STEPS * np.finfo(dtype).eps * scale


def _sgd_reference(lr, momentum, nesterov, weight_decay, dtype):
    """torch.optim.SGD's documented algorithm, in float64 on the rounded float inputs."""
    p, buf, path = _P0.astype(dtype).astype(np.float64), None, []
    for _ in range(STEPS):
        g = _grad(p.astype(dtype))  # the gradient the implementation sees
        g = g.astype(dtype).astype(np.float64)
        if weight_decay != 0:
            g = g + weight_decay * p
        if momentum != 0:
            buf = g.copy() if buf is None else momentum * buf + g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
        path.append(p.copy())
    return path


def _adam_reference(lr, betas, eps, weight_decay, dtype):
    """torch.optim.Adam's documented algorithm (amsgrad off), in float64."""
    b1, b2 = betas
    p = _P0.astype(dtype).astype(np.float64)
    m, v, path = np.zeros(3), np.zeros(3), []
    for t in range(1, STEPS + 1):
        g = _grad(p.astype(dtype)).astype(dtype).astype(np.float64)
        if weight_decay != 0:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        path.append(p.copy())
    return path


def _run(make, dtype):
    p = {"w": _P0.astype(dtype)}
    opt = make(p)
    path = []
    for _ in range(STEPS):
        opt.step({"w": _grad(p["w"]).astype(dtype)})
        path.append(p["w"].astype(np.float64))
    assert p["w"].dtype == dtype
    return path


def _torch_path(name, dtype, **kwargs):
    """The same trajectory from torch.optim, or None where PyTorch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    w = torch.tensor(_P0.astype(dtype), requires_grad=True)
    opt = getattr(torch.optim, name)([w], **kwargs)
    path = []
    for _ in range(STEPS):
        w.grad = torch.tensor(_grad(w.detach().numpy()).astype(dtype))
        opt.step()
        path.append(w.detach().numpy().astype(np.float64))
    return path


def _assert_paths_agree(path, reference, dtype):
    scale = max(1.0, *(np.abs(q).max() for q in reference), np.abs(_B).max())
    tol = _tolerance(dtype, 4 * scale)  # gradients reach |A|·|p| + |b| < 4 · scale
    for step, (got, want) in enumerate(zip(path, reference, strict=True), 1):
        err = np.abs(got - want).max()
        assert err <= tol, f"step {step}: differs from the reference by {err:.3g} > {tol:.3g}"


SGD_CASES = [
    pytest.param(0.0, False, 0.0, id="plain"),
    pytest.param(0.0, False, 0.1, id="weight-decay"),
    pytest.param(0.9, False, 0.0, id="momentum"),
    pytest.param(0.9, False, 0.1, id="momentum-weight-decay"),
    pytest.param(0.9, True, 0.0, id="nesterov"),
    pytest.param(0.9, True, 0.1, id="nesterov-weight-decay"),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("momentum", "nesterov", "weight_decay"), SGD_CASES)
def test_sgd_follows_pytorch_algorithm(momentum, nesterov, weight_decay, dtype):
    lr = 0.05
    path = _run(lambda p: SGD(p, lr, momentum, nesterov, weight_decay), dtype)
    _assert_paths_agree(path, _sgd_reference(lr, momentum, nesterov, weight_decay, dtype), dtype)
    torch_path = _torch_path(
        "SGD", dtype, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
    )
    if torch_path is not None:
        _assert_paths_agree(path, torch_path, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1, 0.5])
def test_adam_follows_pytorch_algorithm(weight_decay, dtype):
    lr, betas, eps = 0.01, (0.9, 0.999), 1e-8
    path = _run(lambda p: Adam(p, lr, betas, eps, weight_decay), dtype)
    _assert_paths_agree(path, _adam_reference(lr, betas, eps, weight_decay, dtype), dtype)
    torch_path = _torch_path("Adam", dtype, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    if torch_path is not None:
        _assert_paths_agree(path, torch_path, dtype)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: SGD(p, lr=0.1, weight_decay=0.5), id="sgd"),
        pytest.param(lambda p: SGD(p, 0.1, 0.9, True, weight_decay=0.5), id="nesterov"),
        pytest.param(lambda p: Adam(p, lr=0.1, weight_decay=0.5), id="adam"),
    ],
)
def test_weight_decay_alone_shrinks_parameters_towards_zero(make):
    """With a zero loss gradient, an L2 penalty can only pull every parameter towards 0."""
    p = {"w": np.array([2.0, -3.0, 0.5])}
    opt = make(p)
    before = np.abs(p["w"]).copy()
    opt.step({"w": np.zeros(3)})
    assert (np.abs(p["w"]) < before).all()
    assert (np.sign(p["w"]) == np.sign([2.0, -3.0, 0.5])).all()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: SGD(p, 0.05, 0.9, True, weight_decay=0.1), id="sgd"),
        pytest.param(lambda p: Adam(p, 0.01, weight_decay=0.1), id="adam"),
    ],
)
def test_state_dict_round_trip_continues_the_same_path(make):
    """An optimiser rebuilt from a state_dict makes exactly the steps the original makes."""
    p = {"w": _P0.copy()}
    opt = make(p)
    for _ in range(3):
        opt.step({"w": _grad(p["w"])})
    state = opt.state_dict()
    q = {"w": p["w"].copy()}
    twin = make(q)
    twin.load_state_dict(state)
    for _ in range(3):
        opt.step({"w": _grad(p["w"])})
        twin.step({"w": _grad(q["w"])})
    np.testing.assert_array_equal(q["w"], p["w"])
    assert twin.steps == opt.steps == 6
    # the state is a copy: stepping the original did not change what was saved
    assert state["steps"] == 3


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: s.pop("velocity"), "entries"),
        (lambda s: s.update(steps=-1), "steps"),
        (lambda s: s.update(lr=float("nan")), "lr"),
        (lambda s: s.update(velocity={"other": np.zeros(3)}), "parameters"),
        (lambda s: s.update(velocity={"w": np.zeros(4)}), "shape"),
        (lambda s: s.update(velocity={"w": np.zeros(3, np.float32)}), "float64"),
        (lambda s: s.update(velocity={"w": np.full(3, np.inf)}), "infinity"),
    ],
)
def test_load_state_dict_rejects_a_state_that_does_not_fit(change, match):
    opt = SGD({"w": np.zeros(3)}, lr=0.1, momentum=0.9)
    state = opt.state_dict()
    change(state)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(state)
    np.testing.assert_array_equal(opt.velocity["w"], 0)  # nothing half-loaded


@pytest.mark.parametrize("make", [lambda o: CosineLR(o, 10, warmup=2), lambda o: StepLR(o, 3)])
def test_schedule_state_returns_to_the_same_rate(make):
    a = make(SGD({"w": np.zeros(1)}, lr=0.5))
    rates = [a.step() for _ in range(4)]
    b_opt = SGD({"w": np.zeros(1)}, lr=0.5)
    b = make(b_opt)
    b.load_state_dict(a.state_dict())
    assert b_opt.lr == rates[-1]
    assert [b.step() for _ in range(4)] == [a.step() for _ in range(4)]
    with pytest.raises(ValueError, match="count"):
        b.load_state_dict({"count": -2})

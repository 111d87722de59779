"""Committees: the averaged probabilities, their backward pass, training, checkpoints.

Training runs are tiny (two members, two epochs on a few hundred synthetic digits); they
check that a committee is its members trained as one-network runs would train them, and
that resuming ends bit for bit, not that committees learn.
"""

import json

import numpy as np
import pytest
from test_convnet_train import _assert_same_run, _config, _Interrupt, _synthetic_digits

from convnet import lenet5, log_softmax, numerical_gradient, softmax
from convnet.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from convnet.committee import Committee, first_network
from convnet.train import (
    TrainConfig,
    TrainResult,
    TrainStateError,
    member_seed,
    predict,
    train,
)

EPS64 = np.finfo(np.float64).eps


def _batch(n: int, seed: int = 1, dtype=np.float64) -> np.ndarray:
    # Random pixels: no pooling window ties, no ReLU input sits on 0.
    return np.random.default_rng(seed).standard_normal((n, 1, 28, 28)).astype(dtype)


@pytest.fixture(scope="module")
def digits():
    return _synthetic_digits()


# --------------------------------------------------------------------------- the passes


def test_forward_is_the_log_of_the_mean_probability():
    members = [lenet5(np.float64, seed=s).eval() for s in range(3)]
    x = _batch(5)
    mean = np.mean([softmax(m.forward(x)) for m in members], axis=0)
    out = Committee(members).eval().forward(x)
    # log-sum-exp over members of values ≤ 0: a few roundings of size eps·|log q|
    np.testing.assert_allclose(out, np.log(mean), rtol=0, atol=8 * EPS64 * np.abs(out).max())
    np.testing.assert_allclose(softmax(out), mean, rtol=0, atol=8 * EPS64)


def test_committee_of_one_is_the_network_bit_for_bit():
    """log q = log softmax(z) exactly (the mean of one term is that term), and the logit
    gradient is g - p Σ g, what the network's own backward then takes."""
    x = _batch(40, dtype=np.float32)  # two chunks
    g = np.random.default_rng(3).standard_normal((40, 10)).astype(np.float32)
    net, alone = lenet5(seed=0), lenet5(seed=0)
    committee = Committee([net])
    out = committee.forward(x)
    z = alone.forward(x)
    np.testing.assert_array_equal(out, log_softmax(z))
    p = softmax(z)
    np.testing.assert_array_equal(
        committee.backward(g), alone.backward(g - p * g.sum(axis=1, keepdims=True))
    )
    for name, value in alone.grads().items():
        np.testing.assert_array_equal(net.grads()[name], value)


def test_backward_matches_finite_differences():
    members = [lenet5(np.float64, seed=s).eval() for s in (0, 1)]
    committee = Committee(members).eval()
    x = _batch(1)
    g = np.random.default_rng(4).standard_normal((1, 10))
    committee.forward(x)
    grad = committee.backward(g)

    def loss() -> float:
        return float((committee.forward(x) * g).sum())

    h = 1e-6
    rng = np.random.default_rng(5)
    picks = np.unique(np.r_[rng.choice(784, 12, replace=False), np.abs(grad).argmax()])
    numeric = numerical_gradient(loss, x, eps=h, indices=picks).reshape(-1)[picks]
    # The members' logits z_m are piecewise linear in x: along a pixel, z_m(t) has slopes
    # a_m (zero second derivative), so a central difference errs only by rounding, about
    # eps·Σ|g|·|z| / h, and by h²/6 times the third derivative of o_k(t) = log mean_m
    # exp(s_mk(t)), s_mk = z_mk - logsumexp(z_m). With R the largest range of a slope
    # vector, |s'| ≤ R, |s''| ≤ R² and |s'''| ≤ R³ (a variance and a third central moment
    # under p_m); o''' = E[s'''] + 3 Cov(s', s'') + third central moment of s' (under
    # the members' shares), at most R³ + 6R³ + 8R³ = 15R³.
    logits, slopes = [], []
    for m in members:
        logits.append(m.forward(x))
        slopes += [m.backward(np.eye(10)[None, k]).reshape(-1)[picks] for k in range(10)]
    spread = np.ptp(np.array(slopes), axis=0).max()
    size = np.abs(g).sum()
    rounding = 16 * EPS64 * size * (np.abs(logits).max() + 1) / h
    tol = rounding + h**2 / 6 * 15 * spread**3 * size
    np.testing.assert_allclose(grad.reshape(-1)[picks], numeric, rtol=0, atol=tol)
    assert np.abs(grad).max() > 1e3 * tol  # a real check, not of zeros


def test_results_do_not_depend_on_the_thread_count():
    x = _batch(70, dtype=np.float32)  # three chunks
    g = np.random.default_rng(6).standard_normal((70, 10)).astype(np.float32)
    results = []
    for threads in (1, 2, 3):
        committee = Committee([lenet5(seed=s) for s in (0, 1, 2)])
        out = committee.forward(x, threads=threads)
        dx = committee.backward(g, threads=threads)
        grads = committee.members[1].grads()
        results.append((out, dx, grads))
    for out, dx, grads in results[1:]:
        np.testing.assert_array_equal(out, results[0][0])
        np.testing.assert_array_equal(dx, results[0][1])
        for name, value in grads.items():
            np.testing.assert_array_equal(value, results[0][2][name])


def test_committee_refuses_mismatched_members_and_early_backward():
    with pytest.raises(ValueError, match="at least one member"):
        Committee([])
    with pytest.raises(ValueError, match="member 1 has other layers"):
        Committee([lenet5(seed=0), lenet5(seed=0, variant="classic")])
    with pytest.raises(ValueError, match="shape or dtype"):
        Committee([lenet5(seed=0), lenet5(np.float64, seed=0)])
    with pytest.raises(TypeError, match="must be a Sequential"):
        Committee([lenet5(seed=0), "net"])
    with pytest.raises(RuntimeError, match="before forward"):
        Committee([lenet5(seed=0)]).backward(np.zeros((1, 10), np.float32))


def test_state_dict_round_trips_and_refuses_a_bad_one():
    a = Committee([lenet5(seed=0), lenet5(seed=1)])
    b = Committee([lenet5(seed=2), lenet5(seed=3)])
    b.load_state_dict(a.state_dict())
    for name, value in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[name], value)
    state = a.state_dict()
    state["members.1.fc3.bias"] = np.full(10, np.nan, np.float32)
    before = b.state_dict()
    with pytest.raises(ValueError, match="NaN"):
        b.load_state_dict(state)
    for name, value in before.items():  # nothing changed
        np.testing.assert_array_equal(b.state_dict()[name], value)
    del state["members.0.fc1.weight"]
    with pytest.raises(ValueError, match=r"members\.0\.fc1\.weight"):
        b.load_state_dict(state)


# --------------------------------------------------------------------------- training


def _two(**changes) -> TrainConfig:
    return _config(**{"epochs": 2, "members": 2, **changes})


@pytest.fixture(scope="module")
def trained(digits):
    return train(digits, _two(), progress=False, log=lambda _: None)


def test_members_are_the_one_network_runs_of_their_seeds(digits, trained):
    assert isinstance(trained.model, Committee) and len(trained.model) == 2
    assert [r.config.seed for r in trained.members] == [member_seed(3, m) for m in (0, 1)]
    for m, own in enumerate(trained.members):
        alone = train(digits, _config(epochs=2, seed=member_seed(3, m)), progress=False,
                      log=lambda _: None)  # fmt: skip
        assert own.best_epoch == alone.best_epoch
        for name, value in alone.model.state_dict().items():
            np.testing.assert_array_equal(trained.model.members[m].state_dict()[name], value)
    settings = trained.settings()
    assert settings["members"] == 2 and settings["best_epochs"] == [2, 2]


def test_members_one_is_the_one_network_run(digits):
    result = train(digits, _config(epochs=2, members=1), progress=False, log=lambda _: None)
    assert type(result.model).__name__ == "Sequential" and result.members == []


def test_a_given_model_must_fit_the_member_count_in_one_line(digits):
    # A committee given for one network, or one network for a committee: one line each
    # (a Sequential's repr spans many), before any training.
    cases = [
        (Committee([lenet5(seed=0), lenet5(seed=1)]), 1, "a Sequential .* got a Committee of 2$"),
        (lenet5(seed=0), 2, "a Committee of 2 .* got a Sequential$"),
        (Committee([lenet5(seed=0)]), 3, "a Committee of 3 .* got a Committee of 1$"),
    ]
    for model, members, match in cases:
        with pytest.raises(ValueError, match=match) as info:
            train(digits, _config(epochs=1, members=members), model=model, progress=False)
        assert "\n" not in str(info.value)
    # a committee of one is a committee of config.members members: its member is trained
    single = Committee([lenet5(seed=3)])
    result = train(digits, _config(epochs=1, members=1), model=single, progress=False,
                   log=lambda _: None)  # fmt: skip
    assert result.model is single.members[0]


def test_settings_of_numpy_integer_settings_are_plain_and_saved(tmp_path):
    # validate takes a numpy integer for members (and the other counts); the settings a
    # checkpoint records must still be JSON's plain numbers, or saving raises a TypeError.
    config = _config(epochs=np.int64(1), members=np.int64(1), seed=np.int64(3))
    config.validate()
    result = TrainResult(lenet5(seed=0), {}, 1, config)
    settings = result.settings()
    assert type(settings["members"]) is int and type(settings["epochs"]) is int
    save_checkpoint(tmp_path / "m.npz", result.model, training=settings)
    assert load_checkpoint(tmp_path / "m.npz")[1]["training"]["members"] == 1


def test_resumed_committee_ends_bit_identical(digits, trained, tmp_path):
    """Interrupted in the second member's first epoch: the first member comes back from
    the state file, the second resumes where it stopped."""
    seen = []

    def stop(line: str) -> None:
        seen.append(line)
        if len(seen) == 3:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train(digits, _two(), progress=False, log=stop, state_path=tmp_path / "b")
    with np.load(tmp_path / "b", allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        assert (meta["member"], meta["epoch"], len(meta["finished"])) == (1, 1, 1)
    lines = []
    resumed = train(digits, _two(), progress=False, log=lines.append,
                    state_path=tmp_path / "b", resume=tmp_path / "b")  # fmt: skip
    assert lines[0] == f"resumed from {tmp_path / 'b'} after member 2/2  epoch 1/2"
    whole = train(digits, _two(), progress=False, log=len, state_path=tmp_path / "a")
    for a, b in zip(whole.members, resumed.members, strict=True):
        assert a.history == {**b.history, **{k: a.history[k] for k in ("images_per_s", "seconds")}}
    _assert_same_run(whole.members[1], resumed.members[1], tmp_path / "a", tmp_path / "b")
    for name, value in whole.model.state_dict().items():
        np.testing.assert_array_equal(resumed.model.state_dict()[name], value)


def test_resume_refuses_a_committee_state_of_another_size(digits, tmp_path):
    train(digits, _two(), progress=False, log=len, state_path=tmp_path / "s")
    with pytest.raises(TrainStateError, match="members 2 in the state, 3 now"):
        train(digits, _two(members=3), progress=False, resume=tmp_path / "s")
    with np.load(tmp_path / "s", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if not k.startswith("member0:")}
    with open(tmp_path / "t", "wb") as out:
        np.savez(out, **arrays)
    with pytest.raises(TrainStateError, match="'member0' arrays do not match"):
        train(digits, _two(), progress=False, resume=tmp_path / "t")


@pytest.mark.parametrize("members", [0, 65, True, 2.5])
def test_members_out_of_range_are_refused(members):
    with pytest.raises(ValueError, match="members"):
        TrainConfig(members=members).validate()


def test_member_seeds_are_distinct_across_nearby_runs():
    seeds = {member_seed(s, m) for s in range(20) for m in range(5)}
    assert len(seeds) == 100


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(trained, tmp_path, digits):
    path = save_checkpoint(tmp_path / "c.npz", trained.model, training=trained.settings())
    model, meta = load_checkpoint(path)
    assert isinstance(model, Committee) and meta["members"] == 2
    for name, value in trained.model.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[name], value)
    x = _batch(8, dtype=np.float32)
    np.testing.assert_array_equal(predict(model, x), predict(trained.model, x))
    assert first_network(model) is model.members[0]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m, a: m.update(members=3), "missing members.2"),
        (lambda m, a: m.update(members="2"), "members '2' is not a number"),
        (lambda m, a: m.update(members=0), "members 0 is not"),
        (lambda m, a: m.pop("members"), "unexpected members.0"),
        (lambda m, a: a.pop("members.1.fc3.bias"), "missing members.1.fc3.bias"),
        (lambda m, a: a.update({"members.1.fc3.bias": np.zeros(3, np.float32)}), "fc3.bias"),
    ],
)
def test_damaged_committee_checkpoints_get_one_clear_line(trained, tmp_path, change, match):
    path = save_checkpoint(tmp_path / "c.npz", trained.model)
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["__metadata__"]))
    change(meta, arrays)
    arrays["__metadata__"] = np.array(json.dumps(meta))
    with open(tmp_path / "bad.npz", "wb") as out:
        np.savez(out, **arrays)
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(tmp_path / "bad.npz")
    assert "\n" not in str(info.value)


def test_one_network_checkpoint_has_no_members_entry(tmp_path):
    path = save_checkpoint(tmp_path / "one.npz", lenet5(seed=0))
    with np.load(path, allow_pickle=False) as f:
        assert "members" not in json.loads(str(f["__metadata__"]))
    model, _ = load_checkpoint(path)
    assert not isinstance(model, Committee)


# --------------------------------------------------------------------------- the command


def test_cli_trains_and_saves_a_committee(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from convnet.cli import main

    monkeypatch.setenv("CONVNET_CACHE", str(tmp_path / "empty-cache"))
    out, plot = tmp_path / "m.npz", tmp_path / "curves.png"
    assert main(["train", "--epochs", "1", "--members", "2", "--out", str(out),
                 "--plot", str(plot), "--no-progress"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "1 epochs for each of 2 networks" in text
    assert "member 2/2  epoch   1/1" in text
    assert "member 1: best epoch 1" in text and "member 2: best epoch 1" in text
    model, meta = load_checkpoint(out)
    assert isinstance(model, Committee) and len(model) == 2
    training = meta["training"]
    assert training["members"] == 2 and training["member_seeds"] == [0, member_seed(0, 1)]
    assert [len(h["loss"]) for h in training["histories"]] == [1, 1]
    with Image.open(plot) as image:
        assert image.format == "PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "m.npz"]  # no state


@pytest.mark.parametrize("members", ["0", "65", "two"])
def test_cli_refuses_a_bad_member_count_in_one_line(tmp_path, capsys, members):
    from convnet.cli import main

    with pytest.raises(SystemExit) as info:  # a usage error, or refused before any data
        code = main(["train", "--members", members, "--out", str(tmp_path / "m.npz")])
        raise SystemExit(code)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "members" in err
    assert not any(tmp_path.iterdir())


def test_inspect_figures_say_whose_filters_they_show():
    from convnet.inspect import feature_maps, filters_figure

    committee = Committee([lenet5(seed=0), lenet5(seed=1)])
    title = filters_figure(committee, "conv1").axes[0].get_title()
    assert title == "conv1: 6 filters of member 1 of 2"
    assert filters_figure(lenet5(seed=0), "conv1").axes[0].get_title() == "conv1: 6 filters"
    x = _batch(1, dtype=np.float32)[0]
    for name, value in feature_maps(lenet5(seed=0), x).items():
        np.testing.assert_array_equal(feature_maps(committee, x)[name], value)

"""The weight average (convnet.optim.EMA, TrainConfig.ema) and the mirror augmentation.

The average is checked against its closed form, ``Σ (1-d) d^(t-k) w_k / (1 - d^t)`` of the
weights seen after each step, summed in float64 from those weights; in a training run,
against the weights the run's optimiser actually produced; and a run with an average is
resumed bit for bit.

Tolerance of the closed form: each update ``a += r·(w - a)`` rounds three times, each
within one unit roundoff ``u`` of the largest weight ``scale`` seen, and an earlier error is
multiplied by ``1 - r ≤ 1`` afterwards, so after ``t`` updates the recurrence is within
``3·t·u·scale`` of the exact average (the float64 sum's own error is 2⁻²⁹ times smaller).
A wrong weight or a missing bias correction is off by a share of a weight's change per
step, orders of magnitude more.
"""

import json

import numpy as np
import pytest
from requires import require_module
from test_convnet_train import _assert_same_run, _config, _Interrupt, _params_in, _stop_after

import convnet.optim
from convnet import cross_entropy, numerical_gradient, relative_error
from convnet.augment import random_affine, warp_affine
from convnet.optim import EMA, SGD
from convnet.train import TrainConfig, TrainStateError, choose_epoch, ema_decay, train


@pytest.fixture(scope="module")
def digits():
    from test_convnet_train import _synthetic_digits

    return _synthetic_digits()


def _closed_form(snapshots: list[dict], decay: float) -> dict:
    t = len(snapshots)
    weights = (1 - decay) * decay ** np.arange(t - 1, -1, -1, dtype=np.float64)
    weights /= 1 - decay**t
    return {
        name: sum(w * s[name].astype(np.float64) for w, s in zip(weights, snapshots, strict=True))
        for name in snapshots[0]
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9, 0.999])
def test_average_equals_its_closed_form(dtype, decay):
    rng = np.random.default_rng(1)
    params = {"w": rng.normal(size=(3, 4)).astype(dtype), "b": rng.normal(size=4).astype(dtype)}
    opt = SGD(params, lr=0.1, momentum=0.9)
    ema = EMA(params, decay)
    snapshots = []
    for _ in range(40):
        opt.step({k: rng.normal(size=v.shape).astype(dtype) for k, v in params.items()})
        ema.update()
        snapshots.append({k: v.copy() for k, v in params.items()})
    assert ema.steps == 40
    exact = _closed_form(snapshots, decay)
    scale = max(np.abs(s[k]).max() for s in snapshots for k in s)
    for name in params:
        assert ema.average[name].dtype == dtype
        assert (
            np.abs(ema.average[name] - exact[name]).max() <= 3 * 40 * np.finfo(dtype).eps * scale
        )


def test_first_update_is_the_weights_exactly_and_the_parameters_are_not_touched():
    params = {"w": np.array([1.0, 2.0], np.float32)}
    ema = EMA(params, 0.99)
    params["w"][...] = [3.0, -4.0]
    ema.update()
    assert np.array_equal(ema.average["w"], [3.0, -4.0])
    assert ema.average["w"] is not params["w"]
    assert np.array_equal(params["w"], [3.0, -4.0])


@pytest.mark.parametrize(
    ("state", "match"),
    [
        ({"steps": 1}, "entries"),
        ({"steps": -1, "average": {"w": np.zeros(2)}}, "steps"),
        ({"steps": 1, "average": {"v": np.zeros(2)}}, "parameters"),
        ({"steps": 1, "average": {"w": np.zeros(3)}}, "shape"),
        ({"steps": 1, "average": {"w": np.zeros(2, np.float32)}}, "float64"),
        ({"steps": 1, "average": {"w": np.array([0.0, np.nan])}}, "NaN"),
    ],
)
def test_load_state_refuses_a_bad_state_and_changes_nothing(state, match):
    ema = EMA({"w": np.ones(2)}, 0.9)
    with pytest.raises(ValueError, match=match):
        ema.load_state_dict(state)
    assert ema.steps == 0 and np.array_equal(ema.average["w"], [1.0, 1.0])


@pytest.mark.parametrize("decay", [-0.1, 1.0, float("nan")])
def test_decay_out_of_range_is_refused(decay):
    with pytest.raises(ValueError, match="decay"):
        EMA({"w": np.ones(2)}, decay)


def test_decay_from_epochs():
    assert ema_decay(10, 100) == pytest.approx(0.999, abs=1e-15)
    assert ema_decay(0.001, 5) == 0.0  # shorter than a step: the present weights
    with pytest.raises(ValueError, match="ema"):
        TrainConfig(ema=-1).validate()


def test_a_run_returns_the_average_of_its_own_weights(digits, monkeypatch):
    """The model train() returns is the closed-form average, at the chosen epoch's step,
    of the weights its optimiser made; the validation history is the average's."""
    snapshots = []
    update = EMA.update

    def recording(self):
        snapshots.append({k: v.copy() for k, v in self.params.items()})
        update(self)

    monkeypatch.setattr(convnet.optim.EMA, "update", recording)
    config = _config(epochs=4, ema=1.5)
    result = train(digits, config, progress=False, log=len)
    steps_per_epoch = len(snapshots) // config.epochs
    assert steps_per_epoch * config.epochs == len(snapshots)
    h = result.history
    assert result.best_epoch == choose_epoch(h["val_loss"], h["val_loss_se"])
    decay = ema_decay(config.ema, steps_per_epoch)
    exact = _closed_form(snapshots[: result.best_epoch * steps_per_epoch], decay)
    got = result.model.state_dict()
    scale = max(np.abs(s[k]).max() for s in snapshots for k in s)
    for name, value in got.items():
        bound = 3 * len(snapshots) * np.finfo(np.float32).eps * scale
        assert np.abs(value - exact[name]).max() <= bound, name
    # and not the raw weights of that epoch
    raw = snapshots[result.best_epoch * steps_per_epoch - 1]
    assert any(not np.array_equal(got[k], raw[k]) for k in got)


def test_without_average_the_raw_weights_are_returned(digits, tmp_path):
    state = tmp_path / "s.npz"
    result = train(digits, _config(epochs=1, ema=0), progress=False, log=len, state_path=state)
    for name, value in _params_in(state).items():
        assert np.array_equal(result.model.state_dict()[name], value)
    assert not _params_in(state, "ema")


@pytest.mark.parametrize("stop", [1, 3])
def test_resumed_run_with_an_average_ends_bit_identical(digits, tmp_path, stop):
    config = _config(ema=1.0)
    whole = train(digits, config, progress=False, log=len, state_path=tmp_path / "a")
    with pytest.raises(_Interrupt):
        train(digits, config, progress=False, log=_stop_after(stop), state_path=tmp_path / "b")
    resumed = train(digits, config, progress=False, log=len, state_path=tmp_path / "b",
                    resume=tmp_path / "b")  # fmt: skip
    _assert_same_run(whole, resumed, tmp_path / "a", tmp_path / "b")
    average_a, average_b = _params_in(tmp_path / "a", "ema"), _params_in(tmp_path / "b", "ema")
    assert average_a.keys() == set(whole.model.state_dict())
    for name in average_a:
        assert np.array_equal(average_a[name], average_b[name]), name


def test_resume_refuses_a_state_without_its_average(digits, tmp_path):
    state, broken = tmp_path / "s.npz", tmp_path / "broken.npz"
    train(digits, _config(epochs=2, ema=1.0), progress=False, log=len, state_path=state)
    with np.load(state, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if not k.startswith("ema:fc1")}
    with open(broken, "wb") as out:
        np.savez(out, **arrays)
    with pytest.raises(TrainStateError, match="'ema' arrays"):
        train(digits, _config(epochs=2, ema=1.0), progress=False, resume=broken)
    meta = json.loads(str(arrays["meta"]))
    meta["ema_steps"] = 3
    with np.load(state, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["meta"] = np.array(json.dumps(meta))
    with open(broken, "wb") as out:
        np.savez(out, **arrays)
    with pytest.raises(TrainStateError, match="steps"):
        train(digits, _config(epochs=2, ema=1.0), progress=False, resume=broken)
    with pytest.raises(TrainStateError, match="ema"):  # a run without average: another run
        train(digits, _config(epochs=2, ema=0), progress=False, resume=state)


# --------------------------------------------------------------------------- mirroring


@pytest.mark.parametrize("order", [0, 1])
def test_hflip_mirrors_about_half_the_images_exactly(order):
    rng = np.random.default_rng(2)
    images = rng.random((400, 28, 28)).astype(np.float32)
    none = {"rotation": 0, "scale": 0, "shift": 0, "shear": 0, "squeeze": 0, "order": order}
    out = random_affine(images, np.random.default_rng(5), hflip=True, **none)
    same = (out == images).all(axis=(1, 2))
    mirrored = (out == images[:, :, ::-1]).all(axis=(1, 2))
    assert (same ^ mirrored).all()
    # 400 fair coins: 200 ± 4 standard deviations (10)
    assert 160 <= mirrored.sum() <= 240


def test_hflip_leaves_the_other_distortions_of_a_seed_as_they_were():
    rng = np.random.default_rng(3)
    images = rng.random((50, 28, 28)).astype(np.float32)
    plain = random_affine(images, np.random.default_rng(9), shear=0.3, squeeze=0.1)
    flipped = random_affine(images, np.random.default_rng(9), shear=0.3, squeeze=0.1, hflip=True)
    kept = (flipped == plain).all(axis=(1, 2))
    assert 0 < kept.sum() < len(images)


# --------------------------------------------------------------------------- label smoothing


def test_label_smoothing_matches_the_direct_formula_and_finite_differences():
    rng = np.random.default_rng(4)
    z = rng.standard_normal((5, 4))
    y = np.array([0, 3, 1, 1, 2])
    eps = 0.1
    q = (1 - eps) * np.eye(4)[y] + eps / 4
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss, d = cross_entropy(z, y, smoothing=eps, count=8)
    # float64 sums of 20 terms of size ≤ 4: relative 1e-12 leaves three orders to spare
    assert loss == pytest.approx(-(q * logp).sum() / 8, rel=1e-12)
    np.testing.assert_allclose(d, (np.exp(logp) - q) / 8, rtol=1e-12, atol=1e-15)
    numeric = numerical_gradient(lambda: cross_entropy(z, y, smoothing=eps)[0], z)
    # central differences of a smooth function: O(h²) ≈ 1e-10 relative, as for ε = 0
    assert relative_error(cross_entropy(z, y, smoothing=eps)[1], numeric) <= 1e-6
    plain, smoothed = cross_entropy(z, y), cross_entropy(z, y, smoothing=0.0)
    assert plain[0] == smoothed[0] and np.array_equal(plain[1], smoothed[1])


def test_label_smoothing_equals_pytorchs():
    torch = require_module("torch", "PyTorch is the reference for the smoothed loss")
    rng = np.random.default_rng(5)
    z = rng.standard_normal((6, 10))
    y = rng.integers(0, 10, 6)
    t = torch.from_numpy(z.copy()).requires_grad_()
    ref = torch.nn.functional.cross_entropy(t, torch.from_numpy(y), label_smoothing=0.15)
    ref.backward()
    loss, d = cross_entropy(z, y, smoothing=0.15)
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(d, t.grad.numpy(), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("smoothing", [-0.1, 1.0])
def test_label_smoothing_out_of_range_is_refused(smoothing):
    with pytest.raises(ValueError, match="smoothing"):
        cross_entropy(np.zeros((2, 3)), [0, 1], smoothing=smoothing)
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainConfig(label_smoothing=smoothing).validate()


# --------------------------------------------------------------------------- the command line


class _Reached(Exception):
    """Raised by a stand-in for convnet.train.train: training was reached."""


@pytest.fixture
def configs(monkeypatch, tmp_path):
    """train() replaced by a recorder of its TrainConfig that stops the command there."""
    seen = []

    def recorder(data, config, **kwargs):
        seen.append(config)
        raise _Reached

    import convnet.train

    monkeypatch.setattr(convnet.train, "train", recorder)
    monkeypatch.setenv("CONVNET_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.chdir(tmp_path)
    return seen


def test_recipe_flags_reach_the_training_settings(configs):
    from convnet.cli import main

    with pytest.raises(_Reached):
        main(["train", "--no-progress"])
    assert configs[0] == TrainConfig(epochs=configs[0].epochs)  # the defaults, untouched
    argv = ["--weight-decay", "0.002", "--ema", "3.5", "--label-smoothing", "0.1",
            "--rotation", "0", "--scale", "0.05", "--shift", "1.5", "--shear", "0",
            "--squeeze", "0", "--hflip"]  # fmt: skip
    with pytest.raises(_Reached):
        main(["train", "--no-progress", *argv])
    got = configs[1]
    assert (got.weight_decay, got.ema, got.label_smoothing) == (0.002, 3.5, 0.1)
    assert (got.rotation, got.scale, got.shift, got.shear, got.squeeze) == (0, 0.05, 1.5, 0, 0)
    assert got.hflip is True


@pytest.mark.parametrize(
    "argv",
    [
        ["--ema", "-1"],
        ["--ema", "nan"],
        ["--label-smoothing", "1"],
        ["--scale", "1.0"],
        ["--rotation", "x"],
        ["--weight-decay", "-0.1"],
    ],
)
def test_recipe_flags_out_of_range_are_a_usage_error(configs, argv, capsys):
    from convnet.cli import main

    with pytest.raises(SystemExit) as info:
        main(["train", "--no-progress", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert argv[0] in err and "Traceback" not in err
    assert configs == []


@pytest.mark.parametrize("hflip", [False, True])
def test_mirrors_alone_are_the_gathers_result_exactly(hflip):
    """With every other range 0, random_affine slices instead of gathering; the gather with
    the same draws (a mirror or the identity for each image) gives the same pixels."""
    images = np.random.default_rng(6).random((64, 28, 28)).astype(np.float32)
    none = {"rotation": 0, "scale": 0, "shift": 0, "shear": 0, "squeeze": 0}
    out = random_affine(images, np.random.default_rng(7), hflip=hflip, **none)
    rng = np.random.default_rng(7)
    for _ in range(4):  # angle, zoom, slant, aspect: the draws random_affine makes first
        rng.uniform(0, 0, 64)
    rng.uniform(0, 0, (64, 2))
    signs = np.where(rng.random(64) < 0.5, -1.0, 1.0) if hflip else np.ones(64)
    matrices = np.zeros((64, 2, 2))
    matrices[:, 0, 0], matrices[:, 1, 1] = 1, signs
    assert np.array_equal(out, warp_affine(images, matrices, np.zeros((64, 2))))
    assert out is not images

"""Training loop: resuming, thread-count independence, evaluation and the confusion matrix.

The training runs here are short (a few epochs on a few hundred synthetic digits: sparse
strokes on a zero background, so that max-pooling sees MNIST's ties); they check that
runs are reproducible bit for bit, not that they learn.
"""

import json
import zipfile

import numpy as np
import pytest
from scipy.signal import correlate

from convnet import (
    Conv2D,
    Dropout,
    Flatten,
    Linear,
    MaxPool2D,
    ReLU,
    Sequential,
    lenet5,
    softmax,
)
from convnet.data import Dataset
from convnet.train import (
    STATE_FORMAT,
    TrainConfig,
    TrainStateError,
    choose_epoch,
    confusion_matrix,
    curves_figure,
    evaluate,
    predict,
    save_curves,
    train,
)

TIMING = ("images_per_s", "seconds")  # wall-clock entries of the history


def _synthetic_digits(n: int = 260, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    labels = np.arange(n) % 10
    for i, label in enumerate(labels):
        # a class-dependent bar plus noise strokes, on an exactly zero background
        images[i, 6 + 2 * label : 9 + 2 * label, 5:23] = 255
        strokes = rng.random((28, 28)) < 0.05
        images[i][strokes] = rng.integers(60, 256, strokes.sum())
    return Dataset(images[:-40], labels[:-40], images[-40:], labels[-40:], "synthetic")


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return _synthetic_digits()


def _config(**changes) -> TrainConfig:
    # batch 48 gives 4 full batches (each split into a 32-image and a 16-image chunk) and
    # a last batch of 12 that runs whole: both paths of Sequential.
    # One network: these tests are about its training (committees: test_convnet_committee).
    settings = {"epochs": 4, "batch_size": 48, "seed": 3, "val_fraction": 0.2, "members": 1}
    return TrainConfig(**{**settings, **changes})


class _Interrupt(Exception):
    """Stands for a Ctrl-C after an epoch's log line."""


def _stop_after(epochs: int):
    seen = []

    def log(line: str) -> None:
        if line.startswith("epoch"):
            seen.append(line)
            if len(seen) == epochs:
                raise _Interrupt

    return log


def _params_in(state_file, group="param"):
    with np.load(state_file, allow_pickle=False) as f:
        return {k.split(":", 1)[1]: f[k] for k in f.files if k.startswith(group + ":")}


def _assert_same_run(a, b, state_a, state_b):
    assert a.best_epoch == b.best_epoch
    for key in a.history:
        if key not in TIMING:
            assert a.history[key] == b.history[key], key
    final_a, final_b = a.model.state_dict(), b.model.state_dict()
    assert final_a.keys() == final_b.keys()
    for name in final_a:
        assert np.array_equal(final_a[name], final_b[name]), name
    # the parameters after the last epoch too, not only the best epoch's
    last_a, last_b = _params_in(state_a), _params_in(state_b)
    for name in last_a:
        assert np.array_equal(last_a[name], last_b[name]), name


# --------------------------------------------------------------------------- resuming


@pytest.mark.parametrize(
    ("stop", "changes"),
    [
        pytest.param(1, {}, id="sgd-after-1"),
        pytest.param(3, {}, id="sgd-after-3"),
        pytest.param(2, {"optimizer": "adam", "lr": 0.002}, id="adam-after-2"),
        pytest.param(2, {"augment": False, "batch_size": 20}, id="no-augment-after-2"),
    ],
)
def test_resumed_run_ends_bit_identical_to_uninterrupted_run(digits, tmp_path, stop, changes):
    config = _config(**changes)
    whole = train(digits, config, progress=False, log=lambda _: None, state_path=tmp_path / "a")
    with pytest.raises(_Interrupt):
        train(digits, config, progress=False, log=_stop_after(stop), state_path=tmp_path / "b")
    with np.load(tmp_path / "b", allow_pickle=False) as f:
        assert json.loads(str(f["meta"]))["epoch"] == stop
    lines = []
    resumed = train(
        digits, config, progress=False, log=lines.append, state_path=tmp_path / "b",
        resume=tmp_path / "b",
    )  # fmt: skip
    assert lines[0] == f"resumed from {tmp_path / 'b'} after epoch {stop}/{config.epochs}"
    assert len(lines) == 1 + config.epochs - stop
    _assert_same_run(whole, resumed, tmp_path / "a", tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary left


def _net_with_dropout() -> Sequential:
    return Sequential(
        [
            ("conv1", Conv2D(1, 4, 5, padding=2)),
            ("relu1", ReLU()),
            ("pool1", MaxPool2D(4)),
            ("flatten", Flatten()),
            ("drop", Dropout(0.3, rng=np.random.default_rng(8))),
            ("fc1", Linear(196, 10)),
        ],
        rng=7,
    )


def test_resuming_restores_the_generators_of_layers(digits, tmp_path):
    """Dropout draws its masks from a generator of its own: it is saved and restored too."""
    config = _config()
    whole = train(digits, config, model=_net_with_dropout(), progress=False, log=len,
                  state_path=tmp_path / "a")  # fmt: skip
    with pytest.raises(_Interrupt):
        train(digits, config, model=_net_with_dropout(), progress=False, log=_stop_after(2),
              state_path=tmp_path / "b")  # fmt: skip
    model = _net_with_dropout()
    resumed = train(digits, config, model=model, progress=False, log=len,
                    state_path=tmp_path / "b", resume=tmp_path / "b")  # fmt: skip
    _assert_same_run(whole, resumed, tmp_path / "a", tmp_path / "b")
    with np.load(tmp_path / "b", allow_pickle=False) as f:
        assert list(json.loads(str(f["meta"]))["layer_rngs"]) == ["drop"]


def test_resume_on_real_mnist_digits(tmp_path):
    from convnet_data import mnist5k_dir

    from convnet.data import load_mnist

    data = load_mnist(mnist5k_dir())
    config = TrainConfig(
        epochs=3, seed=1, members=1
    )  # one network of the default recipe, shortened
    kwargs = {"progress": False, "train_subset": 400}
    whole = train(data, config, log=len, state_path=tmp_path / "a", **kwargs)
    with pytest.raises(_Interrupt):
        train(data, config, log=_stop_after(1), state_path=tmp_path / "b", **kwargs)
    resumed = train(data, config, log=len, state_path=tmp_path / "b", resume=tmp_path / "b",
                    **kwargs)  # fmt: skip
    _assert_same_run(whole, resumed, tmp_path / "a", tmp_path / "b")


def test_a_run_twice_interrupted_and_resumed_still_matches(digits, tmp_path):
    config = _config()
    whole = train(digits, config, progress=False, log=lambda _: None, state_path=tmp_path / "a")
    state = tmp_path / "b.npz"
    with pytest.raises(_Interrupt):
        train(digits, config, progress=False, log=_stop_after(1), state_path=state)
    with pytest.raises(_Interrupt):
        train(digits, config, progress=False, log=_stop_after(2), state_path=state, resume=state)
    resumed = train(
        digits, config, progress=False, log=lambda _: None, state_path=state, resume=state
    )
    _assert_same_run(whole, resumed, tmp_path / "a", state)


def test_kept_parameters_are_those_of_the_chosen_epoch(digits, tmp_path):
    """Only the epoch chosen so far is kept; at the end it is choose_epoch's choice."""
    snapshots = []
    state = tmp_path / "state.npz"

    def log(line):
        if line.startswith("epoch"):
            snapshots.append(_params_in(state))

    # without the weight average, which would be kept instead of the parameters
    result = train(digits, _config(epochs=5, ema=0), progress=False, log=log, state_path=state)
    h = result.history
    assert result.best_epoch == choose_epoch(h["val_loss"], h["val_loss_se"])
    for name, value in result.model.state_dict().items():
        assert np.array_equal(value, snapshots[result.best_epoch - 1][name])
    for name, value in _params_in(state, "best").items():
        assert np.array_equal(value, snapshots[result.best_epoch - 1][name])


def test_resuming_a_finished_run_returns_its_result(digits, tmp_path):
    state = tmp_path / "state.npz"
    config = _config(epochs=2)
    first = train(digits, config, progress=False, log=lambda _: None, state_path=state)
    lines = []
    again = train(digits, config, progress=False, log=lines.append, resume=state)
    assert lines == [f"resumed from {state} after epoch 2/2"]
    _assert_same_run(first, again, state, state)


def test_state_file_is_arrays_and_json_without_pickles(digits, tmp_path):
    state = tmp_path / "state.npz"
    train(digits, _config(epochs=1), progress=False, log=lambda _: None, state_path=state)
    with np.load(state, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    assert all(a.dtype != object for a in arrays.values())
    meta = json.loads(str(arrays["meta"]))
    assert meta["format"] == STATE_FORMAT
    assert meta["epoch"] == 1 and meta["run"]["config"]["seed"] == 3
    assert meta["rng"]["bit_generator"] == "PCG64"
    names = set(lenet5().state_dict())
    for group in ("param", "best", "opt:velocity"):
        assert {k.rsplit(":", 1)[1] for k in arrays if k.rsplit(":", 1)[0] == group} == names


@pytest.fixture(scope="module")
def finished_state(digits, tmp_path_factory):
    state = tmp_path_factory.mktemp("state") / "state.npz"
    train(digits, _config(epochs=2), progress=False, log=lambda _: None, state_path=state)
    return state


@pytest.mark.parametrize(
    ("changes", "subset", "match"),
    [
        ({"epochs": 3}, None, "epochs 2 in the state, 3 now"),
        ({"seed": 4}, None, "seed 3 in the state, 4 now"),
        ({"lr": 0.01}, None, "lr"),
        ({"augment": False}, None, "augment"),
        ({"batch_size": 32}, None, "batch_size"),
        ({"optimizer": "adam"}, None, "optimizer"),
        ({}, 200, "train_subset None in the state, 200 now"),
    ],
)
def test_resume_refuses_a_state_of_another_run(digits, finished_state, changes, subset, match):
    config = _config(**{"epochs": 2, **changes})
    with pytest.raises(TrainStateError, match=match) as info:
        train(digits, config, progress=False, train_subset=subset, resume=finished_state)
    assert isinstance(info.value, ValueError)
    assert str(finished_state) in str(info.value)


def test_settings_given_as_numpy_numbers_are_saved_and_matched(digits, tmp_path):
    state = tmp_path / "state.npz"
    config = _config(epochs=np.int64(2), seed=np.int64(3), lr=np.float64(0.05))
    first = train(digits, config, progress=False, log=len, state_path=state)
    again = train(digits, _config(epochs=2, lr=0.05), progress=False,
                  log=len, resume=state)  # fmt: skip
    _assert_same_run(first, again, state, state)


def test_resume_refuses_other_data_and_another_architecture(digits, finished_state):
    other = _synthetic_digits(seed=1)
    with pytest.raises(TrainStateError, match="another training data"):
        train(other, _config(epochs=2), progress=False, resume=finished_state)
    small = Sequential(
        [
            ("conv1", Conv2D(1, 4, 5, padding=2)),
            ("relu1", ReLU()),
            ("pool1", MaxPool2D(4)),
            ("flatten", Flatten()),
            ("fc1", Linear(196, 10)),
        ],
        rng=0,
    )
    with pytest.raises(TrainStateError, match="another architecture"):
        train(digits, _config(epochs=2), model=small, progress=False, resume=finished_state)


def _rewrite(state, target, change):
    with np.load(state, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    change(meta, arrays)
    arrays["meta"] = np.array(json.dumps(meta))
    with open(target, "wb") as out:
        np.savez(out, **arrays)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m, a: m.update(format="other/9"), "format"),
        (lambda m, a: m.update(epoch=7), "epoch 7"),
        (lambda m, a: m.update(best_epoch=0), "best epoch"),
        (lambda m, a: m["history"]["loss"].pop(), "history"),
        (lambda m, a: m.update(rng={"bit_generator": "PCG64"}), "generator"),
        (lambda m, a: m["schedule"].update(count=1), "steps"),
        (lambda m, a: a.pop("best:fc3.bias"), "'best' arrays"),
        (lambda m, a: a.update({"param:fc1.bias": np.full(120, np.nan, np.float32)}), "NaN"),
        (lambda m, a: a.update({"param:fc1.bias": np.zeros(7, np.float32)}), "fc1.bias"),
        (lambda m, a: a.update({"extra": np.zeros(1)}), "unexpected entry"),
        (lambda m, a: a.update({"param:fc1.bias": np.array(["x"] * 120)}), "not numbers"),
        (lambda m, a: a.update({"best:fc1.bias": np.zeros(7, np.float32)}), "best:fc1.bias"),
        (lambda m, a: m.pop("optimizer"), "malformed"),
    ],
)
def test_resume_refuses_a_damaged_state(digits, finished_state, tmp_path, change, match):
    broken = tmp_path / "broken.npz"
    _rewrite(finished_state, broken, change)
    with pytest.raises(TrainStateError, match=match):
        train(digits, _config(epochs=2), progress=False, resume=broken)


@pytest.mark.parametrize(
    "content",
    [b"", b"not a zip", "truncated", "pickle", "npy"],
)
def test_resume_refuses_unreadable_files(digits, finished_state, tmp_path, content):
    path = tmp_path / "state.npz"
    if content == "npy":  # once a TypeError from np.load's plain array
        np.save(path.with_suffix(".npy"), np.zeros(3))
        path.with_suffix(".npy").rename(path)
    elif content == "truncated":
        data = finished_state.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif content == "pickle":
        with open(path, "wb") as f:
            np.savez(f, meta=np.array([{"epoch": 1}], dtype=object))
    else:
        path.write_bytes(content)
    with pytest.raises(TrainStateError, match="state"):
        train(digits, _config(epochs=2), progress=False, resume=path)


def test_resume_from_a_missing_file_or_a_directory(digits, tmp_path):
    with pytest.raises(FileNotFoundError):
        train(digits, _config(), progress=False, resume=tmp_path / "absent.npz")
    with pytest.raises(TrainStateError, match="directory"):
        train(digits, _config(), progress=False, resume=tmp_path)


def test_state_is_replaced_whole_or_not_at_all(digits, tmp_path, monkeypatch):
    """A failure while the state is written leaves the previous epoch's state intact."""
    state = tmp_path / "state.npz"
    config = _config(epochs=2)
    with pytest.raises(_Interrupt):
        train(digits, config, progress=False, log=_stop_after(1), state_path=state)
    before = state.read_bytes()

    def failing_savez(file, **arrays):
        file.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        train(digits, config, progress=False, log=lambda _: None, state_path=state, resume=state)
    assert state.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["state.npz"]
    assert zipfile.is_zipfile(state)


# --------------------------------------------------------------------------- evaluation


def test_confusion_matrix_counts_true_label_rows_and_predicted_columns():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    predictions = np.where(rng.random(200) < 0.7, labels, rng.integers(0, 4, 200))
    expected = np.zeros((4, 4), np.int64)
    for true, pred in zip(labels, predictions, strict=True):
        expected[true, pred] += 1
    m = confusion_matrix(labels, predictions, 4)
    np.testing.assert_array_equal(m, expected)
    # an asymmetric case by hand: two 0s predicted as 1, no 1 predicted as 0
    np.testing.assert_array_equal(
        confusion_matrix(np.array([0, 0, 1]), np.array([1, 1, 1]), 2), [[0, 2], [0, 1]]
    )
    assert "m[true, predicted]" in confusion_matrix.__doc__
    assert "row" in confusion_matrix.__doc__.lower()


def _lenet_logits_by_hand(net: Sequential, x: np.ndarray) -> np.ndarray:
    """LeNet-5's logits from its state dict with scipy's correlation and plain reshapes."""
    p = {k: v.astype(np.float64) for k, v in net.state_dict().items()}

    def conv(h, weight, bias, pad):
        h = np.pad(h, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        out = np.empty((len(h), len(weight), h.shape[2] - 4, h.shape[3] - 4))
        for i, image in enumerate(h):
            for o, kernel in enumerate(weight):
                out[i, o] = correlate(image, kernel, mode="valid")[0] + bias[o]
        return out

    def pool(h):
        n, c, hh, ww = h.shape
        return h.reshape(n, c, hh // 2, 2, ww // 2, 2).max(axis=(3, 5))

    h = pool(np.maximum(conv(x.astype(np.float64), p["conv1.weight"], p["conv1.bias"], 2), 0))
    h = pool(np.maximum(conv(h, p["conv2.weight"], p["conv2.bias"], 0), 0))
    h = h.reshape(len(h), -1)
    h = np.maximum(h @ p["fc1.weight"].T + p["fc1.bias"], 0)
    h = np.maximum(h @ p["fc2.weight"].T + p["fc2.bias"], 0)
    return h @ p["fc3.weight"].T + p["fc3.bias"]


def test_predict_and_evaluate_agree_with_logits_computed_by_hand():
    rng = np.random.default_rng(5)
    net = lenet5(seed=2)
    x = rng.standard_normal((12, 1, 28, 28)).astype(np.float32)
    logits = _lenet_logits_by_hand(net, x)
    probs = predict(net, x, batch_size=5)  # several batches
    assert probs.shape == (12, 10)
    # float32 network against a float64 reference: the logits agree to a few float32
    # roundings of their size (a sum of at most 400 products, each within 2u)
    tol = 400 * 2 * np.finfo(np.float32).eps * np.abs(logits).max()
    ref = np.exp(logits - logits.max(axis=1, keepdims=True))
    ref /= ref.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, ref, rtol=0, atol=2 * tol)
    labels = rng.integers(0, 10, 12)
    loss, accuracy, predictions = evaluate(net, x, labels, batch_size=5)
    top = np.sort(logits, axis=1)
    assert (top[:, -1] - top[:, -2] > 2 * tol).all(), "a near tie would make argmax ambiguous"
    np.testing.assert_array_equal(predictions, logits.argmax(axis=1))
    assert accuracy == np.mean(logits.argmax(axis=1) == labels)
    expected_loss = np.mean(-np.log(ref[np.arange(12), labels]))
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert net.training  # predict restores the mode it found
    np.testing.assert_array_equal(softmax(net.forward(x)), predict(net, x))


# --------------------------------------------------------------------------- threads


def _mlp() -> Sequential:
    # OpenBLAS computes x @ Wᵀ with 784-long rows differently on 1 and 2 threads (a last
    # bit here and there, measured on the CI machine's Haswell kernel); LeNet-5's products
    # happen not to, so this model shows what a BLAS call left multi-threaded would do.
    return Sequential(
        [("flatten", Flatten()), ("fc1", Linear(784, 256)), ("relu", ReLU()),
         ("fc2", Linear(256, 10))], rng=1,
    )  # fmt: skip


@pytest.mark.parametrize(
    "make",
    [lambda: lenet5(seed=3), lambda: lenet5(seed=3, variant="classic"), _mlp, _net_with_dropout],
    ids=["lenet5", "classic", "mlp", "dropout"],
)
@pytest.mark.parametrize("batch_size", [48, 20])
def test_training_ends_bit_identical_for_any_thread_count(digits, make, batch_size):
    """`convnet train --threads N` runs the chunks of a batch on N threads, whatever BLAS
    was allowed before (the run holds it to one thread): the result must not change.
    Batches of 48 run as two chunks (Dropout's masks drawn per chunk), of 20 whole."""
    from threadpoolctl import threadpool_limits

    results = []
    for threads, blas in ((1, 1), (2, 2), (3, 1)):
        with threadpool_limits(limits=blas, user_api="blas"):
            config = _config(batch_size=batch_size)
            results.append(
                train(digits, config, model=make(), threads=threads, progress=False, log=len)
            )
    first = results[0].model.state_dict()
    for other in results[1:]:
        for name, value in other.model.state_dict().items():
            assert np.array_equal(value, first[name]), name
        for key in results[0].history:
            if key not in TIMING:
                assert other.history[key] == results[0].history[key], key


def test_train_refuses_a_bad_thread_count(digits):
    with pytest.raises(ValueError, match="threads"):
        train(digits, _config(), threads=0, progress=False, log=len)


# --------------------------------------------------------------------------- curves


def _short_history(train_acc, val_acc):
    n = len(train_acc)
    return {
        "loss": list(np.linspace(2.3, 1.9, n)),
        "val_loss": list(np.linspace(2.2, 1.8, n)),
        "train_acc": list(train_acc),
        "val_acc": list(val_acc),
    }


@pytest.mark.parametrize("augmented", [True, False])
def test_curves_show_a_short_run_whole_and_label_augmentation_as_configured(augmented):
    history = _short_history([0.10, 0.13, 0.19, 0.18], [0.07, 0.20, 0.23, 0.27])
    fig = curves_figure(history, 4, "short run", augmented=augmented)
    _, ax2 = fig.axes
    low, high = ax2.get_ylim()
    assert low <= 7 and high >= 27  # every point of the 7–27% curves is inside
    assert high - low < 30  # and the axis is not a fixed 0–100 either
    labels = [t.get_text() for t in ax2.get_legend().get_texts()]
    training = "training (augmented)" if augmented else "training"
    assert labels[0] == training
    assert ("(augmented)" in " ".join(labels)) == augmented


def test_curves_of_a_long_run_keep_the_detail_near_the_top():
    acc = np.concatenate([np.linspace(0.80, 0.99, 10), np.full(20, 0.995)])
    fig = curves_figure(_short_history(acc, acc - 0.005), 25, "long", augmented=True)
    low, high = fig.axes[1].get_ylim()
    assert low <= 79.5 and 99.5 <= high <= 101.5


def test_save_curves_writes_a_png_atomically(tmp_path):
    path = tmp_path / "curves.png"
    save_curves(_short_history([0.1, 0.2], [0.1, 0.3]), path, 2, "t", augmented=False)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]

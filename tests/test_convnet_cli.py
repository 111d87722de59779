"""Checkpoints, preprocessing, a short training run and the ``convnet`` command line."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from convnet_data import FILES, mnist5k_dir
from PIL import Image

from convnet import lenet5
from convnet.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from convnet.cli import main
from convnet.data import embedded_digits, load_mnist, normalise, validation_split
from convnet.preprocess import prepare_digit
from convnet.train import TrainConfig, choose_epoch, confusion_matrix, evaluate, train

# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(tmp_path):
    net = lenet5(seed=0)
    path = save_checkpoint(tmp_path / "m.npz", net, training={"epochs": 3})
    model, meta = load_checkpoint(path)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k], v)
    assert meta["architecture"] == "lenet5"
    assert meta["normalisation"] == {"scale": 1 / 255, "mean": 0.1307, "std": 0.3081}
    assert meta["classes"] == [str(d) for d in range(10)]
    assert meta["training"] == {"epochs": 3}
    assert meta["parameters"]["conv1.weight"] == [6, 1, 5, 5]
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temporary file's 0600
    with np.load(path, allow_pickle=False) as npz:  # plain arrays, no pickles
        assert "conv1.weight" in npz.files


def _rewrite(path, change):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda a: a.pop("fc3.bias"), "missing fc3.bias"),
        (
            lambda a: a.update({"fc1.weight": np.zeros((100, 400), np.float32)}),
            r"fc1.weight: expected \(120, 400\), got \(100, 400\)",
        ),
        (lambda a: a.update({"extra.weight": np.zeros(3)}), "unexpected extra.weight"),
        (lambda a: a.pop("__metadata__"), "not a convnet checkpoint"),
        (
            lambda a: a.update({"__metadata__": np.array(json.dumps({"architecture": "vgg"}))}),
            "architecture 'vgg'",
        ),
    ],
    ids=["missing", "shape", "unexpected", "no-metadata", "architecture"],
)
def test_checkpoint_mismatches_are_named(tmp_path, change, match):
    path = save_checkpoint(tmp_path / "m.npz", lenet5(seed=0))
    _rewrite(path, change)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_checkpoint_that_is_not_an_npz(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a convnet checkpoint"):
        load_checkpoint(path)


# --------------------------------------------------------------------------- preprocessing


def test_prepare_digit_inverts_fits_and_centres():
    # A dark bar on light paper, off-centre and too big: 40 rows × 8 columns.
    paper = np.ones((60, 50))
    paper[5:45, 30:38] = 0.1
    digit = prepare_digit(paper)
    assert digit.shape == (28, 28) and digit.dtype == np.float32
    rows, _ = np.nonzero(digit > 0.5)
    assert rows.max() - rows.min() + 1 <= 20
    mass = digit.sum()
    cy = (digit.sum(axis=1) * np.arange(28)).sum() / mass
    cx = (digit.sum(axis=0) * np.arange(28)).sum() / mass
    assert abs(cy - 13.5) <= 0.6 and abs(cx - 13.5) <= 0.6
    assert digit[0].max() == 0  # background black, ink white
    np.testing.assert_allclose(prepare_digit(1 - paper), digit, atol=1e-6)  # light on dark


def test_prepare_digit_rejects_blank_and_nan():
    with pytest.raises(ValueError, match="no digit"):
        prepare_digit(np.full((20, 20), 0.7))
    bad = np.zeros((20, 20))
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        prepare_digit(bad)


# --------------------------------------------------------------------------- training


def test_short_training_learns_and_is_reproducible():
    data = embedded_digits()
    config = TrainConfig(epochs=2, batch_size=32, lr=0.05, seed=1, warmup_epochs=0.5, members=1)
    runs = [train(data, config, log=lambda _: None, progress=False) for _ in range(2)]
    _, acc, _ = evaluate(runs[0].model, normalise(data.test_images), data.test_labels)
    assert acc > 0.6  # chance is 0.1
    for k, v in runs[0].model.state_dict().items():
        np.testing.assert_array_equal(runs[1].model.state_dict()[k], v)
    assert runs[0].history["loss"][1] < runs[0].history["loss"][0]


def test_best_epoch_is_the_latest_within_one_standard_error():
    loss = [0.40, 0.030, 0.045, 0.036, 0.050]
    se = [0.05, 0.008, 0.008, 0.008, 0.008]
    assert choose_epoch(loss, se) == 4  # 0.036 ≤ 0.030 + 0.008 < 0.045, 0.050
    # A lucky minimum with a small error bar: a later epoch within its own error counts.
    assert choose_epoch([0.05, 0.013, 0.03, 0.022], [0.01, 0.004, 0.005, 0.0105]) == 4
    assert choose_epoch(loss, [0.0] * 5) == 2  # no noise: the minimum itself
    assert choose_epoch([float("nan")] * 3, [float("nan")] * 3) == 3  # no validation split


def test_chosen_epoch_is_the_one_the_model_holds():
    data = embedded_digits()
    config = TrainConfig(
        epochs=3, batch_size=64, seed=2, warmup_epochs=0.5, augment=False, members=1
    )
    result = train(data, config, log=lambda _: None, progress=False)
    h = result.history
    assert result.best_epoch == choose_epoch(h["val_loss"], h["val_loss_se"])
    probs_acc = evaluate(result.model, *_validation(data, config))[1]
    assert probs_acc == pytest.approx(h["val_acc"][result.best_epoch - 1])


def _validation(data, config):
    _, val_idx = validation_split(data.train_labels, config.val_fraction, config.seed)
    return normalise(data.train_images[val_idx]), data.train_labels[val_idx]


# --------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A LeNet-5 trained briefly on the embedded digits."""
    path = tmp_path_factory.mktemp("ckpt") / "model.npz"
    data = embedded_digits()
    config = TrainConfig(epochs=2, batch_size=32, seed=0, members=1)
    result = train(data, config, log=lambda _: None, progress=False)
    save_checkpoint(path, result.model, training=result.settings())
    return path


def _digit_png(tmp_path, index=0, light_background=True, name="digit.png"):
    data = load_mnist(mnist5k_dir())
    image = data.test_images[index]
    if light_background:
        image = 255 - image
    big = Image.fromarray(image).resize((112, 112), Image.BILINEAR).convert("RGB")
    path = tmp_path / name
    big.save(path)
    return path, int(data.test_labels[index])


def test_cli_train_writes_checkpoint_and_plot(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CONVNET_CACHE", str(tmp_path / "empty-cache"))
    out, plot = tmp_path / "m.npz", tmp_path / "curves.png"
    code = main(["train", "--epochs", "1", "--batch-size", "32", "--out", str(out),
                 "--plot", str(plot), "--no-progress"])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0
    assert text.splitlines()[0].startswith("data: embedded scikit-learn digits")
    assert "epoch   1/1" in text and re.search(r" [1-9][\d,]* images/s", text)
    assert "test accuracy" in text and "confusion matrix" in text
    assert load_checkpoint(out)[1]["training"]["epochs"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "m.npz"]  # no state
    with Image.open(plot) as image:
        assert image.format == "PNG"


def test_cli_evaluate_and_predict(tmp_path, checkpoint, capsys):
    assert main(["evaluate", str(checkpoint), "--data", str(mnist5k_dir()), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 5000 and 0.1 < report["accuracy"] <= 1
    assert np.array(report["confusion"]).sum() == 5000
    dark, _ = _digit_png(tmp_path, 0, True, "dark.png")
    light, _ = _digit_png(tmp_path, 0, False, "light.png")
    assert main(["predict", str(checkpoint), str(dark), str(light), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in results] == [str(dark), str(light)]
    assert results[0]["label"] == results[1]["label"]  # inversion handled
    assert all(abs(sum(r["probabilities"]) - 1) < 1e-4 for r in results)
    assert main(["predict", str(checkpoint), str(dark)]) == 0
    assert "probability" in capsys.readouterr().out


def _bad_inputs(tmp_path, checkpoint):
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((28, 28), np.nan))
    other = tmp_path / "other.npz"
    np.savez(other, **{"conv1.weight": np.zeros((6, 1, 3, 3))})
    small = tmp_path / "small"
    small.mkdir()
    import gzip

    from convnet.data import FILES

    for name, shape in zip(FILES, [(3, 16, 16), (3,), (3, 16, 16), (3,)], strict=True):
        payload = bytes([0, 0, 8, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)
        (small / name).write_bytes(gzip.compress(payload + bytes(int(np.prod(shape)))))
    return {
        "missing model": ["evaluate", str(tmp_path / "none.npz"), "--data", str(small)],
        "missing data": ["evaluate", str(checkpoint), "--data", str(tmp_path / "nowhere")],
        "wrong size": ["evaluate", str(checkpoint), "--data", str(small)],
        "train wrong size": ["train", "--data", str(small), "--epochs", "1", "--no-progress"],
        "not an image": ["predict", str(checkpoint), str(text)],
        "nan image": ["predict", str(checkpoint), str(nan)],
        "missing image": ["predict", str(checkpoint), str(tmp_path / "none.png")],
        "other architecture": ["predict", str(other), str(nan)],
    }


def test_cli_bad_input_gives_one_line_and_exit_2(tmp_path, checkpoint, capsys):
    expected = {
        "missing model": "no such checkpoint",
        "missing data": "no such data directory",
        "wrong size": "16x16",
        "train wrong size": "16x16",
        "not an image": "not an image file",
        "nan image": "NaN",
        "missing image": "no such image file",
        "other architecture": "not a convnet checkpoint",
    }
    for case, argv in _bad_inputs(tmp_path, checkpoint).items():
        assert main(argv) == 2, case
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("convnet: error:"), (case, err)
        assert expected[case] in err, (case, err)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--epochs", "0"],
        ["train", "--lr", "-1"],
        ["train", "--optimizer", "rmsprop"],
        ["frobnicate"],
        ["predict", "model.npz"],
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err


def test_python_dash_m_runs_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "convnet", "predict", str(tmp_path / "no.npz"), "x.png"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "no such checkpoint" in result.stderr


# --------------------------------------------------------------------------- train's outputs


class _Trained(Exception):
    """Raised by a stand-in for convnet.train.train: training was reached."""


@pytest.fixture
def no_training(monkeypatch, tmp_path):
    """train() stands in as a recorder that stops the command where training would start;
    the cache is empty, so that the embedded digits are the default data."""
    calls = []

    def recorder(data, config, **kwargs):
        calls.append((data, config, kwargs))
        raise _Trained

    import convnet.train

    monkeypatch.setattr(convnet.train, "train", recorder)
    monkeypatch.setenv("CONVNET_CACHE", str(tmp_path / "empty-cache"))
    return calls


@pytest.fixture
def data_copy(tmp_path):
    target = tmp_path / "mnist"
    target.mkdir()
    for name in FILES:
        (target / name).write_bytes((mnist5k_dir() / name).read_bytes())
    return target


def _train_cases(tmp_path, data_copy):
    existing = tmp_path / "old.npz"
    existing.write_bytes(b"an earlier model")
    old_plot = tmp_path / "old.png"
    old_plot.write_bytes(b"an earlier plot")
    (tmp_path / "adir").mkdir()
    data = ["--data", str(data_copy)]
    return {
        "out is training data": (
            [*data, "--out", str(data_copy / FILES[0])],
            "is an input of this run",
        ),
        "out is the unzipped name of training data": (
            [*data, "--out", str(data_copy / FILES[2].removesuffix(".gz"))],
            None,  # not an existing file, but load_mnist would read it if it were
        ),
        "out and plot the same": (
            ["--out", str(tmp_path / "x.png"), "--plot", str(tmp_path / "x.png")],
            "--out and --plot name the same file",
        ),
        "out and plot the same via ..": (
            ["--out", str(tmp_path / "x.png"), "--plot", str(tmp_path / "adir" / ".." / "x.png")],
            "--out and --plot name the same file",
        ),
        "out a directory": (["--out", str(tmp_path / "adir")], "is a directory"),
        "plot a directory": (
            ["--out", str(tmp_path / "m.npz"), "--plot", str(tmp_path / "adir")],
            "is a directory",
        ),
        "out in a missing directory": (
            ["--out", str(tmp_path / "nowhere" / "m.npz")],
            "no such directory",
        ),
        "out exists": (["--out", str(existing)], "exists; pass --force to replace it"),
        "plot exists": (
            ["--out", str(tmp_path / "m.npz"), "--plot", str(old_plot)],
            "exists; pass --force",
        ),
        "plot of unknown format": (
            ["--out", str(tmp_path / "m.npz"), "--plot", str(tmp_path / "c.txt")],
            "unknown picture format",
        ),
        "resume missing": (
            ["--out", str(tmp_path / "m.npz"), "--resume", str(tmp_path / "none.state")],
            "no such training-state file",
        ),
        "out is the resume file": (
            ["--out", str(existing), "--resume", str(existing)],
            "is an input of this run",
        ),
    }


def test_train_checks_every_output_before_training(tmp_path, data_copy, no_training, capsys):
    before = {name: (data_copy / name).read_bytes() for name in FILES}
    for case, (argv, match) in _train_cases(tmp_path, data_copy).items():
        if match is None:
            continue
        assert main(["train", "--no-progress", *argv]) == 2, case
        captured = capsys.readouterr()
        assert captured.err.count("\n") == 1 and match in captured.err, (case, captured.err)
        assert captured.out == "", case  # nothing loaded, nothing trained
    assert no_training == []
    assert {name: (data_copy / name).read_bytes() for name in FILES} == before
    assert (tmp_path / "old.npz").read_bytes() == b"an earlier model"


def test_force_allows_replacing_an_existing_output(tmp_path, no_training):
    existing = tmp_path / "old.npz"
    existing.write_bytes(b"an earlier model")
    with pytest.raises(_Trained):
        main(["train", "--out", str(existing), "--force", "--no-progress"])
    assert len(no_training) == 1


def test_out_is_never_the_training_state_even_with_force(tmp_path, no_training, capsys):
    """The state is removed once --out is saved: an --out naming it would lose the model."""
    state = tmp_path / "run.npz"
    state.write_bytes(b"state")
    assert main(["train", "--out", str(state), "--resume", str(state), "--force"]) == 2
    assert "is this run's training state" in capsys.readouterr().err
    assert no_training == [] and state.read_bytes() == b"state"


def test_memory_exhausted_is_a_runtime_failure_in_one_line(tmp_path, monkeypatch, capsys):
    """Once a MemoryError traceback; the pyramids command already answered it with 1."""
    import convnet.checkpoint

    def exhausted(path):
        raise MemoryError

    monkeypatch.setattr(convnet.checkpoint, "load_checkpoint", exhausted)
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "d.png")]) == 1
    assert capsys.readouterr().err == "convnet: error: out of memory\n"


def test_unwritable_output_directory_is_a_runtime_failure(tmp_path, no_training, monkeypatch,
                                                          capsys):  # fmt: skip
    # Running as root, permissions cannot be taken away; os.access stands in for them.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != tmp_path and real_access(p, mode))
    assert main(["train", "--out", str(tmp_path / "m.npz")]) == 1
    assert "cannot write into" in capsys.readouterr().err
    assert no_training == []


def test_default_epochs_suit_the_data(tmp_path, data_copy, no_training):
    from convnet.cli import EMBEDDED_EPOCHS

    runs = [
        ["--out", str(tmp_path / "a.npz")],
        ["--out", str(tmp_path / "b.npz"), "--data", str(data_copy)],
        ["--out", str(tmp_path / "c.npz"), "--epochs", "3"],
    ]
    for argv in runs:
        with pytest.raises(_Trained):
            main(["train", "--no-progress", *argv])
    epochs = [config.epochs for _, config, _ in no_training]
    assert epochs == [EMBEDDED_EPOCHS, TrainConfig().epochs, 3]
    assert TrainConfig().epochs > EMBEDDED_EPOCHS


def test_help_states_the_default_epochs(capsys):
    from convnet.cli import EMBEDDED_EPOCHS

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"default {TrainConfig().epochs} for MNIST-style data, {EMBEDDED_EPOCHS} for" in text


def test_resume_is_passed_to_train(tmp_path, no_training):
    state = tmp_path / "run.state"
    state.write_bytes(b"state")
    with pytest.raises(_Trained):
        main(["train", "--out", str(tmp_path / "m.npz"), "--resume", str(state)])
    with pytest.raises(_Trained):
        main(["train", "--out", str(tmp_path / "m.npz")])
    assert no_training[0][2]["resume"] == state == no_training[0][2]["state_path"]
    assert "resume" not in no_training[1][2]
    assert no_training[1][2]["state_path"] == tmp_path / "m.state.npz"


def test_threads_are_passed_to_train(tmp_path, no_training):
    with pytest.raises(_Trained):
        main(["train", "--out", str(tmp_path / "m.npz"), "--threads", "3"])
    with pytest.raises(_Trained):
        main(["train", "--out", str(tmp_path / "m.npz")])
    assert no_training[0][2]["threads"] == 3
    assert no_training[1][2]["threads"] is None  # the library's default


def test_variant_is_passed_to_train(tmp_path, no_training, capsys):
    with pytest.raises(_Trained):
        main(["train", "--out", str(tmp_path / "m.npz"), "--variant", "classic"])
    with pytest.raises(_Trained):
        main(["train", "--out", str(tmp_path / "m.npz")])
    assert [call[1].variant for call in no_training] == ["classic", "relu"]
    with pytest.raises(SystemExit) as info:
        main(["train", "--variant", "lenet1"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'lenet1'" in err


def test_a_left_over_training_state_is_not_replaced_silently(tmp_path, no_training, capsys):
    (tmp_path / "m.state.npz").write_bytes(b"an interrupted run")
    assert main(["train", "--out", str(tmp_path / "m.npz")]) == 2
    assert "continue it with --resume" in capsys.readouterr().err
    assert no_training == []
    with pytest.raises(_Trained):  # --force starts afresh
        main(["train", "--out", str(tmp_path / "m.npz"), "--force"])


def test_interrupted_training_resumes_to_the_same_model(tmp_path, monkeypatch, capsys):
    import convnet.train

    monkeypatch.setenv("CONVNET_CACHE", str(tmp_path / "empty-cache"))
    argv = ["train", "--epochs", "2", "--batch-size", "64", "--no-progress", "--seed", "4",
            "--members", "1"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "whole.npz")]) == 0
    real = convnet.train.train

    def interrupted(data, config, **kwargs):
        def log(line):
            if line.startswith("epoch   1/"):
                raise KeyboardInterrupt  # Ctrl-C right after the first epoch's state

        return real(data, config, log=log, **kwargs)

    monkeypatch.setattr(convnet.train, "train", interrupted)
    out, state = tmp_path / "part.npz", tmp_path / "part.state.npz"
    assert main([*argv, "--out", str(out)]) == 130
    assert f"--resume {state}" in capsys.readouterr().err
    assert state.is_file() and not out.exists()
    monkeypatch.setattr(convnet.train, "train", real)
    assert main([*argv, "--out", str(out), "--resume", str(state)]) == 0
    assert not state.exists()  # removed once the model was saved
    whole = load_checkpoint(tmp_path / "whole.npz")[0].state_dict()
    for name, value in load_checkpoint(out)[0].state_dict().items():
        np.testing.assert_array_equal(value, whole[name])


def test_quickstart_twice_refuses_then_force_replaces(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CONVNET_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--epochs", "1", "--no-progress"]
    assert main(argv) == 0
    first = (tmp_path / "model.npz").read_bytes()
    assert main(argv) == 2
    assert "model.npz: exists; pass --force" in capsys.readouterr().err
    assert (tmp_path / "model.npz").read_bytes() == first
    assert main([*argv, "--force", "--seed", "1"]) == 0
    assert (tmp_path / "model.npz").read_bytes() != first


# --------------------------------------------------------------------------- answers checked


def test_confusion_matrix_rows_are_true_labels():
    # Convention (as printed: "rows: true class, columns: predicted"): m[true, predicted].
    rng = np.random.default_rng(5)
    labels, predictions = rng.integers(0, 10, 500), rng.integers(0, 10, 500)
    predictions[:100] = 3  # lopsided, so that the transpose differs
    reference = np.zeros((10, 10), np.int64)
    for t, p in zip(labels, predictions, strict=True):
        reference[t, p] += 1
    np.testing.assert_array_equal(confusion_matrix(labels, predictions, 10), reference)


def _constant_model(path, bias):
    """A checkpoint whose answer is known exactly: fc3's weights are zero, so the logits
    are ``bias`` for every image."""
    net = lenet5(seed=0)
    net.state_dict(copy=False)["fc3.weight"][...] = 0
    net.state_dict(copy=False)["fc3.bias"][...] = bias
    return save_checkpoint(path, net)


def test_predict_reports_the_class_of_the_largest_logit(tmp_path, capsys):
    bias = np.array([0.5, -1, 2, 0, 3.5, 1, -2, 3, 0.25, -0.5])  # class 4, then 7
    model = _constant_model(tmp_path / "m.npz", bias)
    dark, _ = _digit_png(tmp_path, 0, True, "dark.png")
    assert main(["predict", str(model), str(dark), "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    softmax = np.exp(bias - bias.max()) / np.exp(bias - bias.max()).sum()
    assert result["label"] == 4 and result["class"] == "4"
    # float32 softmax: a few units of float32 rounding (1.2e-7); JSON rounds to 6 decimals.
    assert result["probability"] == pytest.approx(softmax[4], rel=1e-6)
    np.testing.assert_allclose(result["probabilities"], softmax, atol=5e-7 + 1e-6)


def test_evaluate_confusion_of_a_model_with_a_known_answer(tmp_path, capsys):
    bias = np.zeros(10)
    bias[7] = 5.0
    model = _constant_model(tmp_path / "m.npz", bias)
    labels = load_mnist(mnist5k_dir()).test_labels
    assert main(["evaluate", str(model), "--data", str(mnist5k_dir()), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = np.zeros((10, 10), np.int64)
    expected[:, 7] = np.bincount(labels, minlength=10)  # every digit predicted 7
    np.testing.assert_array_equal(report["confusion"], expected)
    assert report["accuracy"] == pytest.approx(np.mean(labels == 7))


@pytest.fixture(scope="module")
def mnist_model(tmp_path_factory):
    """LeNet-5 trained for two epochs on mnist-5k: right on most digits, wrong on some."""
    data = load_mnist(mnist5k_dir())
    config = TrainConfig(epochs=2, batch_size=32, seed=0, augment=False, warmup_epochs=0.5)
    result = train(data, config, log=lambda _: None, progress=False)
    path = tmp_path_factory.mktemp("mnist-model") / "model.npz"
    save_checkpoint(path, result.model)
    return path, result.model, data


def test_evaluate_matches_a_reference_loop(mnist_model, capsys):
    path, model, data = mnist_model
    x = normalise(data.test_images)
    predicted = np.concatenate([np.argmax(model.forward(x[i : i + 500]), axis=1)
                                for i in range(0, len(x), 500)])  # fmt: skip
    reference = np.zeros((10, 10), np.int64)
    for t, p in zip(data.test_labels, predicted, strict=True):
        reference[t, p] += 1
    assert main(["evaluate", str(path), "--data", str(mnist5k_dir()), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    np.testing.assert_array_equal(report["confusion"], reference)
    assert report["accuracy"] == pytest.approx(np.trace(reference) / len(predicted))
    assert 0.8 < report["accuracy"] < 1  # a model with errors: the matrix is not diagonal
    assert not np.array_equal(reference, reference.T)


def test_predict_names_real_test_digits(tmp_path, mnist_model, capsys):
    path, model, data = mnist_model
    files, truth = [], []
    for index in range(20):
        image = data.test_images[index]
        file = tmp_path / f"digit{index}.png"
        Image.fromarray(image if index % 2 else 255 - image).save(file)  # light and dark
        files.append(str(file))
        truth.append(int(data.test_labels[index]))
    assert main(["predict", str(path), *files, "--json"]) == 0
    labels = [r["label"] for r in json.loads(capsys.readouterr().out)]
    # Reference: the same pictures through prepare_digit and the network's logits.
    pictures = []
    for file in files:
        with Image.open(file) as picture:
            pictures.append(prepare_digit(np.asarray(picture, dtype=float) / 255))
    x = normalise(np.stack(pictures))
    assert labels == np.argmax(model.forward(x), axis=1).tolist()
    assert sum(p == t for p, t in zip(labels, truth, strict=True)) >= 16

"""A float64 checkpoint through ``convnet predict``, ``evaluate`` and ``inspect``.

Review of issue 14: ``save_checkpoint`` keeps the parameters' dtype, but the three commands
fed the network the float32 images ``normalise`` makes by default, and a float64 network
refused them with a TypeError traceback (exit 1). :func:`convnet.train.predict` now feeds
each batch in the parameters' dtype (``convnet serve`` had the same defect, fixed in
``classify_canvas``). Each command is checked against the float32 twin of the model (the
same weights, rounded to float32).
"""

import gzip
import json

import numpy as np
import pytest
from convnet_data import mnist5k_dir
from PIL import Image

from convnet import lenet5
from convnet.checkpoint import save_checkpoint
from convnet.cli import main
from convnet.data import load_mnist, normalise
from convnet.train import predict

EPS32 = float(np.finfo(np.float32).eps)
#: The twins' probabilities differ by float32's rounding through the network: a few hundred
#: eps of float32 on values ≤ 1 (five layers of sums of at most 400 terms), as in
#: tests/test_serve.py; the JSON output rounds each to 6 decimals (≤ 5e-7 each).
TWIN_ATOL = 400 * EPS32 + 2 * 5e-7


def _twins(tmp_path, variant):
    """Checkpoints of the same weights in float32 and float64: (narrow, wide) paths."""
    narrow = lenet5(seed=0, variant=variant)
    wide = lenet5(dtype=np.float64, seed=0, variant=variant)
    wide.load_state_dict({k: v.astype(np.float64) for k, v in narrow.state_dict().items()})
    return (
        save_checkpoint(tmp_path / "narrow.npz", narrow),
        save_checkpoint(tmp_path / "wide.npz", wide),
    )


def _small_mnist(directory, count=40):
    """An MNIST-style directory of mnist-5k's first ``count`` test digits (train = test)."""
    data = load_mnist(mnist5k_dir())
    images, labels = data.test_images[:count], data.test_labels[:count]
    directory.mkdir()
    for kind, prefix in (("train", "train"), ("t10k", "t10k")):
        head = np.array([0x803, count, 28, 28], ">u4").tobytes()
        body = gzip.compress(head + images.astype(np.uint8).tobytes())
        (directory / f"{prefix}-images-idx3-ubyte.gz").write_bytes(body)
        head = np.array([0x801, count], ">u4").tobytes()
        body = gzip.compress(head + labels.astype(np.uint8).tobytes())
        (directory / f"{kind}-labels-idx1-ubyte.gz").write_bytes(body)
    return directory, images, labels


@pytest.fixture
def digit_files(tmp_path):
    data = load_mnist(mnist5k_dir())
    files = []
    for index in range(4):
        path = tmp_path / f"digit{index}.png"
        Image.fromarray(255 - data.test_images[index]).save(path)  # dark ink on white
        files.append(str(path))
    return files


@pytest.mark.parametrize("variant", ["relu", "classic"])
def test_predict_reads_a_float64_checkpoint_as_its_float32_twin(
    tmp_path, digit_files, capsys, variant
):
    narrow, wide = _twins(tmp_path, variant)
    assert main(["predict", str(wide), *digit_files, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert main(["predict", str(narrow), *digit_files, "--json"]) == 0
    twin = json.loads(capsys.readouterr().out)
    # the twin's labels win by margins far above TWIN_ATOL (at least 0.004 for these digits)
    assert [r["label"] for r in got] == [r["label"] for r in twin]
    np.testing.assert_allclose(
        [r["probabilities"] for r in got], [r["probabilities"] for r in twin], atol=TWIN_ATOL
    )


@pytest.mark.parametrize("variant", ["relu", "classic"])
def test_evaluate_reads_a_float64_checkpoint_as_its_float32_twin(tmp_path, capsys, variant):
    narrow, wide = _twins(tmp_path, variant)
    directory, images, labels = _small_mnist(tmp_path / "data")
    assert main(["evaluate", str(wide), "--data", str(directory), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(narrow), "--data", str(directory), "--json"]) == 0
    twin = json.loads(capsys.readouterr().out)
    assert got["images"] == len(labels)
    # Predictions from the twin's probabilities, checked to win by more than the twins
    # can differ, so the float64 model must give the same confusion matrix.
    probs = predict(lenet5(seed=0, variant=variant), normalise(images))
    top = np.sort(probs, axis=1)
    assert (top[:, -1] - top[:, -2]).min() > 2 * TWIN_ATOL
    assert got["confusion"] == twin["confusion"]
    assert got["accuracy"] == twin["accuracy"]
    # the mean loss: -log p moves by at most TWIN_ATOL / p for p ≥ the smallest p[label]
    floor = probs[np.arange(len(labels)), labels].min()
    assert got["loss"] == pytest.approx(twin["loss"], abs=float(TWIN_ATOL / floor))


@pytest.mark.parametrize("variant", ["relu", "classic"])
def test_inspect_draws_a_float64_checkpoint(tmp_path, digit_files, capsys, variant):
    _, wide = _twins(tmp_path, variant)
    directory, _, _ = _small_mnist(tmp_path / "data")
    out = tmp_path / "out"
    argv = ["inspect", str(wide), digit_files[0], "-o", str(out), "--data", str(directory),
            "--top", "4"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    names = {"conv1-filters.png", "conv2-filters.png", "digit0-features.png",
             "digit0-saliency.png", "most-wrong.png", "confusion.png"}  # fmt: skip
    assert {p.name for p in out.iterdir()} == names
    for name in names:
        with Image.open(out / name) as picture:
            assert picture.format == "PNG"


def test_predict_keeps_the_float64_model_in_float64():
    # The library entry point all three commands share: float32 images are fed in the
    # parameters' dtype, and the probabilities come back in it.
    wide = lenet5(dtype=np.float64, seed=0)
    x = normalise(np.zeros((3, 28, 28), np.uint8))
    probs = predict(wide, x)
    assert probs.dtype == np.float64
    np.testing.assert_array_equal(probs, predict(wide, x.astype(np.float64)))

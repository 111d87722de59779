"""``convnet.inspect`` and ``convnet inspect``: filters, feature maps, saliency, mistakes."""

import numpy as np
import pytest
from convnet_data import mnist5k_dir
from PIL import Image

from convnet import conv2d_reference, lenet5, numerical_gradient
from convnet.checkpoint import save_checkpoint
from convnet.cli import main
from convnet.committee import Committee
from convnet.inspect import (
    confusion_figure,
    feature_maps,
    filter_grid,
    most_wrong,
    saliency,
    saliency_figure,
    save_figure,
)
from convnet.train import confusion_matrix

EPS64 = np.finfo(np.float64).eps


def _image(seed: int = 1, dtype=np.float64) -> np.ndarray:
    # Random pixels: no two values of a pooling window tie, no ReLU input sits on 0.
    return np.random.default_rng(seed).standard_normal((28, 28)).astype(dtype)


def test_saliency_matches_finite_differences_of_the_winning_logit():
    model = lenet5(np.float64, seed=0).eval()
    x = _image()
    grad = saliency(model, x)
    xb = x[None, None].copy()
    logits = model.forward(xb)[0]
    winner = int(logits.argmax())

    def logit() -> float:
        return float(model.forward(xb)[0, winner])

    h = 1e-6
    rng = np.random.default_rng(2)
    picks = np.unique(np.r_[rng.choice(784, 10, replace=False), np.abs(grad).argmax()])
    numeric = numerical_gradient(logit, xb, eps=h, indices=picks).reshape(-1)[picks]
    # The network is piecewise linear, so away from kinks a central difference is exact
    # but for rounding: each logit carries about eps·|logit| of it, divided by 2h.
    tol = 16 * EPS64 * (np.abs(logits).max() + 1) / h
    np.testing.assert_allclose(grad.reshape(-1)[picks], numeric, rtol=0, atol=tol)
    assert np.abs(grad).max() > 1e3 * tol  # a real check, not of zeros


def test_saliency_leaves_the_model_mode_and_input_alone():
    model = lenet5(seed=0)
    x = _image(dtype=np.float32)
    before = x.copy()
    saliency(model, x)
    assert model.training
    np.testing.assert_array_equal(x, before)


def _max_pool(h: np.ndarray) -> np.ndarray:
    n, c, hh, ww = h.shape
    return h.reshape(n, c, hh // 2, 2, ww // 2, 2).max(axis=(3, 5))


def test_feature_maps_equal_the_layers_run_by_hand():
    model = lenet5(np.float64, seed=0)
    x = _image()
    maps = feature_maps(model, x)
    p = model.params
    expected = {}
    h = conv2d_reference(x[None, None], p["conv1"]["weight"], p["conv1"]["bias"], padding=2)
    expected["conv1"] = h
    expected["relu1"] = h = np.maximum(h, 0)
    expected["pool1"] = h = _max_pool(h)
    expected["conv2"] = h = conv2d_reference(h, p["conv2"]["weight"], p["conv2"]["bias"])
    expected["relu2"] = h = np.maximum(h, 0)
    expected["pool2"] = h = _max_pool(h)
    expected["flatten"] = h = h.reshape(1, -1)
    for fc, relu in (("fc1", "relu3"), ("fc2", "relu4"), ("fc3", None)):
        h = h @ p[fc]["weight"].T + p[fc]["bias"]
        expected[fc] = h
        if relu:
            expected[relu] = h = np.maximum(h, 0)
    assert list(maps) == [name for name, _ in model.layers]
    for name, value in expected.items():
        np.testing.assert_allclose(maps[name], value[0], rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_filter_grid_tiles_equal_the_scaled_weights(layer):
    model = lenet5(seed=0)
    w = model.params[layer]["weight"].astype(np.float64)
    grid = filter_grid(model, layer)
    out, inp, k, _ = w.shape
    tiles = w.reshape(1, out, k, k) if inp == 1 else w
    rows, cols = tiles.shape[:2]
    assert grid.shape == (rows * (k + 1) - 1, cols * (k + 1) - 1)
    for r in range(rows):
        for c in range(cols):
            tile = grid[r * (k + 1) : r * (k + 1) + k, c * (k + 1) : c * (k + 1) + k]
            np.testing.assert_allclose(tile, tiles[r, c] / np.abs(tiles[r, c]).max(), rtol=1e-15)
            assert np.abs(tile).max() == 1
    assert np.isnan(grid).sum() == grid.size - tiles.size  # the separators only


def test_filter_grid_names_the_convolutions_for_another_layer():
    with pytest.raises(ValueError, match="conv1, conv2"):
        filter_grid(lenet5(seed=0), "fc1")


def test_most_wrong_returns_the_highest_wrong_class_probabilities():
    model = lenet5(seed=0)
    rng = np.random.default_rng(3)
    images = rng.standard_normal((300, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, 300)
    result = most_wrong(model, images, labels, k=7)
    logits = model.eval().forward(images).astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1)
    candidates = sorted(
        ((probs[i, pred[i]], i) for i in range(300) if pred[i] != labels[i]), reverse=True
    )[:7]
    assert result.indices.tolist() == [i for _, i in candidates]
    np.testing.assert_allclose(result.probabilities, [q for q, _ in candidates], rtol=1e-5)
    np.testing.assert_array_equal(result.labels, labels[result.indices])
    np.testing.assert_array_equal(result.predicted, pred[result.indices])
    assert (result.predicted != result.labels).all()


def test_most_wrong_refuses_a_bad_k():
    with pytest.raises(ValueError, match="k must be"):
        most_wrong(lenet5(seed=0), np.zeros((2, 1, 28, 28), np.float32), np.zeros(2, int), 0)


def test_confusion_heatmap_shows_the_confusion_matrix_counts():
    rng = np.random.default_rng(4)
    labels, pred = rng.integers(0, 10, 500), rng.integers(0, 10, 500)
    matrix = confusion_matrix(labels, pred, 10)
    matrix[0, 1] = 0  # an empty cell gets no number
    ax = confusion_figure(matrix).axes[0]
    np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), matrix)
    written = {(round(t.get_position()[1]), round(t.get_position()[0])): int(t.get_text())
               for t in ax.texts}  # fmt: skip
    assert written == {(i, j): int(matrix[i, j]) for i, j in zip(*np.nonzero(matrix))}


def test_save_figure_writes_one_png_and_no_temporary(tmp_path):
    fig = saliency_figure(np.zeros((28, 28)), _image())
    save_figure(fig, tmp_path / "s.png")
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]
    with Image.open(tmp_path / "s.png") as im:
        assert im.format == "PNG"


# --------------------------------------------------------------------------- the command


@pytest.fixture(params=["network", "committee"])
def model_file(tmp_path, request):
    if request.param == "committee":
        return save_checkpoint(tmp_path / "m.npz", Committee([lenet5(seed=0), lenet5(seed=1)]))
    return save_checkpoint(tmp_path / "m.npz", lenet5(seed=0))


@pytest.fixture
def digit_file(tmp_path):
    picture = np.full((40, 30), 255, np.uint8)  # a dark "1" on white paper
    picture[6:34, 13:17] = 0
    path = tmp_path / "one.png"
    Image.fromarray(picture).save(path)
    return path


def test_cli_writes_the_pictures_and_refuses_to_replace_them(tmp_path, model_file, digit_file,
                                                             capsys):  # fmt: skip
    out = tmp_path / "out"
    argv = ["inspect", str(model_file), str(digit_file), "-o", str(out), "--data",
            str(mnist5k_dir()), "--top", "8"]  # fmt: skip
    assert main(argv) == 0
    names = {"conv1-filters.png", "conv2-filters.png", "one-features.png", "one-saliency.png",
             "most-wrong.png", "confusion.png"}  # fmt: skip
    assert {p.name for p in out.iterdir()} == names
    for name in names:
        with Image.open(out / name) as im:
            assert im.format == "PNG"
    capsys.readouterr()
    stamps = {n: (out / n).stat().st_mtime_ns for n in names}
    assert main(argv[:5]) == 2  # the filter pictures exist
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err
    assert {n: (out / n).stat().st_mtime_ns for n in names} == stamps
    assert main([*argv[:5], "--force"]) == 0


def test_cli_names_two_images_of_the_same_name_apart(tmp_path, model_file, digit_file):
    other = tmp_path / "b"
    other.mkdir()
    (other / "one.png").write_bytes(digit_file.read_bytes())
    out = tmp_path / "out"
    assert main(["inspect", str(model_file), str(digit_file), str(other / "one.png"),
                 "-o", str(out)]) == 0  # fmt: skip
    assert {p.name for p in out.iterdir()} >= {"1-one-features.png", "2-one-saliency.png"}


@pytest.mark.parametrize(
    "case", ["not-a-checkpoint", "blank-image", "out-is-a-file", "missing-data", "no-parent"]
)
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(
    tmp_path, model_file, digit_file, capsys, case
):
    out = tmp_path / "out"
    model, image, data = str(model_file), str(digit_file), []
    if case == "not-a-checkpoint":
        (tmp_path / "x.npz").write_bytes(b"not a zip")
        model = str(tmp_path / "x.npz")
    elif case == "blank-image":
        Image.fromarray(np.full((20, 20), 255, np.uint8)).save(tmp_path / "blank.png")
        image = str(tmp_path / "blank.png")
    elif case == "out-is-a-file":
        out.write_text("x")
    elif case == "missing-data":
        data = ["--data", str(tmp_path / "nowhere")]
    else:
        out = tmp_path / "no" / "such" / "out"
    assert main(["inspect", model, image, "-o", str(out), *data]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("convnet")
    assert not out.is_dir() or not any(out.iterdir())

"""Bad input to the convnet parsers and command line: each answered by one clear error.

IDX files, checkpoints and digit pictures that are malformed in the ways a user (or an
attacker) can make them; the command line's outputs checked before training; the exit
codes (2 for input errors, 1 for runtime failures).
"""

import gzip
import json
import struct
import zlib

import numpy as np
import pytest
from convnet_data import FILES, mnist5k_dir
from PIL import Image

from convnet import lenet5
from convnet.checkpoint import CheckpointError, load_checkpoint, logit_bound, save_checkpoint
from convnet.cli import main
from convnet.data import IDXError, load_mnist, normalise, read_idx
from convnet.preprocess import load_digit_image
from convnet.train import predict

# --------------------------------------------------------------------------- IDX


def _idx(dims, body=b"", code=0x08):
    return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + body


def test_idx_header_whose_size_overflows_int64_is_called_truncated(tmp_path):
    # 65536**4 = 2**64 elements: an int64 product wraps around to 0, which matched the empty
    # body and ended in "cannot reshape array of size 0".
    path = tmp_path / "huge.idx"
    path.write_bytes(_idx([65536] * 4))
    with pytest.raises(IDXError, match="truncated: the header promises"):
        read_idx(path)


def test_idx_file_that_cannot_be_read_is_an_idx_error(tmp_path):
    (tmp_path / "dir.idx").mkdir()
    with pytest.raises(IDXError, match="cannot read"):
        read_idx(tmp_path / "dir.idx")


def _write_mnist(directory, images, labels, test_images=None, test_labels=None, label_code=8):
    directory.mkdir(exist_ok=True)
    test_images = images if test_images is None else test_images
    test_labels = labels if test_labels is None else test_labels
    arrays = (images, labels, test_images, test_labels)
    for name, array in zip(FILES, arrays, strict=True):
        code = label_code if array.ndim == 1 else 8
        body = array.astype(">f4" if code == 0x0D else np.uint8).tobytes()
        (directory / name).write_bytes(gzip.compress(_idx(list(array.shape), body, code)))
    return directory


@pytest.mark.parametrize(
    ("images", "labels", "match"),
    [
        (np.zeros((0, 28, 28)), np.zeros(0), "images are empty"),
        (np.zeros((2, 0, 28)), np.zeros(2), "images are empty"),
    ],
    ids=["no-items", "no-rows"],
)
def test_mnist_directory_without_images_is_refused(tmp_path, images, labels, match):
    directory = _write_mnist(tmp_path / "d", images, labels)
    with pytest.raises(IDXError, match=match):
        load_mnist(directory)


def test_mnist_labels_that_are_not_integers_are_refused(tmp_path):
    directory = _write_mnist(tmp_path / "d", np.zeros((2, 28, 28)), np.array([1.5, 2]), None,
                             None, label_code=0x0D)  # fmt: skip
    with pytest.raises(IDXError, match="labels must be integers"):
        load_mnist(directory)


def test_cli_evaluate_on_empty_data_is_one_line_exit_2(tmp_path, capsys):
    directory = _write_mnist(tmp_path / "d", np.zeros((0, 28, 28)), np.zeros(0))
    model = save_checkpoint(tmp_path / "m.npz", lenet5(seed=0))
    assert main(["evaluate", str(model), "--data", str(directory)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "images are empty" in err


# --------------------------------------------------------------------------- checkpoints


def _arrays(path):
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _with_metadata(path, change):
    arrays = _arrays(path)
    meta = json.loads(str(arrays["__metadata__"]))
    arrays["__metadata__"] = np.array(json.dumps(change(meta)))
    np.savez(path, **arrays)
    return path


@pytest.fixture
def saved(tmp_path):
    return save_checkpoint(tmp_path / "m.npz", lenet5(seed=0))


def _pop(key):
    def change(meta):
        del meta[key]
        return meta

    return change


def _set(key, value):
    return lambda meta: {**meta, key: value}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda meta: [meta], "metadata is a JSON list, expected an object"),
        (lambda meta: 3, "metadata is a JSON int"),
        (lambda meta: "lenet5", "metadata is a JSON str"),
        (_set("classes", ["a"]), "1 names for the 10 outputs"),
        (_pop("classes"), "has no 'classes'"),
        (_set("classes", "0123456789"), "must be a list of strings"),
        (_set("classes", [str(d) for d in range(9)] + ["0"]), "must be distinct"),
        (_set("classes", list(range(10))), "must be a list of strings"),
        (_set("dtype", "float16"), "unsupported parameter dtype 'float16'"),
        (_set("dtype", ["float32"]), "unsupported parameter dtype"),
        (_pop("format"), "format None"),
        (_set("input_shape", [3, 32, 32]), "input shape"),
        (_set("normalisation", {"scale": 1, "mean": 0, "std": 1}), "normalisation"),
        (_set("training", []), "'training' is a JSON list"),
    ],
    ids=[
        "list",
        "int",
        "str",
        "one-class",
        "no-classes",
        "classes-str",
        "classes-repeat",
        "classes-int",
        "dtype",
        "dtype-list",
        "no-format",
        "input-shape",
        "normalisation",
        "training",
    ],
)
def test_checkpoint_metadata_defects_are_named(saved, change, match):
    _with_metadata(saved, change)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(saved)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.array("x" * 25).repeat(150).reshape(6, 1, 5, 5), "holds <U25 values, not numbers"),
        (np.full((6, 1, 5, 5), np.nan), "NaN or infinite"),
        (np.full((6, 1, 5, 5), 1e300), r"NaN or infinite values \(as float32\)"),
        (np.full((6, 1, 5, 5), True), "holds bool values"),
        (np.full((6, 1, 5, 5), 1 + 1j), "holds complex128 values"),
    ],
    ids=["strings", "nan", "overflows-float32", "bool", "complex"],
)
def test_checkpoint_values_that_are_not_finite_numbers_are_refused(saved, value, match):
    arrays = _arrays(saved)
    arrays["conv1.weight"] = value
    np.savez(saved, **arrays)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(saved)


def test_logit_bound_holds_for_every_pixel_image():
    # The bound is attained by no image but exceeded by none: try the extreme images and
    # random ones.
    net = lenet5(np.float64, seed=3)
    bound = logit_bound(net)
    rng = np.random.default_rng(0)
    pixels = np.concatenate(
        [np.zeros((1, 28, 28)), np.ones((1, 28, 28)), rng.integers(0, 2, (30, 28, 28))]
    )
    logits = net.forward(normalise(pixels.astype(np.float32), np.float64))
    assert 0 < np.abs(logits).max() <= bound


def test_checkpoint_with_weights_that_overflow_the_logits_is_refused(saved):
    # Finite float32 weights of 1e38: every logit overflows; evaluate said "loss nan".
    arrays = _arrays(saved)
    for name in ("conv1.weight", "fc3.weight"):
        arrays[name] = np.full(arrays[name].shape, 1e38, np.float32)
    np.savez(saved, **arrays)
    with pytest.raises(CheckpointError, match="too large: a logit could reach"):
        load_checkpoint(saved)


def test_checkpoint_at_the_logit_limit_gives_finite_probabilities(saved):
    # Scale the last layer so that the bound sits just under the limit: the loader accepts
    # it, and the probabilities of the most extreme images stay finite, as derived.
    model, _ = load_checkpoint(saved)
    arrays = _arrays(saved)
    limit = np.finfo(np.float32).max / 4
    factor = 0.99 * limit / logit_bound(model)
    arrays["fc3.weight"] = (arrays["fc3.weight"].astype(np.float64) * factor).astype(np.float32)
    arrays["fc3.bias"] = (arrays["fc3.bias"].astype(np.float64) * factor).astype(np.float32)
    np.savez(saved, **arrays)
    model, _ = load_checkpoint(saved)
    x = normalise(np.stack([np.zeros((28, 28)), np.ones((28, 28))]).astype(np.float32))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        probs = predict(model, x)
    assert np.isfinite(probs).all()


def test_npy_given_as_a_checkpoint_is_named(tmp_path):
    path = tmp_path / "m.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(CheckpointError, match=r"a single \.npy array, not a convnet checkpoint"):
        load_checkpoint(path)


def test_checkpoint_header_claiming_more_data_than_the_file_holds(saved):
    # Rewrite the fc1.weight entry's .npy header to claim (120, 400000) float32 values:
    # the loader must not allocate 192 MB from a 200 KB file, nor crash.
    import zipfile

    arrays = _arrays(saved)
    del arrays["fc1.weight"]
    np.savez(saved, **arrays)
    header = {"descr": "<f4", "fortran_order": False, "shape": (120, 400000)}
    text = repr(header).encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    blob = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + bytes(400)
    with zipfile.ZipFile(saved, "a") as zf:
        zf.writestr("fc1.weight.npy", blob)
    with pytest.raises(CheckpointError, match=r"fc1\.weight: expected"):
        load_checkpoint(saved)


def test_save_checkpoint_refuses_classes_that_do_not_fit(tmp_path):
    with pytest.raises(CheckpointError, match="1 names for the 10 outputs"):
        save_checkpoint(tmp_path / "m.npz", lenet5(seed=0), classes=["a"])
    assert not list(tmp_path.iterdir())


def _digit_file(tmp_path):
    image = load_mnist(mnist5k_dir()).test_images[0]
    path = tmp_path / "digit.png"
    Image.fromarray(255 - image).save(path)
    return path


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda p: _with_metadata(p, lambda meta: [meta]), "metadata is a JSON list"),
        (lambda p: _with_metadata(p, _set("classes", ["a"])), "1 names for the 10 outputs"),
        (lambda p: _with_metadata(p, _pop("classes")), "has no 'classes'"),
        (lambda p: p.write_bytes(b"\x93NUMPY" + bytes(20)), "a single .npy array"),
        (lambda p: p.write_bytes(b""), "not an .npz archive"),
        (lambda p: p.write_bytes(p.read_bytes()[:-100]), "not a readable convnet checkpoint"),
    ],
    ids=["meta-list", "one-class", "no-classes", "npy", "empty", "truncated"],
)
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_cli_bad_checkpoint_is_one_line_exit_2(tmp_path, saved, capsys, change, match, command):
    change(saved)
    if command == "evaluate":
        argv = ["evaluate", str(saved), "--data", str(mnist5k_dir())]
    else:
        argv = ["predict", str(saved), str(_digit_file(tmp_path))]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and match in captured.err, captured.err
    assert captured.out == ""


def test_cli_huge_weights_are_refused_not_reported_as_nan(tmp_path, saved, capsys):
    arrays = _arrays(saved)
    arrays["fc3.weight"] = np.full(arrays["fc3.weight"].shape, 1e38, np.float32)
    np.savez(saved, **arrays)
    for argv in (
        ["evaluate", str(saved), "--data", str(mnist5k_dir())],
        ["predict", str(saved), str(_digit_file(tmp_path))],
    ):
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert "too large" in captured.err and "nan" not in captured.out


# --------------------------------------------------------------------------- digit pictures


def _png_header_only(path, width, height):
    """A PNG that claims ``width × height`` 8-bit grey pixels and holds a few bytes of data:
    what a decompression bomb looks like to a reader that trusts the header."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


def test_decompression_bomb_is_refused_before_decoding(tmp_path, saved, capsys):
    bomb = _png_header_only(tmp_path / "bomb.png", 30000, 30000)
    assert main(["predict", str(saved), str(bomb)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "900,000,000 pixels" in err and "--max-pixels" in err


def test_max_pixels_flag_sets_the_limit(tmp_path, saved, capsys):
    digit = _digit_file(tmp_path)  # 28 × 28 = 784 pixels
    assert main(["predict", str(saved), str(digit), "--max-pixels", "783"]) == 2
    assert "784 pixels, above the limit of 783" in capsys.readouterr().err
    assert main(["predict", str(saved), str(digit), "--max-pixels", "784"]) == 0
    npy = tmp_path / "digit.npy"
    np.save(npy, np.zeros((40, 40)))
    with pytest.raises(ValueError, match="1,600 pixels, above the limit of 1,000"):
        load_digit_image(npy, max_pixels=1000)


def test_sixteen_bit_picture_reads_as_its_eight_bit_twin(tmp_path, saved):
    image8 = 255 - load_mnist(mnist5k_dir()).test_images[0]
    big8 = np.asarray(Image.fromarray(image8).resize((84, 84), Image.BILINEAR))
    path8, path16 = tmp_path / "d8.png", tmp_path / "d16.png"
    Image.fromarray(big8).save(path8)
    Image.fromarray(big8.astype(np.uint16) * 257).save(path16)  # x · 257 / 65535 = x / 255
    with Image.open(path16) as check:
        assert check.mode.startswith("I;16")  # really a 16-bit file
    digit8, digit16 = load_digit_image(path8), load_digit_image(path16)
    np.testing.assert_array_equal(digit16, digit8)
    assert main(["predict", str(saved), str(path8), str(path16), "--json"]) == 0


def test_sixteen_bit_picture_gives_the_same_prediction_on_the_cli(tmp_path, saved, capsys):
    image8 = 255 - load_mnist(mnist5k_dir()).test_images[1]
    path8, path16 = tmp_path / "d8.png", tmp_path / "d16.png"
    Image.fromarray(image8).save(path8)
    Image.fromarray(image8.astype(np.uint16) * 257).save(path16)
    assert main(["predict", str(saved), str(path8), str(path16), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results[0]["probabilities"] == results[1]["probabilities"]


@pytest.mark.parametrize(
    ("write", "match"),
    [
        (lambda p: np.savez(p, a=np.zeros((9, 9))), "an .npz archive, expected one .npy array"),
        (lambda p: np.save(p, np.zeros((2, 9, 9))), "expected a 2-D grey image"),
        (lambda p: np.save(p, np.full((9, 9), -3.0)), "expected 0 … 1 or 0 … 255"),
        (lambda p: np.save(p, np.array(["a"] * 81).reshape(9, 9)), "not a numeric array"),
        (lambda f: f.write(b"\x93NUMPY\x01\x00"), "not a readable .npy array"),
    ],
    ids=["npz", "3-d", "negative", "strings", "truncated"],
)
def test_bad_npy_pictures_are_named(tmp_path, write, match):
    path = tmp_path / "digit.npy"
    with open(path, "wb") as f:
        write(f)
    with pytest.raises(ValueError, match=match):
        load_digit_image(path)

"""IDX reading, MNIST directories, the embedded digits, splits, augmentation, downloads."""

import functools
import gzip
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from convnet_data import FILES, mnist5k_dir

from convnet.augment import random_affine, warp_affine
from convnet.data import (
    IDXError,
    embedded_digits,
    load_mnist,
    normalise,
    read_idx,
    validation_split,
)
from convnet.download import DownloadError, download_mnist


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, compress):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = _idx_bytes(array)
    path = tmp_path / "x.idx"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    out = read_idx(path)
    np.testing.assert_array_equal(out, array)
    assert out.dtype == np.uint8


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda raw: b"\x12\x34" + raw[2:], "not an IDX file"),
        (lambda raw: raw[:3], "not an IDX file"),
        (lambda raw: raw[:6], "truncated header"),
        (lambda raw: raw[:-5], "truncated"),
        (lambda raw: raw + b"\x00\x00", "unexpected bytes"),
        (lambda raw: gzip.compress(raw)[:-10], "corrupt or truncated gzip"),
        (
            lambda raw: gzip.compress(raw)[:20] + b"\xff" * 8 + gzip.compress(raw)[28:],
            "corrupt or truncated gzip",
        ),
    ],
    ids=["magic", "short", "header", "data", "extra", "gzip-truncated", "gzip-corrupt"],
)
def test_read_idx_reports_bad_files(tmp_path, mangle, match):
    raw = _idx_bytes(np.arange(60, dtype=np.uint8).reshape(3, 4, 5))
    path = tmp_path / "bad.idx"
    path.write_bytes(mangle(raw))
    with pytest.raises(IDXError, match=match):
        read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope.gz")


def test_load_mnist5k():
    data = load_mnist(mnist5k_dir())
    assert data.train_images.shape == (5000, 28, 28)
    assert data.test_images.shape == (5000, 28, 28)
    assert data.train_images.dtype == np.uint8
    assert np.bincount(data.train_labels).tolist() == [500] * 10
    assert data.test_labels[:3].tolist() == [7, 2, 1]  # the well-known start of t10k


def test_load_mnist_reads_raw_files_and_reports_missing(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 28, 28))
    labels = rng.integers(0, 10, 6)
    for name, arr in zip(FILES, (images, labels, images, labels), strict=True):
        (tmp_path / name.removesuffix(".gz")).write_bytes(_idx_bytes(arr))
    data = load_mnist(tmp_path)
    np.testing.assert_array_equal(data.train_images, images)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="missing t10k-labels"):
        load_mnist(tmp_path)


def test_load_mnist_rejects_mismatched_counts(tmp_path):
    images = np.zeros((6, 28, 28))
    for name, arr in zip(FILES, (images, np.zeros(5), images, np.zeros(6)), strict=True):
        (tmp_path / name).write_bytes(gzip.compress(_idx_bytes(arr)))
    with pytest.raises(IDXError, match="6 train images"):
        load_mnist(tmp_path)


def test_embedded_digits_look_like_mnist():
    data = embedded_digits()
    assert data.train_images.shape == (1437, 28, 28)
    assert data.test_images.shape == (360, 28, 28)
    assert data.train_images.dtype == np.uint8
    images = data.train_images.astype(float)
    # The ink fits in a 20×20 box and its centre of mass is within a pixel of the centre.
    for image in images[::50]:
        rows, cols = np.nonzero(image)
        assert rows.max() - rows.min() < 20 and cols.max() - cols.min() < 20
    mass = images.sum(axis=(1, 2))
    cy = (images.sum(axis=2) * np.arange(28)).sum(axis=1) / mass
    assert np.all(np.abs(cy - 13.5) <= 1.0)
    assert set(np.unique(data.test_labels)) == set(range(10))


def test_validation_split_is_stratified_disjoint_and_seeded():
    labels = np.repeat(np.arange(10), 50)
    train, val = validation_split(labels, 0.1, seed=3)
    assert len(val) == 50 and np.bincount(labels[val]).tolist() == [5] * 10
    assert not set(train) & set(val) and len(train) + len(val) == 500
    np.testing.assert_array_equal(val, validation_split(labels, 0.1, seed=3)[1])
    assert not np.array_equal(val, validation_split(labels, 0.1, seed=4)[1])


def test_normalise_uses_mnist_statistics():
    x = normalise(np.array([[[0, 255]]], np.uint8))
    assert x.shape == (1, 1, 1, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x.ravel(), [-0.1307 / 0.3081, (1 - 0.1307) / 0.3081], rtol=1e-6)


def test_warp_affine_identity_and_shift_are_exact():
    rng = np.random.default_rng(0)
    x = rng.random((3, 9, 11)).astype(np.float32)
    eye = np.repeat(np.eye(2)[None], 3, axis=0)
    np.testing.assert_array_equal(warp_affine(x, eye, np.zeros((3, 2))), x)
    shifted = warp_affine(x, eye, np.array([[1.0, 0], [0, 2], [0, 0]]))
    np.testing.assert_array_equal(shifted[0, :-1], x[0, 1:])
    np.testing.assert_array_equal(shifted[0, -1], 0)
    np.testing.assert_array_equal(shifted[1, :, :-2], x[1, :, 2:])


def test_warp_affine_matches_scipy_bilinear():
    from scipy import ndimage

    x = np.random.default_rng(1).random((1, 12, 10))
    a, t = np.array([[0.9, 0.2], [-0.1, 1.05]]), np.array([0.3, -0.7])
    c = np.array([5.5, 4.5])
    ref = ndimage.affine_transform(x[0], a, offset=c + t - a @ c, order=1, mode="grid-constant")
    np.testing.assert_allclose(warp_affine(x, a[None], t[None])[0], ref, atol=1e-5)


def test_random_affine_is_seeded_and_keeps_dtype():
    x = np.random.default_rng(0).random((4, 28, 28)).astype(np.float32)
    a = random_affine(x, np.random.default_rng(7), elastic_alpha=10)
    b = random_affine(x, np.random.default_rng(7), elastic_alpha=10)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and not np.array_equal(a, x)


@pytest.mark.parametrize(
    "setting, match",
    [
        ({"shift": 1e300}, r"^shift must be at most 28 \(the image's side\), got 1e\+300$"),
        ({"shear": 1e300}, r"^shear must be at most 1 \(a 45° slant\)"),
        ({"rotation": 181.0}, r"^rotation must be at most 180"),
        ({"rotation": np.nan}, r"^rotation must be a finite number ≥ 0, got nan$"),
        ({"shift": np.inf}, r"^shift must be a finite number ≥ 0"),
        ({"scale": 1.0}, r"^scale must be below 1, got 1$"),
        ({"squeeze": -0.1}, r"^squeeze must be a finite number ≥ 0"),
        ({"shift": "2"}, r"^shift must be a number, got '2'$"),
        ({"shift": 2}, None),  # an int is a number
        ({"shear": "steep"}, r"^shear must be a number, got 'steep'$"),
        ({"elastic_alpha": 30.0, "elastic_sigma": 0.0}, r"^elastic_sigma must be a positive"),
        ({"elastic_alpha": 30.0, "elastic_sigma": "4"}, r"^elastic_sigma must be a positive"),
        ({"elastic_alpha": 30.0, "elastic_sigma": None}, r"^elastic_sigma must be a positive"),
    ],
    ids=str,
)
def test_random_affine_refuses_ranges_that_are_no_distortion(setting, match):
    images = np.zeros((3, 28, 28), np.float32)
    images[:, 10:18, 12:16] = 1
    if match is None:
        assert random_affine(images, np.random.default_rng(0), **setting).shape == images.shape
        return
    with pytest.raises(ValueError, match=match):
        random_affine(images, np.random.default_rng(0), **setting)


def test_random_affine_takes_each_range_up_to_its_bound():
    images = np.zeros((2, 28, 28), np.float32)
    images[:, 10:18, 12:16] = 1
    out = random_affine(images, np.random.default_rng(1), rotation=180, shift=28, shear=1,
                        scale=0.99, squeeze=0.99)  # fmt: skip
    assert out.shape == images.shape and np.isfinite(out).all()


# --------------------------------------------------------------------------- download


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def mirrors(tmp_path):
    """Three local mirrors: dead (refuses connections), corrupt, good."""
    source = mnist5k_dir()
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    for name in FILES:
        shutil.copy(source / name, good / name)
        data = bytearray((source / name).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (bad / name).write_bytes(bytes(data))
    handler = functools.partial(_Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # A port that was free a moment ago and now has no listener: a dead mirror.
    probe = http.server.HTTPServer(("127.0.0.1", 0), _Quiet)
    dead_port = probe.server_port
    probe.server_close()
    base = f"http://127.0.0.1:{server.server_port}"
    sums = {n: hashlib.sha256((source / n).read_bytes()).hexdigest() for n in FILES}
    yield {"dead": f"http://127.0.0.1:{dead_port}/", "bad": f"{base}/bad/",
           "good": f"{base}/good/", "missing": f"{base}/nothing/", "sums": sums}  # fmt: skip
    server.shutdown()
    server.server_close()


def test_download_falls_back_past_dead_and_corrupt_mirrors(tmp_path, mirrors):
    lines = []
    target = download_mnist(
        tmp_path / "cache",
        mirrors=[mirrors["dead"], mirrors["bad"], mirrors["missing"], mirrors["good"]],
        checksums=mirrors["sums"],
        timeout=5,
        log=lines.append,
    )
    data = load_mnist(target)
    assert data.train_images.shape == (5000, 28, 28)
    assert sorted(p.name for p in target.iterdir()) == sorted(FILES)  # no temp files left
    assert any("checksum mismatch" in line for line in lines)
    assert any("HTTP 404" in line for line in lines)
    assert any("refused" in line for line in lines)
    # Second call: everything verified in place, nothing fetched.
    lines.clear()
    download_mnist(target, mirrors=[mirrors["dead"]], checksums=mirrors["sums"], log=lines.append)
    assert lines == []


def test_download_without_a_working_mirror_says_what_to_do(tmp_path, mirrors):
    with pytest.raises(DownloadError, match="Without network") as info:
        download_mnist(
            tmp_path / "cache",
            mirrors=[mirrors["dead"], mirrors["bad"]],
            checksums=mirrors["sums"],
            timeout=5,
        )
    assert "checksum mismatch" in str(info.value)
    assert not any(Path(tmp_path / "cache").iterdir())  # nothing half-written


def test_download_replaces_a_corrupt_cached_file(tmp_path, mirrors):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / FILES[0]).write_bytes(b"junk")
    download_mnist(cache, mirrors=[mirrors["good"]], checksums=mirrors["sums"], timeout=5)
    assert hashlib.sha256((cache / FILES[0]).read_bytes()).hexdigest() == mirrors["sums"][FILES[0]]

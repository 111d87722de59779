"""Image files and the ``pyramids`` command line."""

import subprocess
import sys

import numpy as np
import pytest

import pyramids
from pyramids.cli import main
from pyramids.io import ImageFileError, read_image, write_image


@pytest.mark.parametrize(
    ("suffix", "shape", "bits"),
    [
        (".png", (9, 7), 8),
        (".png", (9, 7, 3), 8),
        (".png", (9, 7), 16),
        (".tif", (9, 7), 16),
        (".tif", (9, 7, 3), 16),
        (".tif", (9, 7, 3), 8),
        (".bmp", (9, 7, 3), 8),
    ],
)
def test_lossless_formats_round_trip(tmp_path, suffix, shape, bits):
    dtype = np.uint8 if bits == 8 else np.uint16
    x = np.random.default_rng(0).integers(0, 2**bits, shape).astype(dtype)
    path = write_image(tmp_path / f"x{suffix}", x, bit_depth=bits)
    back = read_image(path)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, x)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind


def test_float_images_are_clipped_and_rounded(tmp_path):
    x = np.array([[-0.5, 0.0, 0.5, 1.0, 1.5]])
    back = read_image(write_image(tmp_path / "x.png", x))
    np.testing.assert_array_equal(back, [[0, 0, 128, 255, 255]])


def test_jpeg_is_written_and_read(tmp_path):
    x = np.full((16, 16, 3), 0.5)
    back = read_image(write_image(tmp_path / "x.jpg", x))
    assert back.shape == (16, 16, 3) and abs(int(back.mean()) - 128) <= 2


def test_unreadable_files_are_clear_errors(tmp_path):
    with pytest.raises(ImageFileError, match="no such file"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageFileError, match="not an image"):
        read_image(tmp_path / "text.png")
    good = write_image(tmp_path / "good.png", np.random.default_rng(1).random((64, 64)))
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageFileError, match="corrupt or truncated"):
        read_image(tmp_path / "cut.png")


def test_bad_writes_are_clear_errors(tmp_path):
    with pytest.raises(ImageFileError, match="suffix"):
        write_image(tmp_path / "x.xyz", np.zeros((2, 2)))
    with pytest.raises(ImageFileError, match="16-bit colour"):
        write_image(tmp_path / "x.png", np.zeros((2, 2, 3)), bit_depth=16)
    with pytest.raises(ImageFileError, match="16-bit"):
        write_image(tmp_path / "x.jpg", np.zeros((2, 2)), bit_depth=16)


# --------------------------------------------------------------------------- command line


def run(*args):
    return main([str(a) for a in args])


def test_blend_without_arguments_uses_the_samples(tmp_path, capsys):
    assert run("blend", "-o", tmp_path / "out.png") == 0
    out = read_image(tmp_path / "out.png")
    cat = read_image(pyramids.cli.IMAGES / "cat.png")
    assert out.shape == cat.shape and out.dtype == np.uint8
    # the left edge is the cat, the right edge the coffee
    assert np.abs(out[:, :20].astype(int) - cat[:, :20]).mean() < 3
    assert "sample images" in capsys.readouterr().out


def test_blend_files_keep_16_bits(tmp_path):
    rng = np.random.default_rng(2)
    a = write_image(tmp_path / "a.png", rng.random((30, 40)), bit_depth=16)
    b = write_image(tmp_path / "b.png", rng.random((30, 40)), bit_depth=16)
    mask = np.zeros((30, 40))
    mask[:, :20] = 1
    m = write_image(tmp_path / "m.png", mask)
    assert run("blend", a, b, m, "-o", tmp_path / "o.png", "--levels", "3") == 0
    assert read_image(tmp_path / "o.png").dtype == np.uint16


def test_decompose_and_reconstruct_round_trip(tmp_path):
    x = np.random.default_rng(3).integers(0, 65536, (45, 60)).astype(np.uint16)
    src = write_image(tmp_path / "x.tif", x, bit_depth=16)
    for kind in ("laplacian", "gaussian"):
        out = tmp_path / kind
        assert run("decompose", src, "--kind", kind, "-o", out, "--levels", "3") == 0
        assert (out / "montage.png").is_file() and (out / "pyramid.npz").is_file()
        assert run("reconstruct", out, "-o", tmp_path / f"{kind}.tif") == 0
        np.testing.assert_array_equal(read_image(tmp_path / f"{kind}.tif"), x)
    with np.load(tmp_path / "laplacian" / "pyramid.npz") as npz:
        bands = [npz[f"band{k}"] for k in range(3)]
    assert min(band.min() for band in bands) < 0  # signed bands kept exactly, not clipped
    assert sorted(p.name for p in (tmp_path / "laplacian").iterdir()) == [
        "band0.png", "band1.png", "band2.png", "montage.png", "pyramid.npz", "residual.png"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["blend", "missing-a.png", "missing-b.png", "missing-m.png"], "no such file"),
        (["blend", "only-one.png"], "three images"),
        (["decompose", "missing.png", "-o", "out"], "no such file"),
        (["reconstruct", "nowhere", "-o", "x.png"], "no such file"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert run(*args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_output_never_overwrites_an_input(tmp_path, capsys):
    rng = np.random.default_rng(4)
    a = write_image(tmp_path / "a.png", rng.random((16, 16)))
    b = write_image(tmp_path / "b.png", rng.random((16, 16)))
    m = write_image(tmp_path / "m.png", np.ones((16, 16)))
    before = a.read_bytes()
    assert run("blend", a, b, m, "-o", a) == 2
    assert "also an input" in capsys.readouterr().err
    assert a.read_bytes() == before


def test_mismatched_images_are_one_clear_line(tmp_path, capsys):
    rng = np.random.default_rng(5)
    a = write_image(tmp_path / "a.png", rng.random((16, 16)))
    b = write_image(tmp_path / "b.png", rng.random((16, 17)))
    m = write_image(tmp_path / "m.png", np.ones((16, 16)))
    assert run("blend", a, b, m, "-o", tmp_path / "o.png") == 2
    assert "same shape" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_python_dash_m_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "pyramids", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "blend" in done.stdout


def test_steerable_decompose_and_exact_reconstruct(tmp_path):
    x = np.random.default_rng(6).integers(0, 256, (40, 52)).astype(np.uint8)
    src = write_image(tmp_path / "x.png", x)
    out = tmp_path / "steer"
    assert run("decompose", src, "--kind", "steerable", "-o", out, "--levels", "2") == 0
    names = {p.name for p in out.iterdir()}
    assert {"highpass.png", "level1_orientation3.png", "residual.png", "montage.png"} <= names
    back_png = tmp_path / "back.png"
    assert run("reconstruct", out / "pyramid.npz", "--method", "exact", "-o", back_png) == 0
    back = read_image(back_png).astype(int)
    assert np.abs(back - x).max() <= 1  # exact inverse, then rounded to 8 bits
    refined = tmp_path / "refined.png"
    assert run("reconstruct", out, "--method", "mirror", "--refine", "2", "-o", refined) == 0
    assert np.abs(read_image(refined).astype(int) - x).max() <= 3
    assert run("reconstruct", out, "--refine", "1", "-o", tmp_path / "default.png") == 0
    no = tmp_path / "no.png"
    assert run("reconstruct", out, "--method", "exact", "--refine", "1", "-o", no) == 2
    lap = tmp_path / "lap"
    assert run("decompose", src, "--kind", "laplacian", "-o", lap) == 0
    assert run("reconstruct", lap, "--method", "mirror", "--refine", "1", "-o", no) == 2
    assert not no.exists()


def test_orientations_only_apply_to_steerable(tmp_path, capsys):
    src = write_image(tmp_path / "x.png", np.zeros((20, 20)))
    assert run("decompose", src, "--orientations", "2", "-o", tmp_path / "o") == 2
    assert "--orientations" in capsys.readouterr().err


def test_figures_command_writes_every_picture(tmp_path):
    assert run("figures", "-o", tmp_path) == 0
    expected = {"cat.png", "coffee.png", "mask.png", "blend.jpg", "blend_vs_cut.jpg"}
    expected |= {"laplacian_montage.jpg", "gaussian_montage.jpg", "steerable_montage.jpg"}
    assert expected == {p.name for p in tmp_path.iterdir()}
    # the committed sample inputs are exactly what the command writes
    for name in ("cat.png", "coffee.png", "mask.png"):
        committed = pyramids.cli.IMAGES / name
        np.testing.assert_array_equal(read_image(tmp_path / name), read_image(committed))

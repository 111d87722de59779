"""Bad input to the ``pyramids`` library and command line: each answered clearly (issue 13).

Every command-line failure is one line on stderr with exit status 2 (usage and input
errors), 1 (an output that cannot be written) or 130 (interrupted), writes nothing, and
leaves every input as it was.
"""

import json
import math
import struct
import zlib
from math import comb
from pathlib import Path

import numpy as np
import pytest

import pyramids
from pyramids import cli
from pyramids.cli import main
from pyramids.display import lowpass_to_display
from pyramids.io import (
    DEFAULT_MAX_PIXELS,
    ImageFileError,
    OutputFileError,
    image_size,
    read_image,
    write_image,
)
from pyramids.kernels import MAX_KERNEL_TAPS, binomial_kernel, resolve_kernel
from pyramids.pyramid import PyramidFileError, load_pyramid, read_pyramid_file


def run(*args):
    return main([str(a) for a in args])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def files_under(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A small 8-bit grey PNG whose header claims ``width × height`` pixels.

    Only four rows of data follow the header: opening it is cheap; Pillow would decode it
    into a full-size array, the missing rows zero.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(bytes(width + 1) * 4)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture
def small_images(tmp_path):
    rng = np.random.default_rng(0)
    a = write_image(tmp_path / "a.png", rng.random((24, 32)))
    b = write_image(tmp_path / "b.png", rng.random((24, 32)))
    mask = np.zeros((24, 32))
    mask[:, :16] = 1
    m = write_image(tmp_path / "m.png", mask)
    return a, b, m


# --------------------------------------------------------------------------- 1. image size limit


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    bomb = png_claiming(tmp_path / "bomb.png", 30_000, 30_000)
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ImageFileError, match=r"30000×30000 = 900,000,000 pixels.*--max-pixels"):
        read_image(bomb)
    with pytest.raises(ImageFileError, match="above the limit"):
        image_size(bomb)


def test_pillows_own_limit_is_replaced_by_ours(tmp_path):
    # 100 Mpixels: above Pillow's warning threshold (89 Mpixels; warnings are errors in the
    # test run), below our default limit of 2**28
    big = png_claiming(tmp_path / "big.png", 10_000, 10_000)
    assert DEFAULT_MAX_PIXELS > 10_000 * 10_000
    assert image_size(big) == (10_000, 10_000)


def test_max_pixels_is_a_parameter(tmp_path):
    path = write_image(tmp_path / "x.png", np.zeros((20, 30)))
    with pytest.raises(ImageFileError, match="30×20 = 600 pixels, above the limit of 599"):
        read_image(path, max_pixels=599)
    assert read_image(path, max_pixels=600).shape == (20, 30)
    assert image_size(path, max_pixels=600) == (20, 30)
    with pytest.raises(ValueError, match="at least 1"):
        read_image(path, max_pixels=0)


def test_cli_refuses_a_bomb_and_the_flag_raises_the_limit(tmp_path, small_images, capsys):
    a, b, m = small_images
    bomb = png_claiming(tmp_path / "bomb.png", 30_000, 30_000)
    assert run("blend", bomb, b, m, "-o", tmp_path / "o.png") == 2
    assert "--max-pixels" in one_error_line(capsys)
    assert run("decompose", a, "-o", tmp_path / "d", "--max-pixels", "767") == 2
    assert "above the limit of 767" in one_error_line(capsys)
    assert not (tmp_path / "d").exists()
    assert run("decompose", a, "-o", tmp_path / "d", "--max-pixels", "768") == 0
    assert run("reconstruct", tmp_path / "d", "-o", tmp_path / "r.png", "--max-pixels", "10") == 2
    assert "above the limit of 10" in one_error_line(capsys)
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "r.png").exists()


def test_blend_compares_sizes_before_decoding(tmp_path, small_images, capsys):
    _, b, m = small_images
    # 120 Mpixels claimed, under the limit: only the header check names its size
    large = png_claiming(tmp_path / "large.png", 12_000, 10_000)
    assert run("blend", large, b, m, "-o", tmp_path / "o.png") == 2
    line = one_error_line(capsys)
    assert "same shape" in line and "12000×10000" in line and "32×24" in line


# --------------------------------------------------------------------------- 2. kernels


@pytest.mark.parametrize("length", [1, 3, 5, 7, 51, 1025, 1027, 2049])
def test_binomial_kernel_is_correctly_rounded(length):
    n = length - 1
    expected = [comb(n, k) / 2**n for k in range(length)]  # exact integers, one rounding
    np.testing.assert_array_equal(binomial_kernel(length), expected)


def test_long_kernels_are_refused_at_once(tmp_path, capsys):
    assert len(resolve_kernel(f"binomial{MAX_KERNEL_TAPS}")) == MAX_KERNEL_TAPS
    for too_long in (MAX_KERNEL_TAPS + 2, 20001, 99999):
        with pytest.raises(ValueError, match="longer than any image could use"):
            binomial_kernel(too_long)
        with pytest.raises(ValueError, match="longer than any image could use"):
            resolve_kernel(f"binomial{too_long}")
    with pytest.raises(ValueError, match="longer than any image could use"):
        resolve_kernel("binomial" + "9" * 5000)
    with pytest.raises(ValueError, match="longer than any image could use"):
        resolve_kernel(np.full(MAX_KERNEL_TAPS + 2, 1 / (MAX_KERNEL_TAPS + 2)))
    src = write_image(tmp_path / "x.png", np.random.default_rng(1).random((20, 24)))
    assert run("decompose", src, "--kernel", "binomial99999", "-o", tmp_path / "o") == 2
    assert "longer than any image" in one_error_line(capsys)
    # 1025 taps overflowed 2.0**1024 before; on a small image it leaves no room to reduce
    assert run("decompose", src, "--kernel", "binomial1025", "-o", tmp_path / "o") == 0
    assert run("reconstruct", tmp_path / "o", "-o", tmp_path / "back.png") == 0
    np.testing.assert_array_equal(read_image(tmp_path / "back.png"), read_image(src))


# ------------------------------------------------------------------- 3, 4, 12. pyramid files


@pytest.fixture(params=["gaussian", "laplacian", "steerable"])
def saved(request, tmp_path):
    x = np.random.default_rng(2).integers(0, 256, (36, 40)).astype(np.uint8)
    src = write_image(tmp_path / "x.png", x)
    out = tmp_path / request.param
    assert main(["decompose", str(src), "--kind", request.param, "-o", str(out)]) == 0
    return request.param, out / "pyramid.npz"


def rewrite(path: Path, change) -> Path:
    with np.load(path) as npz:
        arrays = dict(npz)
    change(arrays)
    np.savez_compressed(path, **arrays)
    return path


def rewrite_meta(path: Path, **changes) -> Path:
    """Change entries of a pyramid file's JSON ``meta``."""

    def change(arrays):
        meta = json.loads(str(arrays["meta"]))
        arrays["meta"] = np.array(json.dumps({**meta, **changes}))

    return rewrite(path, change)


def test_truncated_empty_and_npy_files_are_one_line(saved, tmp_path, capsys):
    _, npz = saved
    data = npz.read_bytes()
    cases = {
        "truncated.npz": data[: len(data) // 2],
        "empty.npz": b"",
        "tail.npz": data[-100:],
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        assert run("reconstruct", tmp_path / name, "-o", tmp_path / "o.png") == 2
        assert "not a readable pyramid file" in one_error_line(capsys)
    np.save(tmp_path / "array.npy", np.zeros((4, 4)))
    assert run("reconstruct", tmp_path / "array.npy", "-o", tmp_path / "o.png") == 2
    assert "a single .npy array, not a pyramid .npz" in one_error_line(capsys)
    assert not (tmp_path / "o.png").exists()


def test_missing_or_mislabelled_entries_are_one_line(saved, tmp_path, capsys):
    kind, npz = saved
    first = {"gaussian": "level0", "laplacian": "band0", "steerable": "highpass"}[kind]
    rewrite(npz, lambda arrays: arrays.pop(first))
    assert run("reconstruct", npz, "-o", tmp_path / "o.png") == 2
    assert kind in one_error_line(capsys)
    other = {"gaussian": "laplacian", "laplacian": "gaussian", "steerable": "laplacian"}[kind]
    rewrite(npz, lambda arrays: arrays.update(kind=np.array(other)))
    assert run("reconstruct", npz, "-o", tmp_path / "o.png") == 2
    assert other in one_error_line(capsys)
    assert not (tmp_path / "o.png").exists()


def test_non_finite_coefficients_are_refused(saved, tmp_path, capsys):
    kind, npz = saved
    first = {"gaussian": "level0", "laplacian": "band0", "steerable": "highpass"}[kind]
    rewrite(npz, lambda arrays: arrays[first].fill(np.nan))
    assert run("reconstruct", npz, "-o", tmp_path / "o.png") == 2
    assert f"{first} contains NaN" in one_error_line(capsys)
    assert not (tmp_path / "o.png").exists()


def test_steerable_file_must_match_its_filters(tmp_path, capsys):
    x = np.random.default_rng(3).random((40, 44))
    npz = pyramids.steerable_pyramid(x, levels=2).save(tmp_path / "p.npz")
    rewrite_meta(npz, filters="sp1")  # 2 orientations
    with pytest.raises(PyramidFileError, match=r"sp1 filters have 2 orientations.*says 4"):
        load_pyramid(npz)
    rewrite_meta(npz, orientations=2)
    expected = r"unexpected entry 'band_0_2' .* holds highpass, band_0_0 … residual \(6 arrays\)"
    with pytest.raises(PyramidFileError, match=expected):
        load_pyramid(npz)
    assert run("reconstruct", npz, "-o", tmp_path / "o.png") == 2
    one_error_line(capsys)
    rewrite_meta(npz, levels=10**18)
    with pytest.raises(PyramidFileError, match=r"1000000000000000000 levels"):
        load_pyramid(npz)


def test_bit_depth_is_kept_beside_the_pyramid(tmp_path, capsys):
    x = np.random.default_rng(4).random((30, 34, 3)).astype(np.float32)
    lap = pyramids.laplacian_pyramid(x, 2, "binomial3", "periodic")
    loaded = read_pyramid_file(lap.save(tmp_path / "l.npz", attrs={"bit_depth": 16}))
    assert loaded.kind == "laplacian" and loaded.attrs == {"bit_depth": 16}
    assert loaded.pyramid.boundary == "periodic" and len(loaded.pyramid.kernel) == 3
    np.testing.assert_array_equal(loaded.pyramid.reconstruct(), lap.reconstruct())
    for bad in (12, "8", True, None):
        lap.save(tmp_path / "l.npz", attrs={"bit_depth": bad})
        assert run("reconstruct", tmp_path / "l.npz", "-o", tmp_path / "o.png") == 2
        assert "bit_depth must be 8 or 16" in one_error_line(capsys)
    assert not (tmp_path / "o.png").exists()


# --------------------------------------------------------------------------- 5. decompose output


def test_decompose_refuses_to_overwrite_its_input(tmp_path, capsys):
    folder = tmp_path / "dir"
    src = write_image(folder / "montage.png", np.random.default_rng(5).random((20, 24)))
    before = src.read_bytes()
    assert run("decompose", src, "-o", folder) == 2
    assert "would overwrite the input" in one_error_line(capsys)
    assert src.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["montage.png"]  # nothing else left
    assert run("decompose", src, "-o", folder, "--force") == 0
    assert src.read_bytes() != before and (folder / "pyramid.npz").is_file()


def test_failed_decompose_leaves_no_directory(tmp_path, capsys):
    src = write_image(tmp_path / "x.png", np.zeros((20, 24)))
    out = tmp_path / "new" / "deeper"
    assert run("decompose", src, "--levels", "99", "-o", out) == 2
    one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_decompose_failing_midway_keeps_the_old_pyramid(tmp_path, monkeypatch, capsys):
    src = write_image(tmp_path / "x.png", np.random.default_rng(6).random((40, 48)))
    out = tmp_path / "out"
    assert run("decompose", src, "--levels", "2", "-o", out) == 0
    before = files_under(out)
    written = []

    def failing_write(path, *args, **kwargs):
        if len(written) == 2:
            raise OutputFileError(f"{path}: cannot write (disk full)")
        written.append(path)
        return write_image(path, *args, **kwargs)

    monkeypatch.setattr(cli, "write_image", failing_write)
    assert run("decompose", src, "--levels", "4", "-o", out) == 1
    assert "disk full" in one_error_line(capsys)
    assert files_under(out) == before  # no new band beside the old pyramid, no temporary
    monkeypatch.undo()
    assert run("decompose", src, "--levels", "4", "-o", out) == 0
    assert load_pyramid(out / "pyramid.npz").levels == 4


# --------------------------------------------------------------------------- 6. byte order


@pytest.mark.parametrize("dtype", [">f4", ">f8", "<f4", ">u2"])
def test_any_byte_order_gives_the_native_result(dtype):
    rng = np.random.default_rng(7)
    x = rng.random((33, 40, 3))
    native = x.astype(np.dtype(dtype).newbyteorder("="))
    swapped = x.astype(dtype)
    if native.dtype.kind == "u":
        native = swapped = (x * 65535).astype(dtype)
        native = native.astype(native.dtype.newbyteorder("="))
    ours, reference = pyramids.laplacian_pyramid(swapped, 3), pyramids.laplacian_pyramid(native, 3)
    expected_dtype = np.float64 if native.dtype.kind == "u" else native.dtype
    for got, want in zip([*ours.bands, ours.residual], [*reference.bands, reference.residual]):
        assert got.dtype == expected_dtype and got.dtype.isnative
        np.testing.assert_array_equal(got, want)
    steer = pyramids.steerable_pyramid(swapped[..., 0], levels=1)
    assert steer.dtype == expected_dtype and steer.dtype.isnative
    mask = np.linspace(0, 1, 40)[None, :].repeat(33, 0)
    out = pyramids.blend(swapped, swapped[::-1], mask.astype(">f8"), levels=2)
    np.testing.assert_array_equal(out, pyramids.blend(native, native[::-1], mask, levels=2))


# --------------------------------------------------------------------------- 13. exit codes


def test_exit_codes(tmp_path, small_images, monkeypatch, capsys):
    a, b, m = small_images
    assert run("blend", tmp_path / "missing.png", b, m) == 2  # input
    one_error_line(capsys)
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a directory")
    assert run("blend", a, b, m, "-o", blocker / "o.png") == 1  # output
    assert "cannot write" in one_error_line(capsys)
    assert run("decompose", a, "-o", blocker / "pyr") == 1
    one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "file.txt", "m.png"]
    with pytest.raises(SystemExit) as usage:
        run("blend", "--levels", "many")
    assert usage.value.code == 2
    assert "invalid int value" in capsys.readouterr().err

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "blend", interrupted)
    assert run("blend", a, b, m, "-o", tmp_path / "o.png") == 130
    assert "interrupted" in one_error_line(capsys)

    def bug(*args, **kwargs):
        raise TypeError("a bug must not be hidden behind an error line")

    monkeypatch.setattr(cli, "blend", bug)
    with pytest.raises(TypeError, match="a bug"):
        run("blend", a, b, m, "-o", tmp_path / "o.png")
    assert not (tmp_path / "o.png").exists()


def test_unreadable_input_is_an_input_error(tmp_path, capsys):
    folder = tmp_path / "folder.png"
    folder.mkdir()
    assert run("decompose", folder, "-o", tmp_path / "o") == 2
    assert "is a directory" in one_error_line(capsys)
    assert run("reconstruct", folder, "-o", tmp_path / "o.png") == 2
    assert "no such file" in one_error_line(capsys)


# --------------------------------------------------------------------------- reconstruct options


def test_reconstruct_defaults_come_from_the_library(tmp_path, capsys):
    x = np.random.default_rng(8).integers(0, 256, (40, 52)).astype(np.uint8)
    src = write_image(tmp_path / "x.png", x)
    assert run("decompose", src, "--kind", "steerable", "--levels", "2", "-o", tmp_path) == 0
    assert run("reconstruct", tmp_path, "-o", tmp_path / "default.png") == 0
    library = load_pyramid(tmp_path / "pyramid.npz").reconstruct()
    expected = read_image(write_image(tmp_path / "library.png", library))
    np.testing.assert_array_equal(read_image(tmp_path / "default.png"), expected)
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["reconstruct"]
    assert "default: the library's, mirror" in " ".join(help_text.format_help().split())
    # the help says --refine needs --method mirror: the adjoint is refused, as the library does
    assert run("reconstruct", tmp_path, "--method", "adjoint", "--refine", "1", "-o", "r.png") == 2
    assert "refine" in one_error_line(capsys)


# --------------------------------------------------------------------------- 18, 19. pictures


def test_lowpass_display_uses_the_images_own_range():
    residual = np.array([[0.25, 3.0], [6.0, 1.0]])
    shown = lowpass_to_display(residual)
    np.testing.assert_allclose(shown, (residual - 0.25) / 5.75)
    np.testing.assert_array_equal(lowpass_to_display(np.full((2, 2), 7.0)), 0.5)


def test_steerable_residual_picture_is_not_a_white_patch(tmp_path):
    grey = read_image(cli.IMAGES / "cat.png").mean(axis=2) / 255
    src = write_image(tmp_path / "grey.png", grey)
    out = tmp_path / "steer"
    assert run("decompose", src, "--kind", "steerable", "--levels", "3", "-o", out) == 0
    residual = read_image(out / "residual.png")
    assert residual.min() == 0 and residual.max() == 255
    assert np.mean(residual == 255) < 0.05  # clipped to [0, 1], 95% of it was white


def test_figures_help_says_what_it_writes():
    text = " ".join(cli.build_parser().format_help().split())
    assert "not learning_curves.png" in text
    for name in (*cli.SAMPLE_NAMES, *cli.FIGURE_NAMES):
        assert name in text


# --------------------------------------------------------------------------- 21. integer masks


def test_library_blend_takes_the_mask_png_as_read(tmp_path):
    a, b, mask = (read_image(cli.IMAGES / name) for name in cli.SAMPLE_NAMES)
    assert mask.dtype == np.uint8
    assert main(["blend", "-o", str(tmp_path / "cli.png")]) == 0
    library = write_image(tmp_path / "library.png", pyramids.blend(a, b, mask))
    np.testing.assert_array_equal(read_image(library), read_image(tmp_path / "cli.png"))
    # an integer mask is scaled by its dtype's maximum, as images are
    half = np.full(mask.shape, 32768, np.uint16)
    np.testing.assert_array_equal(
        pyramids.blend(a, b, half, levels=3),
        pyramids.blend(a, b, np.full(mask.shape, 32768 / 65535), levels=3),
    )


def test_max_kernel_taps_follows_from_the_pixel_limit():
    side = math.isqrt(DEFAULT_MAX_PIXELS)
    assert side - 1 == MAX_KERNEL_TAPS and MAX_KERNEL_TAPS % 2 == 1


def test_an_output_of_unknown_format_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """Once found by write_image, after the whole blend or collapse had been computed."""

    def no_work(*args, **kwargs):
        raise AssertionError("the work started")

    monkeypatch.setattr(cli, "blend", no_work)
    monkeypatch.setattr(cli, "read_pyramid_file", no_work)
    assert run("blend", "-o", tmp_path / "out.xyz") == 2
    assert "unsupported image suffix '.xyz'" in one_error_line(capsys)
    assert run("reconstruct", tmp_path / "p.npz", "-o", tmp_path / "out.npz") == 2
    assert "unsupported image suffix '.npz'" in one_error_line(capsys)

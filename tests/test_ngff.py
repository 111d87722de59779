"""``pyramids decompose … --zarr``: OME-Zarr multiscales, read back by ome-zarr's own reader."""

import json
import platform
import warnings

import numpy as np
import pytest
from requires import require_module

import pyramids
from pyramids.cli import main
from pyramids.engine import default_engine


def exact_engine() -> bool:
    """Whether the blocks run on an engine whose chunked levels equal the in-memory ones bit
    for bit (pyramids.chunked's docstring; tests/test_chunked.py asserts it): the compiled
    one, or the matrix one on x86-64. Otherwise (the numpy fallback) they are within
    chunking_error_bound, far below half a grey level, so a rounded level may differ by 1."""
    engine = default_engine()
    return engine == "compiled" or (
        engine == "matrix" and platform.machine().lower() in ("x86_64", "amd64")
    )


def big_modules():
    require_module("dask.array", "dask builds the chunked pyramids (the 'big' extra)")
    ngff = require_module("pyramids.ngff", "pyramids.ngff needs dask and zarr")
    chunked = require_module("pyramids.chunked", "pyramids.chunked needs dask")
    return ngff, chunked


def ome_reader():
    io = require_module("ome_zarr.io", "ome-zarr's reader checks the OME-Zarr we write")
    reader = require_module("ome_zarr.reader", "ome-zarr's reader checks the OME-Zarr we write")
    return io, reader


def tiled_tiff(path, image, tile=64):
    tifffile = require_module("tifffile", "tifffile writes the tiled test TIFF")
    tifffile.imwrite(
        path, image, tile=(tile, tile), photometric="rgb" if image.ndim == 3 else None
    )
    return path


def test_gaussian_store_is_read_by_ome_zarr_and_matches_in_memory(tmp_path):
    big_modules()
    io, reader = ome_reader()
    x = (np.random.default_rng(0).random((201, 150)) * 65535).astype(np.uint16)
    source = tiled_tiff(tmp_path / "big.tif", x)
    out = tmp_path / "out.zarr"
    assert (
        main(
            [
                "decompose",
                str(source),
                "--kind",
                "gaussian",
                "--zarr",
                str(out),
                "--chunks",
                "48",
                "--levels",
                "4",
            ]
        )
        == 0
    )
    (node,) = list(reader.Reader(io.parse_url(str(out)))())
    levels = [np.asarray(d) for d in node.data]
    assert [g.shape for g in levels] == [(201, 150), (101, 75), (51, 38), (26, 19), (13, 10)]
    assert all(g.dtype == np.uint16 for g in levels)
    assert [t[0]["scale"] for t in node.metadata["coordinateTransformations"]] == [
        [2.0**k] * 2 for k in range(5)
    ]
    assert [a["name"] for a in node.metadata["axes"]] == ["y", "x"]
    assert np.array_equal(levels[0], x)
    # each stored level is the in-memory level rounded to uint16 (ngff's docstring)
    expected = pyramids.gaussian_pyramid(x, 4)
    for g, e in zip(levels, expected):
        rounded = np.rint(np.clip(e, 0.0, 1.0) * 65535).astype(np.uint16)
        if exact_engine():
            assert np.array_equal(g, rounded)
        else:
            assert np.abs(g.astype(int) - rounded.astype(int)).max() <= 1
    attrs = json.loads((out / "zarr.json").read_text())["attributes"]["ome"]
    assert attrs["version"] == "0.5"
    assert attrs["multiscales"][0]["type"] == "gaussian"
    assert attrs["multiscales"][0]["metadata"]["generator"] == "pyramids"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no stage left


def test_laplacian_colour_store_is_float32_channels_first_and_collapses_back(tmp_path):
    ngff, chunked = big_modules()
    zarr = require_module("zarr", "zarr reads the store on its own")
    x = np.random.default_rng(1).random((90, 71, 3)).astype(np.float32)
    source = tiled_tiff(tmp_path / "colour.tif", x, tile=32)
    out = tmp_path / "lap.zarr"
    assert (
        main(
            [
                "decompose",
                str(source),
                "--kind",
                "laplacian",
                "--zarr",
                str(out),
                "--chunks",
                "5",
                "--levels",
                "3",
                "--boundary",
                "symmetric",
            ]
        )
        == 0
    )
    group = zarr.open_group(str(out), mode="r")
    stored = [np.asarray(group[str(k)]).transpose(1, 2, 0) for k in range(4)]
    assert all(s.dtype == np.float32 for s in stored)
    assert group["0"].chunks == (1, 5, 5)
    memory = pyramids.laplacian_pyramid(x, 3, boundary="symmetric")
    gauss, bands = chunked.chunking_error_bound(x.shape, 3, boundary="symmetric", dtype=np.float32)
    for k, band in enumerate([*memory.bands, memory.residual]):
        if exact_engine():  # float32 levels of a float32 image are stored as they are
            assert np.array_equal(stored[k], band)
        else:
            assert np.abs(stored[k] - band).max() <= (bands[k] if k < 3 else gauss[3])
    out_image = pyramids.reconstruct_laplacian(stored[:3], stored[3], boundary="symmetric")
    bound = pyramids.reconstruction_error_bound(x.shape, 3, "binomial", "symmetric", np.float32)
    assert np.abs(out_image - x).max() <= bound
    # not an input: its level 0 is the finest band, not the image (it was read as one)
    with pytest.raises(ValueError, match="Laplacian pyramid's bands, not an image"):
        ngff.read_lazy(out)


def test_existing_paths_are_refused_and_only_our_stores_replaced(tmp_path, capsys):
    big_modules()
    x = (np.random.default_rng(2).random((40, 30)) * 255).astype(np.uint8)
    source = tiled_tiff(tmp_path / "small.tif", x, tile=16)
    out = tmp_path / "out.zarr"
    command = ["decompose", str(source), "--kind", "gaussian", "--zarr", str(out), "--levels", "2"]
    assert main(command) == 0
    before = sorted(p.name for p in out.rglob("*"))
    capsys.readouterr()
    assert main(command) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main([*command, "--force", "--levels", "1"]) == 0  # ours: replaced
    assert sorted(p.name for p in out.rglob("*")) != before
    theirs = tmp_path / "theirs.zarr"
    theirs.mkdir()
    (theirs / "precious.txt").write_text("data")
    capsys.readouterr()
    assert main([*command[:5], str(theirs), "--force"]) == 2
    err = capsys.readouterr().err
    assert "not an OME-Zarr store written by pyramids" in err and err.count("\n") == 1
    assert (theirs / "precious.txt").read_text() == "data"


def test_input_that_is_not_ome_zarr_is_a_clear_error(tmp_path, capsys):
    big_modules()
    zarr = require_module("zarr", "zarr writes a plain store")
    plain = tmp_path / "plain.zarr"
    zarr.open_group(str(plain), mode="w").create_array("0", shape=(4, 4), dtype="f4")
    assert (
        main(["decompose", str(plain), "--kind", "gaussian", "--zarr", str(tmp_path / "o")]) == 2
    )
    err = capsys.readouterr().err
    assert "without OME-Zarr multiscales" in err and err.count("\n") == 1


def test_a_failure_while_writing_leaves_no_store(tmp_path, capsys):
    big_modules()
    x = np.ones((64, 64), np.float32)
    x[50, 60] = np.nan  # found only when that block is computed, after other blocks are written
    source = tiled_tiff(tmp_path / "nan.tif", x, tile=16)
    out = tmp_path / "out.zarr"
    assert (
        main(
            [
                "decompose",
                str(source),
                "--kind",
                "laplacian",
                "--zarr",
                str(out),
                "--chunks",
                "16",
                "--levels",
                "2",
            ]
        )
        == 2
    )
    assert "NaN" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.tif"]


def test_zarr_option_errors(tmp_path, capsys):
    big_modules()
    source = tiled_tiff(tmp_path / "s.tif", np.zeros((16, 16), np.uint8), tile=16)
    out = str(tmp_path / "o.zarr")
    for extra, message in [
        (["--kind", "steerable"], "--kind gaussian or laplacian"),
        (["--output", str(tmp_path / "d")], "not both"),
    ]:
        assert main(["decompose", str(source), "--zarr", out, *extra]) == 2
        assert message in capsys.readouterr().err
    for extra, message in [([str(source)], "one image")]:
        assert main(["decompose", str(source), *extra, "--zarr", out]) == 2
        assert message in capsys.readouterr().err


def test_an_ngff_0_4_store_written_by_ome_zarr_is_read_as_input(tmp_path):
    big_modules()
    zarr = require_module("zarr", "zarr holds the store")
    with warnings.catch_warnings():  # ome_zarr.writer builds a deprecated Scaler on import
        warnings.simplefilter("ignore", DeprecationWarning)
        writer = require_module("ome_zarr.writer", "ome-zarr's writer makes the NGFF 0.4 input")
    formats = require_module("ome_zarr.format", "ome-zarr's writer makes the NGFF 0.4 input")
    x = np.random.default_rng(3).random((3, 50, 40)).astype(np.float32)  # (c, y, x)
    group = zarr.open_group(str(tmp_path / "in.zarr"), mode="w", zarr_format=2)
    writer.write_image(x, group, axes="cyx", fmt=formats.FormatV04(), scale_factors=[])
    out = tmp_path / "out.zarr"
    assert (
        main(
            [
                "decompose",
                str(tmp_path / "in.zarr"),
                "--kind",
                "gaussian",
                "--zarr",
                str(out),
                "--levels",
                "2",
            ]
        )
        == 0
    )
    stored = zarr.open_group(str(out), mode="r")
    assert np.array_equal(stored["0"][:], x)
    expected = pyramids.gaussian_pyramid(x.transpose(1, 2, 0), 2)
    gauss, _ = require_module("pyramids.chunked", "dask").chunking_error_bound(
        (50, 40, 3), 2, dtype=np.float32
    )
    for k in (1, 2):
        level = stored[str(k)][:].transpose(1, 2, 0)
        if exact_engine():
            assert np.array_equal(level, expected[k])
        else:
            assert np.abs(level - expected[k]).max() <= gauss[k]


def test_a_full_disk_fails_with_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    ngff, _ = big_modules()
    source = tiled_tiff(tmp_path / "s.tif", np.zeros((32, 32), np.uint8), tile=16)

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ngff.da, "store", no_space)
    out = tmp_path / "out.zarr"
    assert main(["decompose", str(source), "--kind", "gaussian", "--zarr", str(out)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif"]


def test_bad_tiffs_are_one_line_input_errors(tmp_path, capsys):
    """A TIFF cut short (its tile is found corrupt only when read, on a worker), bytes that
    are no TIFF, and a 5-D stack: each one line, exit 2, nothing written. Before, the first
    error did not name the file and the second was an IndexError's traceback."""
    big_modules()
    tifffile = require_module("tifffile", "tifffile writes the test TIFFs")
    good = tiled_tiff(tmp_path / "good.tif", np.zeros((64, 64), np.uint16), tile=32)
    (tmp_path / "short.tif").write_bytes(good.read_bytes()[:500])
    (tmp_path / "noise.tif").write_bytes(b"II*\x00" + b"garbage" * 10)
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((2, 2, 2, 16, 16), np.uint8), imagej=True)
    before = sorted(p.name for p in tmp_path.iterdir())
    for name, message in [
        ("short.tif", "short.tif: corrupt TIFF"),
        ("noise.tif", "noise.tif: not a TIFF image tifffile can read"),
        ("stack.tif", "only YX and YXS"),
    ]:
        out = str(tmp_path / "out.zarr")
        assert main(["decompose", str(tmp_path / name), "--zarr", out, "--kind", "gaussian"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_chunks_larger_than_any_block_dask_can_size_are_the_whole_image(tmp_path):
    """--chunks 10**20 was a TypeError's traceback from dask (a block side past int64)."""
    big_modules()
    zarr = require_module("zarr", "zarr reads the store")
    x = (np.random.default_rng(4).random((20, 30)) * 255).astype(np.uint8)
    source = tiled_tiff(tmp_path / "s.tif", x, tile=16)
    out = tmp_path / "o.zarr"
    command = ["decompose", str(source), "--kind", "gaussian", "--zarr", str(out), "--levels", "1"]
    assert main([*command, "--chunks", str(10**20)]) == 0
    group = zarr.open_group(str(out), mode="r")
    assert group["0"].chunks == (20, 30)
    assert np.array_equal(group["0"][:], x)


def test_stores_validate_as_ngff_0_5_images(tmp_path):
    """Both kinds, grey and colour, pass the NGFF 0.5 image model of ome-zarr-models (an
    implementation of the specification independent of ours and of ome-zarr's reader) and
    ome-zarr's own checks of the transforms and axes."""
    big_modules()
    zarr = require_module("zarr", "zarr opens the store")
    models = require_module("ome_zarr_models.v05.image", "ome-zarr-models validates NGFF 0.5")
    formats = require_module("ome_zarr.format", "ome-zarr checks the transforms")
    axes_module = require_module("ome_zarr.axes", "ome-zarr checks the axes")
    rng = np.random.default_rng(5)
    for kind, shape in [("gaussian", (37, 29)), ("laplacian", (37, 29, 3))]:
        source = tiled_tiff(tmp_path / f"{kind}.tif", (rng.random(shape) * 255).astype(np.uint8))
        out = tmp_path / f"{kind}.zarr"
        command = ["decompose", str(source), "--kind", kind, "--zarr", str(out), "--levels", "2"]
        assert main([*command, "--chunks", "16"]) == 0
        group = zarr.open_group(str(out), mode="r")
        image = models.Image.from_zarr(group)  # raises on any departure from the models
        (multiscale,) = image.ome_attributes.multiscales
        assert [a.name for a in multiscale.axes] == ["c", "y", "x"][3 - len(shape) :]
        assert [d.path for d in multiscale.datasets] == ["0", "1", "2"]
        described = group.attrs["ome"]["multiscales"][0]
        transforms = [d["coordinateTransformations"] for d in described["datasets"]]
        formats.FormatV05().validate_coordinate_transformations(len(shape), 3, transforms)
        axes_module.Axes(described["axes"], fmt=formats.FormatV05()).validate()


def test_force_keeps_what_was_added_to_our_store_and_stays_out_of_the_input(tmp_path, capsys):
    """--force replaced a store of ours together with a labels group added to it since (the
    NGFF place for segmentations), and wrote the output inside the input store."""
    big_modules()
    x = (np.random.default_rng(6).random((24, 20)) * 255).astype(np.uint8)
    source = tiled_tiff(tmp_path / "s.tif", x, tile=16)
    out = tmp_path / "out.zarr"
    command = ["decompose", str(source), "--kind", "gaussian", "--zarr", str(out), "--levels", "1"]
    assert main(command) == 0
    (out / "labels").mkdir()
    (out / "labels" / "cells.txt").write_text("someone's work")
    capsys.readouterr()
    assert main([*command, "--force"]) == 2
    err = capsys.readouterr().err
    assert "holds labels, which pyramids did not write" in err and err.count("\n") == 1
    assert (out / "labels" / "cells.txt").read_text() == "someone's work"
    inside = out / "inner.zarr"
    assert main(["decompose", str(out), "--kind", "gaussian", "--zarr", str(inside)]) == 2
    assert "one inside the other" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["0", "1", "labels", "zarr.json"]


def test_a_stage_a_late_worker_brings_back_is_removed(tmp_path, capsys, monkeypatch):
    """A block a worker is still writing when write_multiscale removes its stage (after
    Ctrl-C or another task's failure) recreates the stage's folders: decompose removes them
    again once the workers are gone. Here a write that fails after leaving such a folder."""
    ngff, _ = big_modules()
    source = tiled_tiff(tmp_path / "s.tif", np.zeros((32, 32), np.uint8), tile=16)
    out = tmp_path / "out.zarr"

    def late_block(path, *args, **kwargs):
        (tmp_path / ".out.zarr.partial-late" / "0" / "c").mkdir(parents=True)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ngff, "write_multiscale", late_block)
    assert main(["decompose", str(source), "--kind", "gaussian", "--zarr", str(out)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif"]


def test_a_signed_image_keeps_its_negative_values(tmp_path):
    """int16 levels were clipped at 0: as_float_image maps signed types to [-1, 1]."""
    big_modules()
    zarr = require_module("zarr", "zarr reads the store")
    x = (np.random.default_rng(7).random((40, 36)) * 60000 - 30000).astype(np.int16)
    source = tiled_tiff(tmp_path / "signed.tif", x, tile=16)
    out = tmp_path / "o.zarr"
    command = ["decompose", str(source), "--kind", "gaussian", "--zarr", str(out), "--levels", "2"]
    assert main([*command, "--chunks", "16"]) == 0
    group = zarr.open_group(str(out), mode="r")
    assert np.array_equal(group["0"][:], x)
    expected = pyramids.gaussian_pyramid(x, 2)
    for k in (1, 2):
        rounded = np.rint(np.clip(expected[k], -32768 / 32767, 1.0) * 32767)
        stored = group[str(k)][:]
        assert stored.dtype == np.int16 and stored.min() < 0
        if exact_engine():
            assert np.array_equal(stored, rounded.astype(np.int16))
        else:
            assert np.abs(stored - rounded).max() <= 1

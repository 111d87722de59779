"""One protocol for every pyramid, and one file format (issue 9, item 5).

Every kind round-trips through ``save`` / ``load_pyramid`` bit for bit; loading dispatches
on the file's ``kind``; unknown kinds and versions are clear errors; files of format
version 0 (the layouts before the protocol) still open; the Gaussian pyramid behaves as
the list it used to be; the protocol's properties agree with what each pyramid holds.
"""

import json
from collections.abc import Sequence

import numpy as np
import pytest
from pyramid_files import version0_arrays

import pyramids.pyramid as protocol
from pyramids.cli import main
from pyramids.io import OutputFileError, read_image, write_image
from pyramids.laplacian import (
    GaussianPyramid,
    LaplacianPyramid,
    gaussian_pyramid,
    laplacian_pyramid,
)
from pyramids.pyramid import (
    FORMAT_VERSION,
    Pyramid,
    PyramidFileError,
    load_pyramid,
    pyramid_kinds,
    read_pyramid_file,
)
from pyramids.steerable import SteerablePyramid, steerable_pyramid

KINDS = ("gaussian", "laplacian", "steerable")


def build(kind: str, shape=(37, 42), dtype=np.float64, boundary="reflect", seed=0) -> Pyramid:
    x = np.random.default_rng(seed).random(shape).astype(dtype)
    if kind == "gaussian":
        return gaussian_pyramid(x, 3, "binomial3", boundary)
    if kind == "laplacian":
        return laplacian_pyramid(x, 3, 0.4, boundary)
    return steerable_pyramid(x, levels=1, orientations=2, boundary=boundary)


def assert_same_arrays(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("shape", "dtype", "boundary"),
    [
        ((37, 42), np.float64, "reflect"),
        ((33, 30, 3), np.float32, "periodic"),
        ((32, 35), np.float32, "zero"),
    ],
)
def test_every_kind_round_trips_bit_exactly(tmp_path, kind, shape, dtype, boundary):
    pyramid = build(kind, shape, dtype, boundary)
    path = pyramid.save(tmp_path / "p.npz")
    loaded = load_pyramid(path)
    assert type(loaded) is type(pyramid)
    assert loaded == pyramid
    assert_same_arrays(loaded.to_arrays(), pyramid.to_arrays())
    assert json.loads(str(loaded.to_arrays()["meta"])) == json.loads(
        str(pyramid.to_arrays()["meta"])
    )
    np.testing.assert_array_equal(loaded.reconstruct(), pyramid.reconstruct())
    assert (loaded.levels, loaded.shape, loaded.dtype) == (
        pyramid.levels,
        pyramid.shape,
        pyramid.dtype,
    )


def test_the_file_holds_the_documented_entries(tmp_path):
    pyramid = build("laplacian")
    with np.load(pyramid.save(tmp_path / "p.npz", attrs={"bit_depth": 16})) as npz:
        arrays = dict(npz)
    assert sorted(arrays) == sorted(
        ["format", "version", "kind", "meta", "attrs", "band0", "band1", "band2", "residual"]
    )
    assert (str(arrays["format"]), int(arrays["version"]), str(arrays["kind"])) == (
        "pyramids",
        1,
        "laplacian",
    )
    meta = json.loads(str(arrays["meta"]))
    assert meta == {
        "levels": 3,
        "shape": [37, 42],
        "dtype": "float64",
        "kernel": pyramid.kernel.tolist(),
        "boundary": "reflect",
    }
    assert json.loads(str(arrays["attrs"])) == {"bit_depth": 16}


def test_steerable_settings_survive_the_file(tmp_path):
    x = np.random.default_rng(1).random((34, 38))
    pyramid = steerable_pyramid(x, levels=1, filters="sp5", engine="matrix", rank_tol=1e-6)
    loaded = load_pyramid(pyramid.save(tmp_path / "s.npz"))
    assert (loaded.filters.name, loaded.engine, loaded.rank_tol) == ("sp5", "matrix", 1e-6)
    for method in ("mirror", "adjoint"):
        np.testing.assert_array_equal(loaded.reconstruct(method), pyramid.reconstruct(method))


def test_attrs_come_back_and_must_be_json(tmp_path):
    pyramid = build("gaussian")
    saved = read_pyramid_file(pyramid.save(tmp_path / "g.npz", attrs={"bit_depth": 8, "a": [1]}))
    assert saved.attrs == {"bit_depth": 8, "a": [1]} and saved.version == FORMAT_VERSION
    assert read_pyramid_file(pyramid.save(tmp_path / "g.npz")).attrs == {}
    with pytest.raises(TypeError, match="attrs must hold JSON values"):
        pyramid.save(tmp_path / "g.npz", attrs={"a": {1, 2}})
    with pytest.raises(TypeError, match="attrs must be a mapping"):
        pyramid.save(tmp_path / "g.npz", attrs=[("a", 1)])


def test_save_is_atomic_and_writes_the_name_given(tmp_path):
    pyramid = build("laplacian")
    plain = pyramid.save(tmp_path / "no_suffix")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no_suffix"]
    assert load_pyramid(plain) == pyramid
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    with pytest.raises(OutputFileError, match="cannot write"):
        pyramid.save(blocker / "p.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "no_suffix"]


# --------------------------------------------------------------------------- dispatch


@pytest.mark.parametrize("kind", KINDS)
def test_load_dispatches_on_the_kind(kind):
    pyramid = build(kind)
    assert type(Pyramid.from_arrays(pyramid.to_arrays())) is type(pyramid)
    assert pyramid_kinds()[kind] is type(pyramid) and pyramid.kind == kind
    for other in {GaussianPyramid, LaplacianPyramid, SteerablePyramid} - {type(pyramid)}:
        with pytest.raises(PyramidFileError, match=f"hold a '{kind}' pyramid, not '{other.kind}'"):
            other.from_arrays(pyramid.to_arrays())


def test_unknown_kind_version_or_format_is_a_clear_error(tmp_path):
    arrays = build("laplacian").to_arrays()
    cases = {
        "kind": (np.array("fourier"), r"unknown pyramid kind 'fourier'; known: .*laplacian"),
        "version": (np.array(2), r"format version 2 \(written by a later version of pyramids\)"),
        "format": (np.array("other"), r"format must be 'pyramids', got 'other'"),
        "meta": (np.array("[1, 2]"), "meta must be a JSON object, got list"),
    }
    for key, (value, message) in cases.items():
        path = tmp_path / f"{key}.npz"
        np.savez(path, **{**arrays, key: value})
        with pytest.raises(PyramidFileError, match=message) as error:
            load_pyramid(path)
        assert str(error.value).startswith(str(path))
    np.savez(tmp_path / "none.npz", x=np.zeros((2, 2)))
    with pytest.raises(PyramidFileError, match="no 'kind' entry"):
        load_pyramid(tmp_path / "none.npz")


def test_meta_must_agree_with_the_arrays():
    arrays = build("steerable").to_arrays()
    meta = json.loads(str(arrays["meta"]))
    for key, value, message in [
        ("shape", [37, 41], r"meta says shape \[37, 41\], the arrays hold \[37, 42\]"),
        ("dtype", "float32", "meta says dtype 'float32', the arrays hold 'float64'"),
        ("shape", [37, 0], "meta's 'shape' must be"),
        ("levels", True, "meta's 'levels' must be int"),
        ("boundary", "mirror", "boundary"),
        ("filters", "sp9", "filters must be one of"),
    ]:
        bad = {**arrays, "meta": np.array(json.dumps({**meta, key: value}))}
        with pytest.raises(PyramidFileError, match=message):
            Pyramid.from_arrays(bad)


def test_a_new_kind_plugs_in_by_subclassing(tmp_path, monkeypatch):
    monkeypatch.setattr(protocol, "_KINDS", dict(protocol._KINDS))

    class Identity(Pyramid):
        """The trivial pyramid: the image itself, no levels."""

        kind = "identity"

        def __init__(self, image):
            self.image = np.asarray(image)

        levels = property(lambda self: 0)
        shape = property(lambda self: self.image.shape)
        dtype = property(lambda self: self.image.dtype)

        def reconstruct(self):
            return self.image.copy()

        def pictures(self):
            return {"image": self.image}

        def _arrays(self):
            return {"image": self.image}

        def _settings(self):
            return {}

        @classmethod
        def _array_names(cls, meta):
            return ["image"]

        @classmethod
        def _from_parts(cls, arrays, meta):
            return cls(arrays["image"])

    x = np.random.default_rng(2).random((5, 6)).astype(np.float32)
    loaded = load_pyramid(Identity(x).save(tmp_path / "i.npz"))
    assert type(loaded) is Identity and loaded == Identity(x)
    np.testing.assert_array_equal(loaded.reconstruct(), x)
    assert repr(loaded) == "Identity(levels=0, shape=(5, 6), dtype=float32)"
    with pytest.raises(TypeError, match="already"):
        type("Other", (Identity,), {"kind": "laplacian"})


# --------------------------------------------------------------------------- version 0


@pytest.mark.parametrize("kind", KINDS)
def test_version0_files_still_open(tmp_path, kind):
    pyramid = build(kind, (30, 33, 3), np.float32, "symmetric")
    path = tmp_path / "old.npz"
    np.savez_compressed(path, **version0_arrays(pyramid, bit_depth=16))
    saved = read_pyramid_file(path)
    assert saved.version == 0 and saved.attrs == {"bit_depth": 16}
    assert type(saved.pyramid) is type(pyramid)
    assert_same_arrays(saved.pyramid._arrays(), pyramid._arrays())
    np.testing.assert_array_equal(saved.pyramid.reconstruct(), pyramid.reconstruct())
    if kind == "gaussian":  # the old layout did not record the kernel
        assert saved.pyramid.kernel is None and saved.pyramid.boundary == "symmetric"
    else:
        assert saved.pyramid == pyramid
    # saved again, it is a version-1 file of the same pyramid
    again = read_pyramid_file(saved.pyramid.save(tmp_path / "new.npz"))
    assert again.version == FORMAT_VERSION and again.pyramid == saved.pyramid


def test_cli_reconstructs_a_version0_directory(tmp_path):
    x = np.random.default_rng(3).integers(0, 65536, (24, 30)).astype(np.uint16)
    pyramid = laplacian_pyramid(x, 2)
    (tmp_path / "old").mkdir()
    np.savez_compressed(tmp_path / "old" / "pyramid.npz", **version0_arrays(pyramid, 16))
    assert main(["reconstruct", str(tmp_path / "old"), "-o", str(tmp_path / "x.png")]) == 0
    np.testing.assert_array_equal(read_image(tmp_path / "x.png"), x)


def test_version0_checks_are_kept():
    arrays = version0_arrays(build("steerable"))
    with pytest.raises(PyramidFileError, match=r"sp1 filters have 2 orientations.*says 4"):
        Pyramid.from_arrays({**arrays, "filters": np.array("sp1"), "orientations": np.array(4)})
    with pytest.raises(PyramidFileError, match="unexpected entry 'x' in a steerable pyramid"):
        Pyramid.from_arrays({**arrays, "x": np.array(1)})
    without = {k: v for k, v in arrays.items() if k != "filters"}
    with pytest.raises(PyramidFileError, match="a steerable pyramid needs filters"):
        Pyramid.from_arrays(without)


# --------------------------------------------------------------------------- the Gaussian list


def test_gaussian_pyramid_behaves_as_the_list_did():
    x = np.random.default_rng(4).random((17, 9, 3))
    pyramid = gaussian_pyramid(x, levels=3)
    assert isinstance(pyramid, Sequence) and isinstance(pyramid, Pyramid)
    assert len(pyramid) == 4 and pyramid.levels == 3
    images = list(pyramid)
    assert [g.shape[:2] for g in images] == [(17, 9), (9, 5), (5, 3), (3, 2)]
    assert pyramid[0] is images[0] and pyramid[-1] is images[-1]
    assert isinstance(pyramid[1:], list) and pyramid[1:][0] is images[1]
    assert [g is h for g, h in zip(reversed(pyramid), images[::-1])] == [True] * 4
    assert [k for k, _ in enumerate(pyramid)] == [0, 1, 2, 3]
    np.testing.assert_array_equal(pyramid[0], x)
    assert pyramid[0] is not x
    g0, g1, g2, g3 = pyramid  # unpacking, as a list
    assert (g0, g1, g2, g3)[3] is images[3]
    with pytest.raises(IndexError):
        pyramid[4]


def test_gaussian_reconstruct_is_level_zero():
    x = np.random.default_rng(5).random((12, 10)).astype(np.float32)
    pyramid = gaussian_pyramid(x, 2)
    image = pyramid.reconstruct()
    np.testing.assert_array_equal(image, x)
    image[0, 0] = 7  # a copy: the pyramid is unchanged
    assert pyramid[0][0, 0] == x[0, 0]


# --------------------------------------------------------------------------- one contract


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_protocol_properties_agree(kind, dtype):
    pyramid = build(kind, (29, 40, 3), dtype)
    image = pyramid.reconstruct()
    assert image.shape == pyramid.shape == (29, 40, 3)
    assert image.dtype == pyramid.dtype == dtype
    assert all(array.dtype == dtype for array in pyramid._arrays().values())
    assert pyramid.levels == (3 if kind != "steerable" else 1)
    meta = json.loads(str(pyramid.to_arrays()["meta"]))
    assert (meta["levels"], meta["shape"], meta["dtype"]) == (
        pyramid.levels,
        list(pyramid.shape),
        np.dtype(dtype).name,
    )
    pictures = pyramid.pictures()
    assert all(p.min() >= 0 and p.max() <= 1 for p in pictures.values())
    montage = pyramid.montage(pictures)
    assert montage.ndim == 3 and montage.min() >= 0 and montage.max() <= 1
    text = repr(pyramid)
    assert text.startswith(f"{type(pyramid).__name__}(levels={pyramid.levels}, ")
    assert f"shape={pyramid.shape}, dtype={pyramid.dtype}" in text


@pytest.mark.parametrize("kind", KINDS)
def test_decompose_writes_the_protocols_pictures(tmp_path, kind):
    x = np.random.default_rng(6).random((40, 44))
    src = write_image(tmp_path / "x.png", x)
    assert main(["decompose", str(src), "--kind", kind, "-o", str(tmp_path / "out")]) == 0
    pyramid = load_pyramid(tmp_path / "out" / "pyramid.npz")
    expected = {f"{name}.png" for name in pyramid.pictures()} | {"montage.png", "pyramid.npz"}
    assert {p.name for p in (tmp_path / "out").iterdir()} == expected


def test_construction_checks_are_alike():
    x = np.random.default_rng(7).random((20, 22))
    lap, gauss = laplacian_pyramid(x, 2), gaussian_pyramid(x, 2)
    steer = steerable_pyramid(x, levels=1)
    nan = np.full_like(x, np.nan)
    with pytest.raises(ValueError, match=r"bands\[0\] contains NaN"):
        LaplacianPyramid([nan, *lap.bands[1:]], lap.residual)
    with pytest.raises(ValueError, match=r"images\[0\] contains NaN"):
        GaussianPyramid([nan, *gauss[1:]])
    with pytest.raises(ValueError, match=r"bands\[0\]\[0\] contains NaN"):
        SteerablePyramid(steer.highpass, [[nan, *steer.bands[0][1:]]], steer.residual)
    with pytest.raises(ValueError, match="residual has shape"):
        LaplacianPyramid(lap.bands, lap.bands[-1])
    with pytest.raises(ValueError, match=r"images\[2\] has shape"):
        GaussianPyramid([gauss[0], gauss[1], gauss[1]])
    with pytest.raises(ValueError, match="boundary"):
        LaplacianPyramid(lap.bands, lap.residual, boundary="mirror")
    with pytest.raises(ValueError, match="kernel"):
        GaussianPyramid(list(gauss), kernel=[0.5, 0.5])
    # one dtype throughout
    mixed = LaplacianPyramid([b.astype(np.float32) for b in lap.bands], lap.residual)
    assert {a.dtype for a in mixed._arrays().values()} == {np.dtype(np.float64)}


def test_pyramids_compare_by_value():
    x = np.random.default_rng(8).random((24, 26))
    for kind in KINDS:
        pyramid = build(kind)
        copy = Pyramid.from_arrays({k: v.copy() for k, v in pyramid.to_arrays().items()})
        assert copy == pyramid and copy is not pyramid
        first = next(iter(copy._arrays().values()))
        first[0, 0] += 1e-12
        assert copy != pyramid
    assert laplacian_pyramid(x, 2) != laplacian_pyramid(x, 2, boundary="zero")
    assert laplacian_pyramid(x, 2) != gaussian_pyramid(x, 2)
    with pytest.raises(TypeError, match="unhashable"):
        hash(laplacian_pyramid(x, 2))

"""pyramids.io.read_npz, the one reader of .npz archives (pyramid files, checkpoints, states)."""

import io
import warnings
import zipfile

import numpy as np
import pytest

from pyramids.io import NpzFileError, read_npz


def _member(shape, data: bytes, descr: str = "<f8") -> bytes:
    """The bytes of an .npy whose header says ``shape`` and ``descr``, followed by ``data``."""
    out = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue() + data


def _archive(path, members: list[tuple[str, bytes]]):
    with warnings.catch_warnings():  # zipfile warns about a repeated name
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members:
                archive.writestr(name, data)
    return path


def test_read_npz_returns_what_numpy_saved_as_writeable_arrays(tmp_path):
    saved = {
        "a": np.asfortranarray(np.arange(6, dtype=">f4").reshape(2, 3)),
        "meta": np.array('{"x": 1}'),
        "empty": np.zeros((0, 4)),
    }
    np.savez_compressed(tmp_path / "x.npz", **saved)
    arrays = read_npz(tmp_path / "x.npz")
    assert list(arrays) == list(saved)
    for name, value in saved.items():
        assert arrays[name].dtype == value.dtype and np.array_equal(arrays[name], value)
        assert arrays[name].flags.writeable
    assert str(arrays["meta"]) == '{"x": 1}'


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ([("a.npy", _member((10**12,), bytes(8)))], "declares shape"),
        ([("a.npy", _member((2,), bytes(8)))], "declares shape"),
        ([("a.npy", _member((1,), bytes(8), "|O"))], "Python objects"),
        ([("a.npy", _member((1,), bytes(8))), ("a.npy", _member((1,), bytes(8)))], "twice"),
        ([("a.txt", b"hello")], "unexpected member"),
        ([("a.npy", b"\x93NUMPY\x09\x00")], "a:"),
    ],
    ids=["claims-more", "claims-less", "objects", "twice", "not-npy", "bad-header"],
)
def test_damaged_or_unsafe_archives_are_one_error(tmp_path, members, match):
    with pytest.raises(NpzFileError, match=match) as info:
        read_npz(_archive(tmp_path / "x.npz", members))
    assert info.value.archive and not info.value.single_npy


def test_a_single_npy_or_another_file_is_not_an_archive(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(3))
    with pytest.raises(NpzFileError, match=r"a single \.npy array") as info:
        read_npz(tmp_path / "x.npy")
    assert info.value.single_npy and not info.value.archive
    (tmp_path / "y.npz").write_bytes(b"")
    with pytest.raises(NpzFileError, match=r"not an \.npz archive") as info:
        read_npz(tmp_path / "y.npz")
    assert not info.value.archive and not info.value.single_npy


def test_select_sees_each_header_first_and_skips_or_refuses(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros((2, 3), np.float32), b=np.ones(4))
    seen = []

    def keep_a(name, shape, dtype):
        seen.append((name, shape, dtype))
        return name == "a"

    assert list(read_npz(tmp_path / "x.npz", select=keep_a)) == ["a"]
    assert seen == [("a", (2, 3), np.dtype(np.float32)), ("b", (4,), np.dtype(np.float64))]

    class Refused(Exception):
        pass

    def refuse(name, shape, dtype):
        raise Refused(name)

    with pytest.raises(Refused, match="a"):
        read_npz(tmp_path / "x.npz", select=refuse)

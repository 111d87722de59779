"""Fuzz of the pyramid file reader that ``pyramids reconstruct`` uses (issues 13 and 9).

Valid pyramid files of every kind, in format versions 1 and 0, are damaged at random: bytes
flipped or cut off (in compressed and in stored archives, so that flips reach the ``.npy``
headers and the data too), entries removed or renamed, values replaced by other dtypes,
shapes, NaN or infinities, the JSON ``meta`` broken or given wrong values. Every case must
either load as a pyramid that reconstructs to a finite image of its shape and dtype, or
raise :class:`pyramids.pyramid.PyramidFileError` (a ``ValueError``): never any other
exception. The cases are drawn from a fixed seed (tests/conftest.py derandomizes
hypothesis) and bounded in number.
"""

import io
import json
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyramid_files import version0_arrays

import pyramids
from pyramids.pyramid import Pyramid, PyramidFileError, read_pyramid_file

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _pyramids() -> dict[str, object]:
    rng = np.random.default_rng(0)
    grey = rng.random((12, 14))
    colour = rng.random((11, 9, 3)).astype(np.float32)
    return {
        "gaussian": pyramids.gaussian_pyramid(grey, 2),
        "laplacian": pyramids.laplacian_pyramid(colour, 2, "binomial3"),
        "steerable": pyramids.steerable_pyramid(rng.random((20, 22)), levels=1),
    }


PYRAMIDS = _pyramids()


def _arrays(kind: str, version: int = 1) -> dict[str, np.ndarray]:
    pyramid = PYRAMIDS[kind]
    if version == 0:
        return version0_arrays(pyramid)
    return {**pyramid.to_arrays(), "attrs": np.array(json.dumps({"bit_depth": 8}))}


def _npz(arrays: dict[str, np.ndarray], compressed: bool) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def _check(content: bytes) -> None:
    """Load ``content`` as a pyramid file: a valid pyramid or a PyramidFileError, nothing else."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pyramid.npz"
        path.write_bytes(content)
        try:
            loaded = read_pyramid_file(path)
        except PyramidFileError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc)
            return
    assert isinstance(loaded.pyramid, Pyramid) and isinstance(loaded.attrs, dict)
    image = loaded.pyramid.reconstruct()
    assert image.shape == loaded.pyramid.shape and image.dtype == loaded.pyramid.dtype
    assert np.isfinite(image).all()


KINDS = st.sampled_from(sorted(PYRAMIDS))
VERSIONS = st.sampled_from([1, 0])


@FUZZ
@given(
    kind=KINDS,
    version=VERSIONS,
    compressed=st.booleans(),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), max_size=4),
    keep=st.one_of(st.none(), st.floats(0, 1)),
)
def test_damaged_bytes(kind, version, compressed, flips, keep):
    content = bytearray(_npz(_arrays(kind, version), compressed))
    for where, xor in flips:
        content[int(where * len(content))] ^= xor
    if keep is not None:
        content = content[: int(keep * len(content))]
    _check(bytes(content))


def _replacement(value: np.ndarray, choice: int, fill: float) -> np.ndarray:
    """One of several wrong (or merely unusual) values in place of ``value``."""
    shaped = np.asarray(value)
    options = [
        lambda: np.array("text"),
        lambda: np.array(3),
        lambda: np.array(fill),
        lambda: np.zeros((0, 3)),
        lambda: shaped.astype(np.complex128),
        lambda: shaped.astype(np.int16),
        lambda: shaped.astype(np.float16),
        lambda: shaped.astype(shaped.dtype.newbyteorder(">")),
        lambda: np.where(np.ones(shaped.shape, bool), fill, shaped) if shaped.size else shaped,
        lambda: shaped[..., :1] if shaped.ndim else shaped,
        lambda: shaped.T if shaped.ndim >= 2 else shaped,
        lambda: np.broadcast_to(shaped, (2, *shaped.shape)).copy(),
        lambda: np.array([fill, fill]),
        lambda: shaped.astype(bool),
        lambda: np.array(["a", "b"]),
        lambda: np.array("{}"),
        lambda: np.array('{"levels": 1e999, "shape": [1, -2], "dtype": "float16"}'),
        lambda: np.array("[" * 10000),
    ]
    try:
        with np.errstate(invalid="ignore", over="ignore"):  # NaN or 1e308 cast to int16
            return options[choice % len(options)]()
    except (TypeError, ValueError):  # e.g. a text entry has no complex or integer form
        return np.array(fill)


EDITS = st.lists(
    st.tuples(
        st.sampled_from(["remove", "rename", "replace", "add"]),
        st.integers(0, 100),
        st.integers(0, 100),
        st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1.0, -1.0, 1e308, 2.0**60]),
    ),
    min_size=1,
    max_size=3,
)


def _edit_meta(text: str, which: int, choice: int, fill: float) -> str:
    """The JSON ``meta`` with one entry removed or replaced by another JSON value."""
    meta = json.loads(text)
    keys = sorted(meta)
    key = keys[which % len(keys)]
    values = [None, True, -1, 0, 2**70, fill, "sp1", "x", [], [fill], {"a": 1}, [3, 4, 5]]
    if choice % (len(values) + 1) == len(values):
        del meta[key]
    else:
        meta[key] = values[choice % (len(values) + 1)]
    return json.dumps(meta)  # NaN and infinity become the non-standard NaN / Infinity


@FUZZ
@given(kind=KINDS, version=VERSIONS, edits=EDITS)
def test_damaged_entries(kind, version, edits):
    arrays = _arrays(kind, version)
    for action, which, choice, fill in edits:
        keys = sorted(arrays)
        key = keys[which % len(keys)] if keys else "kind"
        if action == "remove" and keys:
            del arrays[key]
        elif action == "rename" and keys:
            names = [*keys, "level9", "band7", "band_3_0", "levels", "x", "kind"]
            arrays[names[choice % len(names)]] = arrays.pop(key)
        elif action == "replace" and key == "meta" and arrays[key].dtype.kind == "U":
            arrays[key] = np.array(_edit_meta(str(arrays[key]), which // 7, choice, fill))
        elif action == "replace" and keys:
            arrays[key] = _replacement(arrays[key], choice, fill)
        else:
            arrays[f"extra{choice}"] = np.array(fill)
    _check(_npz(arrays, compressed=False))


def test_every_valid_file_loads():
    for kind in PYRAMIDS:
        for version in (1, 0):
            for compressed in (False, True):
                with tempfile.TemporaryDirectory() as folder:
                    path = Path(folder) / "p.npz"
                    path.write_bytes(_npz(_arrays(kind, version), compressed))
                    loaded = read_pyramid_file(path)
                assert loaded.kind == kind and loaded.version == version
                assert loaded.attrs == {"bit_depth": 8}
                original = PYRAMIDS[kind]
                np.testing.assert_array_equal(loaded.pyramid.reconstruct(), original.reconstruct())

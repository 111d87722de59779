"""One protocol for every pyramid, and the one file format they are saved in.

Every pyramid (:class:`~pyramids.laplacian.GaussianPyramid`,
:class:`~pyramids.laplacian.LaplacianPyramid`, :class:`~pyramids.steerable.SteerablePyramid`,
and the kinds still to come) is a :class:`Pyramid`: it has ``levels``, the ``shape`` and
``dtype`` of the image it represents, ``reconstruct(**options)`` returning that image,
display pictures for the command line, and ``save(path)``; :func:`load_pyramid` reads any
kind back. A new kind plugs in by subclassing :class:`Pyramid` with a new ``kind`` name:
the class registers itself, and files of that kind then load through :func:`load_pyramid`.

File format, version 1
----------------------
A NumPy ``.npz`` archive (compressed, no pickles) holding

``format``
    the text ``'pyramids'``;
``version``
    the integer ``1`` (:data:`FORMAT_VERSION`);
``kind``
    the text naming the class (``'gaussian'``, ``'laplacian'``, ``'steerable'``);
``meta``
    a JSON object: ``levels``, ``shape`` (of the image) and ``dtype`` (``'float32'`` or
    ``'float64'``), then the kind's settings (e.g. ``kernel`` and ``boundary``; ``filters``,
    ``orientations``, ``boundary``, ``engine`` and ``rank_tol``);
``attrs`` (optional)
    a JSON object of the caller's, kept but never read by the library (the command line
    records the input's ``bit_depth`` there);

and the coefficients under the names the kind defines (``level0`` …; ``band0`` …,
``residual``; ``highpass``, ``band_<level>_<orientation>``, ``residual``). Loading checks
everything (see :func:`read_pyramid_file`) and answers any defect with a
:class:`PyramidFileError`.

Version 0 (written before this module existed, with no ``format`` entry: the
``to_arrays()`` layouts of the Laplacian and steerable pyramids, and the command line's
Gaussian layout) is still read, with the same checks; its ``bit_depth`` entry becomes
``attrs['bit_depth']``, and a version-0 Gaussian pyramid has ``kernel=None`` (the file did not
record it). A file of a later version is refused, naming both versions.
"""

from __future__ import annotations

import abc
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from .display import band_to_display, grid_montage, lowpass_to_display, pyramid_montage
from .io import (
    DEFAULT_MAX_PIXELS,
    NpzFileError,
    OutputFileError,
    _check_max_pixels,
    atomic_path,
    read_npz,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Pyramid",
    "PyramidFile",
    "PyramidFileError",
    "load_pyramid",
    "pyramid_kinds",
    "read_pyramid_file",
]

FORMAT = "pyramids"
"""The ``format`` entry of every pyramid file."""
FORMAT_VERSION = 1
"""The file format version :meth:`Pyramid.save` writes."""

_HEADER = ("format", "version", "kind", "meta", "attrs")
_KINDS: dict[str, type[Pyramid]] = {}


class PyramidFileError(ValueError):
    """A pyramid file (or a dict of arrays) that cannot be read as a consistent pyramid."""


def pyramid_kinds() -> dict[str, type[Pyramid]]:
    """The registered pyramid classes by ``kind`` name (a copy)."""
    return dict(_KINDS)


class Pyramid(abc.ABC):
    """What every pyramid offers: its size, its reconstruction, pictures, a file format.

    Subclasses set the class attribute ``kind`` (a lower-case name, which registers them
    for :func:`load_pyramid`) and implement the properties ``levels``, ``shape`` and
    ``dtype``, :meth:`reconstruct`, :meth:`pictures`, and three hooks of the file format:
    ``_arrays()`` (the coefficients by name), ``_settings()`` (the JSON-able options
    besides the coefficients) and the classmethods ``_array_names(meta)`` (the names a file
    must hold) and ``_from_parts(arrays, meta)`` (the pyramid, checked by the constructor).

    Pyramids compare equal when they are of the same kind with the same settings and
    coefficients (same names, dtypes, shapes and values); they are mutable and unhashable.
    """

    kind: ClassVar[str]
    coefficient_dtypes: ClassVar[tuple[type, ...]] = (np.float32, np.float64)
    """The dtypes a file may hold the coefficients in."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind is None:  # an abstract intermediate class
            return
        if not isinstance(kind, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", kind):
            raise TypeError(f"{cls.__name__}.kind must be a lower-case name, got {kind!r}")
        known = _KINDS.get(kind)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise TypeError(f"pyramid kind {kind!r} is already {known.__qualname__}'s")
        _KINDS[kind] = cls  # the same class again (a module reloaded) replaces itself

    # ------------------------------------------------------------------ the protocol

    @property
    @abc.abstractmethod
    def levels(self) -> int:
        """Number of levels (reductions, or levels of oriented bands)."""

    @property
    @abc.abstractmethod
    def shape(self) -> tuple[int, ...]:
        """Shape of the image the pyramid represents, ``(h, w)`` or ``(h, w, c)``."""

    @property
    @abc.abstractmethod
    def dtype(self) -> np.dtype:
        """Floating-point dtype of the coefficients (float32 or float64)."""

    @abc.abstractmethod
    def reconstruct(self, **options: Any) -> np.ndarray:
        """The image the pyramid represents, of :attr:`shape` and :attr:`dtype`.

        Each kind documents its own options (the steerable pyramid's ``method``, ...).
        """

    @abc.abstractmethod
    def pictures(self) -> dict[str, np.ndarray]:
        """Every level as a picture in [0, 1], by a file stem (``'band0'``), finest first."""

    def montage(self, pictures: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """One picture of the whole pyramid (by default the classic side-by-side figure).

        Parameters
        ----------
        pictures : mapping of str to ndarray, optional
            The output of :meth:`pictures`, where it was computed already.

        Returns
        -------
        ndarray, shape (H, W) or (H, W, c), values in [0, 1]
        """
        shown = self.pictures() if pictures is None else pictures
        return pyramid_montage(list(shown.values()))

    # ------------------------------------------------------------------ hooks

    @abc.abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]:
        """The coefficients by the names the file holds them under, finest first."""

    @abc.abstractmethod
    def _settings(self) -> dict[str, Any]:
        """The options besides the coefficients, as JSON values (``kernel``, ``boundary``)."""

    @classmethod
    @abc.abstractmethod
    def _array_names(cls, meta: Mapping[str, Any]) -> list[str]:
        """The coefficient names a file with this ``meta`` must hold (``ValueError`` if none)."""

    @classmethod
    @abc.abstractmethod
    def _from_parts(cls, arrays: dict[str, np.ndarray], meta: Mapping[str, Any]) -> Pyramid:
        """The pyramid of checked ``arrays`` (of the names above) and ``meta``."""

    @classmethod
    def _trusted(cls, **attributes: Any) -> Pyramid:
        """An instance holding ``attributes`` as given, without the constructor's checks.

        For the builders only, whose coefficients are consistent by construction: the
        constructor's finiteness test reads every coefficient (about 5% of a Laplacian build).
        """
        pyramid = cls.__new__(cls)
        vars(pyramid).update(attributes)
        return pyramid

    # ------------------------------------------------------------------ comparison

    def __repr__(self) -> str:
        fields = {"levels": self.levels, "shape": self.shape, "dtype": self.dtype}
        text = [f"{key}={value}" for key, value in fields.items()]
        text += [f"{key}={_short(value)}" for key, value in self._settings().items()]
        return f"{type(self).__name__}({', '.join(text)})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        mine, theirs = self._arrays(), other._arrays()
        return (
            self._settings() == other._settings()
            and list(mine) == list(theirs)
            and all(
                mine[name].dtype == theirs[name].dtype and np.array_equal(mine[name], theirs[name])
                for name in mine
            )
        )

    __hash__ = None  # type: ignore[assignment]  # mutable coefficients

    # ------------------------------------------------------------------ arrays and files

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The pyramid as named plain arrays (format version 1: module docstring).

        Returns
        -------
        dict of str to ndarray
            ``format``, ``version``, ``kind``, ``meta`` (0-d arrays) and the coefficients.
            Suitable for ``numpy.savez``; :meth:`from_arrays` reads it back.
        """
        meta = {
            "levels": self.levels,
            "shape": list(self.shape),
            "dtype": self.dtype.name,
            **self._settings(),
        }
        arrays = self._arrays()
        clash = sorted(set(arrays) & set(_HEADER))
        if clash:
            raise TypeError(f"{type(self).__name__} names a coefficient array {clash[0]!r}")
        return {
            "format": np.array(FORMAT),
            "version": np.array(FORMAT_VERSION),
            "kind": np.array(self.kind),
            "meta": np.array(json.dumps(meta, allow_nan=False)),
            **arrays,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, ArrayLike]) -> Pyramid:
        """A pyramid from :meth:`to_arrays` output (or a loaded ``.npz``), checked.

        ``Pyramid.from_arrays`` builds whichever kind the arrays hold; a subclass's
        refuses another kind. Format version 0 is read too (module docstring).

        Raises
        ------
        PyramidFileError
            If the arrays are not a consistent pyramid (of this class's kind).
        """
        return _parse(arrays, None if cls is Pyramid else cls)[0]

    def save(self, path: str | os.PathLike, *, attrs: Mapping[str, Any] | None = None) -> Path:
        """Write the pyramid to a compressed ``.npz``, atomically (format version 1).

        Parameters
        ----------
        path : str or path-like
            The file to write (the name is used as given; ``.npz`` is customary).
        attrs : mapping, optional
            JSON-able values of the caller's, stored beside the pyramid and returned by
            :func:`read_pyramid_file` (the library never reads them).

        Returns
        -------
        Path

        Raises
        ------
        TypeError
            If ``attrs`` is not a mapping of JSON values.
        OutputFileError
            If the file cannot be written (an ``OSError``).
        """
        arrays = self.to_arrays()
        if attrs is not None:
            if not isinstance(attrs, Mapping):
                raise TypeError(f"attrs must be a mapping, got {type(attrs).__name__}")
            try:
                arrays["attrs"] = np.array(json.dumps(dict(attrs), allow_nan=False))
            except (TypeError, ValueError) as exc:
                raise TypeError(f"attrs must hold JSON values: {exc}") from None
        path = Path(path)
        try:
            with atomic_path(path) as tmp, open(tmp, "wb") as file:
                np.savez_compressed(file, **arrays)
        except OSError as exc:
            raise OutputFileError(f"{path}: cannot write ({exc.strerror or exc})") from None
        return path


def level_shapes(shape: tuple[int, int], levels: int) -> list[tuple[int, int]]:
    """Shapes ``(h_ℓ, w_ℓ)`` of levels ``0 … levels`` of an oriented pyramid (the last is the
    residual's): each side halves, rounding up, ``ceil(n / 2)``."""
    shapes = [shape]
    for _ in range(levels):
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


class OrientedPyramid(Pyramid):
    """A pyramid of a high-pass, oriented bands per level and a low-pass residual.

    What the spatial and the frequency-domain steerable pyramids share: attributes
    ``highpass``, ``bands`` (``bands[level][k]``, orientation ``k``) and ``residual``; the
    pictures, the montage and the names of the coefficients in a file follow from them.
    """

    highpass: np.ndarray
    bands: list[list[np.ndarray]]
    residual: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the image, ``(h, w)`` or ``(h, w, c)`` (the high-pass residual's)."""
        return self.highpass.shape

    @property
    def dtype(self) -> np.dtype:
        """The image's floating-point dtype (complex bands, if any, have its precision)."""
        return self.highpass.dtype

    def pictures(self) -> dict[str, np.ndarray]:
        """``highpass``, ``level<ℓ>_orientation<k>`` (real parts, 0 at mid-grey), ``residual``.

        The low-pass residual is stretched to its own range (it carries the filters' gain).
        """
        shown = {"highpass": band_to_display(self.highpass)}
        for level, row in enumerate(self.bands):
            for k, band in enumerate(row):
                shown[f"level{level}_orientation{k}"] = band_to_display(np.real(band))
        shown["residual"] = lowpass_to_display(self.residual)
        return shown

    def montage(self, pictures: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """A grid: the high-pass, then a row of orientations per level, then the residual."""
        shown = self.pictures() if pictures is None else pictures
        rows = [[shown["highpass"]]]
        rows += [
            [shown[f"level{level}_orientation{k}"] for k in range(len(row))]
            for level, row in enumerate(self.bands)
        ]
        return grid_montage([*rows, [shown["residual"]]])

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {"highpass": self.highpass}
        for level, row in enumerate(self.bands):
            for k, band in enumerate(row):
                arrays[f"band_{level}_{k}"] = band
        arrays["residual"] = self.residual
        return arrays


def _short(value: Any) -> str:
    if isinstance(value, list) and len(value) > 9:
        return f"[{len(value)} values]"
    return repr(value)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class PyramidFile:
    """What :func:`read_pyramid_file` found in a pyramid file.

    Attributes
    ----------
    pyramid : Pyramid
        The pyramid, checked.
    attrs : dict
        The caller's values saved with it (``{}`` if none); e.g. ``{'bit_depth': 8}``.
    version : int
        The file's format version (0 or 1).
    """

    pyramid: Pyramid
    attrs: dict[str, Any] = field(default_factory=dict)
    version: int = FORMAT_VERSION

    @property
    def kind(self) -> str:
        """The pyramid's kind."""
        return self.pyramid.kind


def load_pyramid(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Pyramid:
    """Read a pyramid saved by :meth:`Pyramid.save` (or ``pyramids decompose``), any kind.

    Parameters
    ----------
    path : str or path-like
        A ``pyramid.npz``.
    max_pixels : int
        Refuse, before decompressing it, an array with more pixels (height × width) than
        this; default :data:`pyramids.io.DEFAULT_MAX_PIXELS`.

    Returns
    -------
    Pyramid
        Of the class the file's ``kind`` names.

    Raises
    ------
    PyramidFileError
        As :func:`read_pyramid_file`.

    Examples
    --------
    >>> import tempfile, pyramids
    >>> pyr = pyramids.laplacian_pyramid(np.zeros((8, 6)), levels=2)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     back = load_pyramid(pyr.save(f"{folder}/p.npz"))
    >>> back == pyr, type(back).__name__
    (True, 'LaplacianPyramid')
    """
    return read_pyramid_file(path, max_pixels=max_pixels).pyramid


def read_pyramid_file(
    path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> PyramidFile:
    """Read and check a pyramid file; return the pyramid with the caller's ``attrs``.

    Every entry is checked before it is used: the archive (no ``.npy``, no pickles, member
    sizes possible for their compressed size, array headers before their data), the
    header entries, the JSON ``meta`` (``levels``, ``shape``, ``dtype``, the kind's
    settings), exactly the coefficient names the kind needs, each of them finite float32
    or float64 data of 2 or 3 dimensions, and finally the pyramid itself through its
    class's constructor (shapes that chain level to level, one dtype, steerable bands as
    many as the filters have orientations) and against ``meta``.

    Parameters
    ----------
    path : str or path-like
        A ``pyramid.npz``.
    max_pixels : int
        As for :func:`load_pyramid`.

    Returns
    -------
    PyramidFile

    Raises
    ------
    PyramidFileError
        If the file is missing, unreadable, not an ``.npz`` (a ``.npy`` included), of a
        later format version, or not a consistent pyramid. It is a ``ValueError``, its
        message one line starting with the path; no other exception is raised for any
        file content.
    """
    path = Path(path)
    max_pixels = _check_max_pixels(max_pixels)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "no such file"
        raise PyramidFileError(f"{path}: {what} (expected a pyramid.npz)")
    arrays = _read_npz(path, max_pixels)
    try:
        pyramid, attrs, version = _parse(arrays, None)
    except PyramidFileError as exc:
        raise PyramidFileError(f"{path}: {exc}") from None
    return PyramidFile(pyramid, attrs, version)


def _read_npz(path: Path, max_pixels: int) -> dict[str, np.ndarray]:
    """Every array of a pyramid file (:func:`pyramids.io.read_npz`), none of more than
    ``max_pixels`` pixels."""

    def select(key: str, shape: tuple[int, ...], dtype: np.dtype) -> bool:
        if len(shape) >= 2 and shape[0] * shape[1] > max_pixels:
            raise PyramidFileError(
                f"{path}: {key} has {shape[1]}×{shape[0]} = {shape[0] * shape[1]:,} "
                f"pixels, above the limit of {max_pixels:,}; raise it with "
                "--max-pixels (max_pixels= in Python)"
            )
        return True

    try:
        return read_npz(path, select=select)
    except NpzFileError as exc:
        if exc.single_npy:
            raise PyramidFileError(
                f"{path}: a single .npy array, not a pyramid .npz written by 'pyramids decompose'"
            ) from None
        raise PyramidFileError(f"{path}: not a readable pyramid file ({exc})") from None


# --------------------------------------------------------------------------- checking


def _describe(value: np.ndarray) -> str:
    return f"an array of dtype {value.dtype} and shape {value.shape}"


def _text(arrays: Mapping[str, np.ndarray], key: str) -> str:
    value = arrays[key]
    if value.ndim != 0 or value.dtype.kind != "U":
        raise PyramidFileError(f"{key} must be a text value, got {_describe(value)}")
    return str(value)


def _integer(arrays: Mapping[str, np.ndarray], key: str) -> int:
    value = arrays[key]
    if value.ndim != 0 or value.dtype.kind not in "iu":
        raise PyramidFileError(f"{key} must be an integer, got {_describe(value)}")
    return int(value)


def _json_object(arrays: Mapping[str, np.ndarray], key: str) -> dict[str, Any]:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not a JSON number")

    text = _text(arrays, key)
    try:
        value = json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError) as exc:
        raise PyramidFileError(f"{key} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise PyramidFileError(f"{key} must be a JSON object, got {type(value).__name__}")
    return value


def meta_value(meta: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """``meta[key]``, checked to be of the JSON ``kind`` (``str``, ``int``, ``float``, ``list``).

    ``int`` excludes booleans; ``float`` accepts integers too and returns a float.

    Raises
    ------
    PyramidFileError
        If the entry is missing or of another type.
    """
    if key not in meta:
        raise PyramidFileError(f"meta has no {key!r} entry")
    value = meta[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise PyramidFileError(f"meta's {key!r} must be {names}, got {value!r:.80}")
    return value


def meta_numbers(meta: Mapping[str, Any], key: str) -> np.ndarray:
    """``meta[key]`` as a 1-D float64 array, checked to be a list of numbers."""
    value = meta_value(meta, key, list)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise PyramidFileError(f"meta's {key!r} must be a list of numbers")
    return np.array(value, dtype=np.float64)


def _check_coefficient(name: str, value: np.ndarray, dtypes: tuple[type, ...]) -> np.ndarray:
    if value.dtype.newbyteorder("=") not in [np.dtype(d) for d in dtypes]:
        allowed = " or ".join(np.dtype(d).name for d in dtypes)
        raise PyramidFileError(f"{name} must be {allowed} coefficients, got {_describe(value)}")
    if not 2 <= value.ndim <= 3 or value.size == 0:
        raise PyramidFileError(f"{name} must be a non-empty image, got {_describe(value)}")
    if not np.isfinite(value).all():
        raise PyramidFileError(f"{name} contains NaN or infinite values")
    return value


def _span(names: list[str]) -> str:
    if len(names) <= 4:
        return ", ".join(names)
    return f"{names[0]}, {names[1]} … {names[-1]} ({len(names)} arrays)"


def _common_meta(meta: Mapping[str, Any], version: int, n_arrays: int) -> None:
    levels = meta_value(meta, "levels", int)
    if levels < 0:
        raise PyramidFileError(f"meta's 'levels' must be at least 0, got {levels}")
    if levels > n_arrays:  # every level holds an array: refuse before listing the names
        raise PyramidFileError(f"meta says {levels} levels, but there are {n_arrays} arrays")
    if version == 0:
        return
    shape = meta_value(meta, "shape", list)
    if not 2 <= len(shape) <= 3 or not all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape
    ):
        raise PyramidFileError(f"meta's 'shape' must be (h, w) or (h, w, c), got {shape!r:.80}")
    if meta_value(meta, "dtype", str) not in ("float32", "float64"):
        raise PyramidFileError(f"meta's 'dtype' must be float32 or float64, got {meta['dtype']!r}")


def _parse(
    given: Mapping[str, ArrayLike], expected: type[Pyramid] | None
) -> tuple[Pyramid, dict[str, Any], int]:
    """The pyramid held by ``given`` (version 0 or 1), its attrs and the format version."""
    arrays = {str(key): np.asarray(value) for key, value in given.items()}
    if "kind" not in arrays:
        raise PyramidFileError("not a pyramid file (no 'kind' entry)")
    kind = _text(arrays, "kind")
    if expected is not None and kind != expected.kind:
        raise PyramidFileError(
            f"not a {expected.kind.capitalize()} pyramid: the arrays hold a {kind!r} pyramid, "
            f"not {expected.kind!r}"
        )
    if kind not in _KINDS:
        raise PyramidFileError(f"unknown pyramid kind {kind!r}; known: {', '.join(_KINDS)}")
    cls = _KINDS[kind]
    if "format" in arrays:
        if _text(arrays, "format") != FORMAT:
            raise PyramidFileError(f"format must be {FORMAT!r}, got {str(arrays['format'])!r}")
        if "version" not in arrays:
            raise PyramidFileError("a pyramid file needs a 'version' entry")
        version = _integer(arrays, "version")
        if version != FORMAT_VERSION:
            later = " (written by a later version of pyramids)" if version > FORMAT_VERSION else ""
            raise PyramidFileError(
                f"format version {version}{later}; this version of pyramids reads versions 0 "
                f"and {FORMAT_VERSION}"
            )
        if "meta" not in arrays:
            raise PyramidFileError(f"a {kind} pyramid file needs a 'meta' entry")
        meta = _json_object(arrays, "meta")
        attrs = _json_object(arrays, "attrs") if "attrs" in arrays else {}
        coefficients = {k: v for k, v in arrays.items() if k not in _HEADER}
    else:
        version = 0
        meta, coefficients, attrs = _upgrade_v0(kind, arrays)
    _common_meta(meta, version, len(coefficients))
    try:
        names = cls._array_names(meta)
        unexpected = sorted(set(coefficients) - set(names))
        if unexpected:
            raise PyramidFileError(
                f"unexpected entry {unexpected[0]!r} in a {kind} pyramid of {meta['levels']} "
                f"levels, which holds {_span(names)}"
            )
        missing = [name for name in names if name not in coefficients]
        if missing:
            raise PyramidFileError(
                f"a {kind} pyramid of {meta['levels']} levels needs {_span(names)}; "
                f"{missing[0]!r} is missing ({len(missing)} in all)"
            )
        for name in names:
            _check_coefficient(name, coefficients[name], cls.coefficient_dtypes)
        pyramid = cls._from_parts({name: coefficients[name] for name in names}, meta)
    except PyramidFileError:
        raise
    except ValueError as exc:  # the class's own checks (shapes, kernel, boundary, filters)
        raise PyramidFileError(str(exc)) from None
    found = {"levels": pyramid.levels, "shape": list(pyramid.shape), "dtype": pyramid.dtype.name}
    for key, value in found.items():
        if key in meta and meta[key] != value:
            raise PyramidFileError(f"meta says {key} {meta[key]!r}, the arrays hold {value!r}")
    return pyramid, attrs, version


# --------------------------------------------------------------------------- version 0

_V0_NUMBERED = {  # the numbered coefficient names of each kind, and the settings entries
    "gaussian": (re.compile(r"level(\d{1,6})"), {"boundary": "text"}),
    "laplacian": (re.compile(r"band(\d{1,6})"), {"boundary": "text", "kernel": "real"}),
    "steerable": (
        re.compile(r"band_(\d{1,6})_(\d{1,6})"),
        {
            "boundary": "text",
            "filters": "text",
            "engine": "text",
            "rank_tol": "real",
            "levels": "integer",
            "orientations": "integer",
        },
    ),
}
_V0_OPTIONAL = {"engine", "rank_tol", "bit_depth"}
_V0_COEFFICIENTS = {"laplacian": {"residual"}, "steerable": {"highpass", "residual"}}


def _upgrade_v0(
    kind: str, arrays: dict[str, np.ndarray]
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """The meta, coefficients and attrs of a version-0 file (the layouts before version 1)."""
    if kind not in _V0_NUMBERED:
        raise PyramidFileError(f"a {kind} pyramid needs format version {FORMAT_VERSION}")
    pattern, settings = _V0_NUMBERED[kind]
    fixed = _V0_COEFFICIENTS.get(kind, set())
    coefficients, count = {}, 0
    for key, value in arrays.items():
        if pattern.fullmatch(key) or key in fixed:
            coefficients[key] = value
            count += key not in fixed
        elif key not in settings and key not in ("kind", "bit_depth"):
            raise PyramidFileError(f"unexpected entry {key!r} in a {kind} pyramid")
    missing = sorted(set(settings) - _V0_OPTIONAL - set(arrays))
    if missing:
        raise PyramidFileError(f"a {kind} pyramid needs {', '.join(missing)}")
    meta: dict[str, Any] = {}
    for key, role in settings.items():
        if key not in arrays:
            continue
        if role == "text":
            meta[key] = _text(arrays, key)
        elif role == "integer":
            meta[key] = _integer(arrays, key)
        elif arrays[key].dtype.kind not in "fiu" or not np.isfinite(arrays[key]).all():
            raise PyramidFileError(f"{key} must be numeric, got {_describe(arrays[key])}")
        elif key == "kernel":
            if arrays[key].ndim != 1:
                raise PyramidFileError(f"kernel must be 1-D, got {_describe(arrays[key])}")
            meta[key] = arrays[key].astype(np.float64).tolist()
        else:
            if arrays[key].ndim != 0:
                raise PyramidFileError(f"{key} must be a number, got {_describe(arrays[key])}")
            meta[key] = float(arrays[key])
    if kind == "gaussian":
        meta.update(levels=count - 1 if count else 0, kernel=None)
    elif kind == "laplacian":
        meta["levels"] = count
    attrs = {}
    if "bit_depth" in arrays:
        attrs["bit_depth"] = _integer(arrays, "bit_depth")
    return meta, coefficients, attrs

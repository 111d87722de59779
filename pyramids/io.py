"""Reading and writing images (PNG, JPEG, TIFF; 8- and 16-bit), pyramid files, atomic output.

Images come in through Pillow. 16-bit colour is the one case Pillow cannot carry without
losing bits, so 16-bit colour TIFFs go through ``tifffile`` (installed with scikit-image),
and 16-bit colour PNGs are refused with a clear message rather than silently cut to 8 bits.

Images larger than ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS` = ``2**28``, a
16384 × 16384 picture: 768 MiB as 8-bit RGB, 6 GiB once converted to float64) are refused
from their header, before anything is decoded: a small compressed file can claim billions
of pixels (a "decompression bomb"). Pillow's own limit (about 89 Mpixels, an error above
twice that) is replaced by this one while a header is read, so that a caller can raise it.

Pyramid files (``pyramid.npz``, written by ``pyramids decompose``) are read by
:func:`read_pyramid`, which checks everything in them against the pyramid they claim to
hold and answers any defect with a :class:`PyramidFileError`.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import re
import struct
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:  # imported where used, so that io stays free of the pyramid modules
    from .laplacian import LaplacianPyramid
    from .steerable import SteerablePyramid

if TYPE_CHECKING:
    pass

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageFileError",
    "OutputFileError",
    "PyramidFile",
    "PyramidFileError",
    "atomic_path",
    "image_size",
    "read_image",
    "read_pyramid",
    "write_image",
    "write_pyramid",
]

DEFAULT_MAX_PIXELS = 2**28
"""Largest image (width × height) read by default: 268,435,456 pixels, 16384 × 16384."""

_SIXTEEN_BIT_SUFFIXES = {".png", ".tif", ".tiff"}
_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


class ImageFileError(ValueError):
    """An image file that cannot be read (missing, corrupt, too large, unsupported), or an
    image that cannot be written the way asked (suffix, bit depth, shape)."""


class OutputFileError(OSError):
    """An output file that could not be written (no space, no permission, …)."""


class PyramidFileError(ValueError):
    """A pyramid file that cannot be read, or whose contents are not a consistent pyramid."""


def _raw_mode(image: Image.Image) -> str:
    """Pillow's raw decoding mode of the first tile, e.g. ``'RGB;16B'`` (or ``''``)."""
    if not image.tile:
        return ""
    args = image.tile[0].args if hasattr(image.tile[0], "args") else image.tile[0][3]
    return args[0] if isinstance(args, tuple) else str(args)


def _check_max_pixels(max_pixels: int) -> int:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int | np.integer):
        raise TypeError(f"max_pixels must be an int, got {type(max_pixels).__name__}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be at least 1, got {max_pixels}")
    return int(max_pixels)


def _too_large(path: Path, width: int, height: int, max_pixels: int) -> ImageFileError:
    return ImageFileError(
        f"{path}: image has {width}×{height} = {width * height:,} pixels, above the limit of "
        f"{max_pixels:,}; raise it with --max-pixels (max_pixels= in Python)"
    )


_PILLOW_LIMIT = threading.Lock()


@contextlib.contextmanager
def _open(path: Path, max_pixels: int) -> Iterator[Image.Image]:
    """Open an image (its header only) and refuse it if it has more than ``max_pixels``.

    Pillow's own decompression-bomb check (a warning, then an error, at a fixed process-wide
    limit, made at opening and by some formats while decoding) is switched off while the
    image is open, under a lock; ours replaces it. Image reads are therefore serialised.
    """
    if not path.is_file():
        what = "is a directory, not an image" if path.is_dir() else "no such file"
        raise ImageFileError(f"{path}: {what}")
    with _PILLOW_LIMIT:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            try:
                image = Image.open(path)
            except UnidentifiedImageError:
                raise ImageFileError(f"{path}: not an image file Pillow can read") from None
            except PermissionError as exc:
                raise ImageFileError(f"{path}: cannot read ({exc.strerror})") from None
            except (OSError, SyntaxError, ValueError, struct.error) as exc:
                raise ImageFileError(f"{path}: corrupt or truncated image ({exc})") from None
            with image:
                width, height = image.size
                if width * height > max_pixels:
                    raise _too_large(path, width, height, max_pixels)
                yield image
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def image_size(
    path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[int, int]:
    """The height and width of an image file, read from its header without decoding it.

    Parameters
    ----------
    path : str or path-like
        An image file.
    max_pixels : int
        Refuse images with more pixels (width × height) than this.

    Returns
    -------
    (int, int)
        ``(h, w)``, as in the shape :func:`read_image` would return.

    Raises
    ------
    ImageFileError
        If the file is missing, not an image, or larger than ``max_pixels``.
    """
    path = Path(path)
    with _open(path, _check_max_pixels(max_pixels)) as image:
        return image.size[1], image.size[0]


def read_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file into an array of its native type.

    Parameters
    ----------
    path : str or path-like
        A PNG, JPEG, TIFF or BMP file.
    max_pixels : int
        Refuse, from the file's header and before decoding, an image with more pixels
        (width × height) than this; default :data:`DEFAULT_MAX_PIXELS` (``2**28``).

    Returns
    -------
    ndarray, shape (h, w) or (h, w, 3)
        ``uint8`` for 8-bit files, ``uint16`` for 16-bit ones, ``float32`` for floating-point
        TIFFs. Palette and CMYK images become RGB; an alpha channel is dropped.
        :func:`pyramids.arrays.as_float_image` scales the integer types to [0, 1].

    Raises
    ------
    ImageFileError
        If the file is missing, unreadable, not an image, truncated, larger than
        ``max_pixels``, or of an unsupported kind.
    """
    path = Path(path)
    with _open(path, _check_max_pixels(max_pixels)) as image:
        try:
            raw = _raw_mode(image)
            if image.mode in ("RGB", "RGBA") and ";16" in raw:
                if image.format != "TIFF":
                    raise ImageFileError(
                        f"{path}: 16-bit colour {image.format} cannot be read without losing "
                        "precision; save it as a 16-bit TIFF instead"
                    )
                import tifffile

                array = np.asarray(tifffile.imread(path))
                return array[..., :3] if array.ndim == 3 else array
            image.load()
            array = _pillow_to_array(image, path)
        except ImageFileError:
            raise
        except (OSError, SyntaxError, ValueError, struct.error, zlib.error) as exc:
            raise ImageFileError(f"{path}: corrupt or truncated image ({exc})") from None
    if array.size == 0:
        raise ImageFileError(f"{path}: the image is empty")
    return array


def _pillow_to_array(image: Image.Image, path: Path) -> np.ndarray:
    mode = image.mode
    if mode in ("L", "RGB"):
        return np.asarray(image)
    if mode == "1":
        return np.asarray(image.convert("L"))
    if mode in ("LA", "La"):
        return np.asarray(image.convert("L"))
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)
    if mode == "I":
        array = np.asarray(image)
        if array.min() < 0 or array.max() > 65535:
            raise ImageFileError(f"{path}: 32-bit integer image outside the 16-bit range")
        return array.astype(np.uint16)
    if mode == "F":
        return np.asarray(image, dtype=np.float32)
    return np.asarray(image.convert("RGB"))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    Readers never see a half-written file, and a failure leaves no temporary file behind.
    The temporary name keeps the suffix so that format detection still works.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=directory)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _quantise(image: np.ndarray, bit_depth: int) -> np.ndarray:
    if image.dtype in (np.uint8, np.uint16):
        if (image.dtype == np.uint8) != (bit_depth == 8):
            scale = (2**bit_depth - 1) / np.iinfo(image.dtype).max
            return np.round(image * scale).astype(np.uint8 if bit_depth == 8 else np.uint16)
        return image
    top = 2**bit_depth - 1
    scaled = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * top
    return np.round(scaled).astype(np.uint8 if bit_depth == 8 else np.uint16)


def write_image(
    path: str | os.PathLike, image: ArrayLike, bit_depth: int = 8, quality: int = 92
) -> Path:
    """Write an image atomically (temporary file, then rename).

    Parameters
    ----------
    path : str or path-like
        Output file; the suffix picks the format (``.png``, ``.jpg``, ``.tif``, ``.bmp``).
    image : array_like, shape (h, w) or (h, w, 3)
        Float images are taken to lie in [0, 1]: they are clipped and rounded to
        ``bit_depth`` bits. ``uint8`` and ``uint16`` arrays are written as they are
        (rescaled if ``bit_depth`` differs).
    bit_depth : {8, 16}
        Bits per sample; 16 needs PNG or TIFF (16-bit colour needs TIFF).
    quality : int
        JPEG quality, 1 to 95.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    ImageFileError
        For an unsupported suffix, bit depth or shape (a ``ValueError``).
    OutputFileError
        If the file cannot be written (an ``OSError``).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise ImageFileError(
            f"{path}: unsupported image suffix {suffix!r}; use one of {sorted(_SUFFIXES)}"
        )
    if bit_depth not in (8, 16):
        raise ImageFileError(f"bit_depth must be 8 or 16, got {bit_depth}")
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ImageFileError(f"{path}: can write (h, w) or (h, w, 3) images, got {array.shape}")
    if bit_depth == 16 and suffix not in _SIXTEEN_BIT_SUFFIXES:
        raise ImageFileError(f"{path}: 16-bit images need a .png or .tif suffix")
    if bit_depth == 16 and array.ndim == 3 and suffix == ".png":
        raise ImageFileError(f"{path}: 16-bit colour images need a .tif suffix")
    data = _quantise(array, bit_depth)
    try:
        with atomic_path(path) as tmp:
            if bit_depth == 16 and data.ndim == 3:
                import tifffile

                tifffile.imwrite(tmp, data, photometric="rgb")
            else:
                fmt = Image.registered_extensions()[suffix]
                options = {"quality": quality} if fmt == "JPEG" else {}
                Image.fromarray(data).save(tmp, format=fmt, **options)
    except OutputFileError:
        raise
    except OSError as exc:
        raise OutputFileError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path


# --------------------------------------------------------------------------- pyramid files

_NPY_MAGIC = b"\x93NUMPY"
_DEFLATE_MAX_RATIO = 1032  # deflate never expands its output more than this
_TEXT = "text"
_INTEGER = "integer"
_REAL = "real"
_COEFFICIENTS = "coefficients"
_COMMON = {"kind": _TEXT, "boundary": _TEXT, "bit_depth": _INTEGER}
_KEYS = {
    "gaussian": {**_COMMON},
    "laplacian": {**_COMMON, "kernel": _REAL, "residual": _COEFFICIENTS},
    "steerable": {
        **_COMMON,
        "filters": _TEXT,
        "engine": _TEXT,
        "rank_tol": _REAL,
        "levels": _INTEGER,
        "orientations": _INTEGER,
        "highpass": _COEFFICIENTS,
        "residual": _COEFFICIENTS,
    },
}
_OPTIONAL = {"bit_depth", "engine", "rank_tol"}
_NUMBERED = {  # the numbered coefficient keys of each kind
    "gaussian": re.compile(r"level(\d{1,6})"),
    "laplacian": re.compile(r"band(\d{1,6})"),
    "steerable": re.compile(r"band_(\d{1,6})_(\d{1,6})"),
}


@dataclass(frozen=True)
class PyramidFile:
    """What :func:`read_pyramid` found in a pyramid file.

    Attributes
    ----------
    kind : {'gaussian', 'laplacian', 'steerable'}
    pyramid : list of ndarray, LaplacianPyramid or SteerablePyramid
        The Gaussian levels (finest first), or the pyramid object, checked.
    bit_depth : int
        Bits per sample of the image the pyramid was made from (8 or 16).
    """

    kind: str
    pyramid: list[np.ndarray] | LaplacianPyramid | SteerablePyramid
    bit_depth: int

    def reconstruct(self, **options: Any) -> np.ndarray:
        """The image: the first Gaussian level, or the pyramid's ``reconstruct(**options)``."""
        if self.kind == "gaussian":
            if options:
                raise ValueError(f"a Gaussian pyramid takes no options, got {sorted(options)}")
            return self.pyramid[0]
        return self.pyramid.reconstruct(**options)


def write_pyramid(
    path: str | os.PathLike,
    pyramid: list[np.ndarray] | LaplacianPyramid | SteerablePyramid,
    *,
    bit_depth: int = 8,
    boundary: str = "reflect",
) -> Path:
    """Write a pyramid as a compressed ``.npz`` (atomically) that :func:`read_pyramid` reads.

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file.
    pyramid : list of ndarray, LaplacianPyramid or SteerablePyramid
        A Gaussian pyramid (the list :func:`pyramids.gaussian_pyramid` returns), or a
        pyramid object (written through its ``to_arrays()``).
    bit_depth : {8, 16}
        Bits per sample that reconstruction writes back by default.
    boundary : str
        The boundary mode of a Gaussian pyramid, which its list does not record (pyramid
        objects record their own, and this is ignored for them).

    Returns
    -------
    Path

    Raises
    ------
    OutputFileError
        If the file cannot be written.
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if isinstance(pyramid, list | tuple):
        arrays = {f"level{k}": np.asarray(level) for k, level in enumerate(pyramid)}
        arrays.update(kind=np.array("gaussian"), boundary=np.array(boundary))
    else:
        arrays = dict(pyramid.to_arrays())
    arrays["bit_depth"] = np.array(bit_depth)
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            np.savez_compressed(tmp, **arrays)
    except OSError as exc:
        raise OutputFileError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path


def _npy_header(member: Any) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return tuple(int(n) for n in shape), np.dtype(dtype)


def _read_npz(path: Path, max_pixels: int) -> dict[str, np.ndarray]:
    """Every array of an ``.npz``, each header checked before its data is decompressed."""
    try:
        with open(path, "rb") as file:
            start = file.read(len(_NPY_MAGIC))
    except OSError as exc:
        raise PyramidFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if start == _NPY_MAGIC:
        raise PyramidFileError(
            f"{path}: a single .npy array, not a pyramid .npz written by 'pyramids decompose'"
        )
    arrays: dict[str, np.ndarray] = {}
    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise PyramidFileError(f"{path}: unexpected member {info.filename!r}")
                key = info.filename[: -len(".npy")]
                if info.compress_size > size or info.file_size > (
                    info.compress_size * _DEFLATE_MAX_RATIO + 1024
                ):
                    raise PyramidFileError(f"{path}: member {key!r} has impossible sizes")
                with archive.open(info) as member:
                    shape, dtype = _npy_header(member)
                if dtype.hasobject:
                    raise PyramidFileError(f"{path}: {key} holds Python objects, not numbers")
                if math.prod(shape) * dtype.itemsize > info.file_size:
                    raise PyramidFileError(
                        f"{path}: {key} claims shape {shape} of {dtype}, more than its "
                        f"{info.file_size} bytes"
                    )
                if len(shape) >= 2 and shape[0] * shape[1] > max_pixels:
                    raise PyramidFileError(
                        f"{path}: {key} has {shape[1]}×{shape[0]} = {shape[0] * shape[1]:,} "
                        f"pixels, above the limit of {max_pixels:,}; raise it with "
                        "--max-pixels (max_pixels= in Python)"
                    )
                with archive.open(info) as member:
                    arrays[key] = np.lib.format.read_array(member, allow_pickle=False)
    except PyramidFileError:
        raise
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        ValueError,
        struct.error,
        NotImplementedError,  # zipfile: an unknown compression method
        RuntimeError,  # zipfile: an encrypted member
    ) as exc:
        raise PyramidFileError(
            f"{path}: not a readable pyramid file ({type(exc).__name__}: {exc})"
        ) from None
    return arrays


def _checked_entry(path: Path, key: str, value: np.ndarray, role: str) -> Any:
    """The value of one entry, checked to be of the kind its role needs."""
    kind = value.dtype.kind
    if role == _TEXT:
        if value.ndim != 0 or kind != "U":
            raise PyramidFileError(f"{path}: {key} must be a text value, got {_describe(value)}")
        return str(value)
    if role == _INTEGER:
        if value.ndim != 0 or kind not in "iu":
            raise PyramidFileError(f"{path}: {key} must be an integer, got {_describe(value)}")
        return int(value)
    if role == _REAL:
        if kind not in "fiu":
            raise PyramidFileError(f"{path}: {key} must be numeric, got {_describe(value)}")
        return value
    if value.dtype.newbyteorder("=") not in (np.float32, np.float64):
        raise PyramidFileError(
            f"{path}: {key} must be float32 or float64 coefficients, got {_describe(value)}"
        )
    if not 2 <= value.ndim <= 3 or value.size == 0:
        raise PyramidFileError(f"{path}: {key} must be a non-empty image, got {_describe(value)}")
    if not np.isfinite(value).all():
        raise PyramidFileError(f"{path}: {key} contains NaN or infinite values")
    return value


def _describe(value: np.ndarray) -> str:
    return f"an array of dtype {value.dtype} and shape {value.shape}"


def _halves(shape: tuple[int, ...]) -> tuple[int, ...]:
    return ((shape[0] + 1) // 2, (shape[1] + 1) // 2, *shape[2:])


def _check_chain(path: Path, named: list[tuple[str, np.ndarray]]) -> None:
    """Each level ceil(half) the size of the one before, with the same channels."""
    for (name, finer), (coarse_name, coarser) in itertools.pairwise(named):
        if coarser.shape != _halves(finer.shape):
            raise PyramidFileError(
                f"{path}: {coarse_name} has shape {coarser.shape}, but below {name} of shape "
                f"{finer.shape} it must be {_halves(finer.shape)}"
            )


def read_pyramid(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> PyramidFile:
    """Read and check a pyramid file written by ``pyramids decompose`` or :func:`write_pyramid`.

    Every entry is checked: the keys the pyramid's ``kind`` needs and no others, text,
    integer and coefficient entries of the right types, finite coefficients of shapes that
    chain level to level, and (steerable) as many orientations per level as the filter set
    has and as the file says.

    Parameters
    ----------
    path : str or path-like
        A ``pyramid.npz``.
    max_pixels : int
        Refuse, before decompressing it, an array with more pixels (height × width) than
        this; default :data:`DEFAULT_MAX_PIXELS`.

    Returns
    -------
    PyramidFile

    Raises
    ------
    PyramidFileError
        If the file is missing, unreadable, not an ``.npz`` (a ``.npy`` included), or not a
        consistent pyramid. It is a ``ValueError``; no other exception is raised for any
        file content.
    """
    from .kernels import resolve_kernel
    from .laplacian import LaplacianPyramid
    from .operators import check_boundary
    from .steerable import SteerablePyramid
    from .steerable_filters import get_filter_set

    path = Path(path)
    max_pixels = _check_max_pixels(max_pixels)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "no such file"
        raise PyramidFileError(f"{path}: {what} (expected a pyramid.npz)")
    arrays = _read_npz(path, max_pixels)
    if "kind" not in arrays:
        raise PyramidFileError(f"{path}: not a pyramid file (no 'kind' entry)")
    kind = _checked_entry(path, "kind", arrays["kind"], _TEXT)
    if kind not in _KEYS:
        raise PyramidFileError(f"{path}: unknown pyramid kind {kind!r}")
    roles = _KEYS[kind]
    numbered: dict[str, tuple[int, ...]] = {}
    for key in arrays:
        match = _NUMBERED[kind].fullmatch(key)
        if match:
            numbered[key] = tuple(int(n) for n in match.groups())
        elif key not in roles:
            raise PyramidFileError(f"{path}: unexpected entry {key!r} in a {kind} pyramid")
    missing = sorted(set(roles) - _OPTIONAL - set(arrays))
    if missing:
        raise PyramidFileError(f"{path}: a {kind} pyramid needs {', '.join(missing)}")
    values = {
        key: _checked_entry(path, key, arrays[key], role)
        for key, role in roles.items()
        if key in arrays
    }
    for key in numbered:
        values[key] = _checked_entry(path, key, arrays[key], _COEFFICIENTS)
    bit_depth = values.get("bit_depth", 8)
    if bit_depth not in (8, 16):
        raise PyramidFileError(f"{path}: bit_depth must be 8 or 16, got {bit_depth}")
    try:
        boundary = check_boundary(values["boundary"])
        if kind == "gaussian":
            names = [f"level{k}" for k in range(len(numbered))]
            if set(names) != set(numbered):
                raise PyramidFileError(
                    f"{path}: a Gaussian pyramid needs level0 … level{len(names) - 1} with no "
                    f"gaps, got {', '.join(sorted(numbered)) or 'no levels'}"
                )
            _check_chain(path, [(name, values[name]) for name in names])
            levels = [values[name] for name in names]
            return PyramidFile(kind, levels, bit_depth)
        if kind == "laplacian":
            names = [f"band{k}" for k in range(len(numbered))]
            if set(names) != set(numbered):
                raise PyramidFileError(
                    f"{path}: a Laplacian pyramid needs band0 … band{len(names) - 1} with no "
                    f"gaps, got {', '.join(sorted(numbered))}"
                )
            _check_chain(path, [(n, values[n]) for n in [*names, "residual"]])
            kernel = values["kernel"]
            if kernel.ndim != 1:
                raise PyramidFileError(f"{path}: kernel must be 1-D, got {_describe(kernel)}")
            pyramid = LaplacianPyramid(
                bands=[values[name] for name in names],
                residual=values["residual"],
                kernel=resolve_kernel(kernel.astype(np.float64)),
                boundary=boundary,
            )
            return PyramidFile(kind, pyramid, bit_depth)
        filters = get_filter_set(values["filters"])
        levels, orientations = values["levels"], values["orientations"]
        if orientations != filters.orientations:
            raise PyramidFileError(
                f"{path}: the {filters.name} filters have {filters.orientations} orientations, "
                f"but the file says {orientations}"
            )
        if (
            levels < 1
            or levels * orientations != len(numbered)
            or set(numbered.values())
            != {(level, k) for level in range(levels) for k in range(orientations)}
        ):
            raise PyramidFileError(
                f"{path}: a steerable pyramid of {levels} levels and {orientations} "
                f"orientations needs band_0_0 … band_{levels - 1}_{orientations - 1}; the "
                f"file has {len(numbered)} bands"
            )
        rank_tol = values.get("rank_tol")
        if rank_tol is not None and rank_tol.ndim != 0:
            raise PyramidFileError(f"{path}: rank_tol must be a number, got {_describe(rank_tol)}")
        if values["band_0_0"].shape != values["highpass"].shape:
            raise PyramidFileError(
                f"{path}: band_0_0 has shape {values['band_0_0'].shape}, highpass "
                f"{values['highpass'].shape}: level 0 has the image's shape"
            )
        chain = [(f"band_{level}_0", values[f"band_{level}_0"]) for level in range(levels)]
        _check_chain(path, [*chain, ("residual", values["residual"])])
        for level in range(levels):
            first = values[f"band_{level}_0"]
            for k in range(1, orientations):
                band = values[f"band_{level}_{k}"]
                if band.shape != first.shape:
                    raise PyramidFileError(
                        f"{path}: band_{level}_{k} has shape {band.shape}, band_{level}_0 "
                        f"{first.shape}"
                    )
        options = {"filters": filters, "boundary": boundary}
        if "engine" in values:
            options["engine"] = values["engine"]
        if rank_tol is not None:
            options["rank_tol"] = float(rank_tol)
        pyramid = SteerablePyramid(
            values["highpass"],
            [
                [values[f"band_{level}_{k}"] for k in range(orientations)]
                for level in range(levels)
            ],
            values["residual"],
            **options,
        )
        return PyramidFile(kind, pyramid, bit_depth)
    except PyramidFileError:
        raise
    except ValueError as exc:  # the pyramid classes' own checks (boundary, kernel, filters)
        raise PyramidFileError(f"{path}: {exc}") from None

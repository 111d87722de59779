"""Reading and writing images (PNG, JPEG, TIFF; 8- and 16-bit), atomic output.

Images come in through Pillow. 16-bit colour is the one case Pillow cannot carry without
losing bits, so 16-bit colour TIFFs go through ``tifffile`` (installed with scikit-image),
and 16-bit colour PNGs are refused with a clear message rather than silently cut to 8 bits.

Images larger than ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS` = ``2**28``, a
16384 × 16384 picture: 768 MiB as 8-bit RGB, 6 GiB once converted to float64) are refused
from their header, before anything is decoded: a small compressed file can claim billions
of pixels (a "decompression bomb"). Pillow's own limit (about 89 Mpixels, an error above
twice that) is replaced by this one while a header is read, so that a caller can raise it.

Pyramid files (``pyramid.npz``) are written by ``Pyramid.save`` and read by
:func:`pyramids.load_pyramid` (:mod:`pyramids.pyramid`), through :func:`atomic_path` and
:func:`read_npz`, the package's one reader of ``.npz`` archives (``convnet``'s checkpoints
and training states use it too).
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image, UnidentifiedImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageFileError",
    "NpzFileError",
    "OutputFileError",
    "atomic_path",
    "image_size",
    "read_image",
    "read_npz",
    "write_image",
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


def _check_suffix(path: Path) -> str:
    """The lower-case suffix of an image to write, if :func:`write_image` knows it."""
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise ImageFileError(
            f"{path}: unsupported image suffix {suffix!r}; use one of {sorted(_SUFFIXES)}"
        )
    return suffix


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
    suffix = _check_suffix(path)
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


# --------------------------------------------------------------------------- .npz archives

_NPY_MAGIC = b"\x93NUMPY"
#: Deflate never expands its output more than this.
_DEFLATE_MAX_RATIO = 1032
#: What reading a damaged archive can raise: zipfile's own errors (BadZipFile, and
#: RuntimeError for an encrypted member, NotImplementedError for an unknown compression),
#: zlib's, a short read (EOFError, struct.error in a header), a malformed .npy header
#: (ValueError) and the operating system's (OSError).
_NPZ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    struct.error,
    ValueError,
    OSError,
    NotImplementedError,
    RuntimeError,
)
_CHUNK = 1 << 24


class NpzFileError(ValueError):
    """An ``.npz`` archive that :func:`read_npz` cannot read safely.

    Attributes
    ----------
    archive : bool
        False when the file is not a zip archive at all.
    single_npy : bool
        True when it is one ``.npy`` array instead.
    """

    def __init__(self, reason: str, *, archive: bool = True, single_npy: bool = False):
        super().__init__(reason)
        self.archive = archive
        self.single_npy = single_npy


def read_npz(
    path: str | os.PathLike,
    *,
    select: Callable[[str, tuple[int, ...], np.dtype], bool] | None = None,
) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive, every header checked before its data is read.

    No pickles; every member must be an ``.npy`` under a name of its own, with sizes its
    compressed size allows, and a header declaring exactly the bytes the member holds and
    no Python objects. A crafted file therefore cannot make the reader allocate more than
    about a thousand times its own size, and whatever is wrong with a damaged file, the
    answer is an :class:`NpzFileError`.

    Parameters
    ----------
    path : str or path-like
    select : callable, optional
        ``select(name, shape, dtype)`` sees each member's header before anything else is
        checked: True reads the member, False skips it (never read, its sizes unchecked);
        an exception it raises propagates unchanged. Default: read every member.

    Returns
    -------
    dict of str to ndarray
        By member name without ``.npy``, in archive order; writeable arrays.

    Raises
    ------
    NpzFileError
        If the file cannot be read, is not an archive (a single ``.npy`` included), or is
        not a well-formed archive of plain arrays. The message says what, not where:
        callers add the path and what the file should have been.
    """
    path = Path(path)
    try:
        with open(path, "rb") as file:
            start = file.read(len(_NPY_MAGIC))
    except OSError as exc:
        raise NpzFileError(f"cannot read it: {exc.strerror or exc}") from None
    if start == _NPY_MAGIC:
        raise NpzFileError("a single .npy array", archive=False, single_npy=True)
    if not start.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise NpzFileError("not an .npz archive", archive=False)
    arrays: dict[str, np.ndarray] = {}
    names: set[str] = set()
    try:
        size = path.stat().st_size
        archive = zipfile.ZipFile(path)
    except _NPZ_ERRORS as exc:
        raise NpzFileError(f"{type(exc).__name__}: {exc}") from None
    with archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if name == info.filename:
                raise NpzFileError(f"unexpected member {info.filename!r}")
            if name in names:
                raise NpzFileError(f"the member {name!r} appears twice")
            names.add(name)
            if info.compress_size > size or info.file_size > (
                info.compress_size * _DEFLATE_MAX_RATIO + 1024
            ):
                raise NpzFileError(f"member {name!r} has impossible sizes")
            try:
                shape, dtype, fortran, offset = _npy_header(archive, info)
            except _NPZ_ERRORS as exc:
                raise NpzFileError(f"{name}: {type(exc).__name__}: {exc}") from None
            if select is not None and not select(name, shape, dtype):
                continue  # never read, so its sizes do not matter
            if dtype.hasobject:
                raise NpzFileError(f"{name} holds Python objects, not numbers")
            count = math.prod(shape)
            if offset + count * dtype.itemsize != info.file_size:
                raise NpzFileError(
                    f"{name}: the header declares shape {shape} of {dtype}, "
                    f"{count * dtype.itemsize} bytes, the member holds {info.file_size - offset}"
                )
            try:
                data = _npy_data(archive, info)
                if count * dtype.itemsize == 0:
                    array = np.empty(shape, dtype)
                else:
                    array = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
            except NpzFileError:
                raise
            except _NPZ_ERRORS as exc:
                raise NpzFileError(f"{name}: {type(exc).__name__}: {exc}") from None
            arrays[name] = array.reshape(shape, order="F" if fortran else "C")
    return arrays


def _npy_header(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo
) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """``(shape, dtype, fortran_order, header_length)`` of one member, from its header."""
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f".npy format version {version} is not supported")
        return tuple(int(n) for n in shape), np.dtype(dtype), bool(fortran), member.tell()


def _npy_data(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytearray:
    """All the bytes of a member (its size checked beforehand), in chunks; reading to the
    end checks the member's CRC."""
    data = bytearray(info.file_size)
    filled = 0
    with archive.open(info) as member:
        while filled < len(data):
            chunk = member.read(min(_CHUNK, len(data) - filled))
            if not chunk:
                break
            data[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
        if filled != len(data) or member.read(1):
            raise NpzFileError(f"{info.filename}: not {len(data)} bytes as its entry says")
    return data

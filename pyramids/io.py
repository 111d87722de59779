"""Reading and writing images (PNG, JPEG, TIFF; 8- and 16-bit) and atomic file output.

Images come in through Pillow. 16-bit colour is the one case Pillow cannot carry without
losing bits, so 16-bit colour TIFFs go through ``tifffile`` (installed with scikit-image),
and 16-bit colour PNGs are refused with a clear message rather than silently cut to 8 bits.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image, UnidentifiedImageError

__all__ = ["ImageFileError", "atomic_path", "read_image", "write_image"]

_SIXTEEN_BIT_SUFFIXES = {".png", ".tif", ".tiff"}
_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


class ImageFileError(ValueError):
    """An image file that cannot be read or written (missing, corrupt, unsupported)."""


def _raw_mode(image: Image.Image) -> str:
    """Pillow's raw decoding mode of the first tile, e.g. ``'RGB;16B'`` (or ``''``)."""
    if not image.tile:
        return ""
    args = image.tile[0].args if hasattr(image.tile[0], "args") else image.tile[0][3]
    return args[0] if isinstance(args, tuple) else str(args)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file into an array of its native type.

    Parameters
    ----------
    path : str or path-like
        A PNG, JPEG, TIFF or BMP file.

    Returns
    -------
    ndarray, shape (h, w) or (h, w, 3)
        ``uint8`` for 8-bit files, ``uint16`` for 16-bit ones, ``float32`` for floating-point
        TIFFs. Palette and CMYK images become RGB; an alpha channel is dropped.
        :func:`pyramids.arrays.as_float_image` scales the integer types to [0, 1].

    Raises
    ------
    ImageFileError
        If the file is missing, not an image, truncated or of an unsupported kind.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageFileError(f"{path}: no such file")
    try:
        with Image.open(path) as image:
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
    except UnidentifiedImageError:
        raise ImageFileError(f"{path}: not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
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
        For an unsupported suffix, bit depth or shape, or a failed write.
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
    except OSError as exc:
        raise ImageFileError(f"{path}: cannot write ({exc})") from None
    return path

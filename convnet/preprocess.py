"""Turning an ordinary picture of a digit into an MNIST-like 28×28 input.

MNIST's digits were made by fitting each digit, keeping its aspect ratio, into a 20×20 box
(anti-aliased), then placing that box in a 28×28 frame so that the centre of mass of the
ink is at the centre. :func:`prepare_digit` does the same to a photo or a drawing: grey
levels, ink made light on a dark background (inverted if the background is light),
cropped to the ink, resized to fit 20×20, centred by mass.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pyramids.io import DEFAULT_MAX_PIXELS

from .data import center_by_mass

__all__ = ["DEFAULT_MAX_PIXELS", "load_digit_image", "prepare_digit"]


def prepare_digit(image: np.ndarray, threshold: float = 0.25) -> np.ndarray:
    """Preprocess one grey image of a digit as MNIST was made.

    Parameters
    ----------
    image : ndarray, shape (h, w), float in ``[0, 1]``
        Dark ink on light paper or light ink on dark; the background is taken to be the
        median of the border pixels.
    threshold : float
        Ink is where the contrast to the background exceeds this share of the largest
        contrast; it sets the crop.

    Returns
    -------
    ndarray, shape (28, 28), float32 in ``[0, 1]``, white digit on black

    Raises
    ------
    ValueError
        If the image is not 2-D, smaller than 2×2, not finite, or holds no visible digit.
    """
    from PIL import Image

    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"image must be a 2-D grey image, got shape {img.shape}")
    if min(img.shape) < 2:  # no border apart from the digit: the background is unknown
        raise ValueError(
            f"image is {img.shape[0]}×{img.shape[1]} pixels, too small for a digit (at least 2×2)"
        )
    if not np.isfinite(img).all():
        raise ValueError("image contains NaN or infinite values")
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    background = float(np.median(border))
    ink = img - background if background < 0.5 else background - img
    ink = np.clip(ink, 0, None)
    peak = ink.max()
    if peak < 0.05:
        raise ValueError("no digit found: the image has no contrast to its background")
    ink /= peak
    rows, cols = np.nonzero(ink > threshold)
    ink = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = ink.shape
    scale = 20 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resized = Image.fromarray(ink.astype(np.float32), mode="F").resize(size, Image.LANCZOS)
    box = np.clip(np.asarray(resized, dtype=np.float32), 0, 1)
    return center_by_mass(box, 28)


def _grey(array: np.ndarray, path: Path) -> np.ndarray:
    """An image array from :func:`pyramids.io.read_image` as grey float64 in ``[0, 1]``."""
    if array.dtype.kind in "ui":
        # Scale by the dtype's maximum: uint8 / 255, uint16 / 65535 (not a clip to 255).
        grey = array.astype(np.float64) / np.iinfo(array.dtype).max
    else:
        grey = _float_scale(array.astype(np.float64), path)
    if grey.ndim == 3:  # RGB: ITU-R 601 luma, as Pillow's convert("L")
        grey = grey[..., :3] @ np.array([0.299, 0.587, 0.114])
    return grey


def _float_scale(array: np.ndarray, path: Path) -> np.ndarray:
    """Float pixels as given if they lie in ``[0, 1]``, else divided by 255 (0 … 255)."""
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: image contains NaN or infinite values")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(
            f"{path}: values from {array.min():g} to {array.max():g}, expected 0 … 1 or 0 … 255"
        )
    return array / 255 if array.size and array.max() > 1 else array


def _read_npy(path: Path, max_pixels: int) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npy array ({exc})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive of several arrays
        array.close()
        raise ValueError(f"{path}: an .npz archive, expected one .npy array")
    if array.dtype.kind not in "uif":
        raise ValueError(f"{path}: not a numeric array (dtype {array.dtype})")
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D grey image, got shape {array.shape}")
    if array.size > max_pixels:
        raise ValueError(
            f"{path}: {array.shape[0]}×{array.shape[1]} = {array.size:,} pixels, above the "
            f"limit of {max_pixels:,}; raise it with --max-pixels"
        )
    return _float_scale(np.array(array, dtype=np.float64), path)


def load_digit_image(
    path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Read an image file (PNG, JPEG, …, or a ``.npy`` array) and :func:`prepare_digit` it.

    Parameters
    ----------
    path : str or path-like
        Colour images are converted to grey (ITU-R 601 luma); integer images are scaled by
        their dtype's maximum (8-bit by 255, 16-bit by 65535); a ``.npy`` file must hold a
        2-D numeric array with values in [0, 1] or 0 … 255 (divided by 255 if any value
        is above 1).
    max_pixels : int
        Refuse, from the file's header and before decoding it, an image with more pixels
        (width × height) than this (a small file can claim billions of pixels).

    Returns
    -------
    ndarray, shape (28, 28), float32 in ``[0, 1]``

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not an image, is larger than ``max_pixels``, or holds no digit
        (:class:`pyramids.io.ImageFileError` for a file that is not a readable image).
    """
    from pyramids.io import read_image

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such image file")
    if path.suffix.lower() == ".npy":
        array = _read_npy(path, max_pixels)
    else:
        array = _grey(read_image(path, max_pixels=max_pixels), path)
    try:
        return prepare_digit(array)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None

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

from .data import center_by_mass

__all__ = ["load_digit_image", "prepare_digit"]


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
        If the image is not 2-D, not finite, or holds no visible digit.
    """
    from PIL import Image

    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or min(img.shape) < 2:
        raise ValueError(f"image must be a 2-D grey image, got shape {img.shape}")
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


def load_digit_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file (PNG, JPEG, …, or a ``.npy`` array) and :func:`prepare_digit` it.

    Parameters
    ----------
    path : str or path-like
        Colour images are converted to grey (ITU-R 601 luma); integer images are scaled by
        their maximum value; a ``.npy`` file must hold a 2-D array with values in [0, 1]
        or 0 … 255.

    Returns
    -------
    ndarray, shape (28, 28), float32 in ``[0, 1]``

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not an image or holds no digit.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{path}: not a numeric .npy array ({exc})") from None
        if array.dtype.kind not in "uif":
            raise ValueError(f"{path}: not a numeric array (dtype {array.dtype})")
        array = array.astype(np.float64)
        if not np.isfinite(array).all():
            raise ValueError(f"{path}: image contains NaN or infinite values")
        if array.size and array.max() > 1:
            array = array / 255
    else:
        try:
            with Image.open(path) as im:
                array = np.asarray(im.convert("L"), dtype=np.float64) / 255
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"{path}: not an image file ({exc})") from None
    try:
        return prepare_digit(array)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None

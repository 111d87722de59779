"""Digit data: IDX files, MNIST-style directories, the embedded digits, splits.

MNIST, Fashion-MNIST and ``../shared/data/mnist-5k`` all ship as four IDX files under the
same names; :func:`load_mnist` reads any such directory. :func:`embedded_digits` builds a
small MNIST-like set from the 8×8 handwritten digits that scikit-learn bundles, so that
training works on a machine with no network and no data directory.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "FILES",
    "MNIST_MEAN",
    "MNIST_STD",
    "Dataset",
    "IDXError",
    "default_cache_dir",
    "embedded_digits",
    "load_mnist",
    "normalise",
    "read_idx",
    "validation_split",
]

#: Pixel statistics of the MNIST training set, in ``[0, 1]`` units (docs/design.md §5).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

#: The standard file names: (train images, train labels, test images, test labels).
FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

#: IDX element type codes (third byte of the magic number).
_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IDXError(ValueError):
    """A file is not a valid IDX file (bad magic number, truncated, corrupt)."""


@dataclass
class Dataset:
    """Images and labels for training and testing.

    Attributes
    ----------
    train_images, test_images : ndarray, shape (N, 28, 28), uint8
    train_labels, test_labels : ndarray, shape (N,), int64
    name : str
        What the data is, for log lines (``"MNIST from /path"``).
    classes : list of str
        Class names, index = label.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    name: str = "digits"
    classes: list[str] = field(default_factory=lambda: [str(d) for d in range(10)])


# --------------------------------------------------------------------------- IDX


def _open_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:  # a directory, no permission, an I/O error: the input is unusable
        raise IDXError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        # EOFError: the gzip stream ends early; BadGzipFile (an OSError) and zlib.error:
        # its bytes or CRC are wrong.
        raise IDXError(f"{path}: corrupt or truncated gzip file ({exc})") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    ndarray
        Shape from the header (``(N, rows, cols)`` for images, ``(N,)`` for labels), dtype
        from the header (``uint8`` for MNIST), in native byte order.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    IDXError
        If the file cannot be read, the magic number is wrong, or the data is shorter or
        longer than the header says.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    raw = _open_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise IDXError(
            f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'}, expected "
            "00 00 <type> <ndim>, e.g. 00000803 for images, 00000801 for labels)"
        )
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IDXError(f"{path}: truncated header ({len(raw)} bytes, need {header})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    # Python integers: a product of 32-bit dimensions can overflow int64.
    expected = math.prod(dims) * dtype.itemsize
    body = len(raw) - header
    if body < expected:
        raise IDXError(
            f"{path}: truncated: the header promises {'×'.join(map(str, dims))} values "
            f"({expected:,} bytes), the file holds {body:,}"
        )
    if body > expected:
        raise IDXError(f"{path}: {body - expected} unexpected bytes after the data {dims}")
    data = np.frombuffer(raw, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return data.reshape(dims).astype(dtype.newbyteorder("="))


def _find(directory: Path, name: str) -> Path:
    for candidate in (name, name.removesuffix(".gz")):
        if (directory / candidate).is_file():
            return directory / candidate
    raise FileNotFoundError(
        f"{directory}: missing {name} (an MNIST directory holds {', '.join(FILES)}, "
        "gzipped or not)"
    )


def load_mnist(directory: str | os.PathLike, name: str | None = None) -> Dataset:
    """Load an MNIST-style directory (MNIST, Fashion-MNIST, mnist-5k, …).

    Parameters
    ----------
    directory : str or path-like
        Holds the four standard files (:data:`FILES`), gzipped or not.
    name : str, optional
        Name for log lines; default ``"<directory name> (<directory>)"``.

    Returns
    -------
    Dataset

    Raises
    ------
    FileNotFoundError
        If the directory or a file is missing.
    IDXError
        If a file is corrupt, a split holds no images, images are empty or not uint8,
        labels are not whole numbers 0 … 9, or images and labels do not fit together.
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such data directory")
    arrays = [read_idx(_find(directory, f)) for f in FILES]
    for images, labels, split in ((arrays[0], arrays[1], "train"), (arrays[2], arrays[3], "test")):
        if images.ndim != 3 or images.dtype != np.uint8:
            raise IDXError(
                f"{directory}: {split} images must be uint8 of shape (N, rows, cols), "
                f"got {images.dtype} {images.shape}"
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise IDXError(
                f"{directory}: {len(images)} {split} images but labels of shape {labels.shape}"
            )
        if len(images) == 0 or images.shape[1] == 0 or images.shape[2] == 0:
            raise IDXError(f"{directory}: the {split} images are empty (shape {images.shape})")
        if labels.dtype.kind not in "iu":
            raise IDXError(f"{directory}: {split} labels must be integers, got {labels.dtype}")
    if arrays[0].shape[1:] != arrays[2].shape[1:]:
        raise IDXError(
            f"{directory}: train images are {arrays[0].shape[1:]}, test images "
            f"{arrays[2].shape[1:]}"
        )
    labels = [a.astype(np.int64) for a in (arrays[1], arrays[3])]
    if min(lab.min() for lab in labels) < 0 or max(lab.max() for lab in labels) > 9:
        raise IDXError(f"{directory}: labels must be 0 … 9")
    classes = [str(d) for d in range(10)]
    if "fashion" in directory.name.lower():
        classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]  # fmt: skip
    label = name or f"{directory.name} ({directory})"
    return Dataset(arrays[0], labels[0], arrays[2], labels[1], label, classes)


def default_cache_dir() -> Path:
    """Where downloaded MNIST lives: ``$CONVNET_CACHE``, else ``$XDG_CACHE_HOME/convnet/mnist``
    (``~/.cache/convnet/mnist``)."""
    if os.environ.get("CONVNET_CACHE"):
        return Path(os.environ["CONVNET_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "convnet" / "mnist"


# --------------------------------------------------------------------------- embedded digits

#: How many of scikit-learn's 1,797 digits (in their bundled order) are for training; the
#: rest are the test set. The order groups writers, so the split is mostly by writer, as
#: MNIST's is.
EMBEDDED_TRAIN = 1437


def embedded_digits() -> Dataset:
    """scikit-learn's 1,797 handwritten 8×8 digits, brought to MNIST's 28×28 format.

    Each 8×8 digit (values 0…16) gets a one-pixel zero margin and is upsampled 10×10 →
    20×20 with the package's own pyramid operator (:func:`pyramids.operators.expand`, the
    upsample-and-blur ``F`` of docs/design.md §1, zero boundary), so that it fills a 20×20 box
    as MNIST's digits do; it is then placed in a 28×28 frame with its centre of mass at the
    centre, as MNIST was made. The first :data:`EMBEDDED_TRAIN` images are for training,
    the remaining 360 for testing.

    Returns
    -------
    Dataset
        uint8 images ``(N, 28, 28)``, white digits on black, like MNIST.
    """
    from sklearn.datasets import load_digits

    from pyramids import expand

    digits = load_digits()
    small = np.pad(digits.images / 16.0, ((0, 0), (1, 1), (1, 1)))  # (N, 10, 10)
    # expand works on (h, w, c): the digits are stacked as channels and done in one call.
    big = expand(small.transpose(1, 2, 0), (20, 20), boundary="zero").transpose(2, 0, 1)
    big = np.clip(big, 0, 1)
    images = np.stack([center_by_mass(b, 28) for b in big])
    images = np.round(images * 255).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    k = EMBEDDED_TRAIN
    return Dataset(
        images[:k], labels[:k], images[k:], labels[k:], "embedded scikit-learn digits (28×28)"
    )


def center_by_mass(image: np.ndarray, size: int = 28) -> np.ndarray:
    """Place ``image (h, w)`` in a ``size × size`` zero frame with its centre of mass at
    the frame's centre (rounded to whole pixels, as MNIST's were).

    Parameters
    ----------
    image : ndarray, shape (h, w), float, non-negative, ``h, w ≤ size``
    size : int

    Returns
    -------
    ndarray, shape (size, size), same dtype
    """
    h, w = image.shape
    frame = np.zeros((size, size), dtype=image.dtype)
    total = image.sum()
    if total <= 0:
        cy, cx = (h - 1) / 2, (w - 1) / 2
    else:
        cy = float((image.sum(axis=1) * np.arange(h)).sum() / total)
        cx = float((image.sum(axis=0) * np.arange(w)).sum() / total)
    top = int(np.clip(round((size - 1) / 2 - cy), 0, size - h))
    left = int(np.clip(round((size - 1) / 2 - cx), 0, size - w))
    frame[top : top + h, left : left + w] = image
    return frame


# --------------------------------------------------------------------------- preparation


def normalise(images: np.ndarray, dtype=np.float32) -> np.ndarray:
    """uint8 images ``(N, H, W)`` to normalised network input ``(N, 1, H, W)``.

    Pixels are scaled to ``[0, 1]``, then standardised with MNIST's statistics,
    ``(x - 0.1307) / 0.3081`` (docs/design.md §5).
    """
    x = np.asarray(images)
    if x.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W), got {x.shape}")
    scale = 1 / 255 if x.dtype == np.uint8 else 1.0
    out = x.astype(dtype) * dtype(scale / MNIST_STD) - dtype(MNIST_MEAN / MNIST_STD)
    return out[:, None]


def validation_split(
    labels: np.ndarray, fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified indices ``(train, validation)`` carved from the training labels.

    Each class gives ``round(fraction · count)`` of its examples to the validation part,
    chosen by a generator seeded with ``seed``; the test set is never involved.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
    fraction : float
        In ``[0, 1)``.
    seed : int

    Returns
    -------
    train_idx, val_idx : ndarray of int, sorted
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        val.append(rng.choice(members, round(fraction * len(members)), replace=False))
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx, val_idx

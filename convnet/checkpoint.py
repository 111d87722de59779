"""Checkpoints: the state dict as ``.npz`` arrays plus JSON metadata, no pickles.

The file holds one array per parameter under its state-dict name and one more,
``__metadata__``, a 0-d unicode array with a JSON document: the architecture, the input
normalisation, the class names, the training settings and the package version. It is
written to a temporary name in the target directory and renamed into place, so a crash
never leaves a half-written checkpoint; it is read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from pyramids.io import atomic_path

from .data import MNIST_MEAN, MNIST_STD
from .model import LENET5_INPUT_SHAPE, Sequential, lenet5

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint"]

_META_KEY = "__metadata__"
FORMAT = "convnet-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model."""


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("pyramids-convnet")
    except Exception:  # the version is informative only: never fail a save over it
        return "unknown"


def save_checkpoint(
    path: str | os.PathLike,
    model: Sequential,
    *,
    classes: list[str] | None = None,
    training: dict | None = None,
    architecture: str = "lenet5",
) -> Path:
    """Write ``model``'s parameters and metadata to ``path`` atomically.

    Parameters
    ----------
    path : str or path-like
        Target file; ``.npz`` is the conventional suffix.
    model : Sequential
    classes : list of str, optional
        Class names by label (default the digits ``"0"`` … ``"9"``).
    training : dict, optional
        JSON-able training settings and results to record.
    architecture : str
        Name of the builder that recreates the model (only ``"lenet5"`` is known).

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    state = model.state_dict(copy=False)
    meta = {
        "format": FORMAT,
        "architecture": architecture,
        "input_shape": list(LENET5_INPUT_SHAPE),
        "normalisation": {"scale": 1 / 255, "mean": MNIST_MEAN, "std": MNIST_STD},
        "classes": classes or [str(d) for d in range(10)],
        "parameters": {k: list(v.shape) for k, v in state.items()},
        "dtype": str(next(iter(state.values())).dtype),
        "training": training or {},
        "version": _version(),
    }
    arrays = dict(state)
    arrays[_META_KEY] = np.array(json.dumps(meta))
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such directory for the checkpoint")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    return path


def load_checkpoint(path: str | os.PathLike) -> tuple[Sequential, dict]:
    """Rebuild a model from a checkpoint written by :func:`save_checkpoint`.

    Every parameter name and shape is checked against the architecture, and every
    mismatch is named.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    model : Sequential
        In evaluation mode.
    metadata : dict

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    CheckpointError
        If it is not a checkpoint, names an unknown architecture, or its parameters do not
        fit the architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise CheckpointError(f"{path}: not a convnet checkpoint (.npz) ({exc})") from None
    if _META_KEY not in arrays:
        raise CheckpointError(f"{path}: not a convnet checkpoint (no {_META_KEY} entry)")
    try:
        meta = json.loads(str(arrays.pop(_META_KEY)))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: unreadable metadata ({exc})") from None
    if meta.get("architecture") != "lenet5":
        raise CheckpointError(
            f"{path}: architecture {meta.get('architecture')!r} is not supported (lenet5 is)"
        )
    dtype = meta.get("dtype", "float32")
    if dtype not in ("float32", "float64"):
        raise CheckpointError(f"{path}: unsupported parameter dtype {dtype!r}")
    model = lenet5(dtype=dtype, seed=0)
    try:
        model.load_state_dict(arrays)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    model.eval()
    return model, meta

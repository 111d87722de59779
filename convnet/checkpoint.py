"""Checkpoints: the state dict as ``.npz`` arrays plus JSON metadata, no pickles.

The file holds one array per parameter under its state-dict name and one more,
``__metadata__``, a 0-d unicode array with a JSON document: the architecture, the input
normalisation, the class names, the training settings and the package version. A
committee (:class:`~convnet.committee.Committee`) is saved as its members' parameters
under ``members.<m>.<name>`` and ``"members": M`` in the metadata; a file without that
entry holds one network, as every file before committees did. It is
written to a temporary name in the target directory and renamed into place, so a crash
never leaves a half-written checkpoint; it is read by :func:`pyramids.io.read_npz` (no
pickles, every header checked before its data).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from pyramids.io import NpzFileError, atomic_path, read_npz

from .committee import MAX_MEMBERS, Committee, first_network
from .data import MNIST_MEAN, MNIST_STD
from .layers import (
    AvgPool2D,
    Conv2D,
    Flatten,
    Linear,
    MaxPool2D,
    Pad2D,
    ReLU,
    ScaledTanh,
    Sigmoid,
    Subsample2D,
    Tanh,
)
from .model import (
    LENET5_INPUT_SHAPE,
    LENET5_VARIANTS,
    Sequential,
    lenet5,
    lenet5_variant,
    state_mismatches,
)

__all__ = ["CheckpointError", "load_checkpoint", "logit_bound", "save_checkpoint"]

_META_KEY = "__metadata__"
FORMAT = "convnet-checkpoint/1"
_NORMALISATION = {"scale": 1 / 255, "mean": MNIST_MEAN, "std": MNIST_STD}
#: Longest metadata document read, in characters (a 120-epoch history is about 30,000).
_MAX_METADATA = 1 << 24
_MEMBER_NAME = re.compile(r"members\.(0|[1-9][0-9]{0,2})\.(.+)")


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
    model: Sequential | Committee,
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
    model : Sequential or Committee
        One network, or a committee of them (whose members are then saved).
    classes : list of str, optional
        Distinct class names by label, one per output of the network (default the digits
        ``"0"`` … ``"9"``).
    training : dict, optional
        JSON-able training settings and results to record.
    architecture : str
        Name of the builder that recreates the model (only ``"lenet5"`` is known).
        The metadata also records which of its variants ``model`` is (``"variant"``,
        :func:`~convnet.model.lenet5_variant`); a checkpoint without one is read as the
        ReLU variant, the only one earlier versions wrote.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    CheckpointError
        If ``classes`` is not a list of distinct strings, one per output, or ``model`` is
        not one of the LeNet-5 variants.
    FileNotFoundError
        If the target directory does not exist.
    """
    path = Path(path)
    variant = lenet5_variant(first_network(model))
    if variant is None:
        raise CheckpointError(
            f"the model is none of the LeNet-5 variants ({', '.join(LENET5_VARIANTS)})"
        )
    state = model.state_dict(copy=False)
    classes = [str(d) for d in range(10)] if classes is None else classes
    _check_classes(classes, _outputs(first_network(model)), "classes")
    meta = {
        "format": FORMAT,
        "architecture": architecture,
        "variant": variant,
        "input_shape": list(LENET5_INPUT_SHAPE),
        "normalisation": {"scale": 1 / 255, "mean": MNIST_MEAN, "std": MNIST_STD},
        "classes": list(classes),
        "parameters": {k: list(v.shape) for k, v in state.items()},
        "dtype": str(next(iter(state.values())).dtype),
        "training": training or {},
        "version": _version(),
    }
    if isinstance(model, Committee):
        meta["members"] = len(model)
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


def _read_arrays(path: Path, expected: dict[str, tuple]) -> tuple[dict[str, np.ndarray], dict]:
    """Read the parameter arrays and the metadata of an ``.npz``, checking every header first.

    Through :func:`pyramids.io.read_npz`: no array is read before its header's shape has
    been checked against ``expected``, so a crafted header cannot make the loader allocate
    more than the file holds; entries that are not parameters are not read at all. Returns
    the arrays read and the shape of every entry. A committee member's parameter,
    ``members.<m>.<name>``, is expected with the shape of ``<name>``.
    """
    shapes: dict[str, tuple] = {}

    def expected_shape(name: str) -> tuple | None:
        match = _MEMBER_NAME.fullmatch(name)
        if match and int(match[1]) < MAX_MEMBERS:
            return expected.get(match[2])
        return expected.get(name)

    def select(name: str, shape: tuple, dtype: np.dtype) -> bool:
        shapes[name] = shape
        if name == _META_KEY:
            if shape != () or dtype.kind != "U" or dtype.itemsize > _MAX_METADATA:
                raise CheckpointError(
                    f"{path}: {_META_KEY} must be one JSON string, got {dtype} {shape}"
                )
            return True
        wanted = expected_shape(name)
        if wanted is None:
            return False  # reported by the caller, never read
        if dtype.kind not in "fiu":
            raise CheckpointError(f"{path}: {name} holds {dtype} values, not numbers")
        return shape == wanted  # a wrong shape is named with the others

    try:
        arrays = read_npz(path, select=select)
    except NpzFileError as exc:
        if exc.single_npy:
            message = "a single .npy array, not a convnet checkpoint (an .npz archive)"
        elif not exc.archive:
            message = f"not a convnet checkpoint ({exc})"
        else:
            message = f"not a readable convnet checkpoint ({exc})"
        raise CheckpointError(f"{path}: {message}") from None
    if _META_KEY not in shapes:
        raise CheckpointError(f"{path}: not a convnet checkpoint (no {_META_KEY} entry)")
    return arrays, shapes


def _check_metadata(path: Path, meta: object, n_classes: int) -> dict:
    """Check the metadata document's types and values; return it."""
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"{path}: the metadata is a JSON {type(meta).__name__}, expected an object"
        )
    if meta.get("architecture") != "lenet5":
        raise CheckpointError(
            f"{path}: architecture {meta.get('architecture')!r} is not supported (lenet5 is)"
        )
    if meta.get("variant", "relu") not in LENET5_VARIANTS:
        raise CheckpointError(
            f"{path}: LeNet-5 variant {meta.get('variant')!r} is not one of "
            f"{', '.join(LENET5_VARIANTS)}"
        )
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
    if meta.get("dtype") not in ("float32", "float64"):
        raise CheckpointError(
            f"{path}: unsupported parameter dtype {meta.get('dtype')!r} (float32 or float64)"
        )
    if meta.get("input_shape") != list(LENET5_INPUT_SHAPE):
        raise CheckpointError(
            f"{path}: input shape {meta.get('input_shape')!r} is not "
            f"{list(LENET5_INPUT_SHAPE)} (one 28×28 grey digit)"
        )
    norm = meta.get("normalisation")
    if norm != _NORMALISATION:
        raise CheckpointError(
            f"{path}: input normalisation {norm!r} is not the one this version applies "
            f"({_NORMALISATION})"
        )
    classes = meta.get("classes")
    if "classes" not in meta:
        raise CheckpointError(f"{path}: the metadata has no 'classes' (the class names)")
    _check_classes(classes, n_classes, f"{path}: classes")
    members = meta.get("members", 1)
    if (
        isinstance(members, bool)
        or not isinstance(members, int)
        or not 1 <= members <= MAX_MEMBERS
    ):
        raise CheckpointError(
            f"{path}: members {members!r} is not a number of networks in 1…{MAX_MEMBERS}"
        )
    for key, kind in (("training", dict), ("parameters", dict), ("version", str)):
        if key in meta and not isinstance(meta[key], kind):
            raise CheckpointError(
                f"{path}: metadata {key!r} is a JSON {type(meta[key]).__name__}, "
                f"expected {'an object' if kind is dict else 'a string'}"
            )
    return meta


def _check_classes(classes: object, n_classes: int, where: str) -> None:
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise CheckpointError(f"{where} must be a list of strings, got {classes!r:.80}")
    if len(classes) != n_classes:
        raise CheckpointError(
            f"{where}: {len(classes)} names for the {n_classes} outputs of the network"
        )
    if len(set(classes)) != len(classes):
        raise CheckpointError(f"{where}: names must be distinct, got {classes!r:.80}")


def _outputs(model: Sequential) -> int:
    """Number of outputs of the last weighted layer."""
    weighted = [name for name, layer in model.layers if isinstance(layer, Conv2D | Linear)]
    return len(model.params[weighted[-1]]["bias"])


def logit_bound(model: Sequential) -> float:
    """An upper bound on ``|logit|`` over every normalised input of pixels in ``[0, 1]``.

    Every intermediate value of the forward pass, partial sums included, is at most the
    bound of its layer, which is propagated from the input: a convolution or linear layer
    maps a bound ``B`` on its input to ``max_o (Σ_j |W[o, j]| · B + |b[o]|)``, a trainable
    subsampling to ``max_c (|a[c]|·kh·kw·B + |b[c]|)``; ReLU, max- and average pooling and
    flattening do not increase it; padding raises it to the padding value's size if that
    is larger; tanh and sigmoid bring it to 1, the scaled tanh to its amplitude.
    Computed in float64; ``inf`` if it overflows even there.

    Parameters
    ----------
    model : Sequential
        Built from the layers of :mod:`convnet.layers`.

    Returns
    -------
    float
    """
    bound = max(abs(0 - MNIST_MEAN), abs(1 - MNIST_MEAN)) / MNIST_STD
    with np.errstate(over="ignore", invalid="ignore"):
        for name, layer in model.layers:
            if isinstance(layer, Conv2D | Linear):
                w = np.abs(model.params[name]["weight"].astype(np.float64))
                rows = w.reshape(len(w), -1).sum(axis=1)
                bias = np.abs(model.params[name]["bias"].astype(np.float64))
                bound = float(np.max(rows * bound + bias))
            elif isinstance(layer, Subsample2D):
                taps = layer.kernel_size[0] * layer.kernel_size[1]
                a = np.abs(model.params[name]["weight"].astype(np.float64))
                bias = np.abs(model.params[name]["bias"].astype(np.float64))
                bound = float(np.max(a * taps * bound + bias))
            elif isinstance(layer, Pad2D):
                bound = max(bound, abs(layer.value))
            elif isinstance(layer, Tanh | Sigmoid):
                bound = 1.0
            elif isinstance(layer, ScaledTanh):
                bound = layer.amplitude
            elif not isinstance(layer, ReLU | MaxPool2D | AvgPool2D | Flatten):
                raise TypeError(f"no bound for a layer of type {type(layer).__name__}")
    return bound if np.isfinite(bound) else float("inf")


def load_checkpoint(path: str | os.PathLike) -> tuple[Sequential | Committee, dict]:
    """Rebuild a model from a checkpoint written by :func:`save_checkpoint`.

    Everything is checked before the model is used: the file is an ``.npz`` archive whose
    entries are plain arrays (read header first, so no entry can make the loader allocate
    more than the file holds); the metadata is a JSON object naming the format, the
    architecture, a parameter dtype, the input shape and normalisation this version
    applies, and one distinct class name per output of the network; every parameter is
    there with its architecture's name and shape, and no other; every value is a finite
    number in the parameter dtype; and the weights cannot drive a logit past a quarter of
    the dtype's largest value for any input image (:func:`logit_bound`), so that the
    softmax, which subtracts the largest logit, cannot overflow. A committee's file holds
    exactly its ``members`` networks' parameters, each checked so.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    model : Sequential or Committee
        In evaluation mode; a :class:`~convnet.committee.Committee` when the metadata
        says ``members``.
    metadata : dict

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    CheckpointError
        If it cannot be read, is not a checkpoint, or fails any of the checks above; the
        message names the file and what is wrong.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    # Every variant's parameters may be read (their shapes are known before the metadata
    # says which variant the file holds); the variant's own are checked once it is known.
    expected = {}
    for variant in LENET5_VARIANTS:
        expected.update({k: v.shape for k, v in lenet5(variant=variant).state_dict().items()})
    arrays, shapes = _read_arrays(path, expected)
    try:
        meta = json.loads(str(arrays.pop(_META_KEY)))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: unreadable metadata ({exc})") from None
    meta = _check_metadata(path, meta, _outputs(lenet5(seed=0)))
    variant = meta.get("variant", "relu")
    reference = lenet5(seed=0, variant=variant)
    expected = {k: v.shape for k, v in reference.state_dict(copy=False).items()}
    committee = "members" in meta
    if committee:
        expected = {
            f"members.{m}.{k}": shape
            for m in range(meta["members"])
            for k, shape in expected.items()
        }
    shapes.pop(_META_KEY)
    problems = state_mismatches(expected, shapes)
    if problems:
        name = "LeNet-5" if variant == "relu" else f"LeNet-5 ({variant})"
        raise CheckpointError(f"{path}: parameters do not fit {name}: {problems}")
    dtype = np.dtype(meta["dtype"])
    state = {}
    for name, array in arrays.items():
        with np.errstate(over="ignore", invalid="ignore"):
            state[name] = array.astype(dtype)
        if not np.isfinite(state[name]).all():
            raise CheckpointError(f"{path}: {name} holds NaN or infinite values (as {dtype})")
    if committee:
        model = Committee(
            lenet5(dtype=dtype, seed=0, variant=variant) for _ in range(meta["members"])
        )
    else:
        model = lenet5(dtype=dtype, seed=0, variant=variant)
    model.load_state_dict(state)
    networks = model.members if committee else [model]
    bound, limit = max(logit_bound(n) for n in networks), float(np.finfo(dtype).max) / 4
    if not bound <= limit:
        raise CheckpointError(
            f"{path}: the weights are too large: a logit could reach {bound:.3g}, beyond "
            f"{limit:.3g} (a quarter of the largest {dtype} number), so predictions would "
            "overflow"
        )
    model.eval()
    return model, meta

"""Pyramids as OME-Zarr multiscales (NGFF 0.5), and large images read lazily.

:func:`write_multiscale` stores the levels of :mod:`pyramids.chunked` as one OME-Zarr image:
a Zarr v3 group whose arrays ``0``, ``1``, … are the levels, finest first, with NGFF 0.5
metadata (``ome.multiscales``: axes, a ``scale`` transform of ``2**k`` per level, ``type``
naming the method, and the kernel and boundary under ``metadata``). It is what
``pyramids decompose BIG.tif --zarr OUT.zarr`` writes; ``ome_zarr``'s reader, napari and
``zarr`` alone read it. Level ``k``'s pixel ``i`` lies at ``i·2**k`` in level 0's pixels,
as ``G`` keeps the even samples (docs/design.md §1.3), so no translation is needed.

Dtypes: a Gaussian pyramid of an integer image is stored in the image's dtype (each level
rounded to the nearest integer; level 0 is the image itself), of a float image in its
float dtype. A Laplacian pyramid's bands are signed: they are stored as float32 (float64
for a float64 image), the residual too; ``reconstruct`` of a uint16 image from float32
bands is within half a grey level before rounding.

Writing is all or nothing: the store is written under a hidden name beside ``OUT.zarr``,
levels first and the group's metadata last, and renamed into place only when complete. An
existing path is refused unless ``force``, and even then only a store that this module
wrote (its metadata says so) and that holds nothing else (no ``labels`` group or other file
added since) is replaced, by swapping it with the new one.

:func:`read_lazy` opens an OME-Zarr image (level 0), a TIFF (tile by tile, through
``tifffile``'s Zarr view) or any other image (decoded in memory) as a Dask array of shape
``(h, w)`` or ``(h, w, c)``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

try:
    import dask.array as da
    import zarr
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "pyramids.ngff needs dask and zarr: pip install 'pyramids-convnet[big]'"
    ) from exc

from .io import DEFAULT_MAX_PIXELS, read_image

__all__ = ["GENERATOR", "NotOmeZarrError", "is_ours", "read_lazy", "write_multiscale"]

#: The ``metadata.generator`` this module writes, by which it recognises its own stores.
GENERATOR = "pyramids"
NGFF_VERSION = "0.5"


class NotOmeZarrError(ValueError):
    """A path that should hold an OME-Zarr image does not."""


# --------------------------------------------------------------------------- reading


def _multiscales(group) -> list[dict]:
    attrs = dict(group.attrs)
    ome = attrs.get("ome", attrs)  # 0.5 nests under "ome", 0.4 does not
    scales = ome.get("multiscales") if isinstance(ome, dict) else None
    if not isinstance(scales, list) or not scales or not isinstance(scales[0], dict):
        raise NotOmeZarrError(f"{group.store} is a Zarr group without OME-Zarr multiscales")
    return scales


def _open_group(path: Path):
    try:
        return zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError, KeyError) as exc:
        raise NotOmeZarrError(f"{path} is not an OME-Zarr image: {exc}") from None


def is_ours(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an OME-Zarr store written by :func:`write_multiscale`."""
    try:
        scales = _multiscales(_open_group(Path(path)))
    except (NotOmeZarrError, OSError):
        return False
    metadata = scales[0].get("metadata")
    return isinstance(metadata, dict) and metadata.get("generator") == GENERATOR


def _read_ome_zarr(path: Path) -> da.Array:
    group = _open_group(path)
    multiscale = _multiscales(group)[0]
    if multiscale.get("type") == "laplacian":  # its level 0 is a band, not the image
        raise ValueError(f"{path} holds a Laplacian pyramid's bands, not an image")
    try:
        names = [axis["name"] if isinstance(axis, dict) else axis for axis in multiscale["axes"]]
        level0 = multiscale["datasets"][0]["path"]
        array = group[level0]
    except (KeyError, IndexError, TypeError) as exc:
        raise NotOmeZarrError(f"{path}: incomplete OME-Zarr metadata ({exc})") from None
    if len(names) != array.ndim or "y" not in names or "x" not in names:
        raise NotOmeZarrError(f"{path}: axes {names} do not fit an image of shape {array.shape}")
    x = da.from_zarr(array)
    for k in reversed(range(len(names))):  # t, z of size 1 are dropped
        if names[k] not in ("y", "x", "c") and x.shape[k] == 1:
            x, names = x[(slice(None),) * k + (0,)], names[:k] + names[k + 1 :]
    if sorted(names) not in (["x", "y"], ["c", "x", "y"]):
        raise NotOmeZarrError(f"{path}: only (y, x) and (c, y, x) images are read, got {names}")
    return x.transpose([names.index(a) for a in ("y", "x", "c") if a in names])


def _tiff_block(path: str, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    import tifffile

    try:
        with tifffile.imread(path, aszarr=True, series=0, level=0) as store:
            block = zarr.open_array(store, mode="r")[rows[0] : rows[1], cols[0] : cols[1]]
    except (ValueError, IndexError, KeyError) as exc:  # a corrupt tile, found when read
        raise ValueError(f"{path}: corrupt TIFF ({' '.join(str(exc).split())})") from None
    return np.asarray(block)


def _read_tiff(path: Path, max_pixels: int | None) -> da.Array:
    import tifffile

    log = logging.getLogger("tifffile")  # it logs what it skips; the error says it once
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ValueError("no image in it")
            series = tif.series[0]
            axes, shape, dtype = series.axes, tuple(series.shape), series.dtype
            tile = series.pages[0].tilelength or series.pages[0].rowsperstrip or 256
    except (ValueError, IndexError, KeyError, struct.error) as exc:  # TiffFileError: ValueError
        raise ValueError(f"{path}: not a TIFF image tifffile can read ({exc})") from None
    finally:
        log.setLevel(level)
    if axes not in ("YX", "YXS"):
        raise ValueError(f"{path}: TIFF axes {axes!r}; only YX and YXS (samples last) are read")
    if max_pixels is not None and shape[0] * shape[1] > max_pixels:
        raise ValueError(f"{path}: {shape[1]}×{shape[0]} pixels is more than --max-pixels")
    side = max(256, min(4096, int(tile) * max(1, 1024 // int(tile))))  # whole tiles, ~1024
    chunks = (
        (side,) * (shape[0] // side) + ((shape[0] % side,) if shape[0] % side else ()),
        (side,) * (shape[1] // side) + ((shape[1] % side,) if shape[1] % side else ()),
    )
    name = f"tiff-{tokenize(str(path), os.path.getmtime(path), chunks)}"
    dsk = {}
    bounds = [np.cumsum((0, *c)) for c in chunks]
    for i in range(len(chunks[0])):
        for j in range(len(chunks[1])):
            key = (name, i, j, *(0,) * (len(shape) - 2))
            rows = (int(bounds[0][i]), int(bounds[0][i + 1]))
            cols = (int(bounds[1][j]), int(bounds[1][j + 1]))
            dsk[key] = (_tiff_block, str(path), rows, cols)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[])
    return da.Array(graph, name, (*chunks, *((s,) for s in shape[2:])), dtype=dtype)


def read_lazy(path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> da.Array:
    """An image as a Dask array of shape ``(h, w)`` or ``(h, w, c)``, read when computed.

    Parameters
    ----------
    path : path
        An OME-Zarr image (a directory; level 0 is read), a TIFF (read tile by tile; a
        ``YX`` or ``YXS`` first series), or any image :func:`pyramids.read_image` reads
        (decoded in memory at once).
    max_pixels : int or None
        Refuse a TIFF or another image file of more pixels; an OME-Zarr store is not
        limited (it is read block by block whatever its size). None: no limit.

    Raises
    ------
    NotOmeZarrError
        For a directory that is not an OME-Zarr image.
    FileNotFoundError, ValueError
        For a missing or unreadable file.
    """
    path = Path(path)
    if path.is_dir():
        return _read_ome_zarr(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if path.suffix.lower() in (".tif", ".tiff"):
        return _read_tiff(path, max_pixels)
    limit = max_pixels if max_pixels is not None else 2**62
    return da.from_array(read_image(path, max_pixels=limit), chunks=1024)


# --------------------------------------------------------------------------- writing


def _quantise_block(block: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Floats scaled as :func:`pyramids.arrays.as_float_image` scales ``dtype``, back to it:
    ``[0, 1]`` for unsigned types, ``[min/max, 1]`` for signed ones (negatives kept)."""
    info = np.iinfo(dtype)
    top = float(info.max)
    return np.rint(np.clip(block, info.min / top, 1.0) * top).astype(dtype)


def _stored(level: da.Array, kind: str, source_dtype: np.dtype) -> da.Array:
    """A level in the dtype it is stored in (module docstring)."""
    if kind == "gaussian" and np.issubdtype(source_dtype, np.integer):
        return level.map_blocks(_quantise_block, source_dtype, dtype=source_dtype)
    if kind == "laplacian" and (level.dtype, source_dtype) != (np.float64, np.float64):
        return level.astype(np.float32)
    return level


def _axes(colour: bool) -> list[dict]:
    axes = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    return [{"name": "c", "type": "channel"}, *axes] if colour else axes


def _check_target(path: Path, force: bool) -> None:
    if not path.exists():
        return
    if not force:
        raise ValueError(f"{path} exists; pass --force to replace it (an OME-Zarr we wrote only)")
    if not is_ours(path):
        raise ValueError(
            f"{path} exists and is not an OME-Zarr store written by pyramids; not replacing it"
        )
    # ours, but something may have been added since (a labels group, notes): keep it
    levels = {d.get("path") for d in _multiscales(_open_group(path))[0].get("datasets", [])}
    added = sorted(p.name for p in path.iterdir() if p.name not in {"zarr.json", *levels})
    if added:
        raise ValueError(
            f"{path} holds {', '.join(added)}, which pyramids did not write; not replacing it"
        )


def write_multiscale(
    path: str | os.PathLike,
    levels: Sequence[da.Array],
    kind: str,
    *,
    source_dtype: np.dtype | type | str,
    metadata: dict | None = None,
    name: str | None = None,
    force: bool = False,
    compute: dict | None = None,
) -> Path:
    """Write pyramid levels as one OME-Zarr multiscale image (NGFF 0.5), all or nothing.

    Parameters
    ----------
    path : path
        The store to create (a directory, conventionally ``*.zarr``).
    levels : sequence of dask.array.Array, shape (h_k, w_k) or (h_k, w_k, c)
        Finest first: a Gaussian pyramid's images, or a Laplacian pyramid's bands followed
        by its residual (:mod:`pyramids.chunked`). Each is stored in blocks of the sides of
        its first Dask block (colour: one channel per block).
    kind : {'gaussian', 'laplacian'}
        Written as the multiscale's ``type``; decides the stored dtype (module docstring).
    source_dtype : dtype
        The dtype of the image the pyramid was built from.
    metadata : dict, optional
        Extra entries for ``multiscales[0].metadata`` (kernel, boundary, …).
    name : str, optional
        The multiscale's ``name``; default the path's stem.
    force : bool
        Replace an existing store, if it is one this function wrote.
    compute : dict, optional
        Keyword arguments for :func:`dask.array.store` (e.g. ``scheduler``).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        For an existing path without ``force``, or one that is not ours.
    """
    path = Path(path)
    if kind not in ("gaussian", "laplacian"):
        raise ValueError(f"kind must be 'gaussian' or 'laplacian', got {kind!r}")
    _check_target(path, force)
    source_dtype = np.dtype(source_dtype)
    colour = levels[0].ndim == 3
    parent = path.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=parent))
    try:
        group = zarr.open_group(str(stage), mode="w", zarr_format=3)
        sources, targets, datasets = [], [], []
        for k, level in enumerate(levels):
            stored = _stored(level, kind, source_dtype)
            block = (level.chunks[0][0], level.chunks[1][0])  # the level's own blocks
            if colour:  # NGFF orders the channel axis before y and x
                stored = stored.transpose(2, 0, 1)
                block = (1, *block)
            block = tuple(min(b, s) for b, s in zip(block, stored.shape))
            stored = stored.rechunk(block)
            target = group.create_array(
                str(k),
                shape=stored.shape,
                chunks=block,
                dtype=stored.dtype,
                dimension_names=[a["name"] for a in _axes(colour)],
            )
            sources.append(stored)
            targets.append(target)
            scale = [1.0] * colour + [float(2**k)] * 2
            datasets.append(
                {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
            )
        da.store(sources, targets, lock=False, **(compute or {}))
        described = {"generator": GENERATOR, **(metadata or {})}
        # the metadata last: a store without it is not an OME-Zarr image
        group.attrs["ome"] = {
            "version": NGFF_VERSION,
            "multiscales": [
                {
                    "name": name or path.stem,
                    "axes": _axes(colour),
                    "datasets": datasets,
                    "type": kind,
                    "metadata": described,
                }
            ],
        }
        _swap_in(stage, path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return path


def _swap_in(stage: Path, path: Path) -> None:
    """Rename the complete ``stage`` onto ``path``; an old store (ours) is removed after."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(stage, 0o777 & ~umask)  # mkdtemp makes 0700
    if not path.exists():
        os.replace(stage, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.absolute().parent))
    os.rmdir(old)
    os.replace(path, old)
    try:
        os.replace(stage, path)
    except OSError:
        os.replace(old, path)  # put the old store back
        raise
    with contextlib.suppress(OSError):
        shutil.rmtree(old)

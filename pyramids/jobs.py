"""Big images and many images from the command line, on Dask (``pyramids decompose``, ``blend``).

- ``pyramids decompose BIG.tif --kind gaussian|laplacian --zarr OUT.zarr [--chunks 1024]``
  builds the pyramid block by block (:mod:`pyramids.chunked`) and writes it as an OME-Zarr
  multiscale (:mod:`pyramids.ngff`): memory holds a few rows of blocks per level, so it
  grows with the image's width, not its area.
- ``pyramids decompose A.png B.png … -o DIR`` writes each image's decomposition to
  ``DIR/<stem>/`` (the files a single ``decompose`` writes), one task per image;
  ``pyramids blend DIR_A DIR_B MASK -o DIR`` blends the images of the same name in the two
  folders (``MASK`` one image for all, or a folder of masks of the same names).

``--scheduler`` says where the tasks run (:func:`scheduler`): ``threads`` (default, this
process), ``processes`` (a local ``dask.distributed`` cluster of one single-threaded worker
process per core, at most 4, on the loopback interface) or the address of a running
``dask.distributed`` scheduler, e.g. ``tcp://host:8786`` (its workers must see the input and
output paths, e.g. on a shared file system).

Every job is all or nothing: outputs are written under a hidden name and moved into place
only when every task has succeeded. A worker that dies makes the job fail with one line
(:class:`JobFailed`, exit status 1) after ``dask.distributed``'s retries, leaving nothing
published.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from .io import _SUFFIXES, image_size, read_image, write_image
from .kernels import resolve_kernel

__all__ = ["JobFailed", "blend_many", "decompose_many", "decompose_zarr", "run", "scheduler"]

#: Most worker processes of ``--scheduler processes``.
MAX_LOCAL_WORKERS = 4
#: How long to try to reach a scheduler given by its address, in seconds.
CONNECT_TIMEOUT = 10
#: How much longer to wait for the handshake that follows before giving up, in seconds.
HANDSHAKE_MARGIN = 5


class JobFailed(OSError):
    """A job that failed for a reason other than its input (a worker died, the cluster went
    away): a runtime failure, exit status 1."""


def _dask():
    try:
        import dask
    except ImportError as exc:
        raise ValueError("this command needs dask: pip install 'pyramids-convnet[big]'") from exc
    return dask


@contextlib.contextmanager
def scheduler(spec: str = "threads") -> Iterator[dict]:
    """Keyword arguments for ``dask.compute`` that run the tasks where ``spec`` says.

    The client is handed out in those arguments only; it never becomes dask's default
    scheduler, so nothing outside the ``with`` block is routed to it.

    Parameters
    ----------
    spec : str
        ``'threads'``, ``'sync'`` (one thread, for debugging), ``'processes'`` (a local
        ``dask.distributed`` cluster, closed at the end) or a scheduler address
        (``tcp://host:8786``).
    """
    _dask()
    if spec in ("threads", "sync"):
        yield {"scheduler": spec}
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ValueError(
            f"--scheduler {spec} needs dask.distributed: pip install 'pyramids-convnet[big]'"
        ) from exc
    if spec == "processes":
        from .parallel import _available_cores

        workers = min(_available_cores(), MAX_LOCAL_WORKERS)
        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",  # None still serves HTTP on 8787
            ) as cluster,
            Client(cluster, set_as_default=False) as client,
            _quiet_when_interrupted(),  # innermost: before they close
        ):
            yield {"scheduler": client}
        return
    if "://" not in spec and ":" not in spec:
        raise ValueError(
            f"--scheduler must be threads, processes or a scheduler address such as "
            f"tcp://host:8786, got {spec!r}"
        )
    client = _connect(Client, spec)
    with client, _quiet_when_interrupted():
        yield {"scheduler": client}


@contextlib.contextmanager
def _quiet_when_interrupted() -> Iterator[None]:
    """Silence ``dask.distributed``'s, asyncio's and tornado's loggers once a client or
    cluster closes because of Ctrl-C or SIGTERM: the workers logged the cancelled tasks
    above the command's one line. (After Ctrl-C, asyncio still prints "Task exception was
    never retrieved" for the client's gather tasks, not through these loggers.)"""
    try:
        yield
    except Exception:
        raise
    except BaseException:  # KeyboardInterrupt, the command's SIGTERM
        for name in ("distributed", "asyncio", "tornado"):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)
        raise


def _connect(client_class: type, spec: str):
    """A ``Client`` of the scheduler at ``spec``, or :class:`JobFailed` within a bounded time.

    ``Client(timeout=…)`` bounds the TCP connection but not the handshake that follows: a
    server there that is not a dask scheduler (an HTTP server, say) can keep it waiting
    forever, or send a "message length" that asks for exabytes. So the client is made in a
    daemon thread, abandoned after ``CONNECT_TIMEOUT + HANDSHAKE_MARGIN`` seconds.
    """
    box: dict = {}

    def connect() -> None:
        try:
            # not the default scheduler: a Client sets that in its constructor, before its
            # handshake, so one abandoned below would send every later compute() to itself
            box["client"] = client_class(spec, timeout=f"{CONNECT_TIMEOUT}s", set_as_default=False)
        except BaseException as exc:  # reported by the caller
            box["error"] = exc

    thread = threading.Thread(target=connect, name="pyramids-connect", daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT + HANDSHAKE_MARGIN)
    if thread.is_alive():
        raise JobFailed(
            f"cannot reach the dask scheduler at {spec}: no dask handshake within "
            f"{CONNECT_TIMEOUT + HANDSHAKE_MARGIN} s (is it a dask scheduler?)"
        )
    error = box.get("error")
    if isinstance(error, ValueError) and "client" not in box:
        raise ValueError(f"--scheduler {spec}: not a scheduler address ({error})") from None
    if isinstance(error, MemoryError):
        raise JobFailed(
            f"cannot reach the dask scheduler at {spec}: the server there does not speak "
            "dask's protocol"
        ) from None
    if error is not None:
        raise JobFailed(f"cannot reach the dask scheduler at {spec}: {error}") from None
    return box["client"]


def run(work: Callable[[], object]) -> object:
    """``work()``, with any failure of the cluster turned into :class:`JobFailed`.

    Errors of the input (``ValueError``, ``OSError`` such as a full disk) pass through.
    """
    try:
        return work()
    except (ValueError, OSError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # KilledWorker, CommClosedError, … from dask.distributed
        raise JobFailed(f"the job failed ({type(exc).__name__}): {exc}") from exc


# --------------------------------------------------------------------------- OME-Zarr


def decompose_zarr(args: argparse.Namespace) -> None:
    """``pyramids decompose IMAGE --zarr OUT.zarr``: a chunked pyramid as OME-Zarr."""
    from . import chunked, ngff
    from .cli import CommandError, _same_file

    if len(args.image) != 1:
        raise CommandError("--zarr takes one image")
    if args.kind not in ("gaussian", "laplacian"):
        raise CommandError("--zarr writes --kind gaussian or laplacian")
    if args.output is not None:
        raise CommandError("give --zarr or --output, not both")
    source, target = Path(args.image[0]), Path(args.zarr)
    if _same_file(source, target) or source.absolute() == target.absolute():
        raise CommandError(f"output {target} is the input; choose another name")
    inner, outer = source.resolve(), target.resolve()
    if outer in inner.parents or (source.is_dir() and inner in outer.parents):
        raise CommandError(f"output {target} and input {source} lie one inside the other")
    ngff._check_target(target, args.force)  # before any work
    # TIFF and OME-Zarr are read block by block: --max-pixels guards in-memory decoding only
    lazy = source.is_dir() or source.suffix.lower() in (".tif", ".tiff")
    x = ngff.read_lazy(source, max_pixels=None if lazy else args.max_pixels)
    build = chunked.gaussian_pyramid if args.kind == "gaussian" else chunked.laplacian_pyramid
    pyramid = build(x, args.levels, args.kernel, args.boundary, chunks=args.chunks)
    levels = list(pyramid) if args.kind == "gaussian" else [*pyramid.bands, pyramid.residual]
    metadata = {
        "method": f"pyramids.chunked.{build.__name__}",
        "kernel": args.kernel,
        "weights": resolve_kernel(args.kernel).tolist(),
        "boundary": args.boundary,
        "levels": len(levels) - 1,
    }
    stages = f".{target.name}.partial-*"
    before = set(target.absolute().parent.glob(stages))
    try:
        with scheduler(args.scheduler) as options:
            run(
                lambda: ngff.write_multiscale(
                    target,
                    levels,
                    args.kind,
                    source_dtype=x.dtype,
                    metadata=metadata,
                    force=args.force,
                    compute=options,
                )
            )
    finally:
        # write_multiscale removes its stage at once, but a block a worker was writing
        # then can bring it back: remove it again once the workers are gone
        for stage in set(target.absolute().parent.glob(stages)) - before:
            shutil.rmtree(stage, ignore_errors=True)
    shape = "×".join(str(s) for s in x.shape)
    print(f"wrote a {args.kind} pyramid of {len(levels) - 1} levels of {shape} to {target}")


# --------------------------------------------------------------------------- many images


@contextlib.contextmanager
def _stage(out: Path) -> Iterator[Path]:
    from .cli import _staging

    with _staging(out) as stage:
        yield stage


def _decompose_one(source: str, directory: str, options: dict) -> str:
    from .arrays import as_float_image
    from .cli import BUILDERS, write_decomposition

    raw = read_image(source, max_pixels=options["max_pixels"])
    pyramid = BUILDERS[options["kind"]](as_float_image(raw), argparse.Namespace(**options))
    Path(directory).mkdir()
    write_decomposition(pyramid, raw, Path(directory))
    return directory


def decompose_many(args: argparse.Namespace) -> None:
    """``pyramids decompose A.png B.png … -o DIR``: one decomposition per image."""
    from .cli import CommandError, _publish

    if args.output is None:
        raise CommandError("several images need --output DIR (one folder per image)")
    sources = [Path(p) for p in args.image]
    stems = [p.stem for p in sources]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise CommandError(f"two images would share an output folder: {', '.join(repeated)}")
    for path in sources:
        if path.is_dir():
            raise CommandError(f"{path} is a folder; give its images (e.g. {path}/*.png)")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise CommandError(f"output {out} exists and is not a directory")
    dask = _dask()
    options = {
        name: getattr(args, name)
        for name in ("kind", "levels", "kernel", "boundary", "orientations", "max_pixels")
    }
    with _stage(out) as stage:
        tasks = [
            dask.delayed(_decompose_one, pure=False)(str(p), str(stage / s), options)
            for p, s in zip(sources, stems)
        ]
        with scheduler(args.scheduler) as compute:
            run(lambda: dask.compute(*tasks, **compute))
        out.mkdir(parents=True, exist_ok=True)
        for path, stem in zip(sources, stems):
            _publish(stage / stem, out / stem, [path], args.force)
    print(f"wrote {args.kind} pyramids of {len(sources)} images to {out}/<name>/")


def _images_in(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir()) if p.suffix.lower() in _SUFFIXES}


def _blend_one(paths: Sequence[str], target: str, options: dict) -> str:
    from .blend import blend
    from .cli import _bit_depth

    sizes = [image_size(p, max_pixels=options["max_pixels"]) for p in paths]
    if len(set(sizes)) > 1:
        listed = ", ".join(f"{p} {w}×{h}" for p, (h, w) in zip(paths, sizes))
        raise ValueError(f"A, B and MASK must have the same shape (width×height): {listed}")
    a, b, mask = (read_image(p, max_pixels=options["max_pixels"]) for p in paths)
    if mask.ndim == 3 and a.ndim == 2:
        raise ValueError(f"{paths[2]}: a colour mask needs colour images")
    result = blend(a, b, mask, options["levels"], options["kernel"], options["boundary"])
    write_image(target, result, bit_depth=max(_bit_depth(a), _bit_depth(b)))
    return target


def blend_many(args: argparse.Namespace) -> None:
    """``pyramids blend DIR_A DIR_B MASK -o DIR``: the images of the same name, blended."""
    from .cli import CommandError, _same_file

    if args.output is None:
        raise CommandError("blending folders needs --output DIR")
    dir_a, dir_b, mask = Path(args.a), Path(args.b), Path(args.mask)
    if not dir_b.is_dir():
        raise CommandError(f"A is a folder, so B must be one too: {dir_b}")
    in_a, in_b = _images_in(dir_a), _images_in(dir_b)
    if set(in_a) != set(in_b) or not in_a:
        only_a, only_b = sorted(set(in_a) - set(in_b)), sorted(set(in_b) - set(in_a))
        raise CommandError(
            f"folders A and B must hold images of the same names (only in A: "
            f"{', '.join(only_a) or '-'}; only in B: {', '.join(only_b) or '-'})"
            if in_a
            else f"{dir_a} holds no images"
        )
    masks = _images_in(mask) if mask.is_dir() else dict.fromkeys(in_a, mask)
    missing = sorted(set(in_a) - set(masks))
    if missing:
        raise CommandError(f"no mask of the same name in {mask} for: {', '.join(missing)}")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise CommandError(f"output {out} exists and is not a directory")
    inputs = [*in_a.values(), *in_b.values(), *{masks[n] for n in in_a}]
    dask = _dask()
    options = {n: getattr(args, n) for n in ("levels", "kernel", "boundary", "max_pixels")}
    with _stage(out) as stage:
        tasks = [
            dask.delayed(_blend_one, pure=False)(
                [str(in_a[n]), str(in_b[n]), str(masks[n])], str(stage / n), options
            )
            for n in in_a
        ]
        with scheduler(args.scheduler) as compute:
            run(lambda: dask.compute(*tasks, **compute))
        for name in in_a:
            for path in inputs:
                if not args.force and _same_file(out / name, path):
                    raise CommandError(f"{out / name} would overwrite the input {path}")
        out.mkdir(parents=True, exist_ok=True)
        for name in in_a:
            os.replace(stage / name, out / name)
    print(f"blended {len(in_a)} pairs into {out}/")

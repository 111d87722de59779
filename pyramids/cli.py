"""Command line: ``pyramids blend | decompose | reconstruct | figures | magnify``.

Exit status: 0 on success; 2 for a usage or input error (a bad argument; a missing,
unreadable, corrupt, too large or inconsistent input file); 1 for a runtime failure (an
output that cannot be written, memory exhausted); 130 when interrupted (Ctrl-C) and 143
when terminated (SIGTERM), after removing temporary files (:mod:`pyramids.command`, shared
with the ``convnet`` command). Each failure is one line on stderr. Outputs are written
atomically and never onto an input unless ``--force`` is given; ``decompose`` writes its
whole directory or nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import itertools
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from .arrays import as_float_image
from .blend import blend
from .command import run_command
from .io import DEFAULT_MAX_PIXELS, _check_suffix, image_size, read_image, write_image
from .laplacian import gaussian_pyramid, laplacian_pyramid
from .operators import BOUNDARIES
from .pyramid import Pyramid, PyramidFileError, read_pyramid_file
from .samples import sample_images
from .steerable import SteerablePyramid, steerable_pyramid
from .steerable_freq import steerable_pyramid_freq
from .video import DEFAULT_FOLDER_FPS

IMAGES = Path(__file__).resolve().parent.parent / "images"
SAMPLE_NAMES = ("cat.png", "coffee.png", "mask.png")
FIGURE_NAMES = (
    "blend.jpg",
    "blend_vs_cut.jpg",
    "laplacian_montage.jpg",
    "gaussian_montage.jpg",
    "steerable_montage.jpg",
)
STEERABLE_METHODS = ("mirror", "adjoint", "exact")
#: The kinds that take ``--orientations``.
ORIENTED_KINDS = ("steerable", "steerable-freq", "complex")
_RECONSTRUCT = inspect.signature(SteerablePyramid.reconstruct).parameters


class CommandError(ValueError):
    """A usage or input error found by the command line itself: one line, exit status 2."""


def _kernel(text: str) -> str | float:
    """``--kernel`` accepts a name (``binomial``, ``binomial7``) or a Burt–Adelson ``a``."""
    try:
        return float(text)
    except ValueError:
        return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _bit_depth(array: np.ndarray) -> int:
    return 16 if array.dtype == np.uint16 else 8


def _same_file(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and os.path.samefile(a, b)


def _check_output(output: Path, inputs: Sequence[Path], force: bool) -> None:
    """Refuse, before any work, an output image of an unknown format or one that is an input."""
    _check_suffix(output)
    if force:
        return
    for path in inputs:
        if _same_file(output, path):
            raise CommandError(
                f"output {output} is also an input; choose another name or pass --force"
            )


# --------------------------------------------------------------------------- blend


def _cmd_blend(args: argparse.Namespace) -> None:
    given = [args.a, args.b, args.mask]
    if any(given) and not all(given):
        raise CommandError("blend takes three images, A B MASK, or none for the samples")
    if args.a is not None and Path(args.a).is_dir():
        from .jobs import blend_many  # folders of images, on Dask

        return blend_many(args)
    output = Path(args.output or "blend.png")
    if all(given):
        paths = [Path(p) for p in given]
    else:
        paths = [IMAGES / name for name in SAMPLE_NAMES]
        if not all(p.is_file() for p in paths):
            paths = []  # an installed package without the repository's images/
        print(f"blending the sample images {', '.join(SAMPLE_NAMES)}")
    _check_output(output, paths, args.force)
    if paths:
        # sizes from the headers first: a mismatch is found without decoding anything
        sizes = [image_size(p, max_pixels=args.max_pixels) for p in paths]
        if len(set(sizes)) > 1:
            listed = ", ".join(f"{p} {w}×{h}" for p, (h, w) in zip(paths, sizes))
            raise CommandError(f"A, B and MASK must have the same shape (width×height): {listed}")
        a, b, mask = (read_image(p, max_pixels=args.max_pixels) for p in paths)
    else:
        a, b, mask = sample_images()
    if mask.ndim == 3 and a.ndim == 2:
        raise CommandError("a colour mask needs colour images")
    result = blend(a, b, mask, levels=args.levels, kernel=args.kernel, boundary=args.boundary)
    write_image(output, result, bit_depth=max(_bit_depth(a), _bit_depth(b)))
    print(f"wrote {output}")


# --------------------------------------------------------------------------- decompose

#: How ``decompose --kind`` builds each kind of pyramid from an image and the options.
BUILDERS: dict[str, Callable[[np.ndarray, argparse.Namespace], Pyramid]] = {
    "gaussian": lambda image, args: gaussian_pyramid(
        image, args.levels, args.kernel, args.boundary
    ),
    "laplacian": lambda image, args: laplacian_pyramid(
        image, args.levels, args.kernel, args.boundary
    ),
    "steerable": lambda image, args: steerable_pyramid(
        image, levels=args.levels, orientations=args.orientations, boundary=args.boundary
    ),
    # frequency-domain pyramids: periodic borders, so --boundary and --kernel do not apply
    "steerable-freq": lambda image, args: steerable_pyramid_freq(
        image, args.levels, args.orientations or 4
    ),
    "complex": lambda image, args: steerable_pyramid_freq(
        image, args.levels, args.orientations or 4, complex=True
    ),
}


@contextlib.contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A temporary directory on ``out``'s file system, removed at the end whatever happens.

    It lies inside ``out`` when that exists, else in the nearest existing ancestor, so that
    nothing (not even an empty ``out``) is created until everything is ready.
    """
    anchor = out if out.is_dir() else next(p for p in out.absolute().parents if p.is_dir())
    stage = Path(tempfile.mkdtemp(prefix=".pyramids-decompose-", dir=anchor))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _publish(stage: Path, out: Path, inputs: Sequence[Path], force: bool) -> None:
    """Move every file of ``stage`` into ``out``, refusing to replace an input."""
    names = sorted(p.name for p in stage.iterdir())
    if not out.is_dir():
        out.parent.mkdir(parents=True, exist_ok=True)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(stage, 0o777 & ~umask)  # mkdtemp makes 0700; give it the usual permissions
        os.replace(stage, out)
        return
    for name in names:
        for path in inputs:
            if not force and _same_file(out / name, path):
                raise CommandError(
                    f"{out / name} would overwrite the input {path}; choose another output "
                    "directory or pass --force"
                )
    # The old pyramid.npz goes first and the new one comes last, so that new pictures never
    # sit beside an old pyramid.npz, even if a move fails halfway.
    (out / "pyramid.npz").unlink(missing_ok=True)
    for name in sorted(names, key=lambda name: name == "pyramid.npz"):
        os.replace(stage / name, out / name)


def write_decomposition(pyramid: Pyramid, raw: np.ndarray, directory: Path) -> None:
    """What ``decompose`` writes: each level's picture, the montage and ``pyramid.npz``."""
    pictures = pyramid.pictures()
    for name, picture in pictures.items():
        write_image(directory / f"{name}.png", picture)
    write_image(directory / "montage.png", pyramid.montage(pictures))
    # remember the input's bit depth, so that reconstruct writes it back the same way
    pyramid.save(directory / "pyramid.npz", attrs={"bit_depth": _bit_depth(raw)})


def _cmd_decompose(args: argparse.Namespace) -> None:
    if args.kind not in ORIENTED_KINDS and args.orientations is not None:
        raise CommandError(f"--orientations applies to --kind {', '.join(ORIENTED_KINDS)} only")
    if args.zarr is not None or len(args.image) > 1:
        from . import jobs  # big images and many images, on Dask

        return jobs.decompose_zarr(args) if args.zarr is not None else jobs.decompose_many(args)
    if args.output is None:
        raise CommandError("decompose needs --output DIR (or --zarr OUT.zarr)")
    source = Path(args.image[0])
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise CommandError(f"output {out} exists and is not a directory")
    raw = read_image(source, max_pixels=args.max_pixels)
    pyramid = BUILDERS[args.kind](as_float_image(raw), args)
    with _staging(out) as stage:
        write_decomposition(pyramid, raw, stage)
        _publish(stage, out, [source], args.force)
    print(
        f"wrote a {args.kind} pyramid of {pyramid.levels} levels to {out}/ "
        "(montage.png, pyramid.npz)"
    )


# --------------------------------------------------------------------------- reconstruct


def _cmd_reconstruct(args: argparse.Namespace) -> None:
    source = Path(args.source)
    npz = source / "pyramid.npz" if source.is_dir() else source
    _check_suffix(Path(args.output))  # before any work
    saved = read_pyramid_file(npz, max_pixels=args.max_pixels)
    bit_depth = saved.attrs.get("bit_depth", 8)
    if type(bit_depth) is not int or bit_depth not in (8, 16):
        raise PyramidFileError(f"{npz}: attrs bit_depth must be 8 or 16, got {bit_depth!r:.40}")
    # only the options given: the others keep the library's defaults
    options = {"method": args.method, "refine": args.refine}
    options = {name: value for name, value in options.items() if value is not None}
    accepted = inspect.signature(saved.pyramid.reconstruct).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    for name in options:
        if name not in accepted and not takes_any:
            raise CommandError(f"--{name} does not apply to a {saved.kind} pyramid")
    image = saved.pyramid.reconstruct(**options)
    write_image(args.output, image, bit_depth=args.bit_depth or bit_depth)
    print(f"wrote {args.output}")


# --------------------------------------------------------------------------- figures


def _cmd_figures(args: argparse.Namespace) -> None:
    """Write the sample inputs and the pyramid figures; nothing else (see the help)."""
    out = Path(args.output)
    cat, coffee, mask = sample_images()
    for name, image in zip(SAMPLE_NAMES, (cat, coffee, mask.astype(np.uint8) * 255)):
        write_image(out / name, image)
    blended = blend(cat, coffee, mask)
    hard = np.where(mask[..., None], cat, coffee) / 255.0
    write_image(out / "blend.jpg", blended)
    write_image(out / "blend_vs_cut.jpg", np.concatenate([hard, blended], axis=1))
    write_image(out / "laplacian_montage.jpg", laplacian_pyramid(cat, levels=5).montage())
    write_image(out / "gaussian_montage.jpg", gaussian_pyramid(cat, levels=5).montage())
    grey = cat.astype(np.float64).mean(axis=2) / 255.0
    write_image(out / "steerable_montage.jpg", steerable_pyramid(grey, levels=3).montage())
    print(f"wrote {', '.join(SAMPLE_NAMES + FIGURE_NAMES)} to {out}/")


# --------------------------------------------------------------------------- magnify


def _new_folders(path: Path) -> list[Path]:
    """The missing folders above ``path``, deepest first; an error if a file is in the way."""
    missing = []
    for parent in path.absolute().parents:
        if parent.is_dir():
            break
        if parent.exists():
            raise CommandError(f"cannot write {path}: {parent} is not a folder")
        missing.append(parent)
    return missing


def _cmd_magnify(args: argparse.Namespace) -> None:
    """Magnify the motion in a video (or the sample), streaming frame by frame."""
    import time

    from .magnify import LinearMagnifier, PhaseMagnifier, check_band
    from .samples import SAMPLE_VIDEO_BAND, SAMPLE_VIDEO_FPS, sample_video
    from .video import VideoReader, is_video_output, write_video

    output = Path(args.output)
    into_folder = not is_video_output(output)  # a known suffix, or none: before any work
    if not into_folder and output.is_dir():
        raise CommandError(f"output {output} is a folder; name a video file or a new folder")
    if args.slice is not None:
        _check_suffix(Path(args.slice))
        if Path(args.slice).is_dir():
            raise CommandError(f"--slice {args.slice} is a folder; name an image file")
        if into_folder and Path(args.slice).resolve().parent == output.resolve():
            raise CommandError(
                f"--slice {args.slice} is inside the output folder {output}; choose another name"
            )
    # the folders a failed run must not leave behind (atomic writes create them)
    created = _new_folders(output) + (_new_folders(Path(args.slice)) if args.slice else [])
    created.sort(key=lambda folder: len(folder.parts), reverse=True)
    if args.video is not None:
        source = Path(args.video)
        if not args.force and _same_file(output, source):
            raise CommandError(
                f"output {output} is the input; choose another name or pass --force"
            )
        if args.slice is not None:
            # every PNG of an input folder is an input (not only those numbered as frames)
            inputs = sorted(source.glob("*.[pP][nN][gG]")) if source.is_dir() else [source]
            _check_output(Path(args.slice), inputs, args.force)
        if args.band is None:
            raise CommandError("--band LOW HIGH (Hz) is required with a VIDEO")
        reader = VideoReader(source, fps=args.fps)
        fps, shape, frames = reader.fps, reader.shape, reader.frames()
    else:
        print(f"magnifying the sample video (a cat breathing; --band {SAMPLE_VIDEO_BAND})")
        fps = SAMPLE_VIDEO_FPS if args.fps is None else args.fps  # --fps 0 is refused
        frames = sample_video()
        first = next(frames)
        shape = first.shape
        frames = itertools.chain([first], frames)
        reader = None
    band = args.band or SAMPLE_VIDEO_BAND
    check_band(band, fps)
    options = {"levels": args.levels, "order": args.order, "threads": args.threads}
    if args.method == "phase":
        if args.lambda_c is not None:
            raise CommandError("--lambda-c applies to --method linear only")
        magnifier = PhaseMagnifier(
            shape,
            fps,
            args.alpha,
            band,
            orientations=4 if args.orientations is None else args.orientations,
            sigma=args.sigma,
            attenuate_other=args.attenuate_other,
            **options,
        )
    else:
        if args.orientations is not None or args.attenuate_other or args.sigma:
            raise CommandError(
                "--orientations, --sigma and --attenuate-other apply to --method phase only"
            )
        lambda_c = 16.0 if args.lambda_c is None else args.lambda_c
        magnifier = LinearMagnifier(shape, fps, args.alpha, band, lambda_c=lambda_c, **options)
    columns: list[tuple[np.ndarray, np.ndarray]] = []  # one column per frame: h × t

    def stream() -> Iterator[np.ndarray]:
        for frame in frames:
            out = np.clip(magnifier(frame), 0.0, 1.0)
            if args.slice is not None:
                column = frame.shape[1] // 2
                # the input's column scaled as the magnifier scales it (8- or 16-bit)
                before = as_float_image(frame[:, column : column + 1])[:, 0]
                columns.append((before, out[:, column]))
            yield out

    try:
        start = time.perf_counter()
        count = write_video(output, stream(), fps, force=args.force)
        seconds = time.perf_counter() - start
        print(
            f"wrote {output}: {count} frames, {args.method} ×{args.alpha:g} in "
            f"{band[0]:g}–{band[1]:g} Hz ({count / seconds:.1f} frames/s end to end)"
        )
        shortfall = reader.shortfall() if reader is not None else None
        if shortfall:
            print(f"pyramids magnify: warning: {shortfall}", file=sys.stderr)
        if args.slice is not None:
            # time runs left to right, two pixels per frame
            before = np.repeat(np.stack([c[0] for c in columns], axis=1), 2, axis=1)
            after = np.repeat(np.stack([c[1] for c in columns], axis=1), 2, axis=1)
            gap = np.ones((before.shape[0], 4, *before.shape[2:]), dtype=np.float32)
            write_image(args.slice, np.concatenate([before, gap, after], axis=1))
            print(f"wrote {args.slice}: the middle column over time, input (left) and output")
    except BaseException:
        for folder in created:  # only those left empty: a finished output keeps its own
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


# --------------------------------------------------------------------------- parser


def _add_pyramid_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--levels", type=int, help="number of reductions (default: automatic)")
    parser.add_argument(
        "--kernel",
        type=_kernel,
        default="binomial",
        help="low-pass kernel: binomial (default), binomialN (N odd, at most 16383), or a "
        "Burt–Adelson a such as 0.4",
    )
    parser.add_argument("--boundary", choices=BOUNDARIES, default="reflect")


def _add_max_pixels(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse {what} of more than N pixels (width × height), read from the header "
        f"before decoding (default 2**28 = {DEFAULT_MAX_PIXELS})",
    )


def _add_scheduler(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scheduler",
        default="threads",
        metavar="threads|processes|ADDRESS",
        help="where Dask runs the work of --zarr and of several images: threads (default), "
        "processes (a local dask.distributed cluster) or a scheduler such as tcp://host:8786",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pyramids`` command."""
    parser = argparse.ArgumentParser(
        prog="pyramids",
        description="Image pyramids on sparse operators.",
        epilog="Exit status: 0 success, 2 usage or input error, 1 runtime failure (e.g. an "
        "output that cannot be written), 130 interrupted.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("blend", help="Laplacian-blend A and B under MASK (default: samples)")
    p.add_argument("a", nargs="?", help="image taken where the mask is 1")
    p.add_argument("b", nargs="?", help="image taken where the mask is 0")
    p.add_argument("mask", nargs="?", help="grey mask image (white takes A)")
    p.add_argument(
        "-o",
        "--output",
        help="output image (blend.png); a directory when A and B are folders of images",
    )
    p.add_argument("--force", action="store_true", help="allow overwriting an input")
    _add_pyramid_options(p)
    _add_max_pixels(p, "images")
    _add_scheduler(p)
    p.set_defaults(run=_cmd_blend)

    p = sub.add_parser("decompose", help="write every level, a montage and an .npz")
    p.add_argument(
        "image", nargs="+", help="an image; several: one folder each in --output, on Dask"
    )
    p.add_argument("--kind", choices=sorted(BUILDERS), default="laplacian")
    p.add_argument(
        "--orientations",
        type=int,
        help="steerable: 1, 2, 4 (default) or 6; steerable-freq: 1 … 16, complex: 2 … 16 "
        "(default 4)",
    )
    p.add_argument(
        "-o",
        "--output",
        help="output directory, written all at once (its files are replaced, the others kept)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="allow overwriting the input image; with --zarr, replace a store pyramids wrote",
    )
    _add_pyramid_options(p)
    _add_max_pixels(p, "an image")
    p.add_argument(
        "--zarr",
        metavar="OUT.zarr",
        help="build the pyramid in blocks on Dask and write it as an OME-Zarr multiscale "
        "(--kind gaussian or laplacian; TIFF and OME-Zarr inputs are read lazily)",
    )
    p.add_argument(
        "--chunks", type=_positive_int, default=1024, help="block side for --zarr (1024)"
    )
    _add_scheduler(p)
    p.set_defaults(run=_cmd_decompose)

    p = sub.add_parser("reconstruct", help="collapse a pyramid.npz (or its directory)")
    p.add_argument("source", help="a pyramid.npz written by decompose, or its directory")
    p.add_argument("-o", "--output", required=True, help="output image")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), help="default: the input's")
    p.add_argument(
        "--method",
        choices=STEERABLE_METHODS,
        help="steerable pyramids: the mirror synthesis, the adjoint, or the least-squares "
        f"inverse (default: the library's, {_RECONSTRUCT['method'].default})",
    )
    p.add_argument(
        "--refine",
        type=int,
        metavar="N",
        help="steerable pyramids, --method mirror only: N correction steps x += S(c - Ax), "
        "refused where they need not converge (boundaries other than reflect, or periodic "
        f"with an odd side); default {_RECONSTRUCT['refine'].default}",
    )
    _add_max_pixels(p, "arrays")
    p.set_defaults(run=_cmd_reconstruct)

    p = sub.add_parser(
        "figures",
        help=f"write the sample inputs ({', '.join(SAMPLE_NAMES)}) and the pyramid pictures "
        f"of the README ({', '.join(FIGURE_NAMES)}); not learning_curves.png, which "
        "'convnet train --plot' draws",
    )
    p.add_argument("-o", "--output", default="images", help="output directory (images)")
    p.set_defaults(run=_cmd_figures)

    p = sub.add_parser(
        "magnify",
        help="magnify small motions in a video (phase-based or linear); default: a sample",
        description="Motion magnification, streamed frame by frame (docs/design.md §6.1). "
        "VIDEO is a video file (needs the 'video' extra, imageio-ffmpeg) or a folder of "
        "numbered PNG frames; without it, a sample video made from the package's cat.",
    )
    p.add_argument("video", nargs="?", help="input video file or folder of PNG frames")
    p.add_argument("--method", choices=("phase", "linear"), default="phase")
    p.add_argument(
        "--alpha",
        type=float,
        default=20.0,
        help="magnification factor α > 0 (default 20)",
    )
    p.add_argument(
        "--band",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="temporal pass band in Hz, LOW < HIGH < fps/2 (required with VIDEO)",
    )
    p.add_argument(
        "--fps",
        type=float,
        help=f"frame rate (default: the video's; {DEFAULT_FOLDER_FPS:g} for a folder)",
    )
    p.add_argument(
        "--levels",
        type=int,
        help="pyramid levels (default: phase all octaves, linear all but the 2 smallest)",
    )
    p.add_argument("--orientations", type=int, help="phase: 2 … 16 (default 4)")
    p.add_argument(
        "--sigma",
        type=float,
        default=0.0,
        help="phase: amplitude-weighted smoothing of the phase, in pixels (default 0)",
    )
    p.add_argument(
        "--attenuate-other", action="store_true", help="phase: remove the motion outside the band"
    )
    p.add_argument(
        "--lambda-c",
        type=float,
        help="linear: cut-off wavelength λc in pixels (default 16)",
    )
    p.add_argument(
        "--order",
        type=_positive_int,
        default=1,
        help="Butterworth order of the temporal band-pass (default 1)",
    )
    p.add_argument("--threads", type=_positive_int, help="FFT and pyramid threads")
    p.add_argument(
        "-o",
        "--output",
        default="magnified.mp4",
        help="output video (.mp4, .mkv, .mov, .avi) or folder of PNG frames "
        "(no suffix); default magnified.mp4",
    )
    p.add_argument(
        "--slice",
        metavar="IMAGE",
        help="also write a space-time slice (the middle column over time, 2 pixels a frame), "
        "input beside output",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="allow replacing the input or an existing output folder",
    )
    p.set_defaults(run=_cmd_magnify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0, 1, 2, 130 or 143: module docstring)."""
    args = build_parser().parse_args(argv)
    return run_command(lambda: args.run(args), f"pyramids {args.command}")


if __name__ == "__main__":
    sys.exit(main())

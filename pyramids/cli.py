"""Command line: ``pyramids blend | decompose | reconstruct | figures``.

Every failure a user can cause (a missing or corrupt file, a bad argument) ends with one
line on stderr and exit status 2; outputs are written atomically and never onto an input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .arrays import as_float_image
from .blend import blend
from .display import band_to_display, grid_montage, pyramid_montage
from .io import ImageFileError, atomic_path, read_image, write_image
from .laplacian import LaplacianPyramid, gaussian_pyramid, laplacian_pyramid
from .operators import BOUNDARIES
from .samples import sample_images
from .steerable import SteerablePyramid, steerable_pyramid

IMAGES = Path(__file__).resolve().parent.parent / "images"
SAMPLE_NAMES = ("cat.png", "coffee.png", "mask.png")


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def _kernel(text: str) -> str | float:
    """``--kernel`` accepts a name (``binomial``, ``binomial7``) or a Burt–Adelson ``a``."""
    try:
        return float(text)
    except ValueError:
        return text


def _bit_depth(array: np.ndarray) -> int:
    return 16 if array.dtype == np.uint16 else 8


def _check_output(output: Path, inputs: Sequence[Path], force: bool) -> None:
    if force or not output.exists():
        return
    for path in inputs:
        if path.exists() and output.resolve() == path.resolve():
            raise CommandError(
                f"output {output} is also an input; choose another name or pass --force"
            )


# --------------------------------------------------------------------------- blend


def _cmd_blend(args: argparse.Namespace) -> None:
    given = [args.a, args.b, args.mask]
    if any(given) and not all(given):
        raise CommandError("blend takes three images, A B MASK, or none for the samples")
    if all(given):
        paths = [Path(p) for p in given]
        a, b, mask_image = (read_image(p) for p in paths)
    else:
        paths = [IMAGES / name for name in SAMPLE_NAMES]
        if all(p.is_file() for p in paths):
            a, b, mask_image = (read_image(p) for p in paths)
        else:  # an installed package without the repository's images/
            a, b, mask_image = sample_images()
            paths = []
        print(f"blending the sample images {', '.join(SAMPLE_NAMES)}")
    mask = as_float_image(mask_image, "mask")
    if mask.ndim == 3 and a.ndim == 2:
        raise CommandError("a colour mask needs colour images")
    output = Path(args.output)
    _check_output(output, paths, args.force)
    result = blend(a, b, mask, levels=args.levels, kernel=args.kernel, boundary=args.boundary)
    write_image(output, result, bit_depth=max(_bit_depth(a), _bit_depth(b)))
    print(f"wrote {output}")


# --------------------------------------------------------------------------- decompose


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)


def _decompose_laplacian(
    image: np.ndarray, args: argparse.Namespace, out: Path
) -> tuple[int, dict[str, np.ndarray]]:
    pyr = laplacian_pyramid(image, args.levels, args.kernel, args.boundary)
    shown = [band_to_display(band) for band in pyr.bands] + [np.clip(pyr.residual, 0, 1)]
    for k, band in enumerate(shown[:-1]):
        write_image(out / f"band{k}.png", band)
    write_image(out / "residual.png", shown[-1])
    write_image(out / "montage.png", pyramid_montage(shown))
    return pyr.levels, pyr.to_arrays()


def _decompose_gaussian(
    image: np.ndarray, args: argparse.Namespace, out: Path
) -> tuple[int, dict[str, np.ndarray]]:
    levels = gaussian_pyramid(image, args.levels, args.kernel, args.boundary)
    for k, level in enumerate(levels):
        write_image(out / f"level{k}.png", level)
    write_image(out / "montage.png", pyramid_montage([np.clip(g, 0, 1) for g in levels]))
    arrays = {f"level{k}": level for k, level in enumerate(levels)}
    arrays.update(kind=np.array("gaussian"), boundary=np.array(args.boundary))
    return len(levels) - 1, arrays


def _decompose_steerable(
    image: np.ndarray, args: argparse.Namespace, out: Path
) -> tuple[int, dict[str, np.ndarray]]:
    pyr = steerable_pyramid(
        image, levels=args.levels, orientations=args.orientations, boundary=args.boundary
    )
    highpass = band_to_display(pyr.highpass)
    bands = [[band_to_display(band) for band in level] for level in pyr.bands]
    residual = np.clip(pyr.residual, 0, 1)
    write_image(out / "highpass.png", highpass)
    for k, level in enumerate(bands):
        for j, band in enumerate(level):
            write_image(out / f"level{k}_orientation{j}.png", band)
    write_image(out / "residual.png", residual)
    write_image(out / "montage.png", grid_montage([[highpass], *bands, [residual]]))
    return pyr.levels, pyr.to_arrays()


def _cmd_decompose(args: argparse.Namespace) -> None:
    source = Path(args.image)
    raw = read_image(source)
    image = as_float_image(raw)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise CommandError(f"output {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    if args.kind != "steerable" and args.orientations is not None:
        raise CommandError("--orientations applies to --kind steerable only")
    decompose = {
        "gaussian": _decompose_gaussian,
        "laplacian": _decompose_laplacian,
        "steerable": _decompose_steerable,
    }[args.kind]
    levels, arrays = decompose(image, args, out)
    # remember the input's bit depth, so that reconstruct writes it back the same way
    arrays["bit_depth"] = np.array(_bit_depth(raw))
    _save_npz(out / "pyramid.npz", arrays)
    print(f"wrote a {args.kind} pyramid of {levels} levels to {out}/ (montage.png, pyramid.npz)")


# --------------------------------------------------------------------------- reconstruct


def _load_arrays(source: Path) -> dict[str, np.ndarray]:
    npz = source / "pyramid.npz" if source.is_dir() else source
    if not npz.is_file():
        raise CommandError(f"{npz}: no such file (expected a pyramid.npz or its directory)")
    try:
        with np.load(npz, allow_pickle=False) as data:
            return dict(data)
    except (OSError, ValueError) as exc:
        raise CommandError(f"{npz}: not a pyramid file ({exc})") from None


def _cmd_reconstruct(args: argparse.Namespace) -> None:
    arrays = _load_arrays(Path(args.source))
    kind = str(arrays.get("kind", ""))
    if args.refine and kind != "steerable":
        raise CommandError("--refine applies to steerable pyramids only")
    if kind == "laplacian":
        image = LaplacianPyramid.from_arrays(arrays).reconstruct()
    elif kind == "gaussian":
        image = arrays["level0"]  # the Gaussian pyramid keeps the image as its first level
    elif kind == "steerable":
        if args.refine and args.method == "exact":
            raise CommandError("--refine applies to --method mirror or adjoint")
        image = SteerablePyramid.from_arrays(arrays).reconstruct(args.method, refine=args.refine)
    else:
        raise CommandError(f"{args.source}: unknown pyramid kind {kind!r}")
    bit_depth = args.bit_depth or int(arrays.get("bit_depth", 8))
    write_image(args.output, image, bit_depth=bit_depth)
    print(f"wrote {args.output}")


# --------------------------------------------------------------------------- figures


def _cmd_figures(args: argparse.Namespace) -> None:
    out = Path(args.output)
    cat, coffee, mask = sample_images()
    for name, image in zip(SAMPLE_NAMES, (cat, coffee, mask.astype(np.uint8) * 255)):
        write_image(out / name, image)
    blended = blend(cat, coffee, mask)
    hard = np.where(mask[..., None], cat, coffee) / 255.0
    write_image(out / "blend.jpg", blended)
    write_image(out / "blend_vs_cut.jpg", np.concatenate([hard, blended], axis=1))
    pyr = laplacian_pyramid(cat, levels=5)
    shown = [band_to_display(band) for band in pyr.bands] + [pyr.residual]
    write_image(out / "laplacian_montage.jpg", pyramid_montage(shown))
    write_image(out / "gaussian_montage.jpg", pyramid_montage(gaussian_pyramid(cat, levels=5)))
    grey = cat.astype(np.float64).mean(axis=2) / 255.0
    steerable = steerable_pyramid(grey, levels=3)
    rows = [[band_to_display(steerable.highpass)]]
    rows += [[band_to_display(band) for band in level] for level in steerable.bands]
    rows.append([np.clip(steerable.residual, 0, 1)])
    write_image(out / "steerable_montage.jpg", grid_montage(rows))
    print(f"wrote the sample images and figures to {out}/")


# --------------------------------------------------------------------------- parser


def _add_pyramid_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--levels", type=int, help="number of reductions (default: automatic)")
    parser.add_argument(
        "--kernel",
        type=_kernel,
        default="binomial",
        help="low-pass kernel: binomial (default), binomialN, or a Burt–Adelson a such as 0.4",
    )
    parser.add_argument("--boundary", choices=BOUNDARIES, default="reflect")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyramids", description="Image pyramids on sparse operators."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("blend", help="Laplacian-blend A and B under MASK (default: samples)")
    p.add_argument("a", nargs="?", help="image taken where the mask is 1")
    p.add_argument("b", nargs="?", help="image taken where the mask is 0")
    p.add_argument("mask", nargs="?", help="grey mask image (white takes A)")
    p.add_argument("-o", "--output", default="blend.png", help="output image (blend.png)")
    p.add_argument("--force", action="store_true", help="allow overwriting an input")
    _add_pyramid_options(p)
    p.set_defaults(run=_cmd_blend)

    p = sub.add_parser("decompose", help="write every level, a montage and an .npz")
    p.add_argument("image")
    p.add_argument("--kind", choices=("gaussian", "laplacian", "steerable"), default="laplacian")
    p.add_argument("--orientations", type=int, help="steerable: 1, 2, 4 (default) or 6")
    p.add_argument("-o", "--output", required=True, help="output directory")
    _add_pyramid_options(p)
    p.set_defaults(run=_cmd_decompose)

    p = sub.add_parser("reconstruct", help="collapse a pyramid.npz (or its directory)")
    p.add_argument("source", help="a pyramid.npz written by decompose, or its directory")
    p.add_argument("-o", "--output", required=True, help="output image")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), help="default: the input's")
    p.add_argument(
        "--method",
        choices=("exact", "mirror", "adjoint"),
        default="exact",
        help="steerable pyramids: least-squares inverse (default), the mirror synthesis or "
        "the adjoint",
    )
    p.add_argument(
        "--refine",
        type=int,
        default=0,
        metavar="N",
        help="steerable, --method mirror or adjoint: N correction steps x += S(c - Ax)",
    )
    p.set_defaults(run=_cmd_reconstruct)

    p = sub.add_parser("figures", help="write the sample inputs and the README pictures")
    p.add_argument("-o", "--output", default="images", help="output directory (images)")
    p.set_defaults(run=_cmd_figures)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (CommandError, ImageFileError, ValueError, TypeError, OSError) as exc:
        print(f"pyramids {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

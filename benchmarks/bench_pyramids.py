"""Gaussian and Laplacian pyramids and blending: this package against OpenCV (and others).

The first table has the rows of issue 12, ours against OpenCV, with ratios OpenCV time /
ours (above 1: we are faster): one reduce at 2048²; Gaussian pyramids of 5 reductions,
Laplacian builds and collapses at each size, grey and colour; a 1024² RGB blend of 6
levels against OpenCV's classic recipe (:func:`opencv_blend`: pyrDown / pyrUp pyramids
mixed under the mask's Gaussian pyramid and collapsed); then the spatial steerable pyramid
against pyrtools' ``SteerablePyramidSpace`` at the sizes up to 2048², build and
reconstruct (:func:`steerable_table`), and each collapse against its memory floor. The
Gaussian pyramid has two rows
per size: like for like, level 0 the input itself on both sides (``copy=False``, and
OpenCV's list holds the input), then our default, which copies level 0 (a new array the
caller may edit) against the same OpenCV list. Its "fallback" column is our time
with the numpy engine (``PYRAMIDS_ENGINE=separable``), what runs where numba does not
import. The second table is the Laplacian pyramid against scikit-image, OpenCV, pyrtools.

Every peer runs in the same process, on the same float32 image, with the same number of
reductions. The repeats are interleaved (one run of every method, then the next round), so
that a change in the machine's load hits every method alike; each time is the median of
the repeats, and the table gives our time and the ratio peer / ours (above 1: we are
faster).

    pip install opencv-python-headless pyrtools   # optional peers
    python benchmarks/bench_pyramids.py                          # 512², 2048², 4096²
    python benchmarks/bench_pyramids.py --sizes 2048 --repeats 9 --pyrtools
    python benchmarks/bench_pyramids.py --issue-only       # just the first table

benchmarks/bench_steerable.py compares the steerable pyramids in more detail (errors,
the frequency-domain peer, memory).

Also reported: the peak memory that a build allocates (tracemalloc, which sees numpy's
allocations) divided by the size of the pyramid it returns.
"""

from __future__ import annotations

import argparse
import functools
import os
import tracemalloc

import numpy as np
from harness import interleaved_medians, print_machine

import pyramids
from pyramids.engine import ENGINE_VAR
from pyramids.parallel import ENV_VAR, resolve_threads, run_parts


def peak_memory_ratio(image: np.ndarray, levels: int) -> float:
    tracemalloc.start()
    pyr = pyramids.laplacian_pyramid(image, levels)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = sum(band.nbytes for band in pyr.bands) + pyr.residual.nbytes
    return peak / size


def opencv_functions(cv2, levels: int):
    def build(x):
        bands, g = [], x
        for _ in range(levels):
            down = cv2.pyrDown(g)
            bands.append(g - cv2.pyrUp(down, dstsize=(g.shape[1], g.shape[0])))
            g = down
        return bands, g

    def collapse(bands, g):
        for band in reversed(bands):
            g = cv2.pyrUp(g, dstsize=(band.shape[1], band.shape[0])) + band
        return g

    return build, collapse


def opencv_gaussian(cv2, levels: int):
    def build(x):
        pyramid = [x]
        for _ in range(levels):
            pyramid.append(cv2.pyrDown(pyramid[-1]))
        return pyramid

    return build


def opencv_blend(cv2, levels: int):
    """OpenCV's classic Laplacian blend: the images' Laplacian pyramids (pyrDown, pyrUp),
    each level mixed as ``m·a + (1 - m)·b`` under the mask's Gaussian pyramid, collapsed."""
    gaussian = opencv_gaussian(cv2, levels)
    build, collapse = opencv_functions(cv2, levels)

    def blend(a, b, mask):
        bands_a, top_a = build(a)
        bands_b, top_b = build(b)
        masks = gaussian(mask)
        if a.ndim == 3 and mask.ndim == 2:
            masks = [m[..., None] for m in masks]
        mixed = [m * x + (1 - m) * y for m, x, y in zip(masks, bands_a, bands_b)]
        top = masks[-1] * top_a + (1 - masks[-1]) * top_b
        return collapse(mixed, top)

    return blend


def _with_engine(name: str, function):
    """``function`` run with ``$PYRAMIDS_ENGINE`` set to ``name`` (read on every call)."""

    def run():
        saved = os.environ.get(ENGINE_VAR)
        os.environ[ENGINE_VAR] = name
        try:
            return function()
        finally:
            if saved is None:
                del os.environ[ENGINE_VAR]
            else:
                os.environ[ENGINE_VAR] = saved

    return run


def issue_table(cv2, sizes: list[int], levels: int, repeats: int) -> None:
    """The rows of issue 12: ours, ours with the fallback engine, OpenCV, and the ratio."""
    print("| work | ours | fallback (numpy engine) | OpenCV | ratio OpenCV / ours |")
    print("|---|--:|--:|--:|--:|")
    rng = np.random.default_rng(0)

    def row(label: str, ours, theirs) -> None:
        t = interleaved_medians(
            {"ours": ours, "fallback": _with_engine("separable", ours), "cv": theirs}, repeats
        )
        print(
            f"| {label} | {t['ours'] * 1e3:.2f} ms | {t['fallback'] * 1e3:.2f} ms | "
            f"{t['cv'] * 1e3:.2f} ms | {t['cv'] / t['ours']:.2f} |",
            flush=True,
        )

    cv_gauss = opencv_gaussian(cv2, levels)
    cv_build, cv_collapse = opencv_functions(cv2, levels)
    for channels in (1, 3):
        n = 2048
        x = rng.random((n, n, channels)[: 2 if channels == 1 else 3], dtype=np.float32)
        name = f"{n}²{' RGB' if channels == 3 else ''}"
        row(f"one reduce, {name}", functools.partial(pyramids.reduce, x),
            functools.partial(cv2.pyrDown, x))  # fmt: skip
    for work in ("Gaussian pyramid", "Laplacian build", "Laplacian collapse"):
        for n in sizes:
            for channels in (1, 3):
                shape = (n, n) if channels == 1 else (n, n, 3)
                x = rng.random(shape, dtype=np.float32)
                name = f"{work}, {levels} reductions, {n}²{' RGB' if channels == 3 else ''}"
                if work == "Gaussian pyramid":
                    # like for like first: level 0 is the image itself on both sides
                    ours = functools.partial(pyramids.gaussian_pyramid, x, levels, copy=False)
                    theirs = functools.partial(cv_gauss, x)
                    row(f"{name}, level 0 not copied (both)", ours, theirs)
                    # our default copies level 0; OpenCV's list still holds the input
                    ours = functools.partial(pyramids.gaussian_pyramid, x, levels)
                    name += ", ours copies level 0 (default), OpenCV does not"
                elif work == "Laplacian build":
                    ours = functools.partial(pyramids.laplacian_pyramid, x, levels)
                    theirs = functools.partial(cv_build, x)
                else:
                    ours = pyramids.laplacian_pyramid(x, levels).reconstruct
                    theirs = functools.partial(cv_collapse, *cv_build(x))
                row(name, ours, theirs)
    n, blend_levels = 1024, 6
    a = rng.random((n, n, 3), dtype=np.float32)
    b = rng.random((n, n, 3), dtype=np.float32)
    mask = np.zeros((n, n), np.float32)
    mask[:, : n // 2] = 1
    cv_blend = opencv_blend(cv2, blend_levels)
    ours = functools.partial(pyramids.blend, a, b, mask, blend_levels)
    theirs = functools.partial(cv_blend, a, b, mask)
    difference = float(np.abs(ours() - theirs()).max())
    row(f"blend, {n}² RGB, {blend_levels} levels (max difference {difference:.1e})", ours, theirs)
    print()
    steerable_table([n for n in sizes if n <= 2048], levels, max(3, repeats // 2))
    collapse_floor_table(cv2, sizes, levels, repeats)


def steerable_table(sizes: list[int], levels: int, repeats: int) -> None:
    """The issue's steerable rows: our spatial steerable pyramid (4 orientations) against
    pyrtools' ``SteerablePyramidSpace`` (the same filters, order 3), build and reconstruct,
    on the camera image of ``bench_steerable.py``; ratio = pyrtools' time / ours."""
    try:
        import pyrtools
    except ImportError:
        print("pyrtools not installed: the steerable rows are skipped\n")
        return
    from bench_steerable import camera

    from pyramids.steerable import steerable_pyramid

    print(f"Spatial steerable pyramid, {levels} levels, 4 orientations, float32, median of "
          f"{repeats} interleaved repeats")  # fmt: skip
    print("| work | ours | pyrtools SteerablePyramidSpace | ratio pyrtools / ours |")
    print("|---|--:|--:|--:|")
    for n in sizes:
        x = camera(n)
        ours = functools.partial(steerable_pyramid, x, levels=levels, orientations=4)
        theirs = functools.partial(
            pyrtools.pyramids.SteerablePyramidSpace, x, height=levels, order=3
        )
        mine, peer = ours(), theirs()
        for work, functions in (
            ("build", {"ours": ours, "peer": theirs}),
            ("reconstruct", {"ours": mine.reconstruct, "peer": peer.recon_pyr}),
        ):
            t = interleaved_medians(functions, repeats)
            print(
                f"| steerable {work}, {n}² | {t['ours'] * 1e3:.1f} ms | {t['peer'] * 1e3:.1f} ms "
                f"| {t['peer'] / t['ours']:.2f} |",
                flush=True,
            )
    print()


def memory_floor(bands: list[np.ndarray]):
    """The memory traffic every collapse that leaves the bands as they are must make: each
    band read once and a new array of its size written once (numpy's add of a constant),
    split over as many threads as ours uses."""
    one = np.float32(1)
    threads = resolve_threads(None)

    def run():
        levels = []
        for band in bands:
            out = np.empty_like(band)

            def part(a: int, b: int, band=band, out=out) -> None:
                np.add(band[a:b], one, out=out[a:b])

            run_parts(part, band.shape[0], threads, hold_blas=False, in_caller=True)
            levels.append(out)
        return levels

    return run


def collapse_floor_table(cv2, sizes: list[int], levels: int, repeats: int) -> None:
    """Laplacian collapses against their memory floor (:func:`memory_floor`), interleaved
    with OpenCV's: how far each is from the speed of the memory."""
    print("Laplacian collapse against its memory floor (each band read, each level written once)")
    print("| image | ours | memory floor | OpenCV | ours / floor | OpenCV / floor |")
    print("|---|--:|--:|--:|--:|--:|")
    rng = np.random.default_rng(1)
    cv_build, cv_collapse = opencv_functions(cv2, levels)
    for n in sizes:
        for channels in (1, 3):
            shape = (n, n) if channels == 1 else (n, n, 3)
            x = rng.random(shape, dtype=np.float32)
            pyr = pyramids.laplacian_pyramid(x, levels)
            t = interleaved_medians(
                {
                    "ours": pyr.reconstruct,
                    "floor": memory_floor(list(pyr.bands)),
                    "cv": functools.partial(cv_collapse, *cv_build(x)),
                },
                repeats,
            )
            name = f"{n}²{' RGB' if channels == 3 else ''}"
            print(
                f"| {name} | {t['ours'] * 1e3:.2f} ms | {t['floor'] * 1e3:.2f} ms | "
                f"{t['cv'] * 1e3:.2f} ms | {t['ours'] / t['floor']:.2f} | "
                f"{t['cv'] / t['floor']:.2f} |",
                flush=True,
            )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048, 4096])
    parser.add_argument("--levels", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="for us and OpenCV (2)")
    parser.add_argument("--pyrtools", action="store_true", help="include pyrtools (slow)")
    parser.add_argument("--issue-only", action="store_true", help="only the issue-12 table")
    args = parser.parse_args()

    os.environ[ENV_VAR] = str(args.threads)  # the default of every call (pyramids.parallel)
    try:
        import cv2

        cv2.setNumThreads(args.threads)
        cv_build, cv_collapse = opencv_functions(cv2, args.levels)
    except ImportError:
        cv2 = None
    try:
        from skimage.transform import pyramid_laplacian
    except ImportError:
        pyramid_laplacian = None
    pyrtools = None
    if args.pyrtools:
        import pyrtools

    print_machine()
    if cv2:
        print(f"float32, median of {args.repeats} interleaved repeats, {args.threads} threads")
        issue_table(cv2, args.sizes, args.levels, args.repeats)
    if args.issue_only:
        return
    print(f"float32, {args.levels} reductions, median of {args.repeats} interleaved repeats, "
          f"{args.threads} threads")  # fmt: skip
    header = "| image | ours build | ours collapse | peak mem / pyramid |"
    peers = []
    if pyramid_laplacian:
        peers.append("scikit-image build")
    if cv2:
        peers += ["OpenCV build", "OpenCV collapse"]
    if pyrtools:
        peers.append("pyrtools build")
    print(header + "".join(f" {p} (ratio) |" for p in peers))
    print("|" + "---|" * (4 + len(peers)))
    rng = np.random.default_rng(0)
    for n in args.sizes:
        for channels in (1, 3):
            shape = (n, n) if channels == 1 else (n, n, 3)
            x = rng.random(shape, dtype=np.float32)
            pyr = pyramids.laplacian_pyramid(x, args.levels)
            assert np.abs(pyr.reconstruct() - x).max() < 1e-5
            functions = {
                "build": functools.partial(pyramids.laplacian_pyramid, x, args.levels),
                "collapse": pyr.reconstruct,
            }
            if pyramid_laplacian:
                axis = -1 if channels == 3 else None
                run = functools.partial(pyramid_laplacian, x, args.levels, channel_axis=axis)
                functions["skimage"] = lambda run=run: list(run())
            if cv2:
                functions["cv build"] = functools.partial(cv_build, x)
                functions["cv collapse"] = functools.partial(cv_collapse, *cv_build(x))
            if pyrtools and channels == 1:
                functions["pyrtools"] = functools.partial(
                    pyrtools.pyramids.LaplacianPyramid, x, height=args.levels + 1
                )
            t = interleaved_medians(functions, args.repeats)
            build, collapse = t["build"], t["collapse"]
            memory = peak_memory_ratio(x, args.levels)
            row = f"| {'×'.join(map(str, shape))} | {build * 1e3:.1f} ms | "
            row += f"{collapse * 1e3:.1f} ms | {memory:.2f} |"
            if pyramid_laplacian:
                row += f" {t['skimage'] * 1e3:.0f} ms ({t['skimage'] / build:.1f}×) |"
            if cv2:
                b, c = t["cv build"], t["cv collapse"]
                row += f" {b * 1e3:.1f} ms ({b / build:.2f}×) | {c * 1e3:.1f} ms "
                row += f"({c / collapse:.2f}×) |"
            if pyrtools:
                p = t.get("pyrtools")
                row += f" {p * 1e3:.0f} ms ({p / build:.1f}×) |" if p else " – |"
            print(row, flush=True)


if __name__ == "__main__":
    main()

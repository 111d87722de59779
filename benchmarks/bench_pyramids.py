"""Laplacian pyramid build and collapse: this package against scikit-image, OpenCV, pyrtools.

Every peer runs in the same process, on the same float32 image, with the same number of
reductions. The repeats are interleaved (one run of every method, then the next round), so
that a change in the machine's load hits every method alike; each time is the median of
the repeats, and the table gives our time and the ratio peer / ours (above 1: we are
faster).

    pip install opencv-python-headless pyrtools   # optional peers
    python benchmarks/bench_pyramids.py                          # 512², 2048², 4096²
    python benchmarks/bench_pyramids.py --sizes 2048 --repeats 9 --pyrtools

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
from pyramids.parallel import ENV_VAR


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048, 4096])
    parser.add_argument("--levels", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="for us and OpenCV (2)")
    parser.add_argument("--pyrtools", action="store_true", help="include pyrtools (slow)")
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

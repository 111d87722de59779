"""Laplacian pyramid build and collapse: this package against scikit-image, OpenCV, pyrtools.

Every peer runs in the same process, on the same float32 image, with the same number of
reductions; each time is the median of several repeats, and the table gives our time and
the ratio peer / ours (above 1: we are faster).

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
import statistics
import time
import tracemalloc

import numpy as np

import pyramids


def median_time(fn, repeats: int) -> float:
    fn()  # warm up: operator caches, thread pools, first-touch of memory
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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

    pyramids.set_num_threads(args.threads)
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

    print(f"float32, {args.levels} reductions, median of {args.repeats}, {args.threads} threads,"
          f" {os.cpu_count()} CPUs")  # fmt: skip
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
            build = median_time(
                functools.partial(pyramids.laplacian_pyramid, x, args.levels), args.repeats
            )
            pyr = pyramids.laplacian_pyramid(x, args.levels)
            assert np.abs(pyr.reconstruct() - x).max() < 1e-5
            collapse = median_time(pyr.reconstruct, args.repeats)
            memory = peak_memory_ratio(x, args.levels)
            row = f"| {'×'.join(map(str, shape))} | {build * 1e3:.1f} ms | "
            row += f"{collapse * 1e3:.1f} ms | {memory:.2f} |"
            if pyramid_laplacian:
                axis = -1 if channels == 3 else None
                run = functools.partial(pyramid_laplacian, x, args.levels, channel_axis=axis)
                t = median_time(lambda run=run: list(run()), args.repeats)
                row += f" {t * 1e3:.0f} ms ({t / build:.1f}×) |"
            if cv2:
                t = median_time(functools.partial(cv_build, x), args.repeats)
                c = median_time(functools.partial(cv_collapse, *cv_build(x)), args.repeats)
                row += f" {t * 1e3:.1f} ms ({t / build:.2f}×) | {c * 1e3:.1f} ms "
                row += f"({c / collapse:.2f}×) |"
            if pyrtools:
                if channels == 1:
                    run = functools.partial(
                        pyrtools.pyramids.LaplacianPyramid, x, height=args.levels + 1
                    )
                    t = median_time(run, max(1, args.repeats // 2))
                    row += f" {t * 1e3:.0f} ms ({t / build:.1f}×) |"
                else:
                    row += " – |"
            print(row, flush=True)


if __name__ == "__main__":
    main()

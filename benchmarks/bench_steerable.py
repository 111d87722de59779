"""Steerable pyramid build and reconstruction: this package against pyrtools.

Peers: pyrtools' ``SteerablePyramidSpace`` (spatial filters, the same sp3 tables) and
``SteerablePyramidFreq`` (frequency domain), with the same height and order (5 levels,
order 3, i.e. 4 orientations). Every method runs in the same process on the same float32
image (``skimage.data.camera`` scaled to [0, 1], resized to the size asked); repeats are
interleaved so that a change in machine load hits every method alike, and each time is the
median. Ratios are peer / ours (above 1: we are faster).

Reconstruction errors are measured on the same image (max |error|, max inside a 32-pixel
margin, RMS). Ours is timed with its default reconstruction, the mirror synthesis, and
with one correction step (``refine=1``); the adjoint ``Aᵀc`` costs what the mirror costs and
its error is printed below the table, with the exact least-squares inverse's (conjugate
gradients, float64, ``tol=1e-7``, timed once).

    pip install pyrtools                                  # optional peer
    python benchmarks/bench_steerable.py                  # 512² and 2048²
    python benchmarks/bench_steerable.py --sizes 512 --repeats 9
    python benchmarks/bench_steerable.py --memory 4096    # peak memory at 4096²
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
import tracemalloc

import numpy as np
from harness import print_machine

from pyramids.steerable import steerable_pyramid


def camera(size: int) -> np.ndarray:
    from skimage import data, transform

    image = data.camera().astype(np.float64) / 255.0
    if image.shape != (size, size):
        image = transform.resize(image, (size, size), order=1, anti_aliasing=size < 512)
    return image.astype(np.float32)


def errors(estimate: np.ndarray, image: np.ndarray, margin: int = 32) -> tuple[float, ...]:
    diff = np.asarray(estimate, dtype=np.float64) - image
    inner = diff[margin:-margin, margin:-margin]
    return float(np.abs(diff).max()), float(np.abs(inner).max()), float(np.sqrt(np.mean(diff**2)))


def methods(levels: int):
    """name → (build(x) → pyramid, reconstruct(pyramid) → image)."""

    def build(x: np.ndarray):
        return steerable_pyramid(x, levels=levels, orientations=4)

    table = {
        "ours (separable)": (build, lambda p: p.reconstruct()),
        "ours, mirror + 1 step": (build, lambda p: p.reconstruct(refine=1)),
    }
    try:
        import pyrtools as pt
    except ImportError:
        print("pyrtools not installed: peers skipped")
        return table
    table["pyrtools Space"] = (
        lambda x: pt.pyramids.SteerablePyramidSpace(x, height=levels, order=3),
        lambda p: p.recon_pyr(),
    )
    table["pyrtools Freq"] = (
        lambda x: pt.pyramids.SteerablePyramidFreq(x, height=levels, order=3),
        lambda p: p.recon_pyr(),
    )
    return table


def run(size: int, levels: int, repeats: int, exact_max: int) -> None:
    image = camera(size)
    table = methods(levels)
    builds: dict[str, list[float]] = {name: [] for name in table}
    recons: dict[str, list[float]] = {name: [] for name in table}
    pyramids = {name: build(image) for name, (build, _) in table.items()}  # warm-up
    for name, (_, reconstruct) in table.items():
        reconstruct(pyramids[name])  # builds and caches the synthesis operators
    for _ in range(repeats):
        for name, (build, reconstruct) in table.items():
            start = time.perf_counter()
            pyramids[name] = build(image)
            builds[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            reconstruct(pyramids[name])
            recons[name].append(time.perf_counter() - start)
    ours = "ours (separable)"
    b0, r0 = statistics.median(builds[ours]), statistics.median(recons[ours])
    print(f"\n### {size}² float32, {levels} levels, 4 orientations, median of {repeats}\n")
    print("| method | build (s) | ratio | reconstruct (s) | ratio | max err | inner max | RMS |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, (_, reconstruct) in table.items():
        b, r = statistics.median(builds[name]), statistics.median(recons[name])
        e = errors(reconstruct(pyramids[name]), image)
        label = f"{name}, mirror" if name == ours else name
        print(
            f"| {label} | {b:.3f} | {b / b0:.2f} | {r:.3f} | {r / r0:.2f} | "
            f"{e[0]:.2e} | {e[1]:.2e} | {e[2]:.2e} |"
        )
    e = errors(pyramids[ours].reconstruct("adjoint"), image)
    print(f"| {ours}, adjoint | | | | | {e[0]:.2e} | {e[1]:.2e} | {e[2]:.2e} |")
    x64 = image.astype(np.float64)
    if size <= exact_max:
        # Exact least-squares inverse, float64, once.
        pyr = steerable_pyramid(x64, levels=levels, orientations=4)
        start = time.perf_counter()
        exact = pyr.reconstruct("exact", tol=1e-7, maxiter=200)
        seconds = time.perf_counter() - start
        e = errors(exact, image)
        print(
            f"| ours, exact (float64, CG tol 1e-7) | | | {seconds:.3f} | | {e[0]:.2e} | "
            f"{e[1]:.2e} | {e[2]:.2e} |"
        )
        rel = np.linalg.norm(exact - x64) / np.linalg.norm(x64)
        print(f"\nexact reconstruction (reflect): relative error {rel:.2e}")
    periodic = steerable_pyramid(x64, levels=levels, orientations=4, boundary="periodic")
    e = errors(periodic.reconstruct("adjoint"), image)
    print(
        f"adjoint with boundary='periodic' (no border term): "
        f"max {e[0]:.2e}, inner max {e[1]:.2e}, RMS {e[2]:.2e}"
    )


def memory(size: int, levels: int | None, dtype: type) -> None:
    image = np.random.default_rng(0).random((size, size)).astype(dtype)
    tracemalloc.start()
    start = time.perf_counter()
    pyr = steerable_pyramid(image, levels=levels)
    built = time.perf_counter() - start
    _, peak_build = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    start = time.perf_counter()
    out = pyr.reconstruct()
    recon = time.perf_counter() - start
    _, peak_recon = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    coefs = (
        pyr.highpass.nbytes + pyr.residual.nbytes + sum(b.nbytes for lv in pyr.bands for b in lv)
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB → GiB (Linux)
    print(
        f"{size}² {np.dtype(dtype).name}, {pyr.levels} levels: build {built:.2f} s, "
        f"reconstruct {recon:.2f} s; coefficients {coefs / 2**30:.2f} GiB; peak traced "
        f"build {peak_build / 2**30:.2f} GiB, reconstruct {peak_recon / 2**30:.2f} GiB; "
        f"process max RSS {rss:.2f} GiB; output {out.shape} {out.dtype}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--levels", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory", type=int, metavar="SIZE", help="only measure memory")
    parser.add_argument("--float64", action="store_true", help="memory run in float64")
    parser.add_argument(
        "--exact-max", type=int, default=512, help="largest size for the (slow) exact inverse"
    )
    args = parser.parse_args()
    print_machine()
    if args.memory:
        memory(args.memory, None, np.float64 if args.float64 else np.float32)
        return
    for size in args.sizes:
        run(size, args.levels, args.repeats, args.exact_max)


if __name__ == "__main__":
    main()

"""Memory and time of a pyramid larger than memory: the chunked OME-Zarr path (issue 11).

1. Generates a ``size × size`` uint16 image on disk as a tiled TIFF, tile row by tile row
   (never the whole image in memory): 32,768² by default, 2 GiB.
2. Runs ``pyramids decompose BIG.tif --kind gaussian --zarr OUT.zarr --levels 5`` (six stored
   levels, 32,768² … 1,024²) in a child process and reports its wall time and peak resident
   memory: the peak of the sum over the child and all its descendants (psutil, polled every
   0.1 s) and the kernel's ``ru_maxrss`` of the largest one.
3. Beside it, ``ome_zarr.scale.Scaler(method="gaussian")``, which calls scikit-image's
   ``pyramid_gaussian`` on the whole array, for the sizes up to ``--scaler-max`` (it needs
   the image and its float64 copy in memory), and the in-memory ``pyramids.gaussian_pyramid``
   with the levels written to Zarr, on the ``--compare`` size: time and peak memory of each,
   measured in the same run, interleaved over ``--repeats`` rounds.

    python benchmarks/big_image.py                       # 32,768², then the comparisons
    python benchmarks/big_image.py --size 8192 --compare 4096 --scaler-max 4096

Every figure is printed below the machine (CPU, BLAS, versions) and the load average.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import print_machine

LEVELS = 5  # reductions: six stored levels


def write_big_tiff(path: Path, size: int, tile: int = 512) -> None:
    """A smooth pattern plus noise, uint16, written tile by tile."""
    import tifffile

    def tiles():
        rng = np.random.default_rng(0)
        for i in range(0, size, tile):
            yy = (np.arange(i, i + tile)[:, None] / size) * 2 * np.pi
            for j in range(0, size, tile):
                xx = (np.arange(j, j + tile)[None, :] / size) * 2 * np.pi
                smooth = 0.5 + 0.25 * np.sin(7 * yy) * np.cos(5 * xx)
                noise = rng.random((tile, tile)) * 0.2
                yield np.clip((smooth + noise) * 50000, 0, 65535).astype(np.uint16)

    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(tiles(), shape=(size, size), dtype=np.uint16, tile=(tile, tile))


def measure(command: list[str], output: Path) -> tuple[float, float, float]:
    """Run ``command``; return (seconds, peak RSS of the process tree, ru_maxrss) in GiB.

    Its ``output`` is removed first, untimed. The process tree's peak needs psutil; without
    it that figure is NaN.
    """
    shutil.rmtree(output, ignore_errors=True)
    try:
        import psutil
    except ImportError:
        psutil = None
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    proc = psutil.Process(child.pid) if psutil else None
    peak = 0 if psutil else float("nan")
    while child.poll() is None:
        total = 0
        try:
            for p in [proc, *proc.children(recursive=True)] if proc else []:
                total += p.memory_info().rss
        except psutil.Error:
            pass
        peak = max(peak, total) if proc else peak
        time.sleep(0.1)
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with status {child.returncode}")
    maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, largest child
    return seconds, peak / 2**30, max(maxrss, before) / 2**20


CHUNKED = [sys.executable, "-m", "pyramids", "decompose", "{tif}", "--kind", "gaussian",
           "--zarr", "{out}", "--levels", str(LEVELS), "--chunks", "{chunks}",
           "--scheduler", "{scheduler}"]  # fmt: skip

IN_MEMORY = """
import sys, numpy as np, tifffile, zarr, pyramids
x = tifffile.imread(sys.argv[1])
levels = pyramids.gaussian_pyramid(x, {levels})
g = zarr.open_group(sys.argv[2], mode="w")
for k, level in enumerate(levels):
    g.create_array(str(k), data=np.rint(level * 65535).astype(np.uint16), chunks=(1024, 1024))
"""

SCALER = """
import sys, tifffile, zarr
from ome_zarr.scale import Scaler
x = tifffile.imread(sys.argv[1])
levels = Scaler(max_layer={levels}, method="gaussian").gaussian(x)
g = zarr.open_group(sys.argv[2], mode="w")
for k, level in enumerate(levels):
    g.create_array(str(k), data=level, chunks=(1024, 1024))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=32768, help="big image side (0: skip)")
    parser.add_argument("--compare", type=int, default=16384, help="side for the comparison")
    parser.add_argument("--scaler-max", type=int, default=16384, help="largest side for Scaler")
    parser.add_argument("--chunks", type=int, default=1024)
    parser.add_argument("--scheduler", default="threads")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--dir", help="working directory (default: a temporary one)")
    args = parser.parse_args()
    print_machine()
    work = Path(args.dir or tempfile.mkdtemp(prefix="pyramids-big-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {os.getloadavg()}", flush=True)

    def chunked(tif: Path) -> tuple[list[str], Path]:
        out = work / f"chunked-{tif.stem}.zarr"
        fields = {"tif": str(tif), "out": str(out), "chunks": str(args.chunks),
                  "scheduler": args.scheduler}  # fmt: skip
        return [part.format(**fields) for part in CHUNKED], out

    if args.size:
        big = work / f"big{args.size}.tif"
        if not big.exists():
            start = time.perf_counter()
            write_big_tiff(big, args.size)
            print(f"wrote {big} ({big.stat().st_size / 2**30:.2f} GiB) in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip
        seconds, tree, maxrss = measure(*chunked(big))
        pixels = args.size**2
        print(f"\nchunked, {args.size}² uint16 -> {LEVELS + 1}-level OME-Zarr, --chunks "
              f"{args.chunks}, --scheduler {args.scheduler}:")  # fmt: skip
        rate = pixels / seconds / 1e6
        print(f"  {seconds:.1f} s ({rate:.1f} Mpixel/s), peak RSS {tree:.2f} GiB "
              f"(process tree), ru_maxrss {maxrss:.2f} GiB", flush=True)  # fmt: skip

    small = work / f"big{args.compare}.tif"
    if not small.exists():
        write_big_tiff(small, args.compare)
    methods = {
        "chunked (pyramids decompose --zarr)": chunked(small),
        "in memory (pyramids.gaussian_pyramid + zarr)": (
            [sys.executable, "-c", IN_MEMORY.format(levels=LEVELS), str(small),
             str(work / "memory.zarr")], work / "memory.zarr"),
    }  # fmt: skip
    if args.compare <= args.scaler_max:
        methods["ome_zarr Scaler('gaussian') + zarr"] = (
            [sys.executable, "-c", SCALER.format(levels=LEVELS), str(small),
             str(work / "scaler.zarr")], work / "scaler.zarr")  # fmt: skip
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in methods}
    for _ in range(args.repeats):  # interleaved: one run of each per round
        for name, (command, output) in methods.items():
            results[name].append(measure(command, output))
    print(f"\n{args.compare}² uint16, {LEVELS + 1} levels, medians of {args.repeats} "
          "interleaved runs:")  # fmt: skip
    reference = statistics.median(t for t, _, _ in results["chunked (pyramids decompose --zarr)"])
    print(f"  {'method':48} {'seconds':>8} {'ratio':>6} {'peak RSS GiB':>13}")
    for name, runs in results.items():
        seconds = statistics.median(t for t, _, _ in runs)
        peak = statistics.median(p for _, p, _ in runs)
        print(f"  {name:48} {seconds:8.1f} {seconds / reference:6.2f} {peak:13.2f}")
    if args.compare > args.scaler_max:
        print(f"  ome_zarr Scaler: not run above --scaler-max {args.scaler_max}")
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

"""Cold start of ``pyramids blend``: a fresh process, with numba's cache empty and warm.

Each run is a new ``python -m pyramids blend A B MASK`` process on the sample images
(the cat and the coffee cup, ``images/``), timed from start to exit, so it includes
importing Python, numpy, scipy and the package, reading and writing the images, and, for
the compiled engine, importing numba and loading (or compiling) the kernel:

- ``numpy engine``: ``PYRAMIDS_ENGINE=separable``, the engine before numba (numba is not
  imported at all), the "before" figure;
- ``compiled, cache empty``: ``NUMBA_CACHE_DIR`` a fresh empty folder, so numba compiles
  the kernel in the run (a first run after installing, or where no cache is writable);
- ``compiled, cache warm``: the same folder after a first run, as every later run finds it.

Each figure is the median of ``--repeats`` runs (a fresh cache folder for every cold one).

    python benchmarks/cold_start.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import print_machine

ROOT = Path(__file__).resolve().parent.parent


def run_blend(folder: Path, env: dict[str, str]) -> float:
    """Seconds for one ``python -m pyramids blend`` of the sample images into ``folder``."""
    images = ROOT / "images"
    command = [sys.executable, "-m", "pyramids", "blend", str(images / "cat.png"),
               str(images / "coffee.png"), str(images / "mask.png"),
               "-o", str(folder / "blend.png")]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, cwd=folder)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print_machine()
    base = {**os.environ, "PYTHONPATH": str(ROOT)}
    base.pop("PYRAMIDS_ENGINE", None)
    times: dict[str, list[float]] = {"numpy engine": [], "cache empty": [], "cache warm": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        warm_cache = tmp_path / "warm-cache"
        run_blend(tmp_path, {**base, "NUMBA_CACHE_DIR": str(warm_cache)})  # fills it
        for k in range(args.repeats):  # interleaved, as the other benchmarks
            env = {**base, "PYRAMIDS_ENGINE": "separable"}
            times["numpy engine"].append(run_blend(tmp_path, env))
            env = {**base, "NUMBA_CACHE_DIR": str(tmp_path / f"cold-cache-{k}")}
            times["cache empty"].append(run_blend(tmp_path, env))
            env = {**base, "NUMBA_CACHE_DIR": str(warm_cache)}
            times["cache warm"].append(run_blend(tmp_path, env))
    print(f"`pyramids blend` of the sample images, median of {args.repeats} fresh processes")
    print("| engine | seconds |")
    print("|---|--:|")
    for name, label in (
        ("numpy engine", "numpy engine (PYRAMIDS_ENGINE=separable, numba not imported)"),
        ("cache empty", "compiled, numba cache empty (compiles the kernel)"),
        ("cache warm", "compiled, numba cache warm"),
    ):
        print(f"| {label} | {statistics.median(times[name]):.2f} |")


if __name__ == "__main__":
    main()

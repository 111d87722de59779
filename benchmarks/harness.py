"""What every benchmark shares: the machine it ran on, and interleaved timing.

Speed ratios move between machines of the same nominal kind (another CPU model, another
BLAS kernel, another load), so a figure without its machine cannot be checked. Every
benchmark script calls :func:`describe` and prints its lines before its first table:

    CPU: AMD EPYC, family 25 model 17, avx512f (2 logical cores available, 2 in the machine)
    BLAS: numpy: openblas 0.3.31, kernel Haswell, 2 threads; scipy: openblas …
    versions: python 3.11.7, numpy 2.4.6, scipy 1.17.1, …, opencv 5.0.0, torch –
    environment: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset

The BLAS line comes from threadpoolctl, which reads the libraries actually loaded into the
process (numpy's and scipy's OpenBLAS, OpenCV's own threads are not BLAS).

:func:`interleaved_medians` times several methods round by round (one run of each, then the
next round), so that a change in the shared machine's load hits ours and the peers alike.
"""

from __future__ import annotations

import importlib
import os
import platform
import statistics
import time
from collections.abc import Callable

PEERS = {
    "numpy": "numpy",
    "scipy": "scipy",
    "scikit-image": "skimage",
    "opencv": "cv2",
    "pyrtools": "pyrtools",
    "torch": "torch",
}


def cpu_model() -> str:
    """The CPU's model name, family/model numbers and widest vector unit, from /proc/cpuinfo."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if not line.strip():
                    break  # the first processor says it all
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or platform.machine() or "unknown CPU"
    flags = fields.get("flags", "").split()
    vector = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "no AVX")
    return (
        f"{fields['model name']}, family {fields.get('cpu family', '?')} "
        f"model {fields.get('model', '?')}, {vector}"
    )


def blas_description() -> str:
    """Each BLAS library loaded in this process: name, version, kernel and thread count."""
    import numpy  # noqa: F401  (loads numpy's BLAS so that threadpoolctl sees it)
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_info

    parts = []
    for info in threadpool_info():
        if info.get("user_api") != "blas":
            continue
        # the folder that ships the library names its owner: numpy.libs, scipy.libs, …
        owner = os.path.basename(os.path.dirname(info.get("filepath", ""))).split(".")[0]
        parts.append(
            f"{owner}: {info.get('internal_api')} {info.get('version')}, "
            f"kernel {info.get('architecture') or 'unknown'}, {info.get('num_threads')} threads"
        )
    return "; ".join(parts) or "none found"


def versions(modules: dict[str, str] = PEERS) -> str:
    """Python's and each named module's version ('–' where it is not importable)."""
    found = [f"python {platform.python_version()}"]
    for label, module in modules.items():
        try:
            version = importlib.import_module(module).__version__
        except ImportError:
            version = "–"
        found.append(f"{label} {version}")
    return ", ".join(found)


def describe() -> list[str]:
    """Lines naming the CPU, cores, BLAS and versions, for the top of a benchmark's output."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cores = f"{available} logical cores available, {os.cpu_count()} in the machine"
    tuned = [f"{name}={os.environ[name]}" for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
             if name in os.environ]  # fmt: skip
    return [
        f"CPU: {cpu_model()} ({cores})",
        f"BLAS: {blas_description()}",
        f"versions: {versions()}",
        f"environment: {', '.join(tuned) or 'OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset'}",
    ]


def print_machine() -> None:
    """Print :func:`describe`'s lines, then an empty line."""
    print("\n".join(describe()) + "\n", flush=True)


def interleaved_medians(
    functions: dict[str, Callable[[], object]], repeats: int, *, warmup: int = 1, inner: int = 1
) -> dict[str, float]:
    """Median seconds per call of each function, the repeats interleaved across them.

    Each function first runs ``warmup`` times (operator caches, thread pools, first touch of
    memory); then every round runs each function ``inner`` times in turn, and a round's time
    for a function is its total divided by ``inner``.
    """
    for fn in functions.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - start) / inner)
    return {name: statistics.median(t) for name, t in times.items()}


if __name__ == "__main__":
    print_machine()

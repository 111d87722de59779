"""Threads and BLAS limits: the one place where the package decides what runs in parallel.

Every function that splits work over threads takes a ``threads`` argument; ``None`` means
:func:`default_threads`, which reads the environment variable ``PYRAMIDS_NUM_THREADS`` when
it is called (never at import), else takes the cores this process may use, at most
:data:`MAX_DEFAULT_THREADS`. Nothing here infers a thread count from another library's
state, and nothing one call does changes the count another call gets.

While the package's own threads run, BLAS is held to one thread (:func:`blas_limited`): the
threads hand many small products to BLAS at once, and BLAS threads of its own would only
compete with them for the cores. OpenBLAS's thread count is process-wide, so the limit is
counted: the first caller in (from any thread) lowers it, the last one out restores it.
The limit is asked for from whichever thread enters first; see :func:`blas_limited` for
the OpenBLAS versions that ignore requests from threads other than the main one.

The same threads serve the convnet (``convnet.model``), through this module's public
functions.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

__all__ = [
    "ENV_VAR",
    "MAX_DEFAULT_THREADS",
    "blas_limited",
    "blas_threads",
    "default_threads",
    "resolve_threads",
    "run_parts",
]

#: The environment variable that sets the default thread count.
ENV_VAR = "PYRAMIDS_NUM_THREADS"
#: The default never exceeds this many threads: the separable passes are memory-bound, and
#: more threads than this only add contention on the machines measured (see benchmarks/).
MAX_DEFAULT_THREADS = 4


@functools.cache
def _available_cores() -> int:
    """The cores this process may run on, asked once (a system call costs a small
    pyramid's build several microseconds; a process's affinity is set before it starts
    work, if at all)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _check_threads(threads: object, name: str) -> int:
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"{name} must be a positive integer, got {threads!r}")
    return int(threads)


def default_threads() -> int:
    """The thread count used where a call passes ``threads=None``.

    ``$PYRAMIDS_NUM_THREADS`` if set (read now, on every call), else the number of cores
    this process may run on, at most :data:`MAX_DEFAULT_THREADS`.

    Raises
    ------
    ValueError
        If ``$PYRAMIDS_NUM_THREADS`` is not a positive integer.
    """
    text = os.environ.get(ENV_VAR)
    if text is None or not text.strip():
        return min(MAX_DEFAULT_THREADS, _available_cores())
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"${ENV_VAR} must be a positive integer, got {text!r}")
    return value


def resolve_threads(threads: int | None) -> int:
    """``threads`` checked (a positive integer), or :func:`default_threads` for ``None``."""
    return default_threads() if threads is None else _check_threads(threads, "threads")


# --------------------------------------------------------------------------- BLAS

_blas_lock = threading.Lock()
_blas_users = 0
_blas_saved: list[tuple[object, int]] = []  # (library, its count before the first user)
_blas_libraries = None


def _libraries() -> list:
    """threadpoolctl's controllers of the BLAS libraries loaded (found once, then kept)."""
    global _blas_libraries
    if _blas_libraries is None:
        from threadpoolctl import ThreadpoolController

        _blas_libraries = ThreadpoolController().select(user_api="blas").lib_controllers
    return _blas_libraries


def blas_threads() -> int:
    """How many threads BLAS may use now (the largest count of any BLAS loaded)."""
    return max([lib.num_threads for lib in _libraries()] or [1])


@contextlib.contextmanager
def blas_limited() -> Iterator[bool]:
    """Hold BLAS to one thread inside the block, nested or from several threads at once.

    Yields whether the limit is in force. It may not be: this OpenBLAS (0.3.30–0.3.31, as
    shipped in numpy's and scipy's wheels) ignores a thread count set from any thread but
    the main one once the main thread has set one (measured: a worker's request reads back
    unchanged and its products keep using two cores). Then the cores are shared less well,
    and a product whose rounding depends on BLAS's thread count may round differently; so a
    caller that needs results independent of the thread count (``convnet.train``) enters
    the limit from the main thread.

    Entering and leaving costs a few microseconds (the libraries are found once, and a
    count already at one is not set again): every pass of the engine enters it.
    """
    global _blas_users, _blas_saved
    with _blas_lock:
        if _blas_users == 0:
            _blas_saved = [(lib, lib.num_threads) for lib in _libraries()]
            for lib, count in _blas_saved:
                if count != 1:
                    lib.set_num_threads(1)
        _blas_users += 1
        effective = blas_threads() == 1
    try:
        yield effective
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                for lib, count in _blas_saved:
                    if count != 1:
                        lib.set_num_threads(count)
                _blas_saved = []


# --------------------------------------------------------------------------- threads

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()
_inside = threading.local()  # .active is True in the pool's own threads


def _mark_pool_thread() -> None:
    _inside.active = True


def _submit_all(
    task: Callable[[int, int], None], bounds: list[tuple[int, int]]
) -> list[Future[None]]:
    """Submit one part per bound to a pool of at least ``len(bounds)`` threads.

    The threads are a resource kept between calls (starting them costs more than a small
    pass); how many of them a call uses is that call's ``threads``. A smaller pool is
    replaced and shut down; work already submitted to it still runs.
    """
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < len(bounds):
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool_size = len(bounds)
            _pool = ThreadPoolExecutor(
                _pool_size, thread_name_prefix="pyramids", initializer=_mark_pool_thread
            )
        return [_pool.submit(task, a, b) for a, b in bounds]


def run_parts(
    task: Callable[[int, int], None],
    n_items: int,
    threads: int,
    *,
    hold_blas: bool = True,
    in_caller: bool = False,
) -> None:
    """Run ``task(start, stop)`` over ``0 … n_items`` in ``threads`` contiguous parts.

    The parts run side by side on the package's threads (numpy's products release the GIL)
    with BLAS held to one thread; with one part the task runs in the calling thread, BLAS
    still held to one thread, so that every product is computed the same way whatever the
    count. Called from one of the package's own threads, the whole range runs as one part
    in that thread (a nested split would wait on the threads it occupies). The first
    exception of a part is raised here, after every part has finished. A task that calls
    no BLAS (the compiled engine's kernel) passes ``hold_blas=False`` and skips the limit;
    one that never splits its work again may pass ``in_caller=True``: the calling thread
    then runs the first part itself instead of waiting, one hand-off fewer.
    """
    parts = min(_check_threads(threads, "threads"), n_items)
    if getattr(_inside, "active", False):
        parts = min(parts, 1)
    with blas_limited() if hold_blas else contextlib.nullcontext():
        if parts <= 1:
            if n_items > 0:
                task(0, n_items)
            return
        edges = np.linspace(0, n_items, parts + 1).round().astype(int).tolist()
        bounds = [(a, b) for a, b in itertools.pairwise(edges) if b > a]
        mine = bounds.pop(0) if in_caller else None
        futures = _submit_all(task, bounds)
        errors = []
        if mine is not None:
            try:
                task(*mine)
            except Exception as error:  # raised below, once every part has finished
                errors.append(error)
        errors += [future.exception() for future in futures]
        for error in errors:
            if error is not None:
                raise error

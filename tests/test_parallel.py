"""pyramids.parallel: thread counts read when used, run_parts, and the counted BLAS limit."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pyramids
from pyramids import parallel
from pyramids.parallel import blas_limited, blas_threads, default_threads, run_parts

# --------------------------------------------------------------------------- thread counts


def test_default_threads_reads_the_environment_when_called(monkeypatch):
    monkeypatch.setenv(parallel.ENV_VAR, "3")
    assert default_threads() == 3
    assert parallel.resolve_threads(None) == 3
    monkeypatch.setenv(parallel.ENV_VAR, " 7 ")
    assert default_threads() == 7
    monkeypatch.delenv(parallel.ENV_VAR)
    assert 1 <= default_threads() <= parallel.MAX_DEFAULT_THREADS
    monkeypatch.setenv(parallel.ENV_VAR, "")
    assert 1 <= default_threads() <= parallel.MAX_DEFAULT_THREADS


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5"])
def test_a_bad_environment_value_is_a_clear_error(monkeypatch, text):
    monkeypatch.setenv(parallel.ENV_VAR, text)
    with pytest.raises(ValueError, match=parallel.ENV_VAR):
        default_threads()
    with pytest.raises(ValueError, match=parallel.ENV_VAR):  # at the public boundary too
        pyramids.laplacian_pyramid(np.zeros((8, 8)))


@pytest.mark.parametrize("threads", [0, -1, True, 2.0, "2"])
def test_a_bad_threads_argument_is_a_clear_error(threads):
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        parallel.resolve_threads(threads)
    with pytest.raises(ValueError, match="threads"):
        pyramids.reduce(np.zeros((8, 8)), threads=threads)


def test_an_explicit_count_overrides_the_environment(monkeypatch):
    monkeypatch.setenv(parallel.ENV_VAR, "not a number")
    assert parallel.resolve_threads(2) == 2
    pyramids.gaussian_pyramid(np.zeros((8, 8)), threads=1)


# --------------------------------------------------------------------------- run_parts


@given(n_items=st.integers(0, 300), threads=st.integers(1, 9))
def test_run_parts_covers_every_item_exactly_once(n_items, threads):
    counts = np.zeros(n_items, dtype=int)
    parts = []

    def task(start: int, stop: int) -> None:
        assert 0 <= start < stop <= n_items
        counts[start:stop] += 1  # the parts are disjoint, so no two threads touch one item
        parts.append((start, stop))

    run_parts(task, n_items, threads)
    assert np.all(counts == 1)
    assert len(parts) <= threads


def test_an_exception_in_a_part_propagates_after_every_part_finished():
    finished = []

    def task(start: int, stop: int) -> None:
        if start == 0:
            raise RuntimeError("part 0 failed")
        finished.append(start)

    with pytest.raises(RuntimeError, match="part 0 failed"):
        run_parts(task, 40, 4)
    assert len(finished) == 3


def test_nested_run_parts_from_a_pool_thread_runs_in_place():
    counts = np.zeros((4, 50), dtype=int)
    threads_seen = set()

    def inner(row: int):
        def task(start: int, stop: int) -> None:
            threads_seen.add(threading.get_ident())
            counts[row, start:stop] += 1

        return task

    def outer(start: int, stop: int) -> None:
        for row in range(start, stop):
            run_parts(inner(row), 50, 4)  # would wait on the threads it occupies if split

    done = threading.Event()

    def main() -> None:
        run_parts(outer, 4, 4)
        done.set()

    runner = threading.Thread(target=main, daemon=True)
    runner.start()
    runner.join(timeout=60)
    assert done.is_set(), "nested run_parts did not finish"
    assert np.all(counts == 1)


# --------------------------------------------------------------------------- BLAS


@pytest.fixture
def two_blas_threads():
    """BLAS allowed two threads (from the main thread), so that a limit to one shows."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(2, user_api="blas"):
        if blas_threads() < 2:
            pytest.skip("BLAS would not run two threads here, so a limit to one cannot be seen")
        yield


def test_blas_limited_nests_and_restores(two_blas_threads):
    before = blas_threads()
    with blas_limited() as effective:
        assert effective and blas_threads() == 1
        with blas_limited() as inner:
            assert inner and blas_threads() == 1
        assert blas_threads() == 1  # the outer block still holds it
    assert blas_threads() == before


def test_blas_limit_held_by_the_main_thread_holds_for_a_worker(two_blas_threads):
    before = blas_threads()
    seen = []

    def worker() -> None:
        with blas_limited() as effective:
            seen.append((effective, blas_threads()))
        seen.append(blas_threads())  # the main thread is still inside: the limit holds

    with blas_limited():
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    assert seen == [(True, 1), 1]
    assert blas_threads() == before


def test_blas_limit_entered_from_a_worker_is_restored_and_changes_no_result(two_blas_threads):
    # This OpenBLAS may ignore a count asked for from a thread other than the main one
    # (blas_limited's docstring), so whether the limit takes effect there is not promised:
    # what is, is that the count is restored afterwards, and that a pyramid built from a
    # worker thread equals one built from the main thread (the tiles' products split their
    # outputs, never a sum, over BLAS threads).
    before = blas_threads()
    x = np.random.default_rng(0).random((300, 260, 3)).astype(np.float32)
    from_main = pyramids.laplacian_pyramid(x, threads=2)
    steer_main = pyramids.steerable_pyramid(x[:96, :80, 0], levels=2, threads=2)
    results = {}

    def worker() -> None:
        with blas_limited():
            results["laplacian"] = pyramids.laplacian_pyramid(x, threads=2)
            results["steerable"] = pyramids.steerable_pyramid(x[:96, :80, 0], levels=2, threads=2)
            results["back"] = results["steerable"].reconstruct("mirror", threads=2)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert blas_threads() == before
    for ours, theirs in zip(results["laplacian"].bands, from_main.bands):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(results["laplacian"].residual, from_main.residual)
    np.testing.assert_array_equal(results["steerable"].coefficients(), steer_main.coefficients())
    np.testing.assert_array_equal(results["back"], steer_main.reconstruct("mirror", threads=2))


def test_no_blas_limit_is_left_behind_by_the_public_functions(two_blas_threads):
    before = blas_threads()
    x = np.random.default_rng(1).random((64, 48))
    pyramids.laplacian_pyramid(x).reconstruct()
    pyramids.blend(x, x[::-1], x > 0.5)
    pyramids.steerable_pyramid(x, levels=1).reconstruct("exact", tol=1e-3)
    assert blas_threads() == before

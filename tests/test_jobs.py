"""Many images, and chunked pyramids, on a dask.distributed cluster (pyramids.jobs).

One ``LocalCluster`` of two single-threaded worker processes on the loopback interface
serves the whole module; the commands are pointed at it by its address, as they would be at
a cluster of several machines.
"""

import contextlib
import os
import platform

import numpy as np
import pytest
from requires import require_module

import pyramids
from pyramids.cli import main
from pyramids.engine import default_engine
from pyramids.io import read_image, write_image
from pyramids.pyramid import load_pyramid


@pytest.fixture(scope="module")
def cluster():
    dask = require_module("dask", "dask runs the jobs (the 'big' extra)")
    distributed = require_module("distributed", "dask.distributed runs the cluster")
    # a worker that dies fails its task at once instead of after three restarts
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # None still serves HTTP on 8787
        ) as local,
    ):
        yield local


def exact_engine() -> bool:
    """Whether chunked levels equal the in-memory ones bit for bit here: the compiled engine,
    or the matrix one on x86-64 (pyramids.chunked's docstring, tests/test_chunked.py)."""
    engine = default_engine()
    return engine == "compiled" or (
        engine == "matrix" and platform.machine().lower() in ("x86_64", "amd64")
    )


def images(folder, count, seed, shape=(40, 33, 3)):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for k in range(count):
        write_image(folder / f"im{k}.png", rng.random(shape))
    return sorted(folder.iterdir())


def test_decompose_many_images_on_the_cluster(tmp_path, cluster):
    paths = images(tmp_path / "in", 3, 0)
    out = tmp_path / "out"
    command = ["decompose", *map(str, paths), "--out", str(out), "--kind", "laplacian"]
    assert main([*command, "--levels", "3", "--scheduler", cluster.scheduler_address]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["im0", "im1", "im2"]
    for path in paths:
        saved = load_pyramid(out / path.stem / "pyramid.npz")
        expected = pyramids.laplacian_pyramid(read_image(path), 3)
        for a, b in zip(saved.bands, expected.bands):
            assert np.array_equal(a, b)  # the same in-memory code, run on a worker
        assert (out / path.stem / "montage.png").is_file()


def test_blend_paired_folders_on_the_cluster(tmp_path, cluster):
    a = images(tmp_path / "a", 2, 1)
    images(tmp_path / "b", 2, 2)
    mask = tmp_path / "mask.png"
    write_image(mask, np.random.default_rng(3).random((40, 33)) > 0.5)
    out = tmp_path / "blended"
    args = ["blend", str(tmp_path / "a"), str(tmp_path / "b"), str(mask), "-o", str(out)]
    assert main([*args, "--levels", "3", "--scheduler", cluster.scheduler_address]) == 0
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in a]
    single = tmp_path / "single.png"
    assert (
        main(
            [
                "blend",
                str(a[0]),
                str(tmp_path / "b" / a[0].name),
                str(mask),
                "-o",
                str(single),
                "--levels",
                "3",
            ]
        )
        == 0
    )
    assert np.array_equal(read_image(out / a[0].name), read_image(single))


def test_a_bad_image_fails_the_whole_job_and_publishes_nothing(tmp_path, cluster, capsys):
    paths = images(tmp_path / "in", 2, 4)
    paths[1].write_bytes(b"not a png")
    out = tmp_path / "out"
    command = ["decompose", *map(str, paths), "-o", str(out)]
    assert main([*command, "--scheduler", cluster.scheduler_address]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_chunked_pyramid_on_the_cluster_matches_in_memory(cluster):
    da = require_module("dask.array", "dask builds the chunked pyramid")
    from distributed import Client

    from pyramids import chunked

    x = np.random.default_rng(5).random((70, 51))
    with Client(cluster) as client:
        lap = chunked.laplacian_pyramid(da.from_array(x, chunks=(16, 20)), 3, chunks=12)
        *bands, residual = client.compute([*lap.bands, lap.residual], sync=True)
    memory = pyramids.laplacian_pyramid(x, 3)
    if exact_engine():  # the workers run the same engine, in the same environment
        assert all(np.array_equal(b, m) for b, m in zip(bands, memory.bands))
        assert np.array_equal(residual, memory.residual)
        return
    gauss, bound = chunked.chunking_error_bound(x.shape, 3)
    for k, band in enumerate(memory.bands):
        assert np.abs(bands[k] - band).max() <= bound[k]
    assert np.abs(residual - memory.residual).max() <= gauss[-1]


def test_ome_zarr_written_by_the_cluster_workers(tmp_path, cluster):
    zarr = require_module("zarr", "zarr reads the store back")
    tifffile = require_module("tifffile", "tifffile writes the input")
    x = (np.random.default_rng(7).random((130, 90)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", x, tile=(32, 32))
    out = tmp_path / "out.zarr"
    command = ["decompose", str(tmp_path / "in.tif"), "--kind", "gaussian", "--zarr", str(out)]
    assert main([*command, "--chunks", "40", "--scheduler", cluster.scheduler_address]) == 0
    group = zarr.open_group(str(out), mode="r")
    assert np.array_equal(group["0"][:], x)
    expected = pyramids.gaussian_pyramid(x)
    for k in range(1, len(expected)):
        rounded = np.rint(np.clip(expected[k], 0.0, 1.0) * 255).astype(np.uint8)
        if exact_engine():
            assert np.array_equal(group[str(k)][:], rounded)
        else:  # within chunking_error_bound, far below half a grey level: rounding may flip
            assert np.abs(group[str(k)][:].astype(int) - rounded).max() <= 1


def test_a_worker_that_dies_fails_the_job_with_one_line(tmp_path, cluster):
    dask = require_module("dask", "dask runs the jobs")
    from pyramids import jobs

    with jobs.scheduler(cluster.scheduler_address) as options, pytest.raises(jobs.JobFailed):
        jobs.run(lambda: dask.compute(dask.delayed(os._exit)(1), **options))
    # and the cluster is usable again (the nanny restarts the worker)
    with jobs.scheduler(cluster.scheduler_address) as options:
        assert dask.compute(dask.delayed(sum)([1, 2]), **options) == (3,)


def test_unreachable_scheduler_is_a_runtime_error(tmp_path, capsys, monkeypatch):
    require_module("distributed", "dask.distributed connects to the scheduler")
    from pyramids import jobs

    monkeypatch.setattr(jobs, "CONNECT_TIMEOUT", 1)
    path = images(tmp_path / "in", 2, 6)
    code = main(
        [
            "decompose",
            *map(str, path),
            "-o",
            str(tmp_path / "o"),
            "--scheduler",
            "tcp://127.0.0.1:9",
        ]
    )
    assert code == 1
    assert "cannot reach the dask scheduler" in capsys.readouterr().err


def test_local_process_cluster_runs_the_folder_job(tmp_path):
    require_module("distributed", "dask.distributed runs the local cluster")
    paths = images(tmp_path / "in", 2, 8, shape=(20, 17))
    out = tmp_path / "out"
    command = ["decompose", *map(str, paths), "-o", str(out), "--kind", "gaussian"]
    assert main([*command, "--scheduler", "processes"]) == 0
    for path in paths:
        saved = load_pyramid(out / path.stem / "pyramid.npz")
        expected = pyramids.gaussian_pyramid(read_image(path))
        assert all(np.array_equal(a, b) for a, b in zip(saved.images, expected))


def test_a_server_that_is_not_a_scheduler_fails_within_a_bounded_time(tmp_path, capsys):
    """A server that accepts the connection and never answers dask's handshake (one that is
    not a dask scheduler) held the command forever: ``Client(timeout=…)`` bounds only the
    TCP connection. It fails within CONNECT_TIMEOUT + HANDSHAKE_MARGIN seconds; the bound
    asserted here adds generous slack for a loaded machine."""
    require_module("distributed", "dask.distributed connects to the scheduler")
    import socket
    import threading
    import time

    from pyramids import jobs

    accepted = []
    with socket.socket() as server, pytest.MonkeyPatch.context() as patch:
        patch.setattr(jobs, "CONNECT_TIMEOUT", 1)
        patch.setattr(jobs, "HANDSHAKE_MARGIN", 1)
        server.bind(("127.0.0.1", 0))
        server.listen()

        def accept():
            with contextlib.suppress(OSError):
                while True:
                    accepted.append(server.accept()[0])  # held open, never answered

        threading.Thread(target=accept, daemon=True).start()
        paths = images(tmp_path / "in", 2, 9, shape=(8, 8))
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        start = time.monotonic()
        code = main(
            ["decompose", *map(str, paths), "-o", str(tmp_path / "o"), "--scheduler", address]
        )
        elapsed = time.monotonic() - start
    for connection in accepted:
        connection.close()
    assert code == 1 and elapsed < 30
    err = capsys.readouterr().err
    assert "no dask handshake" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    # The client abandoned in its handshake must not have made itself dask's default
    # scheduler: every later compute() in this process (other tests) would go to it, and
    # wait forever on a server that never answers.
    import dask

    assert dask.config.get("scheduler", None) != "dask.distributed"


def test_an_address_that_does_not_parse_is_an_input_error(tmp_path, capsys):
    require_module("distributed", "dask.distributed parses the address")
    paths = images(tmp_path / "in", 2, 10, shape=(8, 8))
    command = ["decompose", *map(str, paths), "-o", str(tmp_path / "o")]
    assert main([*command, "--scheduler", "host:port"]) == 2
    err = capsys.readouterr().err
    assert "--scheduler host:port: not a scheduler address" in err and err.count("\n") == 1


def test_a_folder_among_the_images_is_named_as_a_folder(tmp_path, capsys):
    """It was reported as "no such file"."""
    paths = images(tmp_path / "in", 1, 11, shape=(8, 8))
    command = ["decompose", str(tmp_path / "in"), str(paths[0]), "-o", str(tmp_path / "o")]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "is a folder; give its images" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]

"""Downloading from misbehaving mirrors, one's own mirror, and cleaning up on SIGTERM.

A local HTTP server bound to 127.0.0.1 (an ephemeral port, threads) plays every kind of
mirror: a good one, one that answers bytes that are not HTTP, one whose chunked body is cut
short, one that sends its file a byte at a time, and one that sends its headers a byte at a
time. Deadlines in these tests are one second, so that they stay fast; the
tests assert what happened (which mirror delivered, what each failure says, what is left
on disk), never how long it took.
"""

import contextlib
import hashlib
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from convnet_data import FILES, mnist5k_dir

import convnet.download
from convnet.cli import main
from convnet.download import MIRROR_ENV, DownloadError, download_mnist, mirrors_from

#: Small files stand in for MNIST where the content does not matter.
SMALL = {"a.bin": bytes(range(256)) * 8, "b.bin": b"digits" * 300}
SMALL_SUMS = {n: hashlib.sha256(b).hexdigest() for n, b in SMALL.items()}
TRICKLE_PAUSE = 0.01  # seconds between the bytes of a trickle


class _Mirror(http.server.BaseHTTPRequestHandler):
    """``GET /<kind>/<name>``: the file ``name`` served the way ``kind`` says."""

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        kind, _, name = self.path.strip("/").partition("/")
        body = self.server.files.get(name, b"x" * 4000)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
            getattr(self, f"_{kind}", self._missing)(body)

    def _missing(self, body):
        self.send_error(404)

    def _good(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _garbage(self, body):
        self.wfile.write(b"\x00\xffSSH-2.0-not-http\r\n\r\n" + body[:100])

    def _cut(self, body):
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(f"{len(body):x}\r\n".encode() + body[: len(body) // 2])

    def _trickle(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._drip(body)

    def _slowheaders(self, body):
        self._drip(b"HTTP/1.0 200 OK\r\nX-Padding: " + b"a" * 4000)

    def _drip(self, data):
        for i in range(len(data)):
            if self.server.stop.is_set():
                return
            self.wfile.write(data[i : i + 1])
            self.wfile.flush()
            time.sleep(TRICKLE_PAUSE)


def _wait_for_download_threads():
    for thread in threading.enumerate():
        if thread.name == "download":
            thread.join(10)


@pytest.fixture
def server():
    """The local mirror server; its ``files`` map can be replaced by a test."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Mirror)
    httpd.files = dict(SMALL)
    httpd.stop = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_port}"
    yield httpd
    httpd.stop.set()  # ends the trickles, so that no download thread outlives the test
    _wait_for_download_threads()
    httpd.shutdown()
    httpd.server_close()


def _dead_url():
    probe = http.server.HTTPServer(("127.0.0.1", 0), _Mirror)
    port = probe.server_port
    probe.server_close()
    return f"http://127.0.0.1:{port}/"


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("garbage", "not a valid HTTP reply"),
        ("cut", "the reply was cut short"),
        ("trickle", "deadline of 1 s"),
        ("slowheaders", "deadline of 1 s"),
    ],
)
def test_a_misbehaving_mirror_fails_and_the_next_one_is_tried(tmp_path, server, kind, reason):
    lines = []
    target = download_mnist(
        tmp_path / "cache",
        mirrors=[f"{server.url}/{kind}/", f"{server.url}/good/"],
        checksums=SMALL_SUMS,
        timeout=5,
        deadline=1.0,
        log=lines.append,
    )
    for name, body in SMALL.items():
        assert (target / name).read_bytes() == body
    assert sorted(p.name for p in target.iterdir()) == sorted(SMALL)  # no .part left
    failures = [line for line in lines if line.startswith("download failed")]
    assert len(failures) == 2 and all(reason in line for line in failures), lines


def test_every_mirror_failing_is_one_download_error(tmp_path, server):
    kinds = ("garbage", "cut", "trickle", "missing")
    with pytest.raises(DownloadError) as info:
        download_mnist(
            tmp_path / "cache",
            mirrors=[f"{server.url}/{k}/" for k in kinds] + [_dead_url()],
            checksums=SMALL_SUMS,
            timeout=5,
            deadline=1.0,
        )
    message = str(info.value)
    for part in ("not a valid HTTP reply", "cut short", "deadline", "HTTP 404", "refused"):
        assert part in message
    assert not list((tmp_path / "cache").iterdir())


def test_mirrors_from_puts_ones_own_first():
    public = list(convnet.download.MNIST_MIRRORS)
    assert mirrors_from([], environ={}) == public
    assert mirrors_from(["http://m/a/"], environ={}) == ["http://m/a/", *public]
    env = {MIRROR_ENV: "https://m/x/ file:///srv/mnist/"}
    assert mirrors_from([], environ=env) == ["https://m/x/", "file:///srv/mnist/", *public]
    assert mirrors_from(["http://cli/"], environ=env) == ["http://cli/", *public]  # flag wins
    assert mirrors_from([public[1]], environ={}) == [public[1], public[0], public[2]]
    for bad in ("ftp://m/", "m.example.org/mnist", "", "javascript:x"):
        with pytest.raises(ValueError, match="is not an http://, https:// or file:// URL"):
            mirrors_from([bad], environ={})
    with pytest.raises(ValueError, match=MIRROR_ENV):
        mirrors_from([], environ={MIRROR_ENV: "gopher://m/"})


def test_a_file_url_works_as_a_mirror(tmp_path):
    source = tmp_path / "mirror"
    source.mkdir()
    for name, body in SMALL.items():
        (source / name).write_bytes(body)
    target = download_mnist(tmp_path / "cache", mirrors=[source.as_uri() + "/"],
                            checksums=SMALL_SUMS)  # fmt: skip
    assert (target / "a.bin").read_bytes() == SMALL["a.bin"]


@pytest.fixture
def no_public_mirrors(monkeypatch):
    """Never reach the internet: the public mirrors are replaced by a dead local port."""
    monkeypatch.setattr(convnet.download, "MNIST_MIRRORS", (_dead_url(),))
    monkeypatch.delenv(MIRROR_ENV, raising=False)


def test_cli_mirror_flag_downloads_from_ones_own_mirror(
    tmp_path, server, capsys, no_public_mirrors, monkeypatch
):
    source = mnist5k_dir()
    server.files = {name: (source / name).read_bytes() for name in FILES}
    for name, body in server.files.items():  # mnist-5k stands in for MNIST
        monkeypatch.setitem(convnet.download.MNIST_SHA256, name, hashlib.sha256(body).hexdigest())
    data = tmp_path / "mnist"
    argv = ["train", "--mirror", f"{server.url}/good/", "--data", str(data), "--epochs", "1",
            "--out", str(tmp_path / "m.npz"), "--no-progress", "--no-augment"]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in data.iterdir()) == sorted(FILES)
    assert captured.err.count(f"downloaded {server.url}/good/") == 4
    assert "download failed" not in captured.err
    assert captured.out.startswith(f"data: MNIST from {data}: 5,000 training images")


def test_cli_mirror_from_the_environment(tmp_path, server, capsys, no_public_mirrors,
                                         monkeypatch):  # fmt: skip
    monkeypatch.setenv(MIRROR_ENV, f"{server.url}/missing/")
    argv = ["train", "--download", "--data", str(tmp_path / "d"), "--out",
            str(tmp_path / "m.npz")]  # fmt: skip
    assert main(argv) == 1  # a download that fails from every mirror is a runtime failure
    err = capsys.readouterr().err
    assert f"download failed: {server.url}/missing/{FILES[0]}: HTTP 404" in err
    assert err.splitlines()[-1].startswith("convnet: error: could not download")
    assert not (tmp_path / "m.npz").exists()


def test_cli_bad_mirror_url_is_a_usage_error(tmp_path, capsys):
    assert main(["train", "--mirror", "mirror.example.org", "--out", str(tmp_path / "m")]) == 2
    assert "is not an http://, https:// or file:// URL" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is a POSIX signal")
def test_sigterm_mid_download_leaves_no_partial_file(tmp_path, server):
    data = tmp_path / "mnist"
    env = {**os.environ, "CONVNET_CACHE": str(tmp_path / "cache")}
    env.pop(MIRROR_ENV, None)
    argv = [sys.executable, "-m", "convnet", "train", "--mirror", f"{server.url}/trickle/",
            "--data", str(data), "--out", str(tmp_path / "m.npz")]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        # Wait (up to a minute, for a slow machine) for the temporary file to appear.
        for _ in range(1200):
            if (data.is_dir() and any(p.suffix == ".part" for p in data.iterdir())) or (
                proc.poll() is not None
            ):
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, err
    assert err.decode().strip().endswith("convnet: terminated") and b"Traceback" not in err
    assert list(data.iterdir()) == []  # the hidden .part file is gone


def test_fetch_removes_its_temporary_file_when_interrupted(tmp_path, server, monkeypatch):
    # KeyboardInterrupt (or the SIGTERM exception) arriving while the attempt waits.
    def interrupt(self, timeout=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "join", interrupt)
    with pytest.raises(KeyboardInterrupt):
        download_mnist(tmp_path / "c", mirrors=[f"{server.url}/trickle/"], checksums=SMALL_SUMS)
    monkeypatch.undo()
    assert list(Path(tmp_path / "c").iterdir()) == []

"""Fuzz of the convnet parsers: IDX files, checkpoints and download replies (issue 13).

Every case must either succeed or raise the package's own error for that input
(:class:`convnet.data.IDXError`, :class:`convnet.checkpoint.CheckpointError`,
:class:`convnet.download.DownloadError`): never any other exception. Cases are valid
inputs damaged at random (bytes flipped, cut off, headers rewritten, gzip broken) and
inputs built from random parts; they are drawn from a fixed seed (tests/conftest.py
derandomizes hypothesis) and bounded in number.
"""

import contextlib
import gzip
import hashlib
import io
import json
import socketserver
import tempfile
import threading
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from convnet import lenet5
from convnet.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from convnet.data import IDXError, read_idx
from convnet.download import DownloadError, download_mnist

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextlib.contextmanager
def _file(content: bytes, name: str):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        yield path


def _damage(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    """``data`` with the byte at each ``position % len`` XOR-ed by a value, then cut."""
    out = bytearray(data)
    for position, value in edits:
        if out:
            out[position % len(out)] ^= value
    return bytes(out if cut is None else out[: cut % (len(out) + 1)])


EDITS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(1, 255)), max_size=4)
CUTS = st.none() | st.integers(0, 1 << 20)

# --------------------------------------------------------------------------- IDX


def _idx(array: np.ndarray, code: int) -> bytes:
    dtype = {8: ">u1", 9: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    header = bytes([0, 0, code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(dtype).tobytes()


def _check_idx(content: bytes) -> None:
    with _file(content, "data.idx") as path:
        try:
            array = read_idx(path)
        except IDXError:
            return
    assert isinstance(array, np.ndarray)
    assert array.ndim == content_ndim(content)


def content_ndim(content: bytes) -> int:
    raw = gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content
    return raw[3]


IDX_ARRAYS = st.builds(
    lambda shape, code: (np.arange(int(np.prod(shape))).reshape(shape) % 100, code),
    st.lists(st.integers(0, 5), min_size=1, max_size=3),
    st.sampled_from([8, 9, 0x0B, 0x0C, 0x0D, 0x0E]),
)


@FUZZ
@given(IDX_ARRAYS, EDITS, CUTS, st.booleans())
def test_fuzz_read_idx_damaged(array_code, edits, cut, compress):
    raw = _idx(*array_code)
    if compress:
        raw = gzip.compress(raw, mtime=0)
    _check_idx(_damage(raw, edits, cut))


@FUZZ
@given(st.binary(max_size=64), st.booleans())
def test_fuzz_read_idx_random_bytes(content, gzip_it):
    _check_idx(gzip.compress(content, mtime=0) if gzip_it else content)


@FUZZ
@example(8, [65536] * 4, b"")  # 2**64 elements: an int64 size wrapped to 0 ("cannot reshape")
@example(8, [0, 28, 28], b"")  # no items
@given(
    st.integers(0, 255),
    st.lists(st.integers(0, 2**32 - 1), max_size=6),
    st.binary(max_size=32),
)
def test_fuzz_read_idx_random_headers(code, dims, body):
    header = bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    _check_idx(header + body)


# --------------------------------------------------------------------------- checkpoints


def _checkpoint_bytes(compressed: bool) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = save_checkpoint(Path(folder) / "m.npz", lenet5(seed=0))
        if compressed:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **arrays)
            return buffer.getvalue()
        return path.read_bytes()


CHECKPOINTS = {False: _checkpoint_bytes(False), True: _checkpoint_bytes(True)}
METADATA = json.loads(
    str(np.load(io.BytesIO(CHECKPOINTS[False]), allow_pickle=False)["__metadata__"])
)


def _check_checkpoint(content: bytes) -> None:
    with _file(content, "m.npz") as path:
        try:
            model, meta = load_checkpoint(path)
        except CheckpointError:
            return
    logits = model.forward(np.zeros((1, 1, 28, 28), np.float32))
    assert np.isfinite(logits).all() and isinstance(meta, dict)


@FUZZ
@given(st.booleans(), EDITS, CUTS)
def test_fuzz_checkpoint_damaged_bytes(compressed, edits, cut):
    data = CHECKPOINTS[compressed]
    # Aim half the edits at the archive's ends, where the headers and directory are.
    edits = [(p if i % 2 else len(data) - 1 - p % 2048, v) for i, (p, v) in enumerate(edits)]
    _check_checkpoint(_damage(data, edits, cut))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
META_CHANGES = st.dictionaries(
    st.sampled_from([*sorted(METADATA), "extra"]), JSON | st.sampled_from(list(METADATA.values()))
)
VALUES = st.sampled_from(
    [
        np.float32(1.0),
        np.float32(1e38),
        np.nan,
        np.inf,
        np.int64(3),
        "word",
        True,
        1 + 2j,
    ]
)


@FUZZ
@given(
    META_CHANGES,
    st.lists(
        st.sampled_from(["__metadata__", "conv1.weight", "fc3.bias", "fc1.weight"]), max_size=2
    ),
    st.dictionaries(st.sampled_from(["conv2.bias", "fc3.weight", "new"]), VALUES, max_size=2),
    st.sampled_from([None, (), (10,), (3, 3), (16, 6, 5, 5)]),
)
def test_fuzz_checkpoint_rebuilt_parts(meta_changes, dropped, replaced, shape):
    with np.load(io.BytesIO(CHECKPOINTS[False]), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = {**METADATA, **meta_changes}
    arrays["__metadata__"] = np.array(json.dumps(meta))
    for name in dropped:
        arrays.pop(name, None)
    for name, value in replaced.items():
        target = shape if shape is not None else arrays.get(name, np.zeros(1)).shape
        arrays[name] = np.full(target, value)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    _check_checkpoint(buffer.getvalue())


# --------------------------------------------------------------------------- download replies

BODY = b"the file the mirror should send" * 20
SUMS = {"f.gz": hashlib.sha256(BODY).hexdigest()}


class _Raw(socketserver.BaseRequestHandler):
    """Reads the request's head, answers ``server.reply`` byte for byte, and hangs up."""

    def handle(self):
        self.request.settimeout(5)
        head = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = self.request.recv(4096)
                if not chunk:
                    break
                head += chunk
            self.request.sendall(self.server.reply)


def _http(status: bytes, headers: list[bytes], body: bytes) -> bytes:
    head = b"".join(h + b"\r\n" for h in headers)
    return b"HTTP/1.1 " + status + b"\r\n" + head + b"\r\n" + body


def _chunked(body: bytes, sizes: list[int]) -> bytes:
    out, start = b"", 0
    for size in sizes:
        out += f"{size:x}\r\n".encode() + body[start : start + size] + b"\r\n"
        start += size
    return out + b"0\r\n\r\n"


REPLIES = st.one_of(
    st.binary(max_size=200),
    st.builds(
        _http,
        st.sampled_from(
            [
                b"200 OK",
                b"404 Not Found",
                b"500 Oops",
                b"200",
                b"abc",
                b"99 X",
                b"301 Moved",
                b"100 Continue",
            ]
        ),
        st.lists(
            st.sampled_from(
                [
                    b"Content-Length: 620",
                    b"Content-Length: 5",
                    b"Content-Length: x",
                    b"Content-Length: -1",
                    b"Transfer-Encoding: chunked",
                    b"Location: /f.gz",
                    b"Content-Encoding: gzip",
                    b"X: " + b"y" * 70000,
                    b"no colon",
                    b"Connection: close",
                ]
            ),
            max_size=3,
        ),
        st.sampled_from([BODY, BODY[:300], b"", gzip.compress(BODY, mtime=0)])
        | st.builds(_chunked, st.just(BODY), st.lists(st.integers(0, 700), max_size=3))
        | st.binary(max_size=64),
    ),
)


def test_fuzz_download_replies(tmp_path_factory):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Raw)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    mirror = f"http://127.0.0.1:{server.server_address[1]}/"
    outcomes = {"ok": 0, "error": 0}

    @FUZZ
    @given(REPLIES, st.integers(0, 3))
    def check(reply, cut):
        server.reply = reply[: len(reply) - cut] if cut else reply
        directory = tmp_path_factory.mktemp("download")
        try:
            download_mnist(directory, mirrors=[mirror], checksums=SUMS, timeout=2, deadline=5)
        except DownloadError:
            outcomes["error"] += 1
            assert list(directory.iterdir()) == []  # nothing half-written
            return
        outcomes["ok"] += 1
        assert (directory / "f.gz").read_bytes() == BODY

    try:
        check()
        # A good reply draws success: the fuzz reaches both outcomes.
        server.reply = _http(b"200 OK", [b"Content-Length: %d" % len(BODY)], BODY)
        check.hypothesis.inner_test(server.reply, 0)
    finally:
        server.shutdown()
        server.server_close()
    assert outcomes["error"] > 0 and outcomes["ok"] > 0

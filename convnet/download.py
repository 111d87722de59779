"""Downloading MNIST into a cache directory, checked and written atomically.

Each of the four files is fetched from the first mirror that delivers it with the right
SHA-256; a file that fails (network error, HTTP error, a reply that is not HTTP or is cut
short, an attempt past its deadline, wrong checksum) is retried from the next mirror. One's
own mirror (``--mirror URL`` or ``$CONVNET_MNIST_MIRROR``) is tried before the public
ones; the checksums protect against a wrong or tampered copy wherever it comes from.
Data goes to a temporary file in the target directory and is renamed into place only once
its checksum matches, so the cache never holds a partial or corrupt file.
Files already present with the right checksum are not fetched again.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "MIRROR_ENV",
    "MNIST_MIRRORS",
    "MNIST_SHA256",
    "DownloadError",
    "download_mnist",
    "mirrors_from",
]

#: Public mirrors of the original MNIST files, tried in order.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

#: Published SHA-256 of the original gzipped MNIST files.
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz":
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz":
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz":
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz":
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}  # fmt: skip


#: Environment variable naming a mirror of one's own (a base URL), tried before the public ones.
MIRROR_ENV = "CONVNET_MNIST_MIRROR"

#: What one failed attempt can raise, besides our own TimeoutError and checksum ValueError:
#: the network's and the operating system's errors (OSError, urllib's URLError and
#: HTTPError among them), and the HTTP layer's (http.client.HTTPException: a reply that is
#: not HTTP, a chunked body cut short, a header line too long); ValueError also covers a
#: malformed URL.
ATTEMPT_ERRORS = (OSError, http.client.HTTPException, ValueError)


class DownloadError(OSError):
    """No mirror delivered a file with the expected checksum."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mirrors_from(urls: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> list[str]:
    """The mirrors to try, in order: ``urls``, else those in ``$CONVNET_MNIST_MIRROR``
    (separated by spaces), then the public :data:`MNIST_MIRRORS`.

    Parameters
    ----------
    urls : sequence of str
        Base URLs of one's own mirrors (``http://``, ``https://`` or ``file://``).
    environ : mapping, optional
        Where to read the environment variable (default ``os.environ``).

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        If a URL is not ``http``, ``https`` or ``file``.
    """
    environ = os.environ if environ is None else environ
    own = list(urls) or environ.get(MIRROR_ENV, "").split()
    for url in own:
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme not in ("http", "https", "file") or url.strip() != url:
            source = "--mirror" if urls else MIRROR_ENV
            raise ValueError(f"{source}: {url!r} is not an http://, https:// or file:// URL")
    return own + [m for m in MNIST_MIRRORS if m not in own]


def _copy(url: str, out, timeout: float, cancel: threading.Event, digest) -> None:
    """Stream ``url`` into the open file ``out``, feeding ``digest``, until the end or
    until ``cancel`` is set."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        while not cancel.is_set():
            # read1 returns what one socket read brings, so cancel is seen between reads
            # even when the server trickles.
            block = resp.read1(1 << 16)
            if not block:
                break
            digest.update(block)
            out.write(block)


def _fetch(url: str, target: Path, sha256: str, timeout: float, deadline: float) -> None:
    """Download ``url`` to ``target`` via a temporary file; raise on any failure.

    The transfer runs in a helper thread so that the whole attempt, connection and headers
    included, ends after ``deadline`` seconds however slowly the server sends; the helper
    stops at its next read (at most ``timeout`` seconds later) and the temporary file is
    removed whatever happens, KeyboardInterrupt and SystemExit included.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    cancel = threading.Event()
    outcome: list[BaseException] = []
    digest = hashlib.sha256()

    def work(out) -> None:
        try:
            _copy(url, out, timeout, cancel, digest)
        except BaseException as exc:  # handed to the caller, who decides what it means
            if isinstance(exc, urllib.error.HTTPError):
                exc.close()  # it holds the connection open
            outcome.append(exc)

    try:
        with os.fdopen(fd, "wb") as out:
            worker = threading.Thread(target=work, args=(out,), daemon=True, name="download")
            worker.start()
            worker.join(deadline)
            if worker.is_alive():
                cancel.set()
                raise TimeoutError(f"no complete reply within the deadline of {deadline:g} s")
            if outcome:
                raise outcome[0]
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise ValueError(f"checksum mismatch (sha256 {digest.hexdigest()[:12]}…)")
        os.replace(tmp, target)
    finally:
        cancel.set()
        Path(tmp).unlink(missing_ok=True)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, http.client.IncompleteRead):
        return f"the reply was cut short ({len(exc.partial)} bytes read)"
    if isinstance(exc, http.client.HTTPException):
        return f"not a valid HTTP reply ({type(exc).__name__}: {str(exc)[:80]!r})"
    reason = getattr(exc, "reason", None) or exc
    return str(reason) or type(exc).__name__


def download_mnist(
    directory: str | os.PathLike,
    *,
    mirrors: Sequence[str] = MNIST_MIRRORS,
    checksums: Mapping[str, str] = MNIST_SHA256,
    timeout: float = 30.0,
    deadline: float = 600.0,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Make sure ``directory`` holds the MNIST files, downloading what is missing.

    Parameters
    ----------
    directory : str or path-like
        Created if needed.
    mirrors : sequence of str
        Base URLs (``http``, ``https`` or ``file``), tried in order for each file;
        :func:`mirrors_from` puts one's own first.
    checksums : mapping of str to str
        File name → expected SHA-256 (hex); the names are the files fetched.
    timeout : float
        Seconds to wait for a connection or for any data before an attempt fails.
    deadline : float
        Seconds one attempt (one file from one mirror) may take in all, however slowly the
        server sends; then the next mirror is tried.
    log : callable, optional
        Receives a line per file fetched and per failed attempt.

    Returns
    -------
    Path
        The directory.

    Raises
    ------
    DownloadError
        If some file could not be fetched from any mirror, with every attempt's reason and
        what to do offline.
    """
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    say = log or (lambda _line: None)
    for name, sha256 in checksums.items():
        target = directory / name
        if target.is_file() and _sha256(target) == sha256:
            continue
        failures = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + name
            try:
                _fetch(url, target, sha256, timeout, deadline)
            except ATTEMPT_ERRORS as exc:
                reason = _reason(exc)
                failures.append(f"{url}: {reason}")
                say(f"download failed: {url}: {reason}")
                continue
            say(f"downloaded {url}")
            break
        else:
            raise DownloadError(
                f"could not download {name} from any mirror ({'; '.join(failures)}). "
                f"Without network, copy the four MNIST files ({', '.join(checksums)}) into "
                f"{directory} or pass --data DIR"
            )
    return directory

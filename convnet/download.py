"""Downloading MNIST into a cache directory, checked and written atomically.

Each of the four files is fetched from the first mirror that delivers it with the right
SHA-256; a file that fails (network error, HTTP error, wrong checksum) is retried from the
next mirror. Data goes to a temporary file in the target directory and is renamed into
place only once its checksum matches, so the cache never holds a partial or corrupt file.
Files already present with the right checksum are not fetched again.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["MNIST_MIRRORS", "MNIST_SHA256", "DownloadError", "download_mnist"]

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


class DownloadError(OSError):
    """No mirror delivered a file with the expected checksum."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, target: Path, sha256: str, timeout: float) -> None:
    """Download ``url`` to ``target`` via a temporary file; raise on any failure."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            for block in iter(lambda: resp.read(1 << 16), b""):
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise ValueError(f"checksum mismatch (sha256 {digest.hexdigest()[:12]}…)")
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def download_mnist(
    directory: str | os.PathLike,
    *,
    mirrors: Sequence[str] = MNIST_MIRRORS,
    checksums: Mapping[str, str] = MNIST_SHA256,
    timeout: float = 30.0,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Make sure ``directory`` holds the MNIST files, downloading what is missing.

    Parameters
    ----------
    directory : str or path-like
        Created if needed.
    mirrors : sequence of str
        Base URLs (ending in ``/``), tried in order for each file.
    checksums : mapping of str to str
        File name → expected SHA-256 (hex); the names are the files fetched.
    timeout : float
        Seconds per connection attempt.
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
                _fetch(url, target, sha256, timeout)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                if isinstance(exc, urllib.error.HTTPError):
                    reason = f"HTTP {exc.code} {exc.reason}"
                else:
                    reason = getattr(exc, "reason", exc)
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

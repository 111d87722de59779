"""A local web page to draw a digit on and watch the network read it (``convnet serve``).

The page (``convnet/web/index.html``, one file of HTML, CSS and JavaScript) holds a
:data:`CANVAS_SIZE` × :data:`CANVAS_SIZE` canvas on which one draws white ink on black with
the mouse, a pen or a finger. While one draws, at most one request at a time and at most
one every 100 ms, it posts the canvas to ``POST /predict`` as JSON::

    {"width": 280, "height": 280, "pixels": [0, 0, 255, …]}

``pixels`` is the canvas's grey level (its red channel), row by row from the top left,
``width × height`` numbers in ``0 … 255``. The server turns it into the network's input as
``convnet predict`` does a picture (:func:`convnet.preprocess.prepare_digit`: cropped to
the ink, fitted into 20×20, centred by mass in 28×28; then :func:`convnet.data.normalise`)
and answers (:func:`classify_canvas`)::

    {"label": 7, "class": "7", "probabilities": [10 numbers],
     "input": [28 rows of 28 numbers in 0 … 1],
     "maps": {"conv1": [6 × 28 × 28 numbers], "conv2": [16 × 10 × 10 numbers]},
     "shapes": {"conv1": [6, 28, 28], "conv2": [16, 10, 10]}, "classes": ["0", …, "9"],
     "members": 1}

The probabilities are :func:`convnet.train.predict`'s (a committee's mean, see
:class:`convnet.committee.Committee`); the maps are the convolutions' outputs before ReLU
(:func:`convnet.inspect.feature_maps`, a committee's first member's, as the page then
says; ``members`` counts the networks), rounded to 4 decimals. A blank
canvas is answered ``{"label": null, "message": "no digit drawn …"}``.

The server (standard library :class:`http.server.ThreadingHTTPServer`) binds 127.0.0.1
unless told otherwise, writes nothing to disk, and refuses with a JSON ``{"error": …}``:
a body over :data:`MAX_BODY` bytes (413) or without a length (411), a body that is not JSON
(415 for another content type, 400 for malformed JSON, a wrong size or non-numeric
pixels), an unknown path (404), a method the path does not take (405), and, while it
listens on the loopback, a ``Host`` header that is not a loopback name (403), so that a
web page elsewhere cannot reach it through DNS rebinding. docs/design.md §5.11.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any, ClassVar

import numpy as np

from .committee import Committee
from .data import normalise
from .inspect import feature_maps
from .model import Sequential
from .preprocess import prepare_digit
from .train import predict

__all__ = [
    "CANVAS_SIZE",
    "MAX_BODY",
    "CanvasError",
    "DigitServer",
    "canvas_pixels",
    "classify_canvas",
    "make_server",
]

#: Side of the square drawing canvas in pixels; requests of another size are refused.
CANVAS_SIZE = 280
#: Largest request body accepted, in bytes: a 280 × 280 canvas as JSON numbers ``0 … 255``
#: with a separator takes at most 4 bytes a pixel (313,600), so 1 MiB leaves room for
#: spaces and fractions without letting a client make the server buffer much more.
MAX_BODY = 1 << 20
#: The convolutions whose outputs the page draws.
MAP_LAYERS = ("conv1", "conv2")

_PAGE = "index.html"
#: The page may run its own inline script and style and talk to this server, nothing else.
_PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:"
)


class CanvasError(ValueError):
    """A canvas request that cannot be read (answered with 400)."""


def canvas_pixels(document: object, size: int = CANVAS_SIZE) -> np.ndarray:
    """The grey image of a canvas request, checked.

    Parameters
    ----------
    document : object
        The decoded JSON body: ``{"width": size, "height": size, "pixels": [...]}`` with
        ``size × size`` numbers in ``0 … 255``, row by row.
    size : int
        The canvas side the page draws on.

    Returns
    -------
    ndarray, shape (size, size), float64 in ``[0, 1]``
        The pixels divided by 255.

    Raises
    ------
    CanvasError
        Naming the first thing wrong: not an object, missing or extra keys, a size other
        than ``size × size``, a pixel count that does not match it, a pixel that is not a
        number (a string, ``true``, ``null``, a list) or lies outside ``0 … 255``.

    Examples
    --------
    >>> canvas_pixels({"width": 2, "height": 2, "pixels": [0, 255, 51, 0]}, size=2)
    array([[0. , 1. ],
           [0.2, 0. ]])
    """
    if not isinstance(document, dict):
        raise CanvasError(f"expected a JSON object, got a JSON {type(document).__name__}")
    keys = {"width", "height", "pixels"}
    if set(document) != keys:
        missing, extra = sorted(keys - set(document)), sorted(set(document) - keys)
        what = [f"missing {', '.join(missing)}"] if missing else []
        what += [f"unexpected {', '.join(extra)}"] if extra else []
        raise CanvasError(f"expected the keys width, height and pixels ({'; '.join(what)})")
    width, height = document["width"], document["height"]
    if (width, height) != (size, size) or not all(type(v) is int for v in (width, height)):
        raise CanvasError(f"the canvas must be {size}×{size}, got {width!r}×{height!r}")
    pixels = document["pixels"]
    if not isinstance(pixels, list) or len(pixels) != size * size:
        count = len(pixels) if isinstance(pixels, list) else type(pixels).__name__
        raise CanvasError(f"pixels must be a list of {size * size:,} numbers, got {count}")
    # json gives int, float, str, bool, None, list or dict; only the first two are numbers
    # (bool is an int to numpy, so it is checked by type, not by the array's dtype).
    kinds = set(map(type, pixels))
    if not kinds <= {int, float}:
        bad = next(v for v in pixels if type(v) not in (int, float))
        raise CanvasError(f"pixels must be numbers 0 … 255, got {json.dumps(bad)[:40]}")
    try:
        array = np.array(pixels, dtype=np.float64).reshape(size, size)
    except OverflowError:  # an int of hundreds of digits
        raise CanvasError(
            "pixels must be numbers 0 … 255, got a number beyond float range"
        ) from None
    if not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= 255):
        raise CanvasError(
            f"pixels must be numbers 0 … 255, got values from {array.min():g} to {array.max():g}"
        )
    return array / 255


def classify_canvas(
    model: Sequential | Committee, image: np.ndarray, classes: list[str]
) -> dict[str, Any]:
    """What the page shows for one canvas: the label, probabilities, input and maps.

    Parameters
    ----------
    model : Sequential or Committee
        LeNet-5, or a committee of them (in evaluation mode; it is not changed).
    image : ndarray, shape (h, w), float in ``[0, 1]``
        The canvas (:func:`canvas_pixels`).
    classes : list of str
        Class names by label.

    Returns
    -------
    dict
        JSON-able; see the module docstring. For a canvas without ink, only ``label``
        (None) and ``message``.
    """
    try:
        digit = prepare_digit(image)
    except ValueError as exc:
        return {"label": None, "message": f"no digit drawn ({exc})"}
    # in the parameters' dtype: a float64 model refuses float32 input (a 500 for every
    # canvas, before this was given)
    dtype = next(iter(model.parameters().values())).dtype.type
    x = normalise(digit[None], dtype=dtype)
    probs = predict(model, x, threads=1)[0]
    maps = feature_maps(model, x[0])
    label = int(probs.argmax())
    return {
        "label": label,
        "class": classes[label],
        "probabilities": [float(p) for p in probs],
        "input": np.round(digit.astype(np.float64), 4).tolist(),
        "maps": {
            name: np.round(maps[name].astype(np.float64), 4).ravel().tolist()
            for name in MAP_LAYERS
        },
        "shapes": {name: list(maps[name].shape) for name in MAP_LAYERS},
        "classes": list(classes),
        "members": len(model) if isinstance(model, Committee) else 1,
    }


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class _Handler(BaseHTTPRequestHandler):
    server: DigitServer
    server_version = "convnet-serve"
    #: Seconds a connection may stay silent: the page's requests are small, and a slow
    #: client must not hold a thread.
    timeout = 30
    _unread = False
    sys_version = ""
    protocol_version = "HTTP/1.1"

    # ------------------------------------------------------------------ answers

    def _send(self, status: int, body: bytes, content_type: str, headers=()) -> None:
        if self._unread:  # a body left unread would be taken for the next request
            self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, document: dict, headers=()) -> None:
        body = json.dumps(document, separators=(",", ":")).encode()
        self._send(status, body, "application/json", headers)

    def _error(self, status: HTTPStatus, message: str, headers=()) -> None:
        self._json(status, {"error": message}, headers)

    # ------------------------------------------------------------------ routing

    _ROUTES: ClassVar = {"/": ("GET", "HEAD"), "/index.html": ("GET", "HEAD"),
                         "/predict": ("POST",)}  # fmt: skip

    def _route(self) -> None:
        try:
            self._answer()
        except (ConnectionError, TimeoutError):
            raise  # the client went away or stalled: nobody to answer (handle_error)
        except Exception as exc:  # a bug: answer it, keep serving, and say what it was
            self.close_connection = True
            self.log_error("%s", f"{type(exc).__name__}: {exc}")
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error ({type(exc).__name__})")

    def _answer(self) -> None:
        path = self.path.split("?", 1)[0]
        self._unread = self.headers.get("Content-Length", "0") != "0" or bool(
            self.headers.get("Transfer-Encoding")
        )
        if not self._host_allowed():
            self._error(HTTPStatus.FORBIDDEN, "this server answers requests to localhost only")
            return
        allowed = self._ROUTES.get(path)
        if allowed is None:
            self._error(HTTPStatus.NOT_FOUND, f"no such page {path[:100]!r} (try / or /predict)")
            return
        if self.command not in allowed:
            self._error(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{path} takes {' or '.join(allowed)}, not {self.command}",
                [("Allow", ", ".join(allowed))],
            )
            return
        if path == "/predict":
            self._predict()
        else:
            headers = [("Content-Security-Policy", _PAGE_POLICY)]
            self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8", headers)

    def _host_allowed(self) -> bool:
        if not self.server.loopback_only:
            return True
        host = self.headers.get("Host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return _is_loopback(name.strip("[]"))

    def _predict(self) -> None:
        length = self.headers.get("Content-Length")
        if length is None or self.headers.get("Transfer-Encoding"):
            self._error(HTTPStatus.LENGTH_REQUIRED, "send the canvas with a Content-Length")
            return
        if not length.isdigit():
            self._error(HTTPStatus.BAD_REQUEST, f"Content-Length {length[:40]!r} is not a number")
            return
        if int(length) > MAX_BODY:
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"request body of {int(length):,} bytes, above the limit of {MAX_BODY:,}",
            )
            return
        try:
            body = self.rfile.read(int(length))
        except TimeoutError:
            self._error(
                HTTPStatus.REQUEST_TIMEOUT, f"the body did not come within {self.timeout} s"
            )
            return
        self._unread = False
        if len(body) < int(length):
            self.close_connection = True
            return  # the client closed its side before sending the body: nobody to answer
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            self._error(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"send the canvas as application/json, not {content_type or 'no type'!r}",
            )
            return
        try:
            document = json.loads(body, parse_constant=_no_constant)
            image = canvas_pixels(document)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"the body is not JSON ({exc})")
            return
        except RecursionError:
            self._error(HTTPStatus.BAD_REQUEST, "the body nests too deeply to be a canvas")
            return
        except CanvasError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        with self.server.lock:  # the model keeps the caches of its last forward pass
            answer = classify_canvas(self.server.model, image, self.server.classes)
        self._json(HTTPStatus.OK, answer)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _route

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log:
            super().log_message(format, *args)

    def log_error(self, format: str, *args: Any) -> None:
        super().log_message(format, *args)  # errors always


def _no_constant(name: str) -> None:
    raise CanvasError(f"pixels must be numbers 0 … 255, got {name}")


class DigitServer(ThreadingHTTPServer):
    """The HTTP server of the drawing page, holding the model it answers with.

    Made by :func:`make_server`; ``server_address`` gives the bound host and port, ``url``
    the page's address. Serve with ``serve_forever()``, stop with ``shutdown()`` (from
    another thread) and ``server_close()``.
    """

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        model: Sequential | Committee,
        classes: list[str],
        log: bool,
    ) -> None:
        self.model = model
        self.classes = list(classes)
        self.lock = threading.Lock()
        self.log = log
        self.page = files(__package__).joinpath("web").joinpath(_PAGE).read_bytes()
        host = address[0]
        try:
            self.address_family = socket.getaddrinfo(host, address[1])[0][0]
        except socket.gaierror:
            self.address_family = socket.AF_INET  # bind() reports the unknown host
        super().__init__(address, _Handler)
        # from the address bound, not the name asked for: a host name or a short form
        # (``127.1``) that resolves to the loopback must keep the Host check
        self.loopback_only = _is_loopback(self.server_address[0])

    def handle_error(self, request, client_address) -> None:
        """A client that went away (a closed tab) is not an error; anything else is."""
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/"


def make_server(
    model: Sequential | Committee,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    classes: list[str] | None = None,
    log: bool = False,
) -> DigitServer:
    """Bind the drawing page's server (it does not serve until ``serve_forever()``).

    Parameters
    ----------
    model : Sequential or Committee
        LeNet-5, e.g. from :func:`convnet.checkpoint.load_checkpoint`; put in evaluation
        mode.
    host : str
        Address to listen on; the default answers this machine only. Another address
        (``0.0.0.0``, a LAN address) lets other machines draw on it.
    port : int
        0 picks a free port (read it from ``server.server_address``).
    classes : list of str, optional
        Class names by label (default ``"0"`` … ``"9"``).
    log : bool
        Log every request on stderr.

    Returns
    -------
    DigitServer

    Raises
    ------
    OSError
        If the address cannot be bound (the port is in use, the host is unknown).

    Examples
    --------
    >>> import threading
    >>> from convnet import lenet5
    >>> server = make_server(lenet5(seed=0), port=0)
    >>> thread = threading.Thread(target=server.serve_forever, daemon=True)
    >>> thread.start()
    >>> server.url.startswith("http://127.0.0.1:")
    True
    >>> server.shutdown(); server.server_close(); thread.join()
    """
    classes = [str(d) for d in range(10)] if classes is None else classes
    model.eval()
    return DigitServer((host, port), model, classes, log)

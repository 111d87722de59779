"""``convnet serve``: the drawing page's server over HTTP, its command, and the page itself
in a real headless browser (docs/design.md §5.11)."""

import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from convnet_data import mnist5k_dir
from PIL import Image, ImageDraw
from requires import require_module, skip_or_fail

from convnet import lenet5
from convnet.checkpoint import load_checkpoint, save_checkpoint
from convnet.cli import main
from convnet.committee import Committee
from convnet.data import load_mnist, normalise
from convnet.inspect import feature_maps
from convnet.preprocess import prepare_digit
from convnet.serve import CANVAS_SIZE, MAX_BODY, canvas_pixels, classify_canvas, make_server
from convnet.train import TrainConfig, predict, train

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


class Running:
    """A server of ``model`` on a free loopback port, serving from a thread."""

    def __init__(self, model, host="127.0.0.1"):
        self.server = make_server(model, host, 0)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def request(self, method, path, body=None, headers=None):
        """(status, headers, decoded JSON or text) of one request on a new connection."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            if isinstance(body, dict | list):
                body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
            connection.request(method, path, body=body, headers=headers)
            reply = connection.getresponse()
            data = reply.read()
            kind = reply.getheader("Content-Type", "")
            content = json.loads(data) if kind == "application/json" else data.decode()
            return reply.status, reply, content
        finally:
            connection.close()

    def raw(self, head: bytes) -> tuple[int, dict]:
        """Send ``head`` (request line and headers, no body) on a raw socket; the status and
        JSON of the answer, read until the server closes the connection."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            sock.sendall(head)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        header, _, body = data.partition(b"\r\n\r\n")
        return int(header.split()[1]), json.loads(body)


def canvas_of(strokes, size=CANVAS_SIZE, width=20) -> np.ndarray:
    """A canvas with white strokes (lists of points) on black, as uint8."""
    picture = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(picture)
    for points in strokes:
        draw.line(points, fill=255, width=width, joint="curve")
    return np.asarray(picture)


def body_of(pixels: np.ndarray) -> dict:
    return {"width": pixels.shape[1], "height": pixels.shape[0], "pixels": pixels.ravel().tolist()}


SEVEN = [[(70, 60), (210, 60), (120, 230)]]


@pytest.fixture(scope="module", params=["network", "committee"])
def running(request):
    """A server of one network, and of a committee of two (whose answers are the same
    pipeline with the committee's probabilities and its first member's maps)."""
    model = lenet5(seed=0)
    if request.param == "committee":
        model = Committee([model, lenet5(seed=1)])
    server = Running(model)
    yield server
    server.close()


# --------------------------------------------------------------------------- answers


def test_page_is_served_and_draws_on_the_canvas_size_the_server_takes(running):
    status, reply, page = running.request("GET", "/")
    assert status == 200
    assert reply.getheader("Content-Type") == "text/html; charset=utf-8"
    assert "default-src 'none'" in reply.getheader("Content-Security-Policy")
    assert f'<canvas id="canvas" width="{CANVAS_SIZE}" height="{CANVAS_SIZE}"' in page
    assert f"const SIZE = {CANVAS_SIZE};" in page
    assert 'id="prediction"' in page
    status, reply, text = running.request("HEAD", "/")
    assert status == 200 and text == ""


def test_answer_is_the_library_pipeline_on_the_same_pixels(running):
    pixels = canvas_of(SEVEN)
    status, _, answer = running.request("POST", "/predict", body_of(pixels))
    assert status == 200
    model = running.server.model
    digit = prepare_digit(pixels / 255)
    x = normalise(digit[None])
    expected = predict(model, x)[0]
    # The server runs the same float32 functions on the same numbers, and JSON carries a
    # float64 exactly (repr round-trips): the probabilities are equal, not just close.
    assert answer["probabilities"] == [float(p) for p in expected]
    assert answer["label"] == int(expected.argmax())
    assert answer["class"] == str(answer["label"])
    assert answer["classes"] == [str(d) for d in range(10)]
    assert answer["members"] == (len(model) if isinstance(model, Committee) else 1)
    # input and maps are rounded to 4 decimals: at most half a unit of the 4th, 5e-5, off
    # (plus float32's rounding of the digit, below 6e-8 for values in [0, 1]).
    np.testing.assert_allclose(answer["input"], digit, rtol=0, atol=5e-5 + 6e-8)
    maps = feature_maps(model, x[0])
    for name, shape in (("conv1", [6, 28, 28]), ("conv2", [16, 10, 10])):
        assert answer["shapes"][name] == shape
        got = np.reshape(answer["maps"][name], shape)
        scale = np.abs(maps[name]).max()
        np.testing.assert_allclose(got, maps[name], rtol=0, atol=5e-5 + 1e-6 * scale)


def test_a_float64_model_reads_the_canvas_as_its_float32_twin():
    # review: a float64 checkpoint (save_checkpoint keeps the dtype) answered every
    # canvas with a 500, the network's input being float32. The twin has the same weights
    # rounded to float32, so the probabilities agree to float32's rounding through the
    # network: a few hundred eps of float32 on values ≤ 1 (5 layers of sums of ≤ 400 terms)
    twin = lenet5(seed=0)
    wide = lenet5(dtype=np.float64, seed=0)
    wide.load_state_dict({k: v.astype(np.float64) for k, v in twin.state_dict().items()})
    image = canvas_of(SEVEN)
    classes = [str(d) for d in range(10)]
    a = classify_canvas(wide.eval(), image, classes)
    b = classify_canvas(twin.eval(), image, classes)
    assert a["label"] == b["label"]
    eps = np.finfo(np.float32).eps
    assert np.abs(np.subtract(a["probabilities"], b["probabilities"])).max() <= 400 * eps


def test_blank_canvas_is_answered_no_digit_drawn(running):
    for value in (0, 255, 128):  # black, white, grey: no contrast anywhere
        pixels = np.full((CANVAS_SIZE, CANVAS_SIZE), value, np.uint8)
        status, _, answer = running.request("POST", "/predict", body_of(pixels))
        assert status == 200
        assert answer["label"] is None
        assert answer["message"].startswith("no digit drawn")


def test_concurrent_requests_each_get_their_own_answer(running):
    canvases = [canvas_of(SEVEN), canvas_of([[(140, 40), (140, 240)]]), canvas_of([])]
    expected = []
    for pixels in canvases:
        expected.append(running.request("POST", "/predict", body_of(pixels))[2])
    answers = [None] * 12

    def ask(k):
        answers[k] = running.request("POST", "/predict", body_of(canvases[k % 3]))[2]

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(len(answers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [expected[k % 3] for k in range(len(answers))]


# --------------------------------------------------------------------------- refusals

N = CANVAS_SIZE * CANVAS_SIZE
ZEROS = [0] * N


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"width": 100, "height": 100, "pixels": [0] * 10_000}, "must be 280×280, got 100×100"),
        ({"width": 280.0, "height": 280, "pixels": ZEROS}, "must be 280×280"),
        ({"width": 280, "height": 280, "pixels": ZEROS[:-1]}, "78,400 numbers, got 78399"),
        ({"width": 280, "height": 280, "pixels": "0" * N}, "78,400 numbers, got str"),
        ({"width": 280, "height": 280, "pixels": ["0", *ZEROS[1:]]}, 'numbers 0 … 255, got "0"'),
        ({"width": 280, "height": 280, "pixels": [True, *ZEROS[1:]]}, "got true"),
        ({"width": 280, "height": 280, "pixels": [*ZEROS[1:], None]}, "got null"),
        ({"width": 280, "height": 280, "pixels": [[0], *ZEROS[1:]]}, "got [0]"),
        ({"width": 280, "height": 280, "pixels": [256, *ZEROS[1:]]}, "values from 0 to 256"),
        ({"width": 280, "height": 280, "pixels": [-1, *ZEROS[1:]]}, "values from -1 to 0"),
        ({"width": 280, "height": 280, "pixels": [10**400, *ZEROS[1:]]}, "beyond float range"),
        ({"width": 280, "height": 280, "pixels": [1e400, *ZEROS[1:]]}, "got Infinity"),
        ({"width": 280, "height": 280}, "missing pixels"),
        ({"width": 280, "height": 280, "pixels": ZEROS, "x": 1}, "unexpected x"),
        ([0] * N, "expected a JSON object, got a JSON list"),
    ],
)
def test_malformed_canvas_is_refused_with_400_and_a_reason(running, body, words):
    status, _, answer = running.request("POST", "/predict", body)
    assert status == 400
    assert words in answer["error"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"width": 280, "height": 280, "pixels": [', "the body is not JSON"),
        (b"\xff\xfe{}", "the body is not JSON"),
        (b'{"width": 280, "height": 280, "pixels": [NaN]}', "got NaN"),
        (
            b'{"width": 280, "height": 280, "pixels": [1e400' + b", 0" * (N - 1) + b"]}",
            "values from 0 to inf",
        ),  # a literal beyond float64 parses as inf
        (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
    ],
    ids=["cut short", "not utf-8", "NaN", "1e400", "deep"],
)
def test_body_that_is_not_json_is_refused_with_400(running, body, words):
    status, _, answer = running.request("POST", "/predict", body)
    assert status == 400
    assert words in answer["error"]


def test_oversized_body_is_refused_with_413_before_it_is_read(running):
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{running.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n"
    )
    # No body follows: an answer at all shows the server did not wait to read it.
    status, answer = running.raw(head.encode())
    assert status == 413
    assert f"above the limit of {MAX_BODY:,}" in answer["error"]


def test_body_without_a_length_is_refused_with_411(running):
    head = f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{running.port}\r\n"
    head += "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    status, answer = running.raw(head.encode())
    assert status == 411
    assert "Content-Length" in answer["error"]


def test_body_that_does_not_come_is_answered_408(monkeypatch):
    from convnet import serve

    monkeypatch.setattr(serve._Handler, "timeout", 0.5)
    slow = Running(lenet5(seed=0))
    try:
        head = f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{slow.port}\r\n"
        head += "Content-Type: application/json\r\nContent-Length: 10\r\n\r\n[0, 1"
        status, answer = slow.raw(head.encode())  # 5 bytes of the 10 announced
        assert status == 408
        assert "did not come within 0.5 s" in answer["error"]
    finally:
        slow.close()


def test_other_content_type_is_refused_with_415(running):
    pixels = body_of(canvas_of(SEVEN))
    status, _, answer = running.request(
        "POST", "/predict", json.dumps(pixels).encode(), {"Content-Type": "text/plain"}
    )
    assert status == 415
    assert "application/json" in answer["error"]


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/nothing", 404, None),
        ("POST", "/../etc/passwd", 404, None),
        ("GET", "/predict", 405, "POST"),
        ("PUT", "/predict", 405, "POST"),
        ("DELETE", "/predict", 405, "POST"),
        ("POST", "/", 405, "GET, HEAD"),
        ("OPTIONS", "/", 405, "GET, HEAD"),
    ],
)
def test_unknown_path_is_404_and_wrong_method_405(running, method, path, status, allow):
    got, reply, answer = running.request(method, path, b"{}")
    assert got == status
    assert reply.getheader("Allow") == allow
    assert answer["error"]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
def test_loopback_host_names_are_answered(running, host):
    status, _, _ = running.request("GET", "/", headers={"Host": f"{host}:{running.port}"})
    assert status == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "192.168.1.5", ""])
def test_other_host_header_is_refused_on_the_loopback(running, host):
    # A page elsewhere that rebinds its own name to 127.0.0.1 sends its name as Host.
    status, _, answer = running.request("GET", "/", headers={"Host": host})
    assert status == 403
    assert "localhost only" in answer["error"]


def test_server_asked_for_another_address_answers_any_host_name():
    everywhere = Running(lenet5(seed=0), host="0.0.0.0")
    try:
        assert not everywhere.server.loopback_only
        status, _, _ = everywhere.request("GET", "/", headers={"Host": "my-laptop.lan:8000"})
        assert status == 200
    finally:
        everywhere.close()


def test_server_binds_the_loopback_by_default():
    server = make_server(lenet5(seed=0), port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"
        assert server.loopback_only
    finally:
        server.server_close()


@pytest.mark.parametrize("host", ["localhost", "127.1"])
def test_a_loopback_asked_for_by_another_name_keeps_the_host_check(host):
    # review: "127.1" (and a host name that resolves to 127.0.0.1) bound the loopback but
    # turned the Host check off, so a rebound name elsewhere could reach the page
    server = Running(lenet5(seed=0), host=host)
    try:
        assert server.server.server_address[0] == "127.0.0.1"
        assert server.server.loopback_only
        status, _, _ = server.request("GET", "/", headers={"Host": "attacker.example:8000"})
        assert status == 403
    finally:
        server.close()


def test_server_writes_nothing_to_disk(running, tmp_path):
    opened = []
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    watching = threading.Event()

    def hook(event, args):  # every file the process opens for writing while watching
        if not watching.is_set():
            return
        if (
            event == "open"
            and (
                (isinstance(args[1], str) and set(args[1]) & set("wax+"))
                or (isinstance(args[2], int) and args[2] & writing)
            )
        ) or event in ("os.rename", "os.remove", "os.mkdir", "shutil.copyfile"):
            opened.append(args[0])

    sys.addaudithook(hook)  # cannot be removed: it does nothing once the event is cleared
    watching.set()
    try:
        (tmp_path / "probe").write_bytes(b"")  # the hook sees a write
        assert opened == [str(tmp_path / "probe")]
        opened.clear()
        running.request("GET", "/")
        running.request("POST", "/predict", body_of(canvas_of(SEVEN)))
        running.request("POST", "/predict", body_of(canvas_of([])))
        running.request("POST", "/predict", {"width": 1})
    finally:
        watching.clear()
    assert opened == []


def test_canvas_pixels_reads_rows_from_the_top_left():
    pixels = np.arange(9).reshape(3, 3) * 30  # row r, column c holds 30 (3 r + c)
    image = canvas_pixels({"width": 3, "height": 3, "pixels": pixels.ravel().tolist()}, size=3)
    np.testing.assert_array_equal(image * 255, pixels)
    with pytest.raises(ValueError, match="must be 3×3, got 3×2"):
        canvas_pixels({"width": 3, "height": 2, "pixels": [0] * 6}, size=3)


# --------------------------------------------------------------------------- the command


@pytest.fixture
def model_file(tmp_path):
    return save_checkpoint(tmp_path / "m.npz", lenet5(seed=0))


def test_cli_port_in_use_is_one_line_and_exit_2(model_file, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(model_file), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"convnet: error: port {port} on 127.0.0.1 is in use; choose another with --port "
        "(--port 0 picks a free one)\n"
    )


def test_cli_model_that_is_not_a_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "notes.npz"
    path.write_bytes(b"not a checkpoint")
    assert main(["serve", str(path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a convnet checkpoint" in err


@pytest.mark.parametrize("port", ["-1", "65536", "http"])
def test_cli_bad_port_is_a_usage_error(model_file, port, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["serve", str(model_file), "--port", port])
    assert stop.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_serves_the_page_and_stops_on_ctrl_c(model_file):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # `python -m convnet serve …`, with Ctrl-C's handler put back first: a child inherits an
    # ignored SIGINT, and the suite may run as a background job (`.ci/run … &`), where the
    # shell ignores it and the signal below would never arrive
    start = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.argv[0] = 'convnet'; runpy.run_module('convnet', run_name='__main__')"
    )
    command = [sys.executable, "-c", start, "serve", str(model_file), "--port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env) as process:  # fmt: skip
        try:
            line = process.stdout.readline()
            assert line.startswith(f"serving {model_file} on http://127.0.0.1:")
            url = line.split(" on ")[1].split()[0]
            host, port = url.removeprefix("http://").rstrip("/").split(":")
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
            connection.request("GET", "/")
            assert connection.getresponse().status == 200
            connection.close()
        finally:
            process.send_signal(signal.SIGINT)
            try:
                out, err = process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()  # a failure, not a hung suite
                raise
    assert process.returncode == 0
    assert out == "stopped\n" and err == ""


# --------------------------------------------------------------------------- in a browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: Flags that let Debian's chromium run headless in a container without reaching out.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1100,480",
                  "--force-device-scale-factor=1", "--hide-scrollbars")  # fmt: skip
INK = 20  # the page's stroke width (index.html: const INK)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Debian's chromium driven by selenium through /usr/bin/chromedriver.

    Skipped where any of the three is missing, failed instead under ``REQUIRE_PEERS=1``
    (CI, which installs them: .ci/run). Selenium Manager, which would download a browser
    or a driver, is made to fail if anything calls it.
    """
    webdriver = require_module("selenium.webdriver", "the drawing page is tested in chromium")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.is_file():
            reason = f"{path} not found (Debian: apt-get install chromium chromium-driver)"
            skip_or_fail(f"{reason}; the drawing page is tested in it", "REQUIRE_PEERS")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.selenium_manager import SeleniumManager

    def refuse(*args, **kwargs):
        raise AssertionError("Selenium Manager was called: it would download a browser")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SeleniumManager, "binary_paths", refuse)
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module", params=[1, 2], ids=["network", "committee"])
def trained(tmp_path_factory, request):
    """A LeNet-5 trained for a few seconds on mnist-5k (about 96% of its test digits):
    enough to read a clearly drawn digit, so that the screenshot shows a right answer;
    and a committee of two such."""
    data = load_mnist(mnist5k_dir())
    config = TrainConfig(epochs=4, seed=0, members=request.param)
    result = train(data, config, progress=False, log=lambda line: None, threads=1)
    path = save_checkpoint(tmp_path_factory.mktemp("model") / "m.npz", result.model)
    return path


def strokes_distance(strokes, size=CANVAS_SIZE) -> np.ndarray:
    """Distance of every pixel centre of the canvas to the nearest stroke segment."""
    y, x = np.mgrid[:size, :size] + 0.5
    best = np.full((size, size), np.inf)
    for points in strokes:
        for (ax, ay), (bx, by) in itertools.pairwise(points):
            d = np.array([bx - ax, by - ay], dtype=float)
            t = np.clip(((x - ax) * d[0] + (y - ay) * d[1]) / (d @ d), 0, 1)
            best = np.minimum(best, np.hypot(x - ax - t * d[0], y - ay - t * d[1]))
    return best


def draw(driver, canvas, strokes) -> None:
    """Draw ``strokes`` (canvas pixel coordinates) with mouse events, 10 px a move."""
    from selenium.webdriver import ActionChains

    box = canvas.rect  # canvas pixels are CSS pixels: the page shows it at 280 × 280
    assert (box["width"], box["height"]) == (CANVAS_SIZE, CANVAS_SIZE)
    for points in strokes:
        actions = ActionChains(driver, duration=5)
        x0, y0 = points[0]
        actions.move_to_element_with_offset(canvas, x0 - CANVAS_SIZE // 2, y0 - CANVAS_SIZE // 2)
        actions.click_and_hold()
        for (ax, ay), (bx, by) in itertools.pairwise(points):
            steps = int(np.ceil(np.hypot(bx - ax, by - ay) / 10))
            xs = np.rint(np.linspace(ax, bx, steps + 1)).astype(int)
            ys = np.rint(np.linspace(ay, by, steps + 1)).astype(int)
            for dx, dy in zip(np.diff(xs), np.diff(ys)):
                actions.move_by_offset(int(dx), int(dy))
        actions.release()
        actions.perform()


def wait_idle(driver) -> None:
    """Wait until the page has no request in flight and none waiting to be sent."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30, poll_frequency=0.05).until(
        lambda d: d.execute_script(
            "return document.body.dataset.state === 'idle' && window.convnet.requests > 0"
        )
    )


def test_browser_drawing_is_read_as_the_library_reads_the_same_pixels(browser, trained):
    model, meta = load_checkpoint(trained)
    running = Running(model)
    try:
        browser.get(f"http://127.0.0.1:{running.port}/")
        from selenium.webdriver.common.by import By

        canvas = browser.find_element(By.ID, "canvas")
        draw(browser, canvas, SEVEN)
        wait_idle(browser)
        shown = browser.find_element(By.ID, "prediction").text
        sent = browser.execute_script("return window.convnet.sent")
        answer = browser.execute_script("return window.convnet.answer")
        bars = [browser.find_element(By.ID, f"p{k}").text for k in range(10)]
        seen = browser.execute_script(
            "return Array.from(document.getElementById('input').getContext('2d')"
            ".getImageData(0, 0, 28, 28).data)"
        )
        if os.environ.get("CONVNET_SCREENSHOT"):
            screenshot(browser, Path(os.environ["CONVNET_SCREENSHOT"]))

        # What the page sent is the strokes drawn: ink on every point of them, none away
        # from them (the canvas anti-aliases only the stroke's edge, INK / 2 from its line).
        pixels = np.array(sent, dtype=np.float64).reshape(CANVAS_SIZE, CANVAS_SIZE)
        distance = strokes_distance(SEVEN)
        assert pixels[distance <= INK / 2 - 1.5].min() == 255
        assert pixels[distance >= INK / 2 + 1.5].max() == 0

        # The library's own reading of those pixels, as `convnet predict` reads a picture.
        digit = prepare_digit(pixels / 255)
        probs = predict(model, normalise(digit[None]))[0]
        label = int(probs.argmax())
        assert label == 7  # the network reads the 7 that was drawn
        assert shown == meta["classes"][label]
        # The page shows toFixed(3): within half a unit of the third decimal.
        np.testing.assert_allclose([float(b) for b in bars], probs, rtol=0, atol=5e-4)
        assert answer["probabilities"] == [float(p) for p in probs]  # JSON carries them exactly
        # The 28×28 input drawn by the page: round(255 · v) of v rounded to 4 decimals,
        # within 1 grey level of round(255 · digit) (255 · 5e-5 < 0.02 can cross a .5).
        grey = np.array(seen).reshape(28, 28, 4)[..., 0]
        assert np.abs(grey - np.rint(255 * digit)).max() <= 1

        # A committee's page says whose the maps are; one network's says nothing.
        note = browser.find_element(By.ID, "members")
        members = len(model) if isinstance(model, Committee) else 1
        assert answer["members"] == members
        assert note.is_displayed() == (members > 1)
        if members > 1:
            assert f"committee of {members}" in note.text and "first member" in note.text

        browser.find_element(By.ID, "clear").click()
        wait_idle(browser)
        assert browser.find_element(By.ID, "prediction").text == "–"
        assert "no digit drawn" in browser.find_element(By.ID, "message").text
        assert max(browser.execute_script("return window.convnet.sent")) == 0
    finally:
        running.close()


def screenshot(driver, path: Path) -> None:
    """Save the page as a small PNG (64 colours) at ``path`` (CONVNET_SCREENSHOT=path)."""
    import io

    # The whole page in the viewport: the window less its frame, as high as the page.
    width, height, frame = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight,"
        " window.outerHeight - window.innerHeight]"
    )
    driver.set_window_size(width, height + frame)
    picture = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    picture.quantize(64, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)

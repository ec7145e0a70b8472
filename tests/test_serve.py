"""``mnistkit serve``: the JSON API over real HTTP on 127.0.0.1 (ephemeral ports), every
class of bad request, the CLI command in a real process (Ctrl-C), and a short bounded
concurrent load."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from serve_support import (
    SOFTMAX,
    TWOLAYER,
    data_url,
    drawn_picture,
    png_bytes,
    post_json,
    request,
    running_server,
    train,
)

from mnistkit.cli import build_cli
from mnistkit.data.mnist import load_mnist
from mnistkit.serve import MAX_BODY, is_loopback


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("serve-runs")
    return {"twolayer": train(folder / "twolayer", TWOLAYER),
            "softmax": train(folder / "softmax", SOFTMAX)}


@pytest.fixture(scope="module")
def log() -> list[str]:
    return []


@pytest.fixture(scope="module")
def server(runs, log):
    with running_server([runs["twolayer"], runs["softmax"]], log) as running:
        yield running


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


def test_runs_lists_each_run_with_model_accuracy_and_hidden_units(server, runs):
    status, headers, body = request(server, "GET", "/api/runs")
    assert status == 200 and headers["content-type"] == "application/json"
    listed = json.loads(body)["runs"]
    assert [r["name"] for r in listed] == ["twolayer", "softmax"]
    assert [r["model"] for r in listed] == ["twolayer", "softmax"]
    for run, name in zip(listed, ["twolayer", "softmax"], strict=True):
        record = json.loads((runs[name] / "run.json").read_text())
        assert run["test_accuracy"] == record["metrics"]["test_accuracy"]
        assert run["class_names"] == [str(d) for d in range(10)]
    assert listed[0]["hidden_units"] == 64 and listed[1]["hidden_units"] is None
    assert listed[0]["templates"] is True and listed[1]["templates"] is False


def test_a_real_test_digit_gets_its_true_class_from_both_runs(server, mnist):
    for index in range(5):
        status, answer = post_json(server, {"pixels": mnist.test.images[index].tolist()})
        assert status == 200, answer
        label = int(mnist.test.labels[index])
        assert [r["top"] for r in answer["runs"]] == [label, label]
        assert answer["input"] == mnist.test.images[index].tolist()  # raw pixels: as given


def test_probabilities_are_the_models_own(server, runs, mnist):
    from mnistkit.evaluation import predict_scores
    from mnistkit.models.base import softmax
    from mnistkit.plugins import get_plugins
    from mnistkit.run_folder import load_run

    image = mnist.test.images[7]
    _, answer = post_json(server, {"pixels": image.ravel().tolist()})  # flat 784 works too
    loaded = load_run(runs["twolayer"], get_plugins().registry, mnist)
    expected = softmax(predict_scores(loaded.model, image[None], loaded.pixel_scale))[0]
    got = np.array(answer["runs"][0]["probabilities"])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert abs(got.sum() - 1) < 1e-5


def test_activations_are_the_hidden_layer_and_top_units_its_largest(server, runs, mnist):
    from mnistkit.plugins import get_plugins
    from mnistkit.run_folder import load_run

    image = mnist.test.images[3]
    _, answer = post_json(server, {"pixels": image.tolist()})
    twolayer, softmax_run = answer["runs"]
    model = load_run(runs["twolayer"], get_plugins().registry, mnist).model
    hidden = model.hidden(image.reshape(1, -1).astype(np.float32) / 255.0)[0]
    np.testing.assert_allclose(twolayer["hidden"], hidden, atol=1e-3)
    units = [u["unit"] for u in twolayer["top_units"]]
    assert len(units) == 8
    assert set(units) == set(np.argsort(-hidden)[:8].tolist())
    assert softmax_run["hidden"] is None and softmax_run["top_units"] is None


def test_a_drawn_picture_gets_the_same_answer_as_mnistkit_predict(server, runs, mnist, tmp_path):
    from mnistkit.preprocess import load_image, mnistify

    for index in (0, 1, 2):
        picture = tmp_path / f"drawn-{index}.png"
        picture.write_bytes(png_bytes(drawn_picture(mnist.test.images[index])))
        predicted = CliRunner().invoke(build_cli(), ["predict", str(runs["twolayer"]),
                                                     str(picture), "--json", "--top", "10"])
        assert predicted.exit_code == 0, predicted.output
        top = json.loads(predicted.stdout)[0]["top"]
        status, answer = post_json(server, {"image": data_url(picture.read_bytes())})
        assert status == 200, answer
        assert answer["input"] == mnistify(load_image(picture)).tolist()
        result = answer["runs"][0]
        assert result["top_class"] == top[0]["class"] == str(mnist.test.labels[index])
        by_class = {t["class"]: t["probability"] for t in top}
        np.testing.assert_allclose(result["probabilities"],
                                   [by_class[str(d)] for d in range(10)], rtol=1e-5, atol=1e-7)


def test_random_digit_is_a_test_image_with_its_label(server, mnist):
    status, _, body = request(server, "GET", "/api/digit")
    digit = json.loads(body)
    assert status == 200
    assert digit["pixels"] == mnist.test.images[digit["index"]].tolist()
    assert digit["label"] == int(mnist.test.labels[digit["index"]]) == int(digit["class_name"])
    _, _, body = request(server, "GET", "/api/digit?index=9999")
    assert json.loads(body)["index"] == 9999


def test_unit_templates_are_pngs_of_the_first_layer(server):
    from io import BytesIO

    from PIL import Image

    status, headers, body = request(server, "GET", "/api/runs/0/units/5.png")
    assert status == 200 and headers["content-type"] == "image/png"
    with Image.open(BytesIO(body)) as image:
        assert image.size == (28, 28) and image.mode == "RGB"


def test_the_page_and_its_files_are_served_and_fetch_nothing_from_elsewhere(server):
    for path, kind in [("/", "text/html"), ("/static/app.js", "text/javascript"),
                       ("/static/style.css", "text/css")]:
        status, headers, body = request(server, "GET", path)
        assert status == 200 and headers["content-type"].startswith(kind)
        assert b"http://" not in body and b"https://" not in body  # offline: no CDN
    status, headers, body = request(server, "HEAD", "/")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 1000


def test_the_run_folder_is_read_once_before_serving(runs, tmp_path, mnist):
    copy = shutil.copytree(runs["softmax"], tmp_path / "moved")
    with running_server([copy]) as running:
        shutil.rmtree(copy)
        status, answer = post_json(running, {"pixels": mnist.test.images[0].tolist()})
    assert status == 200 and answer["runs"][0]["top"] == 7


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width x height`` pixels, with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


JSON = {"Content-Type": "application/json"}
BAD_BODIES = {
    "not-json": (b"{'image': 1", 400, "not valid JSON"),
    "not-utf8": (b"\xff\xfe{}", 400, "not valid JSON"),
    "deeply-nested": (b"[" * 100000 + b"]" * 100000, 400, "not valid JSON"),
    "a-list": (b"[1, 2]", 422, "must be a JSON object"),
    "empty-object": (b"{}", 422, "exactly one of"),
    "both-fields": (json.dumps({"image": "x", "pixels": []}).encode(), 422, "exactly one of"),
    "unknown-field": (b'{"picture": 1}', 422, "unknown field(s) 'picture'"),
    "image-a-number": (b'{"image": 5}', 422, "'image' must be a string"),
    "not-a-data-url": (b'{"image": "http://example.com/7.png"}', 422, "must be a data URL"),
    "bad-base64": (b'{"image": "data:image/png;base64,@@@@"}', 422, "not valid base64"),
    "not-a-picture": (json.dumps({"image": "data:image/png;base64,"
                                  + base64.b64encode(b"hello, world").decode()}).encode(),
                      422, "not a readable picture"),
    "empty-picture": (b'{"image": "data:image/png;base64,"}', 422, "the picture is empty"),
    "truncated-png": (json.dumps({"image": data_url(png_bytes(np.random.default_rng(0).integers(
        0, 255, (64, 64), dtype=np.uint8))[:2000])}).encode(), 422, "not a readable image"),
    "blank-drawing": (json.dumps({"image": data_url(png_bytes(np.zeros((280, 280), np.uint8)))}
                                 ).encode(), 422, "blank"),
    "bomb-100000x100000": (json.dumps({"image": data_url(_png_declaring(100000, 100000))}
                                      ).encode(), 413, "refused before decoding"),
    "bomb-5000x5000": (json.dumps({"image": data_url(_png_declaring(5000, 5000))}).encode(),
                       413, "5000x5000 pixels is more than the 16 Mpixel allowed"),
    "pixels-a-string": (b'{"pixels": "zeros"}', 422, "'pixels' must be a list"),
    "pixels-27-rows": (json.dumps({"pixels": [[0] * 28] * 27}).encode(), 422, "got 27 rows of 28"),
    "pixels-ragged": (json.dumps({"pixels": [[0] * 28] * 27 + [[0] * 3]}).encode(), 422,
                      "got 28 rows of 3 or 28"),
    "pixels-booleans": (json.dumps({"pixels": [True] * 784}).encode(), 422, "found a boolean"),
    "pixels-strings": (json.dumps({"pixels": ["0"] * 784}).encode(), 422, "found a string"),
    "pixels-out-of-range": (json.dumps({"pixels": [300] * 784}).encode(), 422, "0..255"),
    "pixels-negative": (json.dumps({"pixels": [-1] * 784}).encode(), 422, "0..255"),
    "pixels-nan": (b'{"pixels": [' + b",".join([b"NaN"] * 784) + b"]}", 422, "0..255"),
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_predict_bodies_get_a_4xx_json_error(server, log, name, capfd):
    body, expected_status, message = BAD_BODIES[name]
    status, headers, answer = request(server, "POST", "/api/predict", body, JSON)
    assert status == expected_status, answer
    assert headers["content-type"] == "application/json"
    error = json.loads(answer)["error"]
    assert message in error
    assert "Traceback" not in error and not log  # nothing unexpected reached the log
    assert "Traceback" not in capfd.readouterr().err


REQUESTS = {
    "unknown-path": ("GET", "/nothing-here", None, {}, 404, "no such page"),
    "unknown-api": ("GET", "/api/nothing", None, {}, 404, "no such page"),
    "traversal": ("GET", "/../pyproject.toml", None, {}, 400, "'..'"),
    "traversal-in-static": ("GET", "/static/../serve.py", None, {}, 400, "'..'"),
    "traversal-encoded": ("GET", "/static/%2e%2e/%2e%2e/etc/passwd", None, {}, 400, "'..'"),
    "traversal-backslash": ("GET", "/static/..%5c..%5cserve.py", None, {}, 400, "'..'"),
    "get-predict": ("GET", "/api/predict", None, {}, 405, "use POST"),
    "post-runs": ("POST", "/api/runs", b"{}", JSON, 405, "does not take POST"),
    "put-page": ("PUT", "/", b"x", {}, 405, "method PUT is not allowed"),
    "delete-runs": ("DELETE", "/api/runs", None, {}, 405, "method DELETE is not allowed"),
    "text-body": ("POST", "/api/predict", b"{}", {"Content-Type": "text/plain"}, 415,
                  "application/json"),
    "chunked-body": ("POST", "/api/predict", iter([b"{}"]), JSON, 411, "chunked"),
    "bad-digit-index": ("GET", "/api/digit?index=10000", None, {}, 400, "0..9999"),
    "digit-index-not-a-number": ("GET", "/api/digit?index=-1", None, {}, 400, "whole number"),
    "unit-out-of-range": ("GET", "/api/runs/0/units/64.png", None, {}, 404, "0..63"),
    "unit-of-softmax": ("GET", "/api/runs/1/units/0.png", None, {}, 404, "no first-layer"),
    "unit-of-no-run": ("GET", "/api/runs/7/units/0.png", None, {}, 404, "no run 7"),
}


@pytest.mark.parametrize("name", list(REQUESTS))
def test_bad_requests_get_a_4xx_json_error(server, log, name):
    method, path, body, headers, expected_status, message = REQUESTS[name]
    status, answer_headers, answer = request(server, method, path, body, headers)
    assert status == expected_status, answer
    assert answer_headers["content-type"] == "application/json"
    assert message in json.loads(answer)["error"]
    if status == 405:
        assert answer_headers["allow"] in ("GET, HEAD", "POST")
    assert not log


def _raw(server, data: bytes) -> bytes:
    with socket.create_connection(server.server_address[:2], timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_body_over_the_cap_is_refused_before_it_is_read(server, log):
    head = (f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {MAX_BODY + 1}\r\n\r\n").encode()
    answer = _raw(server, head)  # the body is never sent: the answer must not wait for it
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413 ")
    assert b"at most 2097152 (2 MiB)" in rest and b"Connection: close" in rest
    assert not log


def test_an_early_answer_reaches_a_client_still_sending_a_large_body(server, log):
    """413 is answered before the body is read; the server then drains what the client
    still sends, so the client gets the answer instead of a reset connection."""
    body = b"[" + b"0," * (MAX_BODY // 2 + 10) + b"0]"
    status, _, answer = request(server, "POST", "/api/predict", body, JSON)
    assert status == 413 and b"at most 2097152" in answer
    assert not log


def test_missing_content_length_and_garbage_request_lines_are_json_errors(server, log):
    answer = _raw(server, b"POST /api/predict HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Type: application/json\r\nConnection: close\r\n\r\n{}")
    assert answer.startswith(b"HTTP/1.1 411") and b'"error"' in answer
    answer = _raw(server, b"GARBAGE\r\n\r\n")
    assert b" 400 " in answer.split(b"\r\n")[0] and b'{"error": "Bad request syntax' in answer
    answer = _raw(server, b"BREW /pot HTTP/1.1\r\n\r\n")
    assert b" 405 " in answer.split(b"\r\n")[0] and b"method BREW is not allowed" in answer
    answer = _raw(server, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")
    assert b" 414 " in answer.split(b"\r\n")[0] and b'{"error": ' in answer


def test_concurrent_clients_all_get_correct_answers(server, mnist):
    """A short, bounded version of benchmarks/bench_serve.py: 4 threads, 15 requests each."""
    picture = data_url(png_bytes(drawn_picture(mnist.test.images[0])))
    first = post_json(server, {"image": picture})[1]["runs"][0]["probabilities"]
    failures: list[str] = []

    def client() -> None:
        for _ in range(15):
            status, answer = post_json(server, {"image": picture})
            if status != 200 or answer["runs"][0]["probabilities"] != first:
                failures.append(f"{status} {answer}")

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures


def test_loopback_addresses():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert not is_loopback("example.com")


# --- the command ---------------------------------------------------------------------

def test_serve_in_a_real_process_answers_then_ctrl_c_exits_130(runs, mnist):
    process = subprocess.Popen(
        [sys.executable, "-m", "mnistkit", "serve", str(runs["softmax"]), "--port", "0", "--log"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = process.stdout.readline()
        assert line.startswith("Serving softmax at http://127.0.0.1:"), line
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        server = type("Address", (), {"server_address": ("127.0.0.1", port)})()
        status, answer = post_json(server, {"pixels": mnist.test.images[0].tolist()})
        assert status == 200 and answer["runs"][0]["top"] == 7
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130
    assert re.fullmatch(r"POST /api/predict 200 \d+\.\d ms\nStopped serving\.\n", err), err


def test_a_taken_port_is_one_error_line(runs):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(build_cli(), ["serve", str(runs["softmax"]), "--port",
                                                  str(port)])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: cannot listen on 127.0.0.1:{port}: Address already in "
                             f"use; choose another --port\n")


def test_not_a_run_folder_is_one_error_line(tmp_path):
    result = CliRunner().invoke(build_cli(), ["serve", str(tmp_path / "nothing")])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_a_non_loopback_host_is_warned_about(runs, monkeypatch):
    """The warning for --host 0.0.0.0, without listening beyond loopback: the server is
    bound to 127.0.0.1 whatever the host, and stops at once as if Ctrl-C was pressed."""
    import mnistkit.serve as serve

    real = serve.make_server

    def loopback_only(app, host, port, **kwargs):
        server = real(app, "127.0.0.1", 0, **kwargs)
        monkeypatch.setattr(server, "serve_forever", lambda: (_ for _ in ()).throw(
            KeyboardInterrupt))
        return server

    monkeypatch.setattr(serve, "make_server", loopback_only)
    result = CliRunner().invoke(build_cli(), ["serve", str(runs["softmax"]), "--host",
                                              "0.0.0.0"])
    assert result.exit_code == 130
    assert result.stderr.startswith("warning: listening on 0.0.0.0: anyone who can reach this "
                                    "machine")
    assert result.stderr.endswith("Stopped serving.\n")


def test_help_does_not_import_the_server_or_numpy():
    code = ("import sys; from mnistkit.cli import build_cli; import mnistkit.cli.serve_cmd; "
            "print('mnistkit.serve' in sys.modules, 'http.server' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]


# --- activations are optional per model -------------------------------------------------

class _Linear:
    """A plugin-like model with scores() only."""

    def __init__(self, rng):
        self.params = {"W": rng.standard_normal((784, 10)).astype(np.float32),
                       "b": np.zeros(10, np.float32)}

    def scores(self, x):
        return x @ self.params["W"] + self.params["b"]


class _Deep(_Linear):
    """hidden() is the *second* of two 16-unit layers: no first-layer templates for it."""

    def __init__(self, rng):
        super().__init__(rng)
        self.params.update(W1=rng.standard_normal((784, 16)).astype(np.float32),
                           b1=rng.standard_normal(16).astype(np.float32),
                           W2=rng.standard_normal((16, 16)).astype(np.float32))

    def first_layer(self):
        return self.params["W1"]

    def hidden(self, x):
        first = np.maximum(x @ self.params["W1"] + self.params["b1"], 0)
        return np.maximum(first @ self.params["W2"], 0)


class _Shallow(_Deep):
    def hidden(self, x):
        return np.maximum(x @ self.params["W1"] + self.params["b1"], 0)


class _Broken(_Deep):
    def hidden(self, x):
        raise RuntimeError("not today")


@pytest.mark.parametrize(("model_class", "units", "templates"), [
    (_Linear, None, False), (_Deep, 16, False), (_Shallow, 16, True), (_Broken, None, False)])
def test_activations_and_templates_only_where_the_model_has_them(model_class, units, templates):
    from mnistkit.serve import ServedRun

    run = ServedRun("r", Path("r"), model_class(np.random.default_rng(1)), 1 / 255,
                    {"model": "x"}, tuple("0123456789"))
    assert run.describe(0)["hidden_units"] == units
    assert run.describe(0)["templates"] is templates
    answer = run.predict(np.full((28, 28), 128, np.uint8))
    assert (answer["hidden"] is None) is (units is None)
    assert (answer["top_units"] is None) is (not templates)
    assert abs(sum(answer["probabilities"]) - 1) < 1e-5

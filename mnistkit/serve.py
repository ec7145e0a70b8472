"""``mnistkit serve``: a local web page to draw a digit and watch trained runs decide.

Everything here is the standard library plus NumPy and Pillow: one
:class:`http.server.ThreadingHTTPServer` serving a static page (package data in
``mnistkit/serve_static``) and a small JSON API:

``GET /api/runs``
    the runs being served: name, model, options, test accuracy, classes, hidden units.
``POST /api/predict``
    ``{"image": "data:image/png;base64,..."}`` (a picture, preprocessed exactly as
    ``mnistkit predict`` does) or ``{"pixels": [[...28 values 0..255...], ...28 rows]}``
    (an MNIST-style image, used as it is) -> the 28x28 input the models see and, per run,
    the ten probabilities, the top class and, for models with ``hidden()`` and
    ``first_layer()``, the hidden activations and the units that fired most.
``GET /api/digit[?index=N]``
    a test image of the first run's dataset (random without ``index``) and its label.
``GET /api/runs/<run>/units/<unit>.png``
    the first-layer template of a hidden unit (orange negative, white 0, purple positive).

Every bad request gets a 4xx answer with a JSON body ``{"error": "..."}``; an unexpected
failure is a 500 with a JSON body, reported to the ``log`` callback and never printed.
The runs are loaded once, before the server starts; requests never read the run folder.
This module never prints: the CLI passes callbacks for what it wants to show.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import io
import ipaddress
import json
import re
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from mnistkit.errors import DataError, MnistkitError, RunError, setting

#: Largest request body accepted (a 280x280 canvas PNG is a few kB; an upload may be more).
MAX_BODY = 2 * 1024 * 1024
#: Largest picture accepted, in pixels, read from its header before any decoding.
MAX_PIXELS = 16_000_000
#: How many of the most active hidden units a prediction names.
TOP_UNITS = 8
#: Seconds a client may take to send its request before the connection is dropped.
REQUEST_TIMEOUT = 10.0
#: After an early error answer, how long the rest of an unread body is read and dropped.
LINGER_SECONDS = 2.0
SIZE = 28
STATIC_FILES = {"/": "index.html", "/index.html": "index.html", "/static/app.js": "app.js",
                "/static/style.css": "style.css"}
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8"}
_DATA_URL = re.compile(r"data:image/(png|jpeg|gif|webp|bmp);base64,", re.IGNORECASE)
_UNIT_PATH = re.compile(r"/api/runs/(\d{1,4})/units/(\d{1,6})\.png")
# Okabe-Ito orange (negative) and reddish purple (positive) around white, as PuOr's ends.
_NEGATIVE, _POSITIVE = np.array([230, 159, 0], np.float32), np.array([94, 60, 153], np.float32)


class RequestError(MnistkitError):
    """A bad request: answered with ``status`` and a JSON ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --- the models ----------------------------------------------------------------------

@dataclasses.dataclass
class ServedRun:
    """One trained run, loaded once: its model, the pixel scale it was trained with and
    what the page shows about it.

    Activations are optional, found from the model's optional methods: ``hidden(x)``
    (``(B, H)``, as ``mnistkit visualise embedding`` uses) gives the activations grid, and
    when those are the first layer's own units (checked on a probe against
    ``first_layer()`` and ``params["b1"]``), the templates of the units that fired most.
    A model without them (``softmax``, most plugins) just has no activations panel.
    """

    name: str
    path: Path
    model: Any
    pixel_scale: float
    record: dict[str, Any]
    class_names: tuple[str, ...]
    hidden_units: int | None = dataclasses.field(init=False, default=None)
    templates: np.ndarray | None = dataclasses.field(init=False, default=None)  # (784, H)
    _lock: threading.Lock = dataclasses.field(init=False, default_factory=threading.Lock,
                                              repr=False)

    def __post_init__(self) -> None:
        self.hidden_units = _hidden_units(self.model)
        if self.hidden_units is not None:
            self.templates = _first_layer_templates(self.model, self.hidden_units)

    def describe(self, index: int) -> dict[str, Any]:
        """What ``GET /api/runs`` says about this run."""
        metrics = self.record.get("metrics") or {}
        accuracy = metrics.get("test_accuracy")
        return {"id": index, "name": self.name, "model": self.record.get("model"),
                "model_options": self.record.get("model_options", {}),
                "optimizer": self.record.get("optimizer"),
                "dataset": (self.record.get("dataset") or {}).get("name"),
                "test_accuracy": accuracy if isinstance(accuracy, (int, float)) else None,
                "class_names": list(self.class_names), "hidden_units": self.hidden_units,
                "templates": self.templates is not None}

    def inputs(self, image: np.ndarray) -> np.ndarray:
        """The model's float32 input row ``(1, 784)`` for a uint8 28x28 image, scaled as in
        training (the same conversion as :func:`mnistkit.evaluation.predict_scores`)."""
        return image.reshape(1, -1).astype(np.float32) * np.float32(self.pixel_scale)

    def predict(self, image: np.ndarray) -> dict[str, Any]:
        """Probabilities, top class and (when the model has them) hidden activations.

        One request at a time per model: a plugin's model may reuse buffers between calls.
        """
        from mnistkit.evaluation import predict_scores
        from mnistkit.models.base import softmax

        with self._lock:
            scores = predict_scores(self.model, image[None], self.pixel_scale)
            hidden = None if self.hidden_units is None else np.asarray(
                self.model.hidden(self.inputs(image)), np.float32)[0]
        probabilities = softmax(scores)[0]
        top = int(np.argmax(probabilities))
        answer: dict[str, Any] = {
            "probabilities": [float(p) for p in probabilities], "top": top,
            "top_class": self.class_names[top] if top < len(self.class_names) else str(top),
            "hidden": None, "top_units": None}
        if hidden is not None:
            answer["hidden"] = [round(float(v), 4) for v in hidden]
        if hidden is not None and self.templates is not None:
            order = np.argsort(-hidden, kind="stable")[:TOP_UNITS]
            answer["top_units"] = [{"unit": int(u), "activation": round(float(hidden[u]), 4)}
                                   for u in order if hidden[u] > 0]
        return answer

    def unit_png(self, unit: int) -> bytes:
        """PNG of hidden unit ``unit``'s 28x28 first-layer template, 0 white, orange
        negative, purple positive, scaled by its largest absolute weight."""
        if self.templates is None:
            raise RequestError(404, f"run {self.name!r} has no first-layer templates to show")
        if not 0 <= unit < self.templates.shape[1]:
            raise RequestError(404, f"run {self.name!r} has hidden units 0.."
                                    f"{self.templates.shape[1] - 1}; got {unit}")
        return _png(_diverging(self.templates[:, unit].reshape(SIZE, SIZE)))


def _probe() -> np.ndarray:
    return np.random.default_rng(0).random((2, SIZE * SIZE), dtype=np.float32)


def _hidden_units(model: Any) -> int | None:
    """How many units ``model.hidden(x)`` gives, or ``None`` if it has no working one."""
    hidden = getattr(model, "hidden", None)
    if not callable(hidden):
        return None
    try:
        values = np.asarray(hidden(_probe()))
    except Exception:  # noqa: BLE001 - a plugin's optional method failing: no panel
        return None
    if values.ndim != 2 or values.shape[0] != 2 or values.dtype.kind != "f":
        return None
    return int(values.shape[1])


def _first_layer_templates(model: Any, units: int) -> np.ndarray | None:
    """``first_layer()`` ``(784, H)`` if ``hidden(x)`` is ``relu(x @ first_layer() + b1)``
    on a probe (so each hidden unit has a 28x28 template), else ``None``: e.g. an MLP whose
    ``hidden()`` is its last layer."""
    first = getattr(model, "first_layer", None)
    if not callable(first):
        return None
    try:
        weights = np.asarray(first(), np.float32)
        if weights.shape != (SIZE * SIZE, units):
            return None
        bias = np.asarray(getattr(model, "params", {}).get("b1", 0.0), np.float32)
        probe = _probe()
        expected = np.maximum(probe @ weights + bias, 0)
        got = np.asarray(model.hidden(probe), np.float32)
    except Exception:  # noqa: BLE001 - as above
        return None
    scale = float(np.abs(expected).max()) or 1.0
    return weights if np.allclose(got, expected, rtol=1e-3, atol=1e-4 * scale) else None


def _diverging(values: np.ndarray) -> np.ndarray:
    """RGB uint8 of signed ``values``: orange for negative, white at 0, purple positive."""
    scale = float(np.max(np.abs(values))) or 1.0
    t = np.clip(values / scale, -1.0, 1.0)[..., None]
    white = np.float32(255.0)
    rgb = np.where(t < 0, white + (-t) * (_NEGATIVE - white), white + t * (_POSITIVE - white))
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


# --- the inputs ----------------------------------------------------------------------

class Preprocessor:
    """Turns a request's picture into the 28x28 image ``mnistkit predict`` would make.

    Decoding is :func:`mnistkit.preprocess.load_image` itself, the function ``predict``
    calls: the uploaded bytes are written to a private temporary file for it, after the
    picture's declared size has been checked against :data:`MAX_PIXELS` from its header.
    Pictures are decoded one at a time, with Pillow's warnings silenced: warning filters
    are process-wide, so changing them from several threads at once would be a race. (Finding
    the digit in the decoded picture, most of the work, runs in parallel.)
    """

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="mnistkit-serve-")
        self._lock = threading.Lock()

    def close(self) -> None:
        """Remove the temporary folder."""
        self._folder.cleanup()

    def from_data_url(self, text: Any) -> tuple[np.ndarray, list[str]]:
        """The MNIST-style image and preprocessing warnings of a ``data:image/...`` URL."""
        return self.from_bytes(decode_data_url(text))

    def from_bytes(self, data: bytes) -> tuple[np.ndarray, list[str]]:
        """The MNIST-style image and preprocessing warnings of an encoded picture."""
        from mnistkit import preprocess

        with self._lock, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's remarks on odd files never print
            check_declared_size(data)
            grey = self._load(data)
        try:  # finding the digit is NumPy only: no warnings, threads run it side by side
            digit = preprocess.mnistify_digit(grey)
        except DataError as exc:
            raise RequestError(422, f"image: {exc}") from None
        return digit.image, list(digit.warnings)

    def _load(self, data: bytes) -> np.ndarray:
        from mnistkit import preprocess

        with tempfile.NamedTemporaryFile(dir=self._folder.name, suffix=".img") as handle:
            handle.write(data)
            handle.flush()
            try:
                return preprocess.load_image(handle.name)
            except DataError as exc:
                message = str(exc).replace(f"{handle.name}: ", "").replace(handle.name, "image")
                raise RequestError(422, f"image: {message}") from None


def decode_data_url(text: Any) -> bytes:
    """The bytes of a base64 ``data:image/<png|jpeg|gif|webp|bmp>;base64,...`` URL."""
    if not isinstance(text, str):
        raise RequestError(422, f"'image' must be a string (a data: URL); got "
                                f"{_json_type(text)}")
    match = _DATA_URL.match(text)
    if match is None:
        raise RequestError(422, "'image' must be a data URL starting with "
                                "data:image/png;base64, (or jpeg, gif, webp, bmp)")
    try:
        return base64.b64decode(text[match.end():], validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(422, "'image' is not valid base64 after the data: prefix") from None


def check_declared_size(data: bytes) -> None:
    """Refuse a picture whose header declares more than :data:`MAX_PIXELS` pixels
    (a decompression bomb), or that Pillow cannot even identify, before decoding it."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise RequestError(422, "image: the picture is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            width, height = image.size
    except UnidentifiedImageError:
        raise RequestError(422, "image: not a readable picture (not a format Pillow knows, or "
                                "damaged at the start)") from None
    except Image.DecompressionBombError:
        raise RequestError(413, "image: too many pixels for a digit picture: refused before "
                                "decoding") from None
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: any failure is a bad image
        raise RequestError(422, f"image: not a readable picture ({type(exc).__name__})") from None
    if width * height > MAX_PIXELS:
        raise RequestError(413, f"image: {width}x{height} pixels is more than the "
                                f"{MAX_PIXELS // 1_000_000} Mpixel allowed: refused before "
                                f"decoding")


def pixels_image(values: Any) -> np.ndarray:
    """A uint8 28x28 image from JSON ``values``: 28 rows of 28 numbers, or 784 numbers,
    each in 0..255 (an MNIST-style image, not preprocessed further)."""
    if not isinstance(values, list):
        raise RequestError(422, f"'pixels' must be a list of 28 rows of 28 numbers; got "
                                f"{_json_type(values)}")
    flat = values
    if values and all(isinstance(row, list) for row in values):
        if len(values) != SIZE or any(len(row) != SIZE for row in values):
            raise RequestError(422, f"'pixels' must be 28 rows of 28 numbers (or 784 numbers); "
                                    f"got {len(values)} rows of {_lengths(values)}")
        flat = [value for row in values for value in row]
    if len(flat) != SIZE * SIZE:
        raise RequestError(422, f"'pixels' must hold 28x28 = 784 numbers; got {len(flat)}")
    for value in flat:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RequestError(422, f"'pixels' must hold only numbers; found {_json_type(value)}")
        if not 0 <= value <= 255:  # also refuses NaN
            raise RequestError(422, f"'pixels' values must be in 0..255; found {value!r}")
    return np.rint(np.asarray(flat, np.float64)).astype(np.uint8).reshape(SIZE, SIZE)


def _lengths(rows: list[list[Any]]) -> str:
    lengths = sorted({len(row) for row in rows})
    return " or ".join(map(str, lengths[:3])) + (" or more" if len(lengths) > 3 else "")


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# --- the service: what the API answers, independent of HTTP ---------------------------

class ServeApp:
    """The runs, the test images for the random-digit button, and the answers of the API."""

    def __init__(self, runs: Sequence[ServedRun], test_images: np.ndarray | None = None,
                 test_labels: np.ndarray | None = None, seed: int | None = None) -> None:
        if not runs:
            raise RunError("give at least one run to serve")
        self.runs = list(runs)
        self.test_images, self.test_labels = test_images, test_labels
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()
        self.preprocessor = Preprocessor()
        self.static = _read_static()

    def close(self) -> None:
        """Release the temporary folder of the preprocessor."""
        self.preprocessor.close()

    def runs_answer(self) -> dict[str, Any]:
        """``GET /api/runs``."""
        return {"runs": [run.describe(i) for i, run in enumerate(self.runs)]}

    def predict_answer(self, payload: Any) -> dict[str, Any]:
        """``POST /api/predict`` of a decoded JSON ``payload``."""
        if not isinstance(payload, dict):
            raise RequestError(422, f"the body must be a JSON object with 'image' or 'pixels'; "
                                    f"got {_json_type(payload)}")
        unknown = sorted(set(payload) - {"image", "pixels"})
        if unknown:
            raise RequestError(422, f"unknown field(s) {', '.join(map(repr, unknown))}; "
                                    f"give 'image' (a data URL) or 'pixels' (28x28 numbers)")
        if ("image" in payload) == ("pixels" in payload):
            raise RequestError(422, "give exactly one of 'image' (a data URL) or 'pixels' "
                                    "(28x28 numbers)")
        started = time.perf_counter()
        if "image" in payload:
            image, notes = self.preprocessor.from_data_url(payload["image"])
        else:
            image, notes = pixels_image(payload["pixels"]), []
        results = [run.predict(image) for run in self.runs]
        return {"input": image.tolist(), "warnings": notes, "runs": results,
                "milliseconds": round((time.perf_counter() - started) * 1000, 3)}

    def digit_answer(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """``GET /api/digit[?index=N]``: a test image and its true label."""
        if self.test_images is None or self.test_labels is None or not len(self.test_labels):
            raise RequestError(404, "no test images are available for these runs")
        count = len(self.test_labels)
        if "index" in query:
            text = query["index"][-1]
            if not text.isdigit() or int(text) >= count:
                raise RequestError(400, f"index must be a whole number in 0..{count - 1}; "
                                        f"got {text!r}")
            index = int(text)
        else:
            with self._rng_lock:
                index = int(self._rng.integers(count))
        label = int(self.test_labels[index])
        names = self.runs[0].class_names
        return {"index": index, "label": label,
                "class_name": names[label] if label < len(names) else str(label),
                "pixels": self.test_images[index].tolist()}

    def unit_png(self, run_id: int, unit: int) -> bytes:
        """``GET /api/runs/<run>/units/<unit>.png``."""
        if run_id >= len(self.runs):
            raise RequestError(404, f"no run {run_id}; runs are 0..{len(self.runs) - 1}")
        return self.runs[run_id].unit_png(unit)


def _read_static() -> dict[str, bytes]:
    """The page's files, read once from the package data (nothing else is ever served)."""
    from importlib.resources import files

    folder = files("mnistkit") / "serve_static"
    return {name: (folder / name).read_bytes() for name in set(STATIC_FILES.values())}


# --- HTTP --------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    """Routes requests to the :class:`ServeApp` of its server; answers errors in JSON."""

    server: MnistkitServer
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse a connection
    server_version = "mnistkit-serve"
    timeout = REQUEST_TIMEOUT

    def do_GET(self) -> None:  # noqa: N802 - the http.server naming
        """Static files and the GET endpoints."""
        self._answer(self._get)

    def do_HEAD(self) -> None:  # noqa: N802
        """As GET, without a body."""
        self._answer(self._get, head=True)

    def do_POST(self) -> None:  # noqa: N802
        """``/api/predict``."""
        self._answer(self._post)

    def do_PUT(self) -> None:  # noqa: N802
        """Not allowed anywhere."""
        self._answer(self._not_allowed)

    do_DELETE = do_PATCH = do_OPTIONS = do_PUT  # noqa: N815

    def _path(self) -> tuple[str, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        if any(segment in ("..", ".") for segment in path.split("/")) or "\\" in path:
            raise RequestError(400, "paths with '..' or '.' segments are refused")
        return path, parse_qs(parts.query)

    def _get(self) -> tuple[int, str, bytes]:
        path, query = self._path()
        app = self.server.app
        if path in STATIC_FILES:
            name = STATIC_FILES[path]
            return 200, _CONTENT_TYPES[Path(name).suffix], app.static[name]
        if path == "/api/runs":
            return _json(200, app.runs_answer())
        if path == "/api/digit":
            return _json(200, app.digit_answer(query))
        unit = _UNIT_PATH.fullmatch(path)
        if unit:
            return 200, "image/png", app.unit_png(int(unit.group(1)), int(unit.group(2)))
        if path == "/api/predict":
            raise RequestError(405, "use POST for /api/predict")
        raise RequestError(404, f"no such page: {path[:100]}")

    def _post(self) -> tuple[int, str, bytes]:
        path, _ = self._path()
        if path != "/api/predict":
            if path in STATIC_FILES or path.startswith("/api/"):
                raise RequestError(405, f"{path[:100]} does not take POST")
            raise RequestError(404, f"no such page: {path[:100]}")
        body = self._read_body()
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestError(400, f"the body is not valid JSON ({exc})") from None
        except RecursionError:
            raise RequestError(400, "the body is not valid JSON (nested too deeply)") from None
        return _json(200, self.server.app.predict_answer(payload))

    def _not_allowed(self) -> tuple[int, str, bytes]:
        self._path()
        raise RequestError(405, f"method {self.command} is not allowed")

    def _read_body(self) -> bytes:
        kind = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise RequestError(415, "send the body as application/json")
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise RequestError(411, "send a Content-Length (chunked bodies are not accepted)")
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.strip().isdigit():
            raise RequestError(411, "a Content-Length header with the body size is required")
        length = int(length_text)
        if length > MAX_BODY:
            raise RequestError(413, f"the body is {length} bytes; at most {MAX_BODY} "
                                    f"({MAX_BODY // 1024 // 1024} MiB) are accepted")
        body = self.rfile.read(length)
        self._body_read = True
        if len(body) < length:
            raise RequestError(400, f"the body ended after {len(body)} of {length} bytes")
        return body

    def _answer(self, route: Callable[[], tuple[int, str, bytes]], head: bool = False) -> None:
        started = time.perf_counter()
        self._body_read = False
        try:
            status, kind, body = route()
        except RequestError as exc:
            status, kind, body = _json(exc.status, {"error": str(exc)})
            if exc.status in (411, 413, 415) or self.command not in ("GET", "HEAD"):
                self.close_connection = True  # an unread body must not be taken as a request
        except Exception as exc:  # noqa: BLE001 - the page gets JSON, the log the details
            self.server.report_error(self.command, self.path, exc)
            status, kind, body = _json(500, {"error": f"internal error ({type(exc).__name__})"})
            self.close_connection = True
        # Reported before the answer is sent, so the line is never lost to a shutdown that
        # follows the client's receipt (the time is the server's work, not the transfer).
        self.server.report_request(self.command, self.path, status,
                                   (time.perf_counter() - started) * 1000)
        self._send(status, kind, body, head)
        if self.close_connection and self.command not in ("GET", "HEAD") and not self._body_read:
            self._linger()

    def _linger(self) -> None:
        """After answering a request whose body was left unread: stop writing, then read
        and drop what the client still sends (bounded in bytes and time). Closing at once
        would reset the connection, and the client could lose the answer."""
        deadline = time.monotonic() + LINGER_SECONDS
        left = 2 * MAX_BODY
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(LINGER_SECONDS)
            while left > 0 and time.monotonic() < deadline:
                chunk = self.connection.recv(min(65536, left))
                if not chunk:
                    break
                left -= len(chunk)

    def _send(self, status: int, kind: str, body: bytes, head: bool) -> None:
        with contextlib.suppress(ConnectionError):
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store" if kind.startswith(
                "application/json") else "max-age=60")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:")
            if status == 405:
                self.send_header("Allow", "POST" if self.path.startswith("/api/predict")
                                 else "GET, HEAD")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if not head:
                self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Silence :mod:`http.server`'s own stderr lines; requests go to ``report_request``."""

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002
        """Malformed request lines go to the server's log callback, not stderr."""
        self.server.log(f"bad request from {self.client_address[0]}: {format % args}")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None
                   ) -> None:
        """``http.server``'s own errors (bad request line, header too long) as JSON. An
        unknown method is a 405 like the others; the status line is always written."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # a garbled request line: answer as HTTP/1.0
            self.request_version = "HTTP/1.0"
        if code == HTTPStatus.NOT_IMPLEMENTED:
            code, message = 405, f"method {self.command} is not allowed"
        text = message or HTTPStatus(code).phrase
        self._send(code, "application/json", json.dumps({"error": text}).encode(), False)


def _json(status: int, value: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(value, separators=(",", ":")).encode()


class MnistkitServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one :class:`ServeApp`; one thread per connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: ServeApp,
                 log: Callable[[str], None] | None = None,
                 on_request: Callable[[str, str, int, float], None] | None = None) -> None:
        self.app = app
        self.log = log or (lambda message: None)
        self.on_request = on_request
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        """The page's address, e.g. ``http://127.0.0.1:8000/``."""
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}/"

    def report_request(self, method: str, path: str, status: int, ms: float) -> None:
        """Tell the ``on_request`` callback (if any) about an answered request."""
        if self.on_request is not None:
            self.on_request(method, path, status, ms)

    def report_error(self, method: str, path: str, exc: BaseException) -> None:
        """An unexpected exception while answering: one line to the log callback."""
        self.log(f"error answering {method} {path[:100]}: {type(exc).__name__}: {exc}")

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed outside a handler (client gone): log, never print."""
        import sys

        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            self.log(f"connection from {client_address[0]} failed: {type(exc).__name__}: {exc}")

    def server_close(self) -> None:
        """Close the socket and the app's temporary folder."""
        super().server_close()
        self.app.close()


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address) only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(app: ServeApp, host: str = "127.0.0.1", port: int = 8000,
                log: Callable[[str], None] | None = None,
                on_request: Callable[[str, str, int, float], None] | None = None
                ) -> MnistkitServer:
    """A server for ``app`` listening on ``host:port`` (port 0: any free port), not started.

    Call ``serve_forever()`` on it (or in a thread), then ``shutdown()`` and
    ``server_close()``. A port that cannot be bound is a :class:`MnistkitError`.
    """
    if not 0 <= port <= 65535:
        raise MnistkitError(f"{setting('port')} must be in 0..65535; got {port}")
    server_class = MnistkitServer
    if ":" in host:
        server_class = type("MnistkitServer6", (MnistkitServer,),
                            {"address_family": socket.AF_INET6})
    try:
        return server_class((host, port), app, log=log, on_request=on_request)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        hint = "; choose another --port" if exc.errno in (98, 48) else ""
        raise MnistkitError(f"cannot listen on {host}:{port}: {reason}{hint}") from None


def load_served_runs(paths: Sequence[str | Path], load_dataset: Callable[[str], Any],
                     registry: Any, which: str = "best") -> tuple[list[ServedRun], Any]:
    """Load each run once (model and parameters); returns them and the first run's dataset.

    ``load_dataset(name)`` gives a dataset by name (each distinct one is loaded once).
    """
    from mnistkit.runs import load_run, read_record

    datasets: dict[str, Any] = {}
    runs = []
    names = _unique_names([Path(p) for p in paths])
    for path, name in zip(paths, names, strict=True):
        record = read_record(path)
        dataset_name = record["dataset"]["name"]
        if dataset_name not in datasets:
            datasets[dataset_name] = load_dataset(dataset_name)
        dataset = datasets[dataset_name]
        if tuple(dataset.train.images.shape[1:]) != (SIZE, SIZE):
            raise RunError(f"{path}: this run was trained on "
                           f"{'x'.join(map(str, dataset.train.images.shape[1:]))} images; "
                           f"serve draws 28x28 MNIST-style digits")
        loaded = load_run(path, registry, dataset, which)
        runs.append(ServedRun(name, Path(path), loaded.model, loaded.pixel_scale,
                              loaded.record, tuple(dataset.class_names)))
    return runs, datasets[runs[0].record["dataset"]["name"]]


def _unique_names(paths: Sequence[Path]) -> list[str]:
    """Each run's folder name, with its parent's when two runs share a name."""
    names = [p.resolve().name or str(p) for p in paths]
    return [f"{p.resolve().parent.name}/{n}" if names.count(n) > 1 else n
            for p, n in zip(paths, names, strict=True)]

"""Helpers for the ``mnistkit serve`` tests: small trained runs, a server on an ephemeral
loopback port started and stopped by the test, and plain HTTP requests."""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner

from mnistkit.cli import build_cli

TWOLAYER = ["--model", "twolayer", "--limit", "10000", "--val-size", "1000", "--epochs", "2",
            "-m", "hidden_size=64"]
SOFTMAX = ["--model", "softmax", "--limit", "5000", "--val-size", "500", "--epochs", "1"]


def train(out: Path, args: list[str]) -> Path:
    """Train a small run into ``out`` through the CLI."""
    result = CliRunner().invoke(build_cli(), ["train", *args, "--quiet", "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


@contextlib.contextmanager
def running_server(run_paths: list[Path], log: list[str] | None = None) -> Iterator[Any]:
    """A :class:`mnistkit.serve.MnistkitServer` for the runs on 127.0.0.1, any free port,
    serving in a thread; shut down and closed afterwards."""
    from mnistkit.datasets import load_dataset
    from mnistkit.plugins import get_plugins
    from mnistkit.serve import ServeApp, load_served_runs, make_server

    runs, dataset = load_served_runs(run_paths, load_dataset, get_plugins().registry)
    app = ServeApp(runs, dataset.test.images, dataset.test.labels, seed=0)
    server = make_server(app, "127.0.0.1", 0, log=(log.append if log is not None else None))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def request(server: Any, method: str, path: str, body: bytes | str | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: status, headers (lower-case names), body."""
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        data = body.encode() if isinstance(body, str) else body
        connection.request(method, path, body=data, headers=headers or {})
        response = connection.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read())
    finally:
        connection.close()


def post_json(server: Any, value: Any) -> tuple[int, Any]:
    """``POST /api/predict`` with ``value`` as JSON; the status and the decoded answer."""
    status, headers, body = request(server, "POST", "/api/predict", json.dumps(value),
                                    {"Content-Type": "application/json"})
    assert headers["content-type"] == "application/json"
    return status, json.loads(body)


def png_bytes(pixels: np.ndarray) -> bytes:
    """A PNG of a uint8 greyscale array."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def data_url(png: bytes) -> str:
    """``data:image/png;base64,...`` of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def drawn_picture(digit: np.ndarray, scale: int = 10) -> np.ndarray:
    """An MNIST digit as a user's drawing: ``scale`` times larger, dark ink on white paper,
    off-centre with a wide margin (so preprocessing has work to do)."""
    big = np.kron(digit, np.ones((scale, scale), np.uint8))
    paper = np.full((big.shape[0] + 60, big.shape[1] + 100), 255, np.uint8)
    paper[20:20 + big.shape[0], 70:70 + big.shape[1]] = 255 - big
    return paper

"""Load test of ``mnistkit serve``: requests per second and latency of ``POST /api/predict``.

Starts ``mnistkit serve RUN --port 0`` in a child process on 127.0.0.1 (loopback only),
then ``--clients`` threads, each on its own keep-alive connection, send predictions for
``--seconds`` (at most 20). The body is what the page sends while you draw: a 280x280
PNG data URL of a digit (``--body png``, decoded and preprocessed like ``mnistkit
predict``), or 28x28 raw pixels (``--body pixels``, the random-digit button's request).
Without RUN, a quick run is trained first into a temporary folder.

    python benchmarks/bench_serve.py                  # 4 clients, 20 s, PNG bodies
    python benchmarks/bench_serve.py RUN --body pixels --seconds 10

The clients are Python threads in this process and share the machine's cores with the
server, so the figures are a floor for a single user's browser, not a server rating.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

MAX_SECONDS = 20.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", nargs="?", type=Path, help="a trained run (default: train one)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (4)")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration, at most 20 (20)")
    parser.add_argument("--body", choices=["png", "pixels"], default="png")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    seconds = min(max(args.seconds, 1.0), MAX_SECONDS)
    with tempfile.TemporaryDirectory() as scratch:
        run = args.run or train_quick_run(Path(scratch) / "run")
        body = json.dumps(request_body(args.body)).encode()
        process, port = start_server(run)
        try:
            figures = load(port, body, args.clients, seconds)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(20)
    figures.update(body=args.body, body_bytes=len(body), run=str(args.run or "quick run"),
                   python=platform.python_version(), cpus=os.cpu_count())
    print(json.dumps(figures, indent=2) if args.json else report(figures))
    return 0 if figures["errors"] == 0 else 1


def train_quick_run(out: Path) -> Path:
    """The default two-layer network (784-256-10), one epoch: what ``serve`` usually serves."""
    subprocess.run([sys.executable, "-m", "mnistkit", "train", "--model", "twolayer",
                    "--epochs", "1", "--quiet", "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    return out


def request_body(kind: str) -> dict[str, object]:
    """A test digit drawn as the page draws (white on black, 280x280 PNG), or raw pixels."""
    from PIL import Image

    from mnistkit.data.mnist import load_mnist

    digit = load_mnist().test.images[0]
    if kind == "pixels":
        return {"pixels": digit.tolist()}
    big = np.kron(digit, np.ones((10, 10), np.uint8))
    out = io.BytesIO()
    Image.fromarray(big).save(out, format="PNG")
    return {"image": "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()}


def start_server(run: Path) -> tuple[subprocess.Popen[str], int]:
    """``mnistkit serve RUN --port 0`` on 127.0.0.1; its process and port."""
    process = subprocess.Popen([sys.executable, "-m", "mnistkit", "serve", str(run), "--port",
                                "0", "--host", "127.0.0.1"], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = process.stdout.readline() if process.stdout else ""
    if "http://127.0.0.1:" not in line:
        process.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return process, int(line.split("http://127.0.0.1:")[1].split("/")[0])


def load(port: int, body: bytes, clients: int, seconds: float) -> dict[str, float | int]:
    """Run the clients until the deadline; request count, rate and latency percentiles."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = time.perf_counter()
    deadline = start + seconds

    def client(k: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Content-Type": "application/json"}
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            try:
                connection.request("POST", "/api/predict", body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
            latencies[k].append(time.perf_counter() - sent)
            errors[k] += not ok
        connection.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    ms = np.array([t for each in latencies for t in each]) * 1000
    return {"clients": clients, "seconds": round(elapsed, 2), "requests": int(ms.size),
            "errors": int(sum(errors)), "requests_per_second": round(ms.size / elapsed, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 2)}


def report(f: dict[str, object]) -> str:
    return (f"{f['requests']} requests ({f['body']} bodies of {f['body_bytes']} bytes) from "
            f"{f['clients']} clients in {f['seconds']} s: {f['requests_per_second']} requests/s, "
            f"latency p50 {f['p50_ms']} ms, p95 {f['p95_ms']} ms, p99 {f['p99_ms']} ms, "
            f"max {f['max_ms']} ms, {f['errors']} errors")


if __name__ == "__main__":
    sys.exit(main())

"""A local HTTP server for testing dataset downloads without a network."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@dataclasses.dataclass
class LoopbackServer:
    """A running :func:`serve_folder` server: its base ``url`` and the paths requested."""

    url: str
    requests: list[str]


@contextlib.contextmanager
def serve_folder(folder: str | Path) -> Iterator[LoopbackServer]:
    """Serve the files under ``folder`` over HTTP on 127.0.0.1 (a free port), for tests.

    Dataset plugins test their downloads offline with it: point the mirrors at
    ``server.url + "sub/"`` (a missing file is a 404) and check ``server.requests``.
    Nothing leaves the machine.
    """
    import functools
    import http.server

    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet tests
            pass

        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield LoopbackServer(f"http://127.0.0.1:{httpd.server_address[1]}/", requests)
    finally:
        httpd.shutdown()
        httpd.server_close()

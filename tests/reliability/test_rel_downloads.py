"""Downloads, for what tests/test_download.py does not already show: a real Ctrl-C in the
middle of a download through the CLI leaves no file, and a server that keeps sending a
byte now and then cannot hold a download beyond its overall time limit.

Covered there (listed in README): wrong checksum deletes and says so, dropped connection
leaves nothing, stalled server times out, present valid files are not fetched again.
"""

from __future__ import annotations

import hashlib
import http.server
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, default_signals, subprocess_env

from mnistkit.data.download import RemoteFile, fetch_files
from mnistkit.errors import DownloadError

BODY = bytes(range(256)) * 256  # 64 KiB


class SlowServer:
    """Loopback HTTP server: ``/stall/NAME`` sends half the body then waits until closed;
    ``/drip/NAME`` sends one byte every 50 ms."""

    def __init__(self) -> None:
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(BODY)))
                self.end_headers()
                try:
                    if self.path.startswith("/stall/"):
                        self.wfile.write(BODY[: len(BODY) // 2])
                        self.wfile.flush()
                        server.release.wait(60)
                    else:
                        for i in range(len(BODY)):
                            if server.release.wait(0.05):
                                return
                            self.wfile.write(BODY[i:i + 1])
                            self.wfile.flush()
                except OSError:  # the client went away
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    srv = SlowServer()
    yield srv
    srv.close()


REMOTE = RemoteFile("data.bin", md5=hashlib.md5(BODY).hexdigest())

#: ``python -c DRIVER BASE_URL FOLDER ARGS...``: mnistkit with a dataset that downloads
DRIVER = """
import sys, types
from mnistkit import hookimpl
from mnistkit.cli import build_cli
from mnistkit.data.download import RemoteFile, fetch_files
from mnistkit.plugins import load_plugins

base, folder, md5 = sys.argv[1:4]
plugin = types.ModuleType("remote_plugin")

def load(options, data_dir):
    fetch_files("remote", [RemoteFile("data.bin", md5=md5)], [base + "/stall/"], folder=folder)
    raise AssertionError("the download should never finish")

@hookimpl
def mnistkit_register_datasets(register):
    register("remote", load)

plugin.mnistkit_register_datasets = mnistkit_register_datasets
build_cli(load_plugins(extra=[plugin], entry_points=False)).main(
    args=sys.argv[4:], prog_name="mnistkit")
"""


def test_ctrl_c_during_a_download_through_the_cli_leaves_no_file(server, tmp_path):
    folder = tmp_path / "remote"
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, server.base, str(folder), REMOTE.md5, "inspect",
         "--dataset", "remote"], env=subprocess_env(PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_signals)
    deadline = time.time() + 60
    while not list(folder.glob(".data.bin.*.part")) and time.time() < deadline:
        time.sleep(0.01)
    assert list(folder.glob(".data.bin.*.part")), "the download never started"
    time.sleep(0.1)  # half the file is in; the process waits for the rest
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "Interrupted." and "Traceback" not in stdout + stderr
    assert list(folder.iterdir()) == []  # no partial file, no temporary


def test_a_dripping_server_is_cut_off_by_the_overall_limit(server, tmp_path):
    """Each byte arrives within the read timeout, but the whole file may not take more
    than ``max_seconds``."""
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"the download took longer than 0\.5 s"):
        fetch_files("drip", [REMOTE], [server.base + "/drip/"], folder=tmp_path / "d",
                    timeout=2.0, max_seconds=0.5)
    assert time.monotonic() - started < 5
    assert not (tmp_path / "d").exists() or list((tmp_path / "d").iterdir()) == []


def test_present_and_valid_file_is_used_without_any_request(tmp_path):
    """Nothing is fetched when the file is there: an unreachable mirror is never asked."""
    (tmp_path / "data.bin").write_bytes(BODY)
    assert fetch_files("x", [REMOTE], ["http://127.0.0.1:9/"], folder=tmp_path) == tmp_path
    assert Path(tmp_path / "data.bin").read_bytes() == BODY

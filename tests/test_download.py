"""mnistkit.data.download against a loopback HTTP server (127.0.0.1 only, no internet)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from mnistkit.data.download import RemoteFile, dataset_folder, fetch_files, is_valid
from mnistkit.errors import DownloadError

# Downloads that fail (wrong checksum, dropped connection, timeout, 404, Ctrl-C) are part of
# the reliability suite too: `pytest -m reliability` selects them.
pytestmark = pytest.mark.reliability


def idx_gz(array: np.ndarray) -> bytes:
    """A gzipped IDX file of a uint8 array (type code 0x08)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


IMAGES = idx_gz(np.random.default_rng(0).integers(0, 256, (6, 28, 28)))
LABELS = idx_gz(np.arange(6) % 3)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class Server:
    """Routes ``/<mirror>/<name>`` to behaviours; records every request path."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[str, bytes]] = {}
        self.requests: list[str] = []
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                server.requests.append(self.path)
                mode, body = server.routes.get(self.path, ("404", b""))
                if mode == "404":
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "ok":
                    self.wfile.write(body)
                elif mode == "drop":  # promise the whole body, send half, hang up
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                elif mode == "hang":  # send a little, then stall until the test ends
                    self.wfile.write(body[:10])
                    self.wfile.flush()
                    server.release.wait(10)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def mirror(self, name: str) -> str:
        return f"{self.base}/{name}/"

    def serve(self, mirror: str, file_name: str, body: bytes, mode: str = "ok") -> None:
        self.routes[f"/{mirror}/{file_name}"] = (mode, body)

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTKIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


FILES = (RemoteFile("images-idx3-ubyte.gz", md5=md5(IMAGES)),
         RemoteFile("labels-idx1-ubyte.gz", sha256=hashlib.sha256(LABELS).hexdigest()))


def serve_all(server: Server, mirror: str, mode: str = "ok") -> None:
    server.serve(mirror, FILES[0].name, IMAGES, mode)
    server.serve(mirror, FILES[1].name, LABELS, mode)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_downloads_into_the_cache_folder_and_verifies(server, cache):
    serve_all(server, "a")
    folder = fetch_files("toy", FILES, [server.mirror("a")])
    assert folder == cache / "toy" == dataset_folder("toy")
    assert (folder / FILES[0].name).read_bytes() == IMAGES
    assert (folder / FILES[1].name).read_bytes() == LABELS
    assert leftovers(folder) == sorted(f.name for f in FILES)  # no temporary files
    assert all(is_valid(folder / f.name, f) for f in FILES)


def test_present_and_valid_files_are_not_requested_again(server, cache):
    serve_all(server, "a")
    fetch_files("toy", FILES, [server.mirror("a")])
    count = len(server.requests)
    assert count == 2
    fetch_files("toy", FILES, [server.mirror("a")])
    assert len(server.requests) == count


def test_present_but_corrupt_file_is_replaced(server, cache):
    serve_all(server, "a")
    folder = cache / "toy"
    folder.mkdir(parents=True)
    (folder / FILES[0].name).write_bytes(b"garbage")
    fetch_files("toy", FILES, [server.mirror("a")])
    assert (folder / FILES[0].name).read_bytes() == IMAGES


def test_404_on_the_first_mirror_falls_back_to_the_next(server, cache):
    serve_all(server, "good")
    folder = fetch_files("toy", FILES, [server.mirror("missing"), server.mirror("good")])
    assert (folder / FILES[0].name).read_bytes() == IMAGES
    assert server.requests[:2] == [f"/missing/{FILES[0].name}", f"/good/{FILES[0].name}"]


def test_wrong_checksum_deletes_the_file_and_tries_the_next_mirror(server, cache):
    server.serve("bad", FILES[0].name, IMAGES[:-1] + b"\x00")
    serve_all(server, "good")
    folder = fetch_files("toy", FILES[:1], [server.mirror("bad"), server.mirror("good")])
    assert (folder / FILES[0].name).read_bytes() == IMAGES
    assert f"/bad/{FILES[0].name}" in server.requests


def test_wrong_checksum_everywhere_is_a_clear_error_and_leaves_nothing(server, cache):
    server.serve("bad", FILES[0].name, b"not the data")
    with pytest.raises(DownloadError) as info:
        fetch_files("toy", FILES[:1], [server.mirror("bad")])
    message = str(info.value)
    assert "wrong checksum" in message and "deleted" in message
    assert "--data-dir" in message and FILES[0].name in message
    assert not (cache / "toy").exists()  # not even an empty folder is left


def test_dropped_connection_leaves_no_partial_file(server, cache):
    serve_all(server, "flaky", mode="drop")
    with pytest.raises(DownloadError, match=r"connection dropped after \d+ of \d+ bytes"):
        fetch_files("toy", FILES[:1], [server.mirror("flaky")])
    assert leftovers(cache / "toy") == []


def test_dropped_connection_then_good_mirror(server, cache):
    serve_all(server, "flaky", mode="drop")
    serve_all(server, "good")
    folder = fetch_files("toy", FILES, [server.mirror("flaky"), server.mirror("good")])
    assert leftovers(folder) == sorted(f.name for f in FILES)


def test_a_stalled_server_times_out(server, cache):
    serve_all(server, "slow", mode="hang")
    with pytest.raises(DownloadError, match="timed out after 0.3 s"):
        fetch_files("toy", FILES[:1], [server.mirror("slow")], timeout=0.3)
    assert leftovers(cache / "toy") == []


def test_unreachable_mirror_error_mentions_data_dir(cache):
    # A port on loopback with nothing listening: connection refused, no traffic leaves.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError) as info:
        fetch_files("toy", FILES[:1], [f"http://127.0.0.1:{port}/x/"])
    message = str(info.value)
    assert "cannot connect" in message and "--data-dir" in message
    assert "\n" not in message


def test_ctrl_c_during_download_removes_the_temporary_file(server, cache):
    serve_all(server, "a")

    def interrupt(name, received, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch_files("toy", FILES[:1], [server.mirror("a")], progress=interrupt)
    assert leftovers(cache / "toy") == []


def test_progress_reports_bytes(server, cache):
    serve_all(server, "a")
    seen = []
    fetch_files("toy", FILES[:1], [server.mirror("a")],
                progress=lambda name, got, total: seen.append((name, got, total)))
    assert seen[-1] == (FILES[0].name, len(IMAGES), len(IMAGES))


def test_oversized_file_is_refused(server, cache):
    big = RemoteFile(FILES[0].name, md5=md5(IMAGES), max_bytes=100)
    serve_all(server, "a")
    with pytest.raises(DownloadError, match="more than the 100 allowed"):
        fetch_files("toy", [big], [server.mirror("a")])
    assert leftovers(cache / "toy") == []


def test_explicit_folder_and_no_mirrors(tmp_path):
    with pytest.raises(DownloadError, match="no mirrors are configured"):
        fetch_files("toy", FILES[:1], [], folder=tmp_path / "here")


@pytest.mark.parametrize("kwargs", [dict(name="../evil", md5="0" * 32), dict(name="x"),
                                    dict(name="x", md5="abc"), dict(name="x", sha256="0" * 32)])
def test_remote_file_declarations_are_validated(kwargs):
    with pytest.raises(ValueError):
        RemoteFile(**kwargs)


def test_only_http_mirrors(tmp_path):
    with pytest.raises(ValueError, match="not an http"):
        fetch_files("toy", FILES[:1], ["file:///etc/"], folder=tmp_path)


def test_serve_folder_helper_for_plugin_tests(tmp_path, cache):
    from mnistkit.testing import serve_folder

    (tmp_path / "good").mkdir()
    (tmp_path / "good" / FILES[0].name).write_bytes(IMAGES)
    with serve_folder(tmp_path) as server:
        folder = fetch_files("toy", FILES[:1], [server.url + "bad/", server.url + "good/"])
    assert (folder / FILES[0].name).read_bytes() == IMAGES
    assert server.requests == [f"/bad/{FILES[0].name}", f"/good/{FILES[0].name}"]

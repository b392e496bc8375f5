"""fastprof.scan.server_check: keep-alive, HTTP version and compression, seen over HTTP."""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fastprof.load.client import RequestSpec
from fastprof.scan.server_check import (
    KIND,
    LARGE_BYTES,
    TINY_BYTES,
    ServerReport,
    check_server,
    findings,
)

SMALL = json.dumps({"ok": True}).encode()
LARGE = json.dumps({"items": list(range(1000))}).encode()
assert len(SMALL) < TINY_BYTES and len(LARGE) >= LARGE_BYTES


def handler(*, version: str, gzip_from: int | None, close: bool = False) -> type:
    """A handler answering /small and /large; gzip for bodies >= gzip_from when asked."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = version

        def do_GET(self) -> None:
            body = {"/small": SMALL, "/large": LARGE}.get(self.path, b"{}")
            asked = "gzip" in (self.headers.get("accept-encoding") or "")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if asked and gzip_from is not None and len(body) >= gzip_from:
                body = gzip.compress(body)
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            if close:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serving(handler_class: type) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    thread = threading.Thread(target=server.serve_forever, name="test-http-server")
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


SPECS = [RequestSpec("GET", "/small"), RequestSpec("GET", "/large")]


def checks(found: list[Any]) -> dict[str, Any]:
    assert all(f["kind"] == KIND and f["route"] is None for f in found)
    assert all("\nSource: " in f["advice"] for f in found)
    return {f["evidence"]["check"]: f for f in found}


def test_a_keep_alive_server_that_compresses_only_large_bodies_is_fine() -> None:
    with serving(handler(version="HTTP/1.1", gzip_from=LARGE_BYTES)) as port:
        report, found = check_server("127.0.0.1", port, SPECS)
    assert report["keep_alive"] is True and report["http_version"] == "HTTP/1.1"
    assert report["server_header"] and "BaseHTTP" in report["server_header"]
    by_path = {p["path"]: p for p in report["probes"]}
    assert by_path["/small"]["encoding"] is None and by_path["/small"]["bytes"] == len(SMALL)
    large = by_path["/large"]
    assert large["encoding"] == "gzip" and large["bytes"] == len(LARGE)
    assert large["wire_bytes"] < large["bytes"]
    assert report["error"] is None and found == []


def test_http_1_0_without_keep_alive() -> None:
    with serving(handler(version="HTTP/1.0", gzip_from=LARGE_BYTES)) as port:
        report, found = check_server("127.0.0.1", port, SPECS)
    assert report["keep_alive"] is False and report["http_version"] == "HTTP/1.0"
    by_check = checks(found)
    assert set(by_check) == {"keep_alive", "http_version"}
    assert by_check["keep_alive"]["severity"] == "medium"
    assert "guide 002" in by_check["keep_alive"]["advice"]
    assert by_check["http_version"]["severity"] == "low"
    assert "proxy_http_version 1.1" in by_check["http_version"]["advice"]


def test_connection_close_on_http_1_1() -> None:
    with serving(handler(version="HTTP/1.1", gzip_from=LARGE_BYTES, close=True)) as port:
        report, found = check_server("127.0.0.1", port, SPECS)
    assert report["keep_alive"] is False and report["connection_header"] == "close"
    keep_alive = checks(found)["keep_alive"]
    assert "Connection: close" in keep_alive["advice"]


def test_tiny_bodies_compressed() -> None:
    with serving(handler(version="HTTP/1.1", gzip_from=1)) as port:
        _, found = check_server("127.0.0.1", port, SPECS)
    by_check = checks(found)
    assert set(by_check) == {"gzip_tiny"}
    tiny = by_check["gzip_tiny"]
    assert tiny["evidence"]["responses"][0].startswith(f"/small: {len(SMALL)} B -> ")
    assert "minimum_size=1000" in tiny["advice"]


def test_large_bodies_not_compressed() -> None:
    with serving(handler(version="HTTP/1.1", gzip_from=None)) as port:
        _, found = check_server("127.0.0.1", port, SPECS)
    by_check = checks(found)
    assert set(by_check) == {"gzip_large"}
    assert by_check["gzip_large"]["evidence"]["responses"] == [
        f"/large: {len(LARGE)} B, application/json"
    ]


def test_probes_only_get_requests_and_a_bounded_number() -> None:
    specs = [RequestSpec("POST", "/large", body=b"{}")] + [
        RequestSpec("GET", f"/p{i}") for i in range(20)
    ]
    with serving(handler(version="HTTP/1.1", gzip_from=None)) as port:
        report, _ = check_server("127.0.0.1", port, specs)
    paths = [p["path"] for p in report["probes"]]
    assert paths == [f"/p{i}" for i in range(8)]


def test_nothing_listening_is_an_error_not_a_finding() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    report, found = check_server("127.0.0.1", port, SPECS, timeout=1)
    assert report["error"] and "keep-alive check" in report["error"]
    assert found == []


def test_failed_and_incompressible_responses_are_not_judged() -> None:
    report: ServerReport = {
        "http_version": "HTTP/1.1",
        "server_header": "uvicorn",
        "keep_alive": True,
        "connection_header": None,
        "probes": [
            {
                "path": "/missing",
                "status": 404,
                "content_type": "application/json",
                "bytes": 20,
                "wire_bytes": 30,
                "encoding": "gzip",
            },
            {
                "path": "/logo.png",
                "status": 200,
                "content_type": "image/png",
                "bytes": 50_000,
                "wire_bytes": 50_000,
                "encoding": None,
            },
        ],
        "error": None,
    }
    assert findings(report) == []


APP = """
from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware

app = FastAPI()
app.add_middleware(GZipMiddleware, minimum_size=10)

@app.get("/")
async def root():
    return {"ok": True}
"""


def test_scan_url_reports_the_server(tmp_path: Path) -> None:
    (tmp_path / "gzapp.py").write_text(APP)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "gzapp:app", "--port", str(port), "--log-level", "error"],
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        run = subprocess.run(
            [
                sys.executable, "-m", "fastprof", "scan", "--url", f"http://127.0.0.1:{port}",
                "--json", "--out", "out", "--duration", "0.2", "--warmup", "0",
            ],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(10)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["server"]["server_header"] == "uvicorn"
    assert result["server"]["keep_alive"] is True
    kinds = {(f["kind"], f["evidence"]["check"]) for f in result["findings"]}
    assert kinds == {(KIND, "gzip_tiny")}
    html = (tmp_path / "out" / "index.html").read_text()
    assert '"server":{"http_version":"HTTP/1.1"' in html.replace(" ", "")

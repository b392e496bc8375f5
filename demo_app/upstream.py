"""A slow "third-party API" on 127.0.0.1, started with the app, for the blocking-HTTP pair.

It runs in threads of this process (``http.server``), so the demo stays self-contained; every
answer takes ``delay`` seconds, like a remote service would.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RATES: dict[str, Any] = {"base": "USD", "rates": {"EUR": 0.92, "GBP": 0.79, "JPY": 151.5}}
DELAY_SECONDS = 0.15


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a shared async client reuses connections
    server: _Server

    def do_GET(self) -> None:
        time.sleep(self.server.delay)
        body = json.dumps(RATES).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: a scan sends thousands of requests


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    delay = DELAY_SECONDS


class Upstream:
    """``start()`` binds a free port and serves in a thread; ``stop()`` shuts it down."""

    def __init__(self, delay: float = DELAY_SECONDS) -> None:
        self.delay = delay
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.delay = self.delay
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="demo-upstream"
        )
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None, "the upstream is not started"
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/rates"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

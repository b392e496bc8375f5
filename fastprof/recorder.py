"""Record the traffic an app serves, to replay it later (``fastprof scan --replay FILE``).

One JSON object per line (JSONL), appended off the event loop by a background writer::

    {"t": 1700000000.123, "method": "POST", "path": "/items/a/b", "raw_path": "/items/a%2Fb",
     "query": "a=1", "headers": {"content-type": "application/json"},
     "body_b64": "eyJ4IjogMX0=", "body_truncated": false, "status": 201, "duration": 0.0123}

``path`` is ASGI's decoded path (what routes match); ``raw_path`` is the path as it came on the
wire, when the server gives it (uvicorn does), so that a replay sends ``%2F`` as ``%2F``.

Only the headers named in ``headers`` are kept (default: content-type and accept - never
cookies or authorization unless you ask), and at most ``body_bytes`` of each request body.
Several processes may append to one file: each line is written with a single ``write`` on a
file opened in append mode, which POSIX keeps whole for regular files.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from typing import Any

import orjson
from starlette.types import Message, Receive, Scope

from fastprof._writer import BackgroundWriter


class TrafficRecorder:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        headers: Sequence[str] = ("content-type", "accept"),
        body_bytes: int = 64 * 1024,
    ) -> None:
        self.path = os.fspath(path)
        self.headers = frozenset(h.lower().encode("latin-1") for h in headers)
        self.body_bytes = body_bytes
        self._writer: BackgroundWriter[bytes] = BackgroundWriter(
            self._append, name="fastprof-recorder"
        )

    def wrap_receive(self, receive: Receive) -> tuple[Receive, list[bytes]]:
        """A receive that keeps up to ``body_bytes`` of the body in the returned list."""
        chunks: list[bytes] = []
        kept = [0]
        cap = self.body_bytes

        async def recording() -> Message:
            message = await receive()
            if message["type"] == "http.request" and kept[0] <= cap:
                body = message.get("body", b"")
                chunks.append(body[: cap - kept[0] + 1])
                kept[0] += len(body)
            return message

        return recording, chunks

    def record(
        self,
        scope: Scope,
        chunks: list[bytes],
        started_at: float,
        duration: float,
        status: int,
    ) -> None:
        body = b"".join(chunks)
        entry: dict[str, Any] = {
            "t": started_at,
            "method": scope["method"],
            "path": scope["path"],
            "query": scope.get("query_string", b"").decode("latin-1"),
            "headers": {
                name.decode("latin-1"): value.decode("latin-1")
                for name, value in scope["headers"]
                if name in self.headers
            },
            "status": status,
            "duration": duration,
        }
        raw_path = scope.get("raw_path")
        if isinstance(raw_path, bytes) and raw_path.startswith(b"/"):
            # some servers leave the query string on it
            entry["raw_path"] = raw_path.split(b"?", 1)[0].decode("latin-1")
        if body:
            entry["body_b64"] = base64.b64encode(body[: self.body_bytes]).decode()
            entry["body_truncated"] = len(body) > self.body_bytes
        self._writer.submit(orjson.dumps(entry) + b"\n")

    def _append(self, line: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def flush(self, timeout: float = 5.0) -> None:
        self._writer.flush(timeout)

"""What HTTP shows about the server an app runs behind: ``fastprof scan --url`` checks it.

A handful of requests, each bounded by a timeout, before any load:

- keep-alive: two requests on one connection. Does the server answer ``Connection: close``,
  close the socket after the first response, or answer the second on the same socket?
- the HTTP version of the status line, and the ``Server`` header;
- compression: each GET route the scan will load (at most :data:`MAX_PROBES`), asked for
  once with ``Accept-Encoding: gzip``. Compressing a body under
  :data:`TINY_BYTES` wastes CPU (it fits in one packet either way; Starlette's GZipMiddleware
  leaves bodies under 500 bytes alone, the guides use ``minimum_size=1000``); sending a
  compressible body of :data:`LARGE_BYTES` or more uncompressed wastes bandwidth.

The observations go to ``findings.json`` as ``server`` (:class:`ServerReport`); what deserves a
change becomes a finding of kind ``server_config`` (route null: it concerns the whole server).
"""

from __future__ import annotations

import http.client
import select
import socket
import zlib
from collections.abc import Sequence
from typing import TypedDict

from fastprof.advice import Advice
from fastprof.findings import Severity
from fastprof.load.client import RequestSpec
from fastprof.scan.results import ScanFinding

KIND = "server_config"
#: at most this many routes are probed for compression
MAX_PROBES = 8
#: a gzip'd body smaller than this (uncompressed) is a "tiny body compressed"
TINY_BYTES = 500
#: a compressible body at least this big sent uncompressed is a "large body not compressed"
LARGE_BYTES = 1000
#: at most this much of a body is read (and decompressed)
READ_LIMIT = 4 * 1024 * 1024
_COMPRESSIBLE = ("text/", "application/json", "application/javascript", "+json", "xml")


class ProbeDict(TypedDict):
    path: str
    status: int
    content_type: str | None
    #: the body's size as the app produced it (decompressed when it came compressed)
    bytes: int
    #: the body's size on the wire
    wire_bytes: int
    #: Content-Encoding of the response (None: not compressed)
    encoding: str | None


class ServerReport(TypedDict):
    #: "HTTP/1.1" or "HTTP/1.0", as the status line said
    http_version: str | None
    #: the Server header, e.g. "uvicorn" (None when absent)
    server_header: str | None
    #: whether a second request was answered on the first one's connection
    keep_alive: bool | None
    #: the Connection header of the first response (None when absent)
    connection_header: str | None
    probes: list[ProbeDict]
    #: why a check could not run (connection refused, timeout), or None
    error: str | None


def check_server(
    host: str, port: int, specs: Sequence[RequestSpec], timeout: float = 5.0
) -> tuple[ServerReport, list[ScanFinding]]:
    """Probe the server at ``host:port``; ``specs`` are the requests a scan would send."""
    report: ServerReport = {
        "http_version": None,
        "server_header": None,
        "keep_alive": None,
        "connection_header": None,
        "probes": [],
        "error": None,
    }
    gets = [s for s in specs if s.method.upper() == "GET" and not s.body]
    first = gets[0] if gets else RequestSpec("GET", "/")
    try:
        _keep_alive(host, port, first, timeout, report)
    except (OSError, http.client.HTTPException) as exc:
        report["error"] = f"keep-alive check: {_reason(exc)}"
        return report, []
    seen: set[str] = set()
    for spec in gets:
        if spec.path in seen or len(seen) >= MAX_PROBES:
            continue
        seen.add(spec.path)
        try:
            report["probes"].append(_probe(host, port, spec, timeout))
        except (OSError, http.client.HTTPException, zlib.error) as exc:
            report["error"] = f"compression check of {spec.path}: {_reason(exc)}"
    return report, findings(report)


def _headers(spec: RequestSpec, **extra: str) -> dict[str, str]:
    headers = {k: v for k, v in spec.headers if k.lower() not in ("connection", "accept-encoding")}
    headers.update(extra)
    return headers


def _keep_alive(
    host: str, port: int, spec: RequestSpec, timeout: float, report: ServerReport
) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", spec.path, headers=_headers(spec, **{"Accept-Encoding": "identity"}))
        first = conn.getresponse()
        first.read(READ_LIMIT)
        report["http_version"] = "HTTP/1.0" if first.version == 10 else "HTTP/1.1"
        report["server_header"] = first.getheader("server")
        report["connection_header"] = first.getheader("connection")
        sock = conn.sock
        # http.client drops the socket when the response said it would close
        if sock is None or first.will_close or _closed(sock):
            report["keep_alive"] = False
            return
        try:
            conn.request("GET", spec.path, headers=_headers(spec))
            second = conn.getresponse()
            second.read(READ_LIMIT)
        except (OSError, http.client.HTTPException):
            report["keep_alive"] = False
            return
        report["keep_alive"] = conn.sock is sock
    finally:
        conn.close()


def _closed(sock: socket.socket) -> bool:
    """The server has closed its end (a short wait for a close that follows the response)."""
    readable, _, _ = select.select([sock], [], [], 0.05)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _probe(host: str, port: int, spec: RequestSpec, timeout: float) -> ProbeDict:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", spec.path, headers=_headers(spec, **{"Accept-Encoding": "gzip"}))
        response = conn.getresponse()
        body = response.read(READ_LIMIT)
        encoding = (response.getheader("content-encoding") or "").strip().lower() or None
        size = len(body)
        if encoding == "gzip":
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            size = len(inflater.decompress(body, READ_LIMIT))
        return {
            "path": spec.path,
            "status": response.status,
            "content_type": response.getheader("content-type"),
            "bytes": size,
            "wire_bytes": len(body),
            "encoding": encoding,
        }
    finally:
        conn.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"[:200]


def _compressible(content_type: str | None) -> bool:
    kind = (content_type or "").lower()
    return any(token in kind for token in _COMPRESSIBLE)


# -- findings ----------------------------------------------------------------------------------

_NO_KEEP_ALIVE = Advice(
    KIND,
    "The server closed the connection after each response{because}, so every request pays "
    "for a new TCP connection. Guide 002 measured keep-alive between nginx and the app at "
    "+10% req/s for a sync endpoint and +15% for an async one. uvicorn keeps connections alive "
    "by default (`--timeout-keep-alive`, 5 s); look for what closes them: a proxy without "
    "upstream keep-alive (nginx: `keepalive N;` in the upstream block, `proxy_http_version "
    '1.1;`, `proxy_set_header Connection "";`), or a middleware setting `Connection: close`. '
    "`fastprof scan APP --sweep keepalive=on,off` measures what it costs your app.",
    ("guide 002: connection keepalive", "measured"),
)
_HTTP_10 = Advice(
    KIND,
    "The server answered an HTTP/1.1 request with HTTP/1.0 ({server}). HTTP/1.0 has no "
    "keep-alive by default and no chunked responses. If a proxy speaks HTTP/1.0 to its "
    "upstream (nginx's default), set `proxy_http_version 1.1;`.",
    ("guide 002: connection keepalive (nginx config)", "measured"),
)
_TINY_GZIP = Advice(
    KIND,
    "Responses of {size} bytes or less ({paths}) came back gzip-compressed: compressing a "
    "body this small costs CPU on every request and saves nothing that matters (it fits in one "
    "packet either way). Raise the threshold: `GZipMiddleware(app, minimum_size=1000)` "
    "(Starlette's default is 500), or nginx `gzip_min_length` to your typical response size.",
    (
        "guide 001: response optimization (GZipMiddleware, minimum_size=1000)",
        "guide 003: compression",
        "guide 002: nginx config (gzip_min_length)",
        "measured",
    ),
)
_NO_GZIP = Advice(
    KIND,
    "Responses of up to {size} bytes of {content_type} ({paths}) came back uncompressed "
    "although the request accepted gzip. Over a network, compressing large JSON or text cuts "
    "transfer time: `app.add_middleware(GZipMiddleware, minimum_size=1000, compresslevel=6)` "
    "(Starlette's default level, 9, costs much more CPU on big bodies for little gain; "
    "guide 002's nginx config uses 6), or `gzip on;` in the proxy in front. If a proxy in "
    "front already compresses, scan through it (`--url` of the proxy) and this goes away.",
    (
        "guide 001: response optimization (GZipMiddleware, minimum_size=1000)",
        "guide 003: compression",
        "guide 002: nginx config (gzip on)",
        "measured",
    ),
)


def _finding(
    severity: Severity, title: str, evidence: dict[str, object], advice: Advice, **facts: object
) -> ScanFinding:
    return {
        "kind": KIND,
        "severity": severity,
        "route": None,
        "title": title,
        "evidence": evidence,
        "location": None,
        "advice": advice.render(facts),
        "count": 1,
    }


def findings(report: ServerReport) -> list[ScanFinding]:
    """The ``server_config`` findings the observations call for."""
    found: list[ScanFinding] = []
    server = report["server_header"] or "no Server header"
    if report["keep_alive"] is False:
        header = report["connection_header"]
        because = f" (it answered `Connection: {header}`)" if header else ""
        found.append(
            _finding(
                "medium",
                "The server does not keep connections alive",
                {
                    "check": "keep_alive",
                    "connection_header": header,
                    "http_version": report["http_version"],
                    "server": report["server_header"],
                },
                _NO_KEEP_ALIVE,
                because=because,
            )
        )
    if report["http_version"] == "HTTP/1.0":
        found.append(
            _finding(
                "low",
                "The server answers in HTTP/1.0",
                {"check": "http_version", "http_version": "HTTP/1.0", "server": server},
                _HTTP_10,
                server=server,
            )
        )
    ok = [p for p in report["probes"] if 200 <= p["status"] < 300]
    tiny = [p for p in ok if p["encoding"] == "gzip" and p["bytes"] < TINY_BYTES]
    if tiny:
        found.append(
            _finding(
                "low",
                "Tiny responses are compressed",
                {
                    "check": "gzip_tiny",
                    "responses": [
                        f"{p['path']}: {p['bytes']} B -> {p['wire_bytes']} B gzip" for p in tiny
                    ],
                },
                _TINY_GZIP,
                paths=", ".join(p["path"] for p in tiny[:3]),
                size=max(p["bytes"] for p in tiny),
            )
        )
    large = [
        p
        for p in ok
        if p["encoding"] is None and p["bytes"] >= LARGE_BYTES and _compressible(p["content_type"])
    ]
    if large:
        biggest = max(large, key=lambda p: p["bytes"])
        found.append(
            _finding(
                "low",
                "Large responses are sent uncompressed",
                {
                    "check": "gzip_large",
                    "responses": [
                        f"{p['path']}: {p['bytes']} B, {p['content_type']}" for p in large
                    ],
                },
                _NO_GZIP,
                paths=", ".join(p["path"] for p in large[:3]),
                size=biggest["bytes"],
                content_type=biggest["content_type"],
            )
        )
    return found

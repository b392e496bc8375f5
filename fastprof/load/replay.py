"""Replay recorded requests against a server: :func:`replay`, :func:`load_jsonl`, :func:`load_har`.

The JSONL format (what ``FastprofMiddleware(record_to=...)`` writes; see fastprof/recorder.py)
is one JSON object per line; blank lines are skipped and keys not listed here are ignored::

    {"t": 1700000000.123, "method": "POST", "path": "/items/a b", "query": "x=1&y=%20",
     "headers": {"content-type": "application/json"}, "body_b64": "eyJ4IjogMX0="}

``t``
    when the request started, seconds since the epoch (a number; required).
``method``
    the HTTP method (a string; required).
``path``
    the path as ASGI's ``scope["path"]`` holds it, that is percent-*decoded* (a string starting
    with ``/``; required). Without ``raw_path`` it is percent-encoded again for the wire, so a
    ``%`` in it is sent as ``%25``, and an encoded slash (``%2F``) in the original cannot be
    told from ``/``.
``raw_path``
    the path as it came on the wire, still encoded (a string starting with ``/``, printable
    ASCII without spaces; optional). When present it is sent as it is: the recorder writes it
    whenever the server gives ASGI's ``raw_path``.
``query``
    the raw query string, still encoded, without the ``?`` (a string; optional).
``headers``
    request headers, name to value (an object of strings; optional). Hop-by-hop headers,
    ``Host`` and ``Content-Length`` are dropped (see :data:`DROPPED_HEADERS`).
``body_b64``
    the request body, base64 (optional; absent means no body).

Entries are sorted by ``t``; an entry's offset is its ``t`` minus the earliest ``t``.

HAR 1.2 files (browser devtools "Save all as HAR") are read from ``log.entries``: each entry's
``startedDateTime`` (ISO 8601), ``request.method``, ``request.url`` (only its path and query
are kept), ``request.headers`` (filtered as above) and ``request.postData.text`` (or
``postData.params`` form-encoded, when there is no text).

A file that does not fit raises ``ValueError`` naming the file, the line (JSONL) or the entry
index (HAR, from 0), and what is wrong.

Pace: ``"original"`` sends each request at its offset after the start of the replay (open
loop, latency measured from that due time - see fastprof/load/client.py on coordinated
omission; with all ``concurrency`` connections busy, due requests wait); ``"fast"`` sends them
in order as fast as ``concurrency`` closed-loop connections allow.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

from fastprof.load.client import LoadResult, RequestSpec, Schedule, execute

Pace = Literal["original", "fast"]
PACES: tuple[Pace, ...] = ("original", "fast")

#: Never replayed: hop-by-hop headers (RFC 9110 7.6.1), and the ones the client sets itself.
DROPPED_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)

# What may stay unescaped in a path segment (RFC 3986 pchar, plus "/").
_PATH_SAFE = "/!$&'()*+,;=:@~"


@dataclass(frozen=True, slots=True)
class ReplayEntry:
    """A request to send ``offset`` seconds after the first one of its recording."""

    offset: float
    spec: RequestSpec


class _ReplaySchedule(Schedule):
    def __init__(self, offsets: Sequence[float], pace: Pace, start: float) -> None:
        self.offsets = offsets
        self.original = pace == "original"
        self.start = self.measure_start = start
        self.next = 0

    def claim(self, now: float) -> tuple[int, float | None, bool] | None:
        index = self.next
        if index >= len(self.offsets):
            return None
        self.next = index + 1
        return index, (self.start + self.offsets[index]) if self.original else None, True


async def replay(
    host: str,
    port: int,
    entries: Sequence[ReplayEntry],
    *,
    pace: Pace,
    concurrency: int = 10,
    timeout: float = 10.0,
    on_progress: Callable[[int], None] | None = None,
) -> LoadResult:
    """Send ``entries`` once each, in offset order, at ``pace``; see the module docstring.

    No warm-up: every entry is counted (its spec's ``weight`` plays no part).
    ``LoadResult.duration`` runs from the start of the replay to the last response.
    """
    if pace not in PACES:
        raise ValueError(f"pace must be one of {PACES}, got {pace!r}")
    ordered = sorted(entries, key=lambda entry: entry.offset)
    if not ordered:
        raise ValueError("nothing to replay: no entries")
    if any(not (math.isfinite(e.offset) and e.offset >= 0) for e in ordered):
        raise ValueError("replay offsets must be finite and >= 0")
    schedule = _ReplaySchedule([e.offset for e in ordered], pace, time.perf_counter())
    return await execute(
        host,
        port,
        [e.spec for e in ordered],
        schedule,
        concurrency=concurrency,
        timeout=timeout,
        on_progress=on_progress,
    )


# -- loaders -----------------------------------------------------------------------------------


def clean_headers(headers: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """``headers`` without hop-by-hop ones (and those ``Connection`` names), Host, Content-Length
    and HTTP/2 pseudo-headers (``:authority``)."""
    dropped = set(DROPPED_HEADERS)
    for name, value in headers:
        if name.lower() == "connection":
            dropped.update(token.strip().lower() for token in value.split(","))
    return tuple(
        (name, value)
        for name, value in headers
        if not name.startswith(":") and name.lower() not in dropped
    )


def _offsets(times: list[float]) -> list[float]:
    first = min(times) if times else 0.0
    return [t - first for t in times]


def load_jsonl(path: str | os.PathLike[str]) -> list[ReplayEntry]:
    """Read a traffic recording (format in the module docstring), sorted by time."""
    name = os.fspath(path)
    rows: list[tuple[float, RequestSpec]] = []
    with open(name, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue

            def bad(what: str, number: int = number) -> ValueError:
                return ValueError(f"{name}:{number}: {what}")

            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise bad(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
            rows.append(_jsonl_entry(item, bad))
    rows.sort(key=lambda row: row[0])
    offsets = _offsets([t for t, _ in rows])
    return [ReplayEntry(offset, spec) for offset, (_, spec) in zip(offsets, rows, strict=True)]


def _jsonl_entry(item: Any, bad: Callable[[str], ValueError]) -> tuple[float, RequestSpec]:
    if not isinstance(item, dict):
        raise bad(f"expected a JSON object, got {type(item).__name__}")
    t = item.get("t")
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        raise bad(f'"t" must be a number (epoch seconds), got {t!r}')
    method = item.get("method")
    if not isinstance(method, str) or not method.isalpha():
        raise bad(f'"method" must be an HTTP method, got {method!r}')
    raw_path = item.get("path")
    if not isinstance(raw_path, str) or not raw_path.startswith("/"):
        raise bad(f'"path" must be a string starting with "/", got {raw_path!r}')
    query = item.get("query", "")
    if not isinstance(query, str):
        raise bad(f'"query" must be a string, got {query!r}')
    headers = item.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise bad(f'"headers" must be an object of strings, got {headers!r}'[:200])
    body: bytes | None = None
    if "body_b64" in item:
        encoded = item["body_b64"]
        if not isinstance(encoded, str):
            raise bad(f'"body_b64" must be a string, got {type(encoded).__name__}')
        try:
            body = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise bad('"body_b64" is not valid base64') from None
    wire = item.get("raw_path")
    if wire is not None and (not isinstance(wire, str) or not _RAW_PATH.fullmatch(wire)):
        raise bad(
            '"raw_path" must be the encoded path, printable ASCII starting with "/" and '
            f"without spaces, got {wire!r}"[:200]
        )
    path = wire if wire is not None else quote(raw_path, safe=_PATH_SAFE)
    target = path + (f"?{query}" if query else "")
    spec = RequestSpec(
        method=method.upper(),
        path=target,
        headers=clean_headers(list(headers.items())),
        body=body or None,
        name=f"{method.upper()} {raw_path}",
    )
    return float(t), spec


_RAW_PATH = re.compile(r"/[\x21-\x7e]*")


def load_har(path: str | os.PathLike[str]) -> list[ReplayEntry]:
    """Read the requests of a HAR 1.2 file (see the module docstring), sorted by time."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8-sig") as file:
            data = json.load(file)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{name}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    log = data.get("log") if isinstance(data, dict) else None
    entries = log.get("entries") if isinstance(log, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{name}: not a HAR file: no log.entries list")
    rows: list[tuple[float, RequestSpec]] = []
    for index, entry in enumerate(entries):

        def bad(what: str, index: int = index) -> ValueError:
            return ValueError(f"{name}: entry {index}: {what}")

        rows.append(_har_entry(entry, bad))
    rows.sort(key=lambda row: row[0])
    offsets = _offsets([t for t, _ in rows])
    return [ReplayEntry(offset, spec) for offset, (_, spec) in zip(offsets, rows, strict=True)]


def _har_entry(entry: Any, bad: Callable[[str], ValueError]) -> tuple[float, RequestSpec]:
    if not isinstance(entry, dict):
        raise bad(f"expected an object, got {type(entry).__name__}")
    started = entry.get("startedDateTime")
    if not isinstance(started, str):
        raise bad(f"startedDateTime must be an ISO 8601 string, got {started!r}")
    try:
        moment = datetime.fromisoformat(started)
    except ValueError:
        raise bad(f"startedDateTime is not ISO 8601: {started!r}") from None
    if moment.tzinfo is None:
        raise bad(f"startedDateTime has no time zone: {started!r}")
    request = entry.get("request")
    if not isinstance(request, dict):
        raise bad("no request object")
    method = request.get("method")
    if not isinstance(method, str) or not method.isalpha():
        raise bad(f"request.method must be an HTTP method, got {method!r}")
    url = request.get("url")
    if not isinstance(url, str):
        raise bad(f"request.url must be a string, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise bad(f"request.url is not an absolute http(s) URL: {url!r}"[:200])
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = request.get("headers", [])
    if not isinstance(headers, list) or not all(
        isinstance(h, dict) and isinstance(h.get("name"), str) and isinstance(h.get("value"), str)
        for h in headers
    ):
        raise bad("request.headers must be a list of {name, value} strings")
    body = _har_body(request.get("postData"), bad)
    spec = RequestSpec(
        method=method.upper(),
        path=target,
        headers=clean_headers([(h["name"], h["value"]) for h in headers]),
        body=body,
        name=f"{method.upper()} {parts.path or '/'}",
    )
    return moment.timestamp(), spec


def _har_body(post: Any, bad: Callable[[str], ValueError]) -> bytes | None:
    if post is None:
        return None
    if not isinstance(post, dict):
        raise bad("request.postData must be an object")
    text = post.get("text")
    if isinstance(text, str) and text:
        if post.get("encoding") == "base64":  # not HAR 1.2, but some tools write it
            try:
                return base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise bad("request.postData.text is not valid base64") from None
        return text.encode()
    if text is not None and not isinstance(text, str):
        raise bad("request.postData.text must be a string")
    params = post.get("params")
    if params:
        if not isinstance(params, list) or not all(
            isinstance(p, Mapping) and isinstance(p.get("name"), str) for p in params
        ):
            raise bad("request.postData.params must be a list of {name, value}")
        return urlencode([(p["name"], str(p.get("value", ""))) for p in params]).encode()
    return None

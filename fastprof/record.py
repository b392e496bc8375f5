"""What the middleware keeps about a request.

* :class:`RequestRecord` - every request, when timing is on: no call tree, a few numbers.
* :class:`ProfileRecord` - a profiled request (or ``profile()`` block) that was kept: the numbers,
  why it was captured, and its call tree, built lazily from the backend's raw samples.
* :class:`RequestState` - the mutable per-request object the middleware puts in a context variable
  while the request runs; ``profile()`` blocks (and later, detectors) attach to it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypedDict

import orjson

from fastprof.backends.base import TreeSource
from fastprof.model import CallTree, CallTreeDict

if TYPE_CHECKING:
    from fastprof.findings import Finding, FindingDict
    from fastprof.profile import ProfileResult
    from fastprof.queries import ConnectRecord, QueryRecord

Trigger = Literal["header", "query", "sample", "slow", "error", "continuous", "block"]

RECORD_SCHEMA = "fastprof.profile/1"


class RequestRecord(NamedTuple):
    """One request, measured without a call tree (a tuple: built on every request)."""

    method: str
    route: str
    path: str
    status: int
    duration: float
    response_bytes: int
    started_at: float
    #: Filled when detectors run: queries the request ran, seconds it held the loop stalled,
    #: findings it produced.
    queries: int = 0
    blocked: float = 0.0
    findings: int = 0

    @property
    def key(self) -> str:
        """``"GET /users/{user_id}"`` - the route key used across fastprof."""
        return f"{self.method} {self.route}"


class BlockDict(TypedDict):
    label: str
    duration: float
    tree: CallTreeDict


class ProfileRecordDict(TypedDict):
    schema: str
    id: str
    label: str
    method: str
    route: str
    path: str
    query: str
    status: int
    duration: float
    response_bytes: int
    started_at: float
    trigger: str
    backend: str
    pid: int
    error: str | None
    blocks: list[BlockDict]
    findings: list[FindingDict]
    tree: CallTreeDict


@dataclass(slots=True, eq=False)
class ProfileRecord:
    """A kept profile: a request's numbers plus its call tree."""

    id: str
    trigger: Trigger
    backend: str
    source: TreeSource
    method: str = ""
    route: str = ""
    path: str = ""
    query: str = ""
    status: int = 0
    duration: float = 0.0
    response_bytes: int = 0
    started_at: float = field(default_factory=time.time)
    label: str = ""
    pid: int = field(default_factory=os.getpid)
    error: str | None = None
    blocks: list[ProfileResult] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def tree(self) -> CallTree:
        return self.source.get()

    @property
    def key(self) -> str:
        return f"{self.method} {self.route}" if self.method else self.label

    def to_dict(self) -> ProfileRecordDict:
        return {
            "schema": RECORD_SCHEMA,
            "id": self.id,
            "label": self.label,
            "method": self.method,
            "route": self.route,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "duration": self.duration,
            "response_bytes": self.response_bytes,
            "started_at": self.started_at,
            "trigger": self.trigger,
            "backend": self.backend,
            "pid": self.pid,
            "error": self.error,
            "blocks": [
                {"label": b.label, "duration": b.duration, "tree": b.tree.to_dict()}
                for b in self.blocks
            ],
            "findings": [f.to_dict() for f in self.findings],
            "tree": self.tree.to_dict(),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: ProfileRecordDict) -> ProfileRecord:
        from fastprof.findings import Finding
        from fastprof.profile import ProfileResult

        if not isinstance(data, dict) or data.get("schema") != RECORD_SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise ValueError(
                f"not a fastprof profile: schema is {found!r}, expected {RECORD_SCHEMA!r}"
            )
        blocks = [
            ProfileResult(b["label"], b["duration"], CallTree.from_dict(b["tree"]))
            for b in data["blocks"]
        ]
        return cls(
            id=data["id"],
            trigger=data["trigger"],  # type: ignore[arg-type]
            backend=data["backend"],
            source=TreeSource.of(CallTree.from_dict(data["tree"])),
            method=data["method"],
            route=data["route"],
            path=data["path"],
            query=data["query"],
            status=data["status"],
            duration=data["duration"],
            response_bytes=data["response_bytes"],
            started_at=data["started_at"],
            label=data["label"],
            pid=data["pid"],
            error=data["error"],
            blocks=blocks,
            findings=[Finding.from_dict(f) for f in data.get("findings", [])],
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> ProfileRecord:
        data: Any = orjson.loads(raw)
        return cls.from_dict(data)


@dataclass(slots=True, eq=False)
class RequestState:
    """Per-request state, reachable through ``fastprof._context.current_request``.

    Hooks and detectors write here while the request runs (from the loop thread, worker
    threads carrying the request's context, or a watchdog thread); list appends are atomic.
    """

    method: str
    path: str
    started: float
    #: ``"GET /users/{user_id}"`` once routing has happened (set when the request ends).
    route: str = ""
    status: int = 0
    #: The raw query string (``b"q=1&page=2"``), as the middleware saw it.
    query: bytes = b""
    blocks: list[ProfileResult] = field(default_factory=list)
    queries: list[QueryRecord] = field(default_factory=list)
    connects: list[ConnectRecord] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    #: Seconds the event loop was stalled while this request held it.
    blocked: float = 0.0
    #: Free-form facts detectors share (e.g. the response body size and encode time).
    facts: dict[str, Any] = field(default_factory=dict)

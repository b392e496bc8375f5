"""Where kept profiles go: a bounded in-memory ring, and optionally a directory on disk.

The directory sink writes one file per profile (``<ms>-<pid>-<id>.fastprof.json``), through a
temporary name and an atomic rename, so several worker processes can share one directory and a
reader never sees half a file. Writing happens on a background writer (fastprof/_writer.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

from fastprof._writer import BackgroundWriter
from fastprof.findings import Finding
from fastprof.model import CallTree
from fastprof.record import ProfileRecord, RequestRecord

logger = logging.getLogger("fastprof")

SUFFIX = ".fastprof.json"


class RequestLog(Sequence[RequestRecord]):
    """The store's request timings as :class:`RequestRecord` objects, made when read."""

    __slots__ = ("_raw",)

    def __init__(self, raw: deque[tuple[Any, ...]]) -> None:
        self._raw = raw

    def __len__(self) -> int:
        return len(self._raw)

    @overload
    def __getitem__(self, index: int) -> RequestRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[RequestRecord]: ...

    def __getitem__(self, index: int | slice) -> RequestRecord | list[RequestRecord]:
        if isinstance(index, slice):
            return list(self)[index]
        count = len(self._raw)
        if not -count <= index < count:
            raise IndexError(f"request index {index} out of range ({count} kept)")
        return RequestRecord._make(self._raw[index])

    def __iter__(self) -> Iterator[RequestRecord]:
        return map(RequestRecord._make, list(self._raw))

    def __repr__(self) -> str:
        return f"RequestLog({len(self._raw)} requests)"


class ProfileStore:
    """Kept profiles (newest last, at most ``max_profiles``) and recent request timings."""

    def __init__(
        self,
        *,
        max_profiles: int = 100,
        max_requests: int = 10_000,
        directory: str | os.PathLike[str] | None = None,
        max_directory_bytes: int = 100 * 1024 * 1024,
    ) -> None:
        if not (isinstance(max_profiles, int) and max_profiles >= 1):
            raise ValueError(f"max_profiles must be an integer >= 1, got {max_profiles!r}")
        if not (isinstance(max_requests, int) and max_requests >= 0):
            raise ValueError(f"max_requests must be an integer >= 0, got {max_requests!r}")
        self.profiles: deque[ProfileRecord] = deque(maxlen=max_profiles)
        #: Request timings as plain tuples (the fields of RequestRecord): the garbage
        #: collector stops tracking a plain tuple of strings and numbers at its first
        #: collection; a NamedTuple it tracks for good, and 10,000 kept ones weighed on every
        #: collection after (docs/performance.md).
        self.raw_requests: deque[tuple[Any, ...]] = deque(maxlen=max_requests)
        #: Recent request timings, oldest first (a read-only view of ``raw_requests``).
        self.requests = RequestLog(self.raw_requests)
        self.sink = (
            DirectorySink(directory, max_bytes=max_directory_bytes)
            if directory is not None
            else None
        )
        #: Findings of recent requests (newest last).
        self.findings: deque[Finding] = deque(maxlen=max(max_requests, 1000))
        #: One entry per distinct problem (kind, route, location): the latest and a count.
        self.finding_summary: dict[tuple[Any, ...], tuple[Finding, int]] = {}
        self._listeners: list[Callable[[ProfileRecord], None]] = []
        self._finding_listeners: list[Callable[[Finding], None]] = []

    def add_profile(self, record: ProfileRecord) -> None:
        self.profiles.append(record)
        if self.sink is not None:
            self.sink.submit(record)
        for listener in self._listeners:
            listener(record)

    def add_request(self, record: RequestRecord | tuple[Any, ...]) -> None:
        """Keep ``record`` (a RequestRecord, or a tuple of its fields)."""
        self.raw_requests.append(tuple(record) if type(record) is not tuple else record)

    def add_findings(self, findings: list[Finding]) -> None:
        for finding in findings:
            self.findings.append(finding)
            _, count = self.finding_summary.get(finding.key, (finding, 0))
            self.finding_summary[finding.key] = (finding, count + 1)
            for listener in self._finding_listeners:
                listener(finding)

    def subscribe_findings(self, listener: Callable[[Finding], None]) -> None:
        """Call ``listener(finding)`` for every finding from now on."""
        self._finding_listeners.append(listener)

    def subscribe(self, listener: Callable[[ProfileRecord], None]) -> None:
        """Call ``listener(record)`` for every profile kept from now on."""
        self._listeners.append(listener)

    def get(self, profile_id: str) -> ProfileRecord | None:
        for record in self.profiles:
            if record.id == profile_id:
                return record
        return None

    def by_route(self) -> dict[str, CallTree]:
        """Kept profiles merged per route key (``"GET /items/{id}"``)."""
        groups: dict[str, list[CallTree]] = {}
        for record in list(self.profiles):
            groups.setdefault(record.key, []).append(record.tree)
        return {key: CallTree.merge(trees) for key, trees in groups.items()}

    def close(self, timeout: float = 5.0) -> None:
        """Flush the directory sink."""
        if self.sink is not None:
            self.sink.flush(timeout)


class DirectorySink:
    """One JSON file per profile in ``directory``, oldest deleted past ``max_bytes``."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = 100 * 1024 * 1024,
        max_queue: int = 1000,
        idle_exit: float = 1.0,
    ) -> None:
        if not (isinstance(max_bytes, int) and max_bytes > 0):
            raise ValueError(f"max_directory_bytes must be a positive integer, got {max_bytes!r}")
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(
                f"directory={str(directory)!r} cannot be used for profiles: {exc.strerror}"
            ) from exc
        self.max_bytes = max_bytes
        self.written = 0
        self._writer: BackgroundWriter[ProfileRecord] = BackgroundWriter(
            self.write, name="fastprof-sink", max_queue=max_queue, idle_exit=idle_exit
        )

    @property
    def dropped(self) -> int:
        """Profiles not written because the queue was full."""
        return self._writer.dropped

    def submit(self, record: ProfileRecord) -> None:
        """Queue ``record`` for writing; never blocks (a full queue drops and counts)."""
        self._writer.submit(record)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything queued so far is on disk and the writer thread has exited."""
        self._writer.flush(timeout)

    def write(self, record: ProfileRecord) -> Path:
        """Write ``record`` now (on the calling thread) and enforce the size cap."""
        name = f"{int(record.started_at * 1000):015d}-{record.pid}-{record.id}{SUFFIX}"
        final = self.directory / name
        tmp = self.directory / f".{name}.{threading.get_ident()}.tmp"
        tmp.write_bytes(record.to_json())
        os.replace(tmp, final)
        self.written += 1
        self._enforce_cap()
        return final

    def files(self) -> list[Path]:
        """Stored profiles, oldest first."""
        return sorted(p for p in self.directory.iterdir() if p.name.endswith(SUFFIX))

    def __iter__(self) -> Iterator[ProfileRecord]:
        for path in self.files():
            try:
                yield ProfileRecord.from_json(path.read_bytes())
            except FileNotFoundError:  # deleted by another process's cap
                continue

    def _enforce_cap(self) -> None:
        sized: list[tuple[Path, int]] = []
        for path in self.files():
            try:
                sized.append((path, path.stat().st_size))
            except FileNotFoundError:
                continue
        total = sum(size for _, size in sized)
        for path, size in sized:
            if total <= self.max_bytes:
                break
            # another process may have removed it first: it no longer counts either way
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            total -= size

"""Query capture: every database query a request runs, recorded on its :class:`RequestState`.

Hooks (one module per driver, listed in :data:`HOOKS`) call :func:`record_query` and
:func:`record_connect`; detectors (n_plus_one, duplicate_query, connection_per_request) read
``state.queries`` / ``state.connects`` when the request ends. Work a request does in worker
threads carries its context, so it lands on the right request; a driver that runs queries on
its own thread (aiosqlite) is hooked on the awaiting side instead.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fastprof._context import current_request
from fastprof.findings import Location, user_location

#: name -> "module:attr" of a class with ``install()``/``uninstall()`` (see base.QueryHook).
HOOKS: dict[str, str] = {
    "sqlalchemy": "fastprof.queries.sqlalchemy:SQLAlchemyHook",
    "sqlite3": "fastprof.queries.sqlite3:SQLite3Hook",
    "aiosqlite": "fastprof.queries.aiosqlite:AiosqliteHook",
    "asyncpg": "fastprof.queries.asyncpg:AsyncpgHook",
}


@dataclass(frozen=True, slots=True)
class QueryRecord:
    """One query as a request ran it."""

    sql: str
    params: Any
    duration: float
    driver: str
    location: Location | None
    started: float
    #: ORM context when known, e.g. {"lazy_load": "User.posts"}
    orm: tuple[tuple[str, str], ...] = ()
    thread: int = 0

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.sql)

    @property
    def params_key(self) -> str:
        """A hashable, comparable form of the parameters (for duplicate detection)."""
        return repr(self.params)


@dataclass(frozen=True, slots=True)
class ConnectRecord:
    """A new database connection opened while a request ran."""

    driver: str
    duration: float
    location: Location | None
    #: "connect" (a driver's connect()), "engine" (an engine built), "pool_connect"
    how: str


def record_query(
    sql: str,
    params: Any,
    duration: float,
    driver: str,
    *,
    location: Location | None = None,
    orm: Sequence[tuple[str, str]] = (),
    started: float | None = None,
) -> QueryRecord | None:
    """Record a query on the current request (None outside a request)."""
    state = current_request.get()
    if state is None:
        return None
    record = QueryRecord(
        sql=sql,
        params=params,
        duration=duration,
        driver=driver,
        location=location if location is not None else user_location(),
        started=started if started is not None else time.perf_counter() - duration,
        orm=tuple(orm),
        thread=threading.get_ident(),
    )
    state.queries.append(record)
    return record


def record_connect(
    driver: str, duration: float, how: str, *, location: Location | None = None
) -> ConnectRecord | None:
    state = current_request.get()
    if state is None:
        return None
    record = ConnectRecord(driver, duration, location or user_location(), how)
    state.connects.append(record)
    return record


_COMMENT = re.compile(r"/\*.*?\*/|--[^\n]*", re.S)
_STRING = re.compile(r"'(?:[^']|'')*'")
_NUMBER = re.compile(r"(?<![\w$.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\b")
_PLACEHOLDER = re.compile(r"\$\d+|%\([^)]+\)s|%s|:\w+|\?")
_IN_LIST = re.compile(r"\bIN\s*\(\s*\?(?:\s*,\s*\?)*\s*\)", re.I)
_VALUES_LIST = re.compile(
    r"\bVALUES\s*(\(\s*\?(?:\s*,\s*\?)*\s*\))(?:\s*,\s*\(\s*\?(?:\s*,\s*\?)*\s*\))*", re.I
)
_SPACE = re.compile(r"\s+")


@lru_cache(maxsize=4096)
def fingerprint(sql: str) -> str:
    """The query's shape: comments gone, literals and placeholders as ``?``, IN-lists folded.

    ``SELECT * FROM t WHERE id IN (1, 2, 3) -- x`` and ``select * from t where id in (?)``
    share one fingerprint. Cached by the raw text (apps repeat the same statements).
    """
    text = _COMMENT.sub(" ", sql)
    text = _STRING.sub("?", text)
    text = _PLACEHOLDER.sub("?", text)
    text = _NUMBER.sub("?", text)
    text = _IN_LIST.sub("IN (?)", text)
    text = _VALUES_LIST.sub(r"VALUES (?)", text)
    return _SPACE.sub(" ", text).strip().rstrip(";").strip().lower()

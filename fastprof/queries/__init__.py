"""Query capture: every database query a request runs, recorded on its :class:`RequestState`.

Hooks (one module per driver, listed in :data:`HOOKS`) call :func:`record_query` and
:func:`record_connect`; detectors (n_plus_one, duplicate_query, connection_per_request) read
``state.queries`` / ``state.connects`` when the request ends. Work a request does in worker
threads carries its context, so it lands on the right request; a driver that runs queries on
its own thread (aiosqlite) is hooked on the awaiting side instead.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any, NamedTuple

from fastprof._context import current_request
from fastprof.findings import Location, is_user_file

if TYPE_CHECKING:
    from fastprof.record import RequestState

#: name -> "module:attr" of a class with ``install()``/``uninstall()`` (see base.QueryHook).
HOOKS: dict[str, str] = {
    "sqlalchemy": "fastprof.queries.sqlalchemy:SQLAlchemyHook",
    "sqlite3": "fastprof.queries.sqlite3:SQLite3Hook",
    "aiosqlite": "fastprof.queries.aiosqlite:AiosqliteHook",
    "asyncpg": "fastprof.queries.asyncpg:AsyncpgHook",
}


class QueryRecord(NamedTuple):
    """One query as a request ran it.

    An immutable value like the other records, but a named tuple rather than a frozen
    dataclass: one is built per query on the app's hot path, and a tuple builds in 0.2 us
    where a frozen, slotted dataclass takes 1.5 us here (bench/query_overhead.py).
    """

    sql: str
    params: Any
    duration: float
    driver: str
    location: Location | None
    started: float
    #: ORM context when known, e.g. (("lazy_load", "User.posts"), ("direction", "ONETOMANY"))
    orm: tuple[tuple[str, str], ...] = ()
    thread: int = 0
    #: One call that ran the statement for many parameter sets (executemany, a script).
    many: bool = False

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.sql)

    @property
    def params_key(self) -> str:
        """A hashable, comparable form of the parameters (for duplicate detection)."""
        return repr(self.params)

    @property
    def verb(self) -> str:
        """The statement's kind, lower case: ``select``, ``insert``, ``begin``... (see verb())."""
        return verb(self.sql)

    def orm_value(self, key: str) -> str | None:
        for name, value in self.orm:
            if name == key:
                return value
        return None


@dataclass(frozen=True, slots=True)
class ConnectRecord:
    """A new database connection (or an engine or pool) opened while a request ran."""

    driver: str
    duration: float
    location: Location | None
    #: "connect" (a driver's connect()), "engine" (a SQLAlchemy engine built), "pool" (a
    #: connection pool created), "pool_connect" (a pool opening a connection it needs),
    #: "engine_connect" (the pool of an engine built in this request opening a connection)
    how: str
    #: For "pool_connect": the pool keeps the connection for later checkouts (False: NullPool,
    #: which opens a connection on every checkout).
    pooled: bool = True
    #: Free text: the pool class, the dialect.
    detail: str = ""
    #: Asked when the request ends: is the connection (or pool) still open and referenced -
    #: kept for later requests, like a lazily created shared connection? None: unknown.
    still_open: Callable[[], bool] | None = field(default=None, compare=False, repr=False)
    #: Database connections this record opened (an engine opens none by being built; a pool
    #: opens its ``min_size``).
    connections: int = 1

    def kept(self) -> bool:
        """The connection outlived its request (so it was not opened *for* the request)."""
        if self.still_open is None:
            return False
        try:
            return self.still_open()
        except Exception:
            return False


def record_query(
    sql: str,
    params: Any,
    duration: float,
    driver: str,
    *,
    location: Location | None = None,
    orm: Sequence[tuple[str, str]] = (),
    started: float | None = None,
    many: bool = False,
) -> QueryRecord | None:
    """Record a query on the current request (None outside a request)."""
    state = current_request.get()
    if state is None:
        return None
    record = _new_record(
        QueryRecord,
        (
            sql,
            params,
            duration,
            driver,
            location if location is not None else caller_location(sys._getframe(1)),
            started if started is not None else time.perf_counter() - duration,
            tuple(orm),
            _thread_id(),
            many,
        ),
    )
    state.queries.append(record)
    return record


_new_record = tuple.__new__
_thread_id = threading.get_ident


def append_query(
    state: RequestState,
    sql: str,
    params: Any,
    duration: float,
    driver: str,
    location: Location | None,
    started: float,
    orm: tuple[tuple[str, str], ...] = (),
    many: bool = False,
) -> None:
    """:func:`record_query` for hooks that already hold the state and the location."""
    state.queries.append(
        _new_record(
            QueryRecord,
            (sql, params, duration, driver, location, started, orm, _thread_id(), many),
        )
    )


def record_connect(
    driver: str,
    duration: float,
    how: str,
    *,
    location: Location | None = None,
    pooled: bool = True,
    detail: str = "",
    still_open: Callable[[], bool] | None = None,
    connections: int = 1,
) -> ConnectRecord | None:
    """Record a new connection (engine, pool) on the current request (None outside one)."""
    state = current_request.get()
    if state is None:
        return None
    if location is None:
        location = caller_location(sys._getframe(1))
    record = ConnectRecord(driver, duration, location, how, pooled, detail, still_open, connections)
    state.connects.append(record)
    return record


# --- where a query came from -------------------------------------------------------------

_user_files: dict[str, bool] = {}
_locations: dict[tuple[int, int], tuple[CodeType, Location]] = {}


def _is_user(filename: str) -> bool:
    known = _user_files.get(filename)
    if known is None:
        known = _user_files[filename] = is_user_file(filename)
    return known


def user_code_frame(frame: FrameType | None) -> FrameType | None:
    """The innermost user-code frame from ``frame`` outwards.

    Like :func:`fastprof.findings.user_frame`, with the per-file answer cached (a query's
    stack is 5-40 library frames deep), and one more step: code running in a greenlet
    (SQLAlchemy's asyncio layer runs the sync engine in one) has a stack that ends at the
    greenlet's start; the awaiting coroutine - where the user's ``await`` is - is on the
    parent greenlet's stack.
    """
    known = _user_files.get
    while frame is not None:
        # Inlined _is_user: this loop runs for every query, over 5-40 frames.
        user = known(frame.f_code.co_filename)
        if user is None:
            user = _is_user(frame.f_code.co_filename)
        if user:
            return frame
        frame = frame.f_back
    greenlet = sys.modules.get("greenlet")
    if greenlet is None:
        return None
    parent = greenlet.getcurrent().parent
    while parent is not None:
        frame = parent.gr_frame
        while frame is not None:
            if _is_user(frame.f_code.co_filename):
                return frame
            frame = frame.f_back
        parent = parent.parent
    return None


def location_of(frame: FrameType) -> Location:
    """``Location.of_frame``, cached per instruction: computing ``f_lineno`` decodes the code's
    line table, and a query's call site is the same instruction every time."""
    code = frame.f_code
    # Keyed by id: hashing a code object hashes its bytecode. The entry keeps its code object,
    # so an id reused by a new code object is told apart.
    key = (id(code), frame.f_lasti)
    found = _locations.get(key)
    if found is None or found[0] is not code:
        if len(_locations) > 50_000:
            _locations.clear()
        found = _locations[key] = (
            code,
            Location(code.co_filename, frame.f_lineno or 0, code.co_name),
        )
    return found[1]


def caller_location(frame: FrameType | None) -> Location | None:
    """The user-code line that (directly or through libraries) reached ``frame``."""
    found = user_code_frame(frame)
    return location_of(found) if found is not None else None


# --- the shape of a statement ------------------------------------------------------------

# Strings and comments in one pass, so "--" inside a string is not a comment.
_STRING_OR_COMMENT = re.compile(r"'(?:[^']|'')*'|/\*.*?\*/|--[^\n]*", re.S)
_NUMBER = re.compile(r"(?<![\w$.\"])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\b")
_PLACEHOLDER = re.compile(r"\$\d+|%\([^)]+\)s|%s|(?<![:\w]):\w+|\?")
_IN_LIST = re.compile(r"\bIN\s*\(\s*\?(?:\s*,\s*\?)*\s*\)", re.I)
_VALUES_LIST = re.compile(
    r"\bVALUES\s*(\(\s*\?(?:\s*,\s*\?)*\s*\))(?:\s*,\s*\(\s*\?(?:\s*,\s*\?)*\s*\))*", re.I
)
_SPACE = re.compile(r"\s+")
_VERB = re.compile(r"\s*\(*\s*([A-Za-z]+)")


def _strip(match: re.Match[str]) -> str:
    return "?" if match.group(0).startswith("'") else " "


@lru_cache(maxsize=4096)
def fingerprint(sql: str) -> str:
    """The query's shape: comments gone, literals and placeholders as ``?``, IN-lists folded.

    ``SELECT * FROM t WHERE id IN (1, 2, 3) -- x`` and ``select * from t where id in (?)``
    share one fingerprint; so do ``VALUES (1, 'a'), (2, 'b')`` and ``VALUES ($1, $2)``.
    Cached by the raw text (apps repeat the same statements).
    """
    text = _STRING_OR_COMMENT.sub(_strip, sql)
    text = _PLACEHOLDER.sub("?", text)
    text = _NUMBER.sub("?", text)
    text = _IN_LIST.sub("IN (?)", text)
    text = _VALUES_LIST.sub(r"VALUES (?)", text)
    return _SPACE.sub(" ", text).strip().rstrip(";").strip().lower()


@lru_cache(maxsize=4096)
def verb(sql: str) -> str:
    """The first keyword, lower case (``with`` counts as what its body does: ``select`` unless
    the statement writes)."""
    text = _STRING_OR_COMMENT.sub(_strip, sql)
    match = _VERB.match(text)
    if match is None:
        return ""
    word = match.group(1).lower()
    if word == "with":
        lowered = text.lower()
        for writing in ("insert", "update", "delete"):
            if re.search(rf"\)\s*{writing}\b", lowered):
                return writing
        return "select"
    return word


#: Statements that read or write rows; detectors leave the others (BEGIN, SET, PRAGMA...) out.
DATA_VERBS = frozenset({"select", "insert", "update", "delete", "replace", "merge", "values"})


def short_sql(sql: str, limit: int = 600) -> str:
    """The statement for evidence: whitespace collapsed, cut at ``limit`` characters."""
    text = _SPACE.sub(" ", sql).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def params_text(params: Any, limit: int = 200) -> str:
    """Parameters for evidence (a finding must serialise to JSON): their repr, cut."""
    text = repr(params)
    return text if len(text) <= limit else text[: limit - 3] + "..."

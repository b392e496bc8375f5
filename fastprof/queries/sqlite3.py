"""sqlite3: the standard library driver, which has no query hooks.

``sqlite3.connect`` returns a C ``Connection`` whose methods cannot be patched. While the hook
is installed, ``sqlite3.connect`` (and ``sqlite3.dbapi2.connect``, which SQLAlchemy calls) is
replaced by a wrapper that passes ``factory=`` a ``Connection`` subclass whose ``execute``,
``executemany``, ``executescript`` and ``cursor()`` time and record each statement (a factory
the caller passes is subclassed the same way). ``set_trace_callback`` was the other choice; it
sees neither the parameters nor the duration, and it replaces the app's own callback.

Limits: connections opened before the hook was installed (at import time, or in a lifespan
that runs before the middleware starts its detectors) are not traced; nor is ``connect`` bound
by ``from sqlite3 import connect`` before installation. Connections opened by aiosqlite and
SQLAlchemy are traced by their own hooks instead (SQLAlchemy marks its connections owned, and
aiosqlite's worker thread has no request context), and their connects are not counted here.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

from fastprof._context import current_request
from fastprof.queries import append_query, caller_location, explain, record_connect
from fastprof.queries.base import QueryHook, guarded, hook_failed, owned

_active = False
_original_connect: Callable[..., sqlite3.Connection] | None = None
_get_state = current_request.get
_clock = time.perf_counter

# Callers whose connects belong to a higher layer with its own hook.
_LAYERS = (f"{os.sep}aiosqlite{os.sep}", f"{os.sep}sqlalchemy{os.sep}")


def _record(sql: Any, params: Any, started: float, many: bool, connection: Any) -> None:
    state = _get_state()
    if state is None:
        return
    try:
        duration = _clock() - started
        text = sql if isinstance(sql, str) else str(sql)
        append_query(
            state,
            text,
            params,
            duration,
            "sqlite3",
            caller_location(sys._getframe(2)),
            started,
            (),
            many,
        )
        if duration >= explain.over and not many:
            _explain(state, connection, text, params)
    except Exception:
        hook_failed("sqlite3 execute")


def _explain(state: Any, connection: Any, sql: str, params: Any) -> None:
    """A slow query: ask SQLite for its plan, on the same connection (see queries.explain)."""
    key = explain.claim(sql)
    if key is not None:
        with explain.unrecorded(state):
            explain.explain_dbapi(key, "sqlite", connection, sql, params, in_transaction=False)


def _watching(connection: object) -> bool:
    return _active and id(connection) not in owned and _get_state() is not None


class TracedCursor(sqlite3.Cursor):
    """A cursor that records what it executes while a request is running."""

    def execute(self, sql: str, parameters: Any = (), /) -> TracedCursor:
        if not _watching(self.connection):
            return super().execute(sql, parameters)
        started = _clock()
        try:
            return super().execute(sql, parameters)
        finally:
            _record(sql, parameters, started, False, self.connection)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> TracedCursor:
        if not _watching(self.connection):
            return super().executemany(sql, seq_of_parameters)
        started = _clock()
        try:
            return super().executemany(sql, seq_of_parameters)
        finally:
            _record(sql, seq_of_parameters, started, True, self.connection)

    def executescript(self, sql_script: str, /) -> TracedCursor:
        if not _watching(self.connection):
            return super().executescript(sql_script)  # type: ignore[return-value]
        started = _clock()
        try:
            return super().executescript(sql_script)  # type: ignore[return-value]
        finally:
            _record(sql_script, None, started, True, self.connection)


class _TracedConnection:
    """Mixed into ``sqlite3.Connection`` (or the caller's factory) by :func:`_traced_class`."""

    def close(self) -> None:
        self._fastprof_closed = True
        super().close()  # type: ignore[misc]

    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or TracedCursor)  # type: ignore[misc]

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        if not _watching(self):
            return super().execute(sql, parameters)  # type: ignore[misc]
        started = _clock()
        try:
            return super().execute(sql, parameters)  # type: ignore[misc]
        finally:
            _record(sql, parameters, started, False, self)

    def executemany(self, sql: str, parameters: Any, /) -> Any:
        if not _watching(self):
            return super().executemany(sql, parameters)  # type: ignore[misc]
        started = _clock()
        try:
            return super().executemany(sql, parameters)  # type: ignore[misc]
        finally:
            _record(sql, parameters, started, True, self)

    def executescript(self, sql_script: str, /) -> Any:
        if not _watching(self):
            return super().executescript(sql_script)  # type: ignore[misc]
        started = _clock()
        try:
            return super().executescript(sql_script)  # type: ignore[misc]
        finally:
            _record(sql_script, None, started, True, self)


class TracedConnection(_TracedConnection, sqlite3.Connection):
    """The factory given to ``sqlite3.connect`` while the hook is installed."""


_traced_classes: dict[type, type] = {sqlite3.Connection: TracedConnection}


def _traced_class(factory: type) -> type:
    traced = _traced_classes.get(factory)
    if traced is None:
        traced = _traced_classes[factory] = type(
            f"Traced{factory.__name__}", (_TracedConnection, factory), {}
        )
    return traced


def _from_layer() -> bool:
    """Called (directly or a few frames up) by a library whose own hook counts the connect."""
    frame: FrameType | None = sys._getframe(1)
    for _ in range(12):
        if frame is None:
            return False
        if any(layer in frame.f_code.co_filename for layer in _LAYERS):
            return True
        frame = frame.f_back
    return False


def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
    """``sqlite3.connect``, returning a traced connection (installed by the hook)."""
    assert _original_connect is not None
    # factory is the 6th positional parameter of sqlite3.connect.
    if len(args) >= 5:
        factory = args[4]
        args = (*args[:4], _traced_class(factory), *args[5:])
    else:
        kwargs["factory"] = _traced_class(kwargs.get("factory", sqlite3.Connection))
    if _get_state() is None or _from_layer():
        return _original_connect(database, *args, **kwargs)
    started = _clock()
    connection = _original_connect(database, *args, **kwargs)
    _record_connect(connection, database, started)
    return connection


@guarded
def _record_connect(connection: sqlite3.Connection, database: Any, started: float) -> None:
    ref = weakref.ref(connection)
    record_connect(
        "sqlite3",
        _clock() - started,
        "connect",
        location=caller_location(sys._getframe(1)),
        detail=str(database),
        still_open=lambda: _open(ref()),
    )


def _open(connection: Any) -> bool:
    return connection is not None and not getattr(connection, "_fastprof_closed", False)


class SQLite3Hook(QueryHook):
    name = "sqlite3"
    module = "sqlite3"

    def _patch(self) -> None:
        global _active, _original_connect
        import sqlite3.dbapi2

        _original_connect = sqlite3.connect
        sqlite3.connect = sqlite3.dbapi2.connect = connect  # type: ignore[assignment]
        _active = True

    def _unpatch(self) -> None:
        global _active
        import sqlite3.dbapi2

        _active = False
        # Only undo our own patch: someone may have wrapped ours since.
        if sqlite3.connect is connect:
            sqlite3.connect = _original_connect  # type: ignore[assignment]
        if sqlite3.dbapi2.connect is connect:
            sqlite3.dbapi2.connect = _original_connect  # type: ignore[assignment]

    def leftovers(self) -> list[str]:
        import sqlite3.dbapi2

        if not self.installed and connect in (sqlite3.connect, sqlite3.dbapi2.connect):
            return ["sqlite3.connect still patched"]
        return []

"""aiosqlite: queries run on the connection's own worker thread, which has no request context.

Every operation of ``aiosqlite.Connection`` and ``aiosqlite.Cursor`` is queued through one
coroutine, ``Connection._execute(fn, *args)``, awaited on the request's side - the choke point
wrapped here. The statement is the first argument when ``fn`` is one of sqlite3's
``execute``/``executemany``/``executescript`` (or aiosqlite's ``execute_insert`` /
``execute_fetchall`` helpers); the duration is what the request waited, queueing included.
The first ``Connection._connect`` of a connection (what ``await aiosqlite.connect(...)`` runs)
is recorded as a connect.
"""

from __future__ import annotations

import os
import sys
import time
import weakref
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any

from fastprof._context import current_request
from fastprof.queries import append_query, caller_location, record_connect
from fastprof.queries.base import QueryHook, guarded, hook_failed, owned

_get_state = current_request.get
_clock = time.perf_counter

_STATEMENTS = {
    "execute": False,
    "_execute_insert": False,
    "_execute_fetchall": False,
    "executemany": True,
    "executescript": True,
}

_originals: dict[str, Callable[..., Coroutine[Any, Any, Any]]] = {}


async def _execute(self: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    original = _originals["_execute"]
    state = _get_state()
    if not args or state is None or id(self) in owned:
        return await original(self, fn, *args, **kwargs)
    many = _STATEMENTS.get(getattr(fn, "__name__", ""))
    if many is None:
        return await original(self, fn, *args, **kwargs)
    started = _clock()
    try:
        return await original(self, fn, *args, **kwargs)
    finally:
        try:
            append_query(
                state,
                args[0],
                args[1] if len(args) > 1 else None,
                _clock() - started,
                "aiosqlite",
                caller_location(sys._getframe(1)),
                started,
                (),
                many,
            )
        except Exception:
            hook_failed("aiosqlite execute")


async def _connect(self: Any) -> Any:
    original = _originals["_connect"]
    if self._connection is not None or _get_state() is None or _from_sqlalchemy():
        return await original(self)
    started = _clock()
    result = await original(self)
    _record_connect(self, started)
    return result


@guarded
def _record_connect(connection: Any, started: float) -> None:
    ref = weakref.ref(connection)
    record_connect(
        "aiosqlite",
        _clock() - started,
        "connect",
        location=caller_location(sys._getframe(1)),
        detail=_database(connection),
        still_open=lambda: _open(ref()),
    )


def _database(connection: Any) -> str:
    """The database ``aiosqlite.connect`` was given: a variable of its connector closure."""
    try:
        connector = connection._connector
        cells = dict(zip(connector.__code__.co_freevars, connector.__closure__ or (), strict=False))
        database = cells["database"].cell_contents
        return database.decode() if isinstance(database, bytes) else str(database)
    except Exception:
        return "?"


def _open(connection: Any) -> bool:
    return connection is not None and connection._connection is not None


_SQLALCHEMY = f"{os.sep}sqlalchemy{os.sep}"


def _from_sqlalchemy() -> bool:
    frame: FrameType | None = sys._getframe(1)
    for _ in range(12):
        if frame is None:
            return False
        if _SQLALCHEMY in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


_PATCHED = {"_execute": _execute, "_connect": _connect}


class AiosqliteHook(QueryHook):
    name = "aiosqlite"
    module = "aiosqlite"

    def _patch(self) -> None:
        from aiosqlite.core import Connection

        for attr, replacement in _PATCHED.items():
            _originals[attr] = getattr(Connection, attr)
            setattr(Connection, attr, replacement)

    def _unpatch(self) -> None:
        from aiosqlite.core import Connection

        for attr, replacement in _PATCHED.items():
            if Connection.__dict__.get(attr) is replacement:
                setattr(Connection, attr, _originals[attr])

    def leftovers(self) -> list[str]:
        if self.installed or "aiosqlite" not in sys.modules:
            return []
        from aiosqlite.core import Connection

        return [
            f"aiosqlite.Connection.{attr} still patched"
            for attr, replacement in _PATCHED.items()
            if Connection.__dict__.get(attr) is replacement
        ]

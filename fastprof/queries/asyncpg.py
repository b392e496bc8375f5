"""asyncpg: the public query methods of ``Connection`` and ``PreparedStatement``, and connects.

``Connection.add_query_logger`` misses prepared statements (``PreparedStatement.fetch`` goes
straight to the Cython protocol), which is what SQLAlchemy's asyncpg dialect runs. Below the
public methods everything ends in the protocol object, which cannot be patched, so the hook
wraps the methods that run a statement: ``Connection.execute/executemany/fetch/fetchrow/
fetchval/fetchmany`` and ``PreparedStatement.fetch/fetchrow/fetchval/fetchmany/executemany``
(pool proxies look them up on the class at call time, so pooled connections are covered).
Calls made by asyncpg itself (transactions' ``BEGIN``, the pool's reset on release, type
introspection) are left out; so are calls on connections SQLAlchemy's hook marked owned (it
records them itself).

Connections: every connect goes through ``asyncpg.connect_utils._connect``, wrapped to record
a direct ``asyncpg.connect`` ("connect") or a pool opening a connection ("pool_connect"); a
pool created inside a request (``Pool._async__init__``) is one "pool" record.

Pool waits (while a pool_exhaustion detector watches, see :mod:`fastprof.queries.pools`):
``Pool._acquire`` is timed when no connection is free as it starts, and ``Pool.release``
gives how long each connection was held.

Slow queries (while a slow_query detector watches): the query is explained on the same
connection right after it ran, once per statement shape (:mod:`fastprof.queries.explain`).

Not covered: cursors (``Connection.cursor``) and the ``copy_*`` methods.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import weakref
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from types import CodeType, FrameType
from typing import Any

from fastprof._context import current_request
from fastprof.queries import append_query, caller_location, explain, pools, record_connect
from fastprof.queries.base import QueryHook, guarded, hook_failed, owned

_get_state = current_request.get
_clock = time.perf_counter
_creating_pool: ContextVar[bool] = ContextVar("fastprof_asyncpg_creating_pool", default=False)

Method = Callable[..., Coroutine[Any, Any, Any]]

#: (class name, method name) -> True when the method takes a sequence of parameter sets.
_CONNECTION_METHODS = {
    "execute": False,
    "fetch": False,
    "fetchrow": False,
    "fetchval": False,
    "executemany": True,
    "fetchmany": True,
}
_STATEMENT_METHODS = {
    "fetch": False,
    "fetchrow": False,
    "fetchval": False,
    "executemany": True,
    "fetchmany": True,
}

_internal_files: dict[str, bool] = {}
_SQLALCHEMY = f"{os.sep}sqlalchemy{os.sep}"
_asyncpg_dir = ""


def _internal(code: CodeType) -> bool:
    """A call made by asyncpg itself (its pool's query shortcuts are the user's, though)."""
    file = code.co_filename  # the key: hashing a code object would hash its bytecode
    known = _internal_files.get(file)
    if known is None:
        known = _internal_files[file] = file.startswith(_asyncpg_dir) and not file.endswith(
            "pool.py"
        )
    return known


def _record(
    state: Any,
    query: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    many: bool,
    duration: float,
    caller: FrameType,
    started: float,
) -> None:
    try:
        params = (args[0] if args else kwargs.get("args")) if many else args
        append_query(
            state, query, params, duration, "asyncpg", caller_location(caller), started, (), many
        )
    except Exception:
        hook_failed("asyncpg query")


def _wrap_connection_method(original: Method, many: bool) -> Method:
    @functools.wraps(original)
    async def traced(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        state = _get_state()
        if state is None or id(self) in owned:
            return await original(self, query, *args, **kwargs)
        caller = sys._getframe(1)
        if _internal(caller.f_code):
            return await original(self, query, *args, **kwargs)
        started = _clock()
        try:
            result = await original(self, query, *args, **kwargs)
        finally:
            duration = _clock() - started
            _record(state, query, args, kwargs, many, duration, caller, started)
        if duration >= explain.over and not many:
            await _explain(state, self, query, args)
        return result

    traced.__fastprof_original__ = original  # type: ignore[attr-defined]
    return traced


def _wrap_statement_method(original: Method, many: bool) -> Method:
    @functools.wraps(original)
    async def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
        state = _get_state()
        if state is None or id(self._connection) in owned:
            return await original(self, *args, **kwargs)
        caller = sys._getframe(1)
        if _internal(caller.f_code):
            return await original(self, *args, **kwargs)
        started = _clock()
        try:
            result = await original(self, *args, **kwargs)
        finally:
            duration = _clock() - started
            _record(state, self._query, args, kwargs, many, duration, caller, started)
        if duration >= explain.over and not many:
            await _explain(state, self._connection, self._query, args)
        return result

    traced.__fastprof_original__ = original  # type: ignore[attr-defined]
    return traced


async def _explain(state: Any, connection: Any, query: str, args: tuple[Any, ...]) -> None:
    """A slow query: ask PostgreSQL for its plan on the same connection (see queries.explain)."""
    try:
        key = explain.claim(query)
        if key is None:
            return
        with explain.unrecorded(state):
            await explain.explain_asyncpg(key, connection, query, args)
    except Exception:
        hook_failed("asyncpg explain")


@guarded
def _record_connect(connection: Any, kind: str, started: float, caller: FrameType) -> None:
    ref = weakref.ref(connection)
    record_connect(
        "asyncpg",
        _clock() - started,
        kind,
        location=caller_location(caller),
        still_open=lambda: _connection_open(ref()),
    )


def _connect_kind() -> str | None:
    """How the connect now running was asked for: None when SQLAlchemy's hook counts it."""
    frame: FrameType | None = sys._getframe(2)
    kind = "connect"
    while frame is not None:
        file = frame.f_code.co_filename
        if _SQLALCHEMY in file:
            return None
        if file.startswith(_asyncpg_dir) and file.endswith("pool.py"):
            kind = "pool_connect"
        frame = frame.f_back
    return kind


def _wrap_connect(original: Method) -> Method:
    @functools.wraps(original)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        if _get_state() is None or _creating_pool.get():
            return await original(*args, **kwargs)
        kind = _connect_kind()
        if kind is None:
            return await original(*args, **kwargs)
        started = _clock()
        connection = await original(*args, **kwargs)
        _record_connect(connection, kind, started, sys._getframe(1))
        return connection

    traced.__fastprof_original__ = original  # type: ignore[attr-defined]
    return traced


@guarded
def _record_pool(pool: Any, started: float, caller: FrameType) -> None:
    record_connect(
        "asyncpg",
        _clock() - started,
        "pool",
        location=caller_location(caller),
        detail=f"min_size={pool._minsize}, max_size={pool._maxsize}",
        # Pools take no weak references; the record lives only as long as the request.
        still_open=lambda: not (pool._closed or pool._closing),
        connections=sum(1 for holder in pool._holders if holder._con is not None),
    )


def _connection_open(connection: Any) -> bool:
    return connection is not None and not connection.is_closed()


def _wrap_pool_init(original: Method) -> Method:
    @functools.wraps(original)
    async def traced(self: Any) -> Any:
        if self._initialized or self._initializing or _get_state() is None:
            return await original(self)
        token = _creating_pool.set(True)
        started = _clock()
        try:
            pool = await original(self)
        finally:
            _creating_pool.reset(token)
        _record_pool(self, started, sys._getframe(1))
        return pool

    traced.__fastprof_original__ = original  # type: ignore[attr-defined]
    return traced


#: id(pool connection proxy) -> (acquired at, request, where, pool info) while watched.
_held: dict[int, tuple[float, Any, Any, pools.PoolInfo]] = {}


def _describe_pool(pool: Any) -> pools.PoolInfo:
    return pools.PoolInfo(
        name=f"asyncpg Pool (min_size={pool._minsize})",
        size=pool._maxsize,
        max_overflow=0,
        timeout=None,
    )


def _wrap_acquire(original: Method) -> Method:
    @functools.wraps(original)
    async def traced(self: Any, timeout: Any) -> Any:
        if not pools.watching:
            return await original(self, timeout)
        state = _get_state()
        if state is None:
            return await original(self, timeout)
        try:
            full = self._queue is not None and self._queue.empty()
        except Exception:
            full = False
        started = _clock()
        timed_out = False
        info = None
        in_use = 0
        if full:
            try:
                info = pools.info(self, _describe_pool)
                in_use = self._maxsize - self._queue.qsize()
                pools.wait_started(info)
            except Exception:  # the acquire goes on untimed
                hook_failed("asyncpg pool wait")
                info, full = None, False
        try:
            proxy = await original(self, timeout)
        except TimeoutError:
            timed_out = True
            raise
        finally:
            if info is not None:
                pools.wait_ended(info)
            if full or timed_out:
                _record_pool_wait(self, in_use, state, started, timed_out, sys._getframe(1))
        _acquired(self, proxy, state, sys._getframe(1))
        return proxy

    traced.__fastprof_original__ = original  # type: ignore[attr-defined]
    return traced


@guarded
def _record_pool_wait(
    pool: Any, in_use: int, state: Any, started: float, timed_out: bool, caller: FrameType
) -> None:
    info = pools.info(pool, _describe_pool)
    if not in_use:  # timed out without having found the pool full: count it now
        in_use = pool._maxsize - pool._queue.qsize()
    pools.seen_in_use(info, in_use)
    pools.record_wait(
        state,
        pools.PoolWait(
            info, _clock() - started, in_use, timed_out, caller_location(caller), started
        ),
    )


@guarded
def _acquired(pool: Any, proxy: Any, state: Any, caller: FrameType) -> None:
    info = pools.info(pool, _describe_pool)
    pools.seen_in_use(info, pool._maxsize - pool._queue.qsize())
    if len(_held) > 10_000:
        _held.clear()
    _held[id(proxy)] = (_clock(), state, caller_location(caller), info)


def _wrap_release(original: Method) -> Method:
    @functools.wraps(original)
    async def traced(self: Any, connection: Any, *args: Any, **kwargs: Any) -> Any:
        held = _held.pop(id(connection), None) if _held else None
        if held is not None:
            started, state, where, info = held
            pools.hold(info, _clock() - started, state, where)
        return await original(self, connection, *args, **kwargs)

    traced.__fastprof_original__ = original  # type: ignore[attr-defined]
    return traced


class AsyncpgHook(QueryHook):
    name = "asyncpg"
    module = "asyncpg"

    def __init__(self) -> None:
        super().__init__()
        #: (owner, attribute, original, replacement) for everything patched.
        self._patches: list[tuple[Any, str, Any, Any]] = []

    def _targets(self) -> list[tuple[Any, str, Callable[[Method], Method]]]:
        import asyncpg.connect_utils  # type: ignore[import-untyped]
        import asyncpg.connection  # type: ignore[import-untyped]
        import asyncpg.pool  # type: ignore[import-untyped]
        import asyncpg.prepared_stmt  # type: ignore[import-untyped]

        targets: list[tuple[Any, str, Callable[[Method], Method]]] = []
        for name, many in _CONNECTION_METHODS.items():
            targets.append(
                (
                    asyncpg.connection.Connection,
                    name,
                    functools.partial(_wrap_connection_method, many=many),
                )
            )
        for name, many in _STATEMENT_METHODS.items():
            targets.append(
                (
                    asyncpg.prepared_stmt.PreparedStatement,
                    name,
                    functools.partial(_wrap_statement_method, many=many),
                )
            )
        targets.append((asyncpg.connect_utils, "_connect", _wrap_connect))
        targets.append((asyncpg.pool.Pool, "_async__init__", _wrap_pool_init))
        targets.append((asyncpg.pool.Pool, "_acquire", _wrap_acquire))
        targets.append((asyncpg.pool.Pool, "release", _wrap_release))
        return targets

    def _patch(self) -> None:
        global _asyncpg_dir
        import asyncpg

        _asyncpg_dir = os.path.dirname(os.path.abspath(asyncpg.__file__)) + os.sep
        for owner, attr, wrap in self._targets():
            original = getattr(owner, attr)
            replacement = wrap(original)
            setattr(owner, attr, replacement)
            self._patches.append((owner, attr, original, replacement))

    def _unpatch(self) -> None:
        for owner, attr, original, replacement in reversed(self._patches):
            # Only undo our own patch: someone may have wrapped ours since.
            if getattr(owner, attr) is replacement:
                setattr(owner, attr, original)
        self._patches.clear()
        _held.clear()

    def leftovers(self) -> list[str]:
        if self.installed or "asyncpg" not in sys.modules:
            return []
        found = []
        for owner, attr, _ in self._targets():
            if hasattr(getattr(owner, attr), "__fastprof_original__"):
                found.append(f"{getattr(owner, '__name__', owner)}.{attr} still patched")
        return found

"""SQLAlchemy (sync and asyncio): engine, pool and ORM events, all listened to class-wide.

* ``before_cursor_execute``/``after_cursor_execute`` on ``Engine`` (every engine, and the sync
  engine inside every ``AsyncEngine``): the statement as sent, its parameters, its duration
  (``handle_error``: a statement that failed). The driver connections of SQLAlchemy's pools
  are marked owned (``connect`` and ``checkout`` on ``Pool``) so that the driver's own hook
  does not record the same statement a second time.
* An ORM lazy load is recognised in ``after_cursor_execute`` by its load options (the
  instance it loads for) and its compile state (the path ending at the relationship), so the
  record says ``lazy_load = "Author.books"`` with the relationship's direction and the
  parent's class. (A ``do_orm_execute`` listener would give the same through public API, at
  about 4 us on every ORM statement: see :func:`_lazy_load`.)
* ``do_connect`` on ``Engine`` and ``connect`` on ``Pool``: a pool opening a DBAPI connection,
  timed, with whether the pool keeps it (``NullPool`` does not: it connects on every checkout).
  The dialect's set-up statements that follow on the new connection are not the app's: the
  connection is marked owned first, so no hook records them.
* ``Engine.__init__`` is wrapped (there is no engine-created event) to record an engine built
  inside a request.
* While a pool_exhaustion detector watches (:mod:`fastprof.queries.pools`): ``QueuePool._do_get``
  (every ``QueuePool`` and ``AsyncAdaptedQueuePool``) is wrapped to time a checkout made while
  the pool was full, and ``checkout``/``checkin`` give how long each connection was held.

Where: the innermost user frame of the stack; for the asyncio layer, the stack of the
awaiting coroutine (see :func:`fastprof.queries.user_code_frame`). A lazy load fired while
FastAPI serialises the response runs with no user frame at all (pydantic reads the attribute
from C code, in a worker thread for ``def`` endpoints); it is then attributed to the earlier
query of the same request that loaded the parent rows - the line where the eager-load option
belongs - and marked ``during = "serialization"``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from fastprof._context import current_request
from fastprof.findings import Location
from fastprof.queries import (
    QueryRecord,
    append_query,
    caller_location,
    explain,
    pools,
    record_connect,
)
from fastprof.queries.base import QueryHook, guarded, hook_failed, mark_owned, owned

_get_state = current_request.get
_clock = time.perf_counter
#: id(connection record) -> when its connect started (do_connect -> pool connect).
_connecting: dict[int, float] = {}
_engine_init: Any = None
_original_do_get: Any = None
#: id(connection record) -> (checked out at, request, where, pool info) while watched.
_held: dict[int, tuple[float, Any, Location | None, pools.PoolInfo]] = {}
#: RequestState.facts key: id(pool) -> where its engine was built, for engines built in the
#: request (their connections are reported with the engine).
_ENGINE_POOLS = "fastprof.sqlalchemy.engine_pools"


def _before_cursor_execute(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    if context is not None and _get_state() is not None:
        try:
            context._fastprof_started = _clock()
        except Exception:
            hook_failed("sqlalchemy before_cursor_execute")


def _after_cursor_execute(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    state = _get_state()
    if state is None:
        return
    try:
        now = _clock()
        started: float = getattr(context, "_fastprof_started", now)
        orm: tuple[tuple[str, str], ...] = ()
        if context is not None:
            load_options = context.execution_options.get("_sa_orm_load_options")
            if load_options is not None:
                parent = getattr(load_options, "_lazy_loaded_from", None)
                if parent is not None:
                    orm = _lazy_load(parent, context)
        location = caller_location(sys._getframe(1))
        if location is None and orm:
            orm, location = _serialization_context(orm, state.queries)
        append_query(
            state,
            statement,
            parameters,
            now - started,
            "sqlalchemy",
            location,
            started,
            orm,
            bool(executemany),
        )
        if now - started >= explain.over and not executemany:
            _explain(state, conn, statement, parameters)
    except Exception:
        hook_failed("sqlalchemy after_cursor_execute")


def _explain(state: Any, conn: Any, statement: str, parameters: Any) -> None:
    """A slow statement: ask the database for its plan on the same DBAPI connection, in the
    same transaction (see queries.explain). The async drivers' adapters block through the
    greenlet this listener runs in, like the statement itself did."""
    database = conn.dialect.name
    if database not in ("postgresql", "sqlite"):
        return
    key = explain.claim(statement)
    if key is None:
        return
    dbapi_connection = conn.connection.dbapi_connection
    with explain.unrecorded(state):
        explain.explain_dbapi(
            key,
            database,
            dbapi_connection,
            statement,
            parameters,
            in_transaction=database == "postgresql" and conn.in_transaction(),
        )


@guarded
def _handle_error(exception_context: Any) -> None:
    """A statement that failed is recorded too (it ran, and took its time)."""
    state = _get_state()
    context = exception_context.execution_context
    started = getattr(context, "_fastprof_started", None)
    if state is None or started is None or exception_context.statement is None:
        return
    append_query(
        state,
        exception_context.statement,
        exception_context.parameters,
        _clock() - started,
        "sqlalchemy",
        caller_location(sys._getframe(1)),
        started,
    )


#: (relationship property, parent mapper) -> the lazy-load context of its statements.
_lazy_contexts: dict[tuple[Any, Any], tuple[tuple[str, str], ...]] = {}


def _lazy_load(parent: Any, context: Any) -> tuple[tuple[str, str], ...]:
    """What a lazy load loads: the relationship, its direction, the parent's class and tables.

    Read from the statement's ORM compile state (``current_path`` ends at the relationship)
    rather than from a ``do_orm_execute`` listener: any such listener makes SQLAlchemy run
    its ORM pre-execution twice for every ORM statement, measured at about 4 us each, whether
    a request is being watched or not.
    """
    compile_state = getattr(context.compiled, "compile_state", None)
    prop = getattr(getattr(compile_state, "current_path", None), "prop", None)
    if prop is None:
        return ()
    mapper = parent.mapper
    found = _lazy_contexts.get((prop, mapper))
    if found is None:
        if len(_lazy_contexts) > 1000:
            _lazy_contexts.clear()
        direction = getattr(getattr(prop, "direction", None), "name", "")
        tables = ",".join(getattr(t, "name", "") for t in mapper.tables)
        found = _lazy_contexts[(prop, mapper)] = (
            ("lazy_load", f"{prop.parent.class_.__name__}.{prop.key}"),
            ("direction", direction),
            ("parent", mapper.class_.__name__),
            ("parent_tables", tables),
        )
    return found


def _serialization_context(
    orm: tuple[tuple[str, str], ...], earlier: list[QueryRecord]
) -> tuple[tuple[tuple[str, str], ...], Location | None]:
    """A lazy load with no user frame on the stack: point at the query that loaded its parent.

    That is the line where ``selectinload(...)`` belongs; the record also says it ran while
    the response was being serialised (FastAPI's ``serialize_response`` is on the stack) or
    at least outside user code.
    """
    info = dict(orm)
    if "lazy_load" not in info:
        return orm, None
    during = "serialization" if _serializing() else "outside user code"
    tables = [t for t in info.get("parent_tables", "").split(",") if t]
    location: Location | None = None
    for record in reversed(earlier):
        if record.location is None or record.orm_value("lazy_load") is not None:
            continue
        sql = record.sql.lower()
        if any(f"from {t}" in sql or f'from "{t}"' in sql or f"join {t}" in sql for t in tables):
            location = record.location
            break
    return (*orm, ("during", during)), location


#: FastAPI functions that read the response object: serialize_response on the loop, or for a
#: ``def`` endpoint ModelField.validate in a worker thread; jsonable_encoder without a model.
_SERIALIZERS = frozenset(
    {"serialize_response", "validate", "serialize", "serialize_json", "jsonable_encoder"}
)


def _serializing() -> bool:
    frame: Any = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        if code.co_name in _SERIALIZERS and "fastapi" in code.co_filename:
            return True
        frame = frame.f_back
    return False


@guarded
def _do_connect(dialect: Any, conn_rec: Any, cargs: Any, cparams: Any) -> None:
    if _get_state() is not None:
        if len(_connecting) > 1000:
            _connecting.clear()
        _connecting[id(conn_rec)] = _clock()


def _own(connection_record: Any) -> None:
    try:
        driver_connection = connection_record.driver_connection
    except Exception:
        return
    if driver_connection is not None and id(driver_connection) not in owned:
        mark_owned(driver_connection)


@guarded
def _checkout(dbapi_connection: Any, connection_record: Any, proxy: Any) -> None:
    # Connections opened before the hook was installed are marked on their next checkout.
    _own(connection_record)
    if pools.watching:
        state = _get_state()
        pool = getattr(connection_record, "_ConnectionRecord__pool", None)
        if state is None or pool is None:
            return
        info = pools.info(pool, _describe_pool)
        pools.seen_in_use(info, pool.checkedout())
        if len(_held) > 10_000:  # records invalidated without a check-in
            _held.clear()
        _held[id(connection_record)] = (
            _clock(),
            state,
            caller_location(sys._getframe(1)),
            info,
        )


@guarded
def _checkin(dbapi_connection: Any, connection_record: Any) -> None:
    held = _held.pop(id(connection_record), None)
    if held is not None:
        started, state, where, info = held
        pools.hold(info, _clock() - started, state, where)


def _describe_pool(pool: Any) -> pools.PoolInfo:
    dialect = getattr(pool, "_dialect", None)
    return pools.PoolInfo(
        name=f"{type(pool).__name__} ({getattr(dialect, 'name', '?')}+"
        f"{getattr(dialect, 'driver', '?')})",
        size=pool.size(),
        max_overflow=getattr(pool, "_max_overflow", 0),
        timeout=pool.timeout(),
    )


def _traced_do_get(self: Any) -> Any:
    """``QueuePool._do_get``: time a checkout that has to wait for a connection to come back."""
    if not pools.watching or _get_state() is None:
        return _original_do_get(self)
    try:
        full = (
            self._max_overflow > -1 and self._overflow >= self._max_overflow and self._pool.empty()
        )
    except Exception:
        full = False
    if not full:
        return _original_do_get(self)
    started = _clock()
    try:
        info = pools.info(self, _describe_pool)
        in_use = self.checkedout()
        pools.wait_started(info)
    except Exception:  # the checkout goes on untimed
        hook_failed("sqlalchemy pool wait")
        return _original_do_get(self)
    try:
        record = _original_do_get(self)
    except BaseException as error:
        pools.wait_ended(info)
        _record_wait(info, in_use, started, type(error).__name__ == "TimeoutError")
        raise
    pools.wait_ended(info)
    _record_wait(info, in_use, started, False)
    return record


@guarded
def _record_wait(info: pools.PoolInfo, in_use: int, started: float, timed_out: bool) -> None:
    state = _get_state()
    if state is None:
        return
    pools.seen_in_use(info, in_use)
    pools.record_wait(
        state,
        pools.PoolWait(
            info,
            _clock() - started,
            in_use,
            timed_out,
            caller_location(sys._getframe(1)),
            started,
        ),
    )


@guarded
def _pool_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # Class-level listeners run before the pool's own (the dialect's first-connect set-up
    # among them): marking here keeps the driver hooks off those statements.
    _own(connection_record)
    started = _connecting.pop(id(connection_record), None)
    state = _get_state()
    if started is None or state is None:
        return
    pool = getattr(connection_record, "_ConnectionRecord__pool", None)
    pool_class = type(pool).__name__ if pool is not None else "?"
    dialect = getattr(pool, "_dialect", None)
    # A connection of an engine built in this request belongs to that engine's finding.
    engine_location = state.facts.get(_ENGINE_POOLS, {}).get(id(pool))
    record_connect(
        "sqlalchemy",
        _clock() - started,
        "engine_connect" if engine_location is not None else "pool_connect",
        location=engine_location or caller_location(sys._getframe(1)),
        pooled=pool_class != "NullPool",
        detail=f"{pool_class} ({getattr(dialect, 'name', '?')}+{getattr(dialect, 'driver', '?')})",
    )


def _traced_engine_init(self: Any, pool: Any, dialect: Any, *args: Any, **kwargs: Any) -> None:
    if _get_state() is None:
        _engine_init(self, pool, dialect, *args, **kwargs)
        return
    started = _clock()
    _engine_init(self, pool, dialect, *args, **kwargs)
    _record_engine(self, pool, dialect, started)


@guarded
def _record_engine(engine: Any, pool: Any, dialect: Any, started: float) -> None:
    record = record_connect(
        "sqlalchemy",
        _clock() - started,
        "engine",
        location=caller_location(sys._getframe(1)),
        pooled=type(pool).__name__ != "NullPool",
        detail=f"{type(pool).__name__} ({dialect.name}+{dialect.driver})",
        connections=0,
    )
    state = _get_state()
    if record is not None and state is not None:
        state.facts.setdefault(_ENGINE_POOLS, {})[id(pool)] = record.location


class SQLAlchemyHook(QueryHook):
    name = "sqlalchemy"
    module = "sqlalchemy"

    def __init__(self) -> None:
        super().__init__()
        self._listening: list[tuple[Any, str, Any]] = []

    def _events(self) -> list[tuple[Any, str, Any]]:
        from sqlalchemy.engine import Engine
        from sqlalchemy.pool import Pool

        events: list[tuple[Any, str, Any]] = [
            (Engine, "before_cursor_execute", _before_cursor_execute),
            (Engine, "after_cursor_execute", _after_cursor_execute),
            (Engine, "handle_error", _handle_error),
            (Engine, "do_connect", _do_connect),
            (Pool, "connect", _pool_connect),
            (Pool, "checkout", _checkout),
            (Pool, "checkin", _checkin),
        ]
        return events

    def _patch(self) -> None:
        global _engine_init, _original_do_get
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        for target, name, fn in self._events():
            event.listen(target, name, fn)
            self._listening.append((target, name, fn))
        _engine_init = Engine.__init__
        Engine.__init__ = _traced_engine_init  # type: ignore[method-assign]
        from sqlalchemy.pool import QueuePool

        _original_do_get = QueuePool._do_get
        QueuePool._do_get = _traced_do_get  # type: ignore[method-assign]

    def _unpatch(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        for target, name, fn in self._listening:
            if event.contains(target, name, fn):
                event.remove(target, name, fn)
        self._listening.clear()
        # Without this hook, the driver hooks are the only ones left to record those.
        owned.clear()
        if Engine.__init__ is _traced_engine_init:
            Engine.__init__ = _engine_init  # type: ignore[method-assign]
        from sqlalchemy.pool import QueuePool

        if QueuePool._do_get is _traced_do_get:
            QueuePool._do_get = _original_do_get  # type: ignore[method-assign]
        _connecting.clear()
        _held.clear()

    def leftovers(self) -> list[str]:
        if self.installed or "sqlalchemy" not in sys.modules:
            return []
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        found = [
            f"SQLAlchemy listener {name} on {target.__name__} still registered"
            for target, name, fn in self._events()
            if event.contains(target, name, fn)
        ]
        if Engine.__init__ is _traced_engine_init:
            found.append("sqlalchemy Engine.__init__ still patched")
        from sqlalchemy.pool import QueuePool

        if QueuePool._do_get is _traced_do_get:
            found.append("sqlalchemy QueuePool._do_get still patched")
        return found

"""The contract every query hook implements, and the counted install shared by detectors.

A hook patches one driver (or registers its events) so that queries run inside a request are
recorded with :func:`fastprof.queries.record_query`. Hooks are process-wide singletons
(:func:`get_hook`); ``install()``/``uninstall()`` are counted, so two detectors (or two
middlewares) needing the same hook patch the driver once, and the last ``uninstall()`` puts
every original back.

Layers: SQLAlchemy runs its queries through a driver that has a hook of its own (sqlite3,
aiosqlite, asyncpg). SQLAlchemy's hook marks the driver connections of its pools as *owned*
(:func:`mark_owned`, when a pool opens or hands out a connection); the driver hooks skip
statements on owned connections - one record per query, the richer one. (A flag in the
running context would do too, but setting it twice per statement costs more than this one
dictionary lookup per statement.)
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import sys
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar

#: id() of driver connections a higher layer (SQLAlchemy) records the statements of. Hot
#: paths test ``id(connection) in owned``; entries go when their connection is collected.
owned: dict[int, weakref.ref[Any]] = {}


def mark_owned(connection: Any) -> None:
    """The statements run on ``connection`` are recorded by a higher layer."""
    key = id(connection)
    if key in owned:
        return
    try:
        owned[key] = weakref.ref(connection, functools.partial(_forget, key))
    except TypeError:  # no weak references: leave it to the driver hook
        return


def _forget(key: int, ref: weakref.ref[Any]) -> None:
    if owned.get(key) is ref:
        del owned[key]


def is_owned(connection: Any) -> bool:
    return id(connection) in owned


_logger = logging.getLogger("fastprof")
_reported: set[str] = set()


_F = TypeVar("_F", bound=Callable[..., Any])


def guarded(fn: _F) -> _F:
    """Run ``fn`` for a hook: an exception is logged (once) and swallowed, None returned."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception:
            hook_failed(fn.__qualname__)
            return None

    return run  # type: ignore[return-value]


def hook_failed(where: str) -> None:
    """Log (once per place) an error inside a hook; the app's query goes on regardless.

    Call it from an ``except Exception`` block: hooks run inside the app's database calls and
    must never make one fail.
    """
    if where not in _reported:
        _reported.add(where)
        _logger.exception("fastprof: query capture failed in %s; the query went on", where)


class QueryHook(ABC):
    """Capture of one driver's queries. Subclass, set ``name`` and ``module``, register in HOOKS."""

    #: The name in :data:`fastprof.queries.HOOKS` (also the ``driver`` of its records).
    name: ClassVar[str]
    #: The module that must be importable for the hook to work.
    module: ClassVar[str]

    def __init__(self) -> None:
        self._users = 0
        self._lock = threading.Lock()

    @classmethod
    def available(cls) -> bool:
        """The driver is installed."""
        if cls.module in sys.modules:
            return True
        try:
            return importlib.util.find_spec(cls.module) is not None
        except (ImportError, ValueError):
            return False

    @classmethod
    def imported(cls) -> bool:
        """The app has imported the driver (hooks are installed only for drivers in use)."""
        return cls.module in sys.modules

    @property
    def installed(self) -> bool:
        return self._users > 0

    def install(self) -> None:
        """Start capturing (counted: every install needs one uninstall)."""
        with self._lock:
            if self._users == 0:
                self._patch()
            self._users += 1

    def uninstall(self) -> None:
        """Stop capturing; the last uninstall restores everything the hook changed."""
        with self._lock:
            if self._users == 0:
                return
            self._users -= 1
            if self._users == 0:
                self._unpatch()

    @abstractmethod
    def _patch(self) -> None:
        """Install the hook (called with the lock held, only when going from 0 to 1 user)."""

    @abstractmethod
    def _unpatch(self) -> None:
        """Remove all of it (called with the lock held, only when going from 1 to 0 users)."""

    def leftovers(self) -> list[str]:
        """What of this hook is still in place (for tests: empty once uninstalled)."""
        return []


_hooks: dict[str, QueryHook] = {}
_hooks_lock = threading.Lock()


def get_hook(name: str) -> QueryHook:
    """The process-wide hook for ``name`` (a key of :data:`fastprof.queries.HOOKS`)."""
    from fastprof.queries import HOOKS

    with _hooks_lock:
        hook = _hooks.get(name)
        if hook is None:
            target = HOOKS.get(name)
            if target is None:
                raise ValueError(f"no query hook {name!r}; use one of {', '.join(sorted(HOOKS))}")
            module_name, _, attr = target.partition(":")
            cls: Any = getattr(importlib.import_module(module_name), attr)
            hook = _hooks[name] = cls()
        return hook


def install_hooks(names: Iterable[str] | None = None) -> list[QueryHook]:
    """Install hooks (default: one for every driver the app has imported); returns them so
    that :func:`uninstall_hooks` can undo exactly this call."""
    from fastprof.queries import HOOKS

    chosen = list(HOOKS) if names is None else list(names)
    installed: list[QueryHook] = []
    for name in chosen:
        hook = get_hook(name)
        if names is None and not hook.imported():
            continue
        hook.install()
        installed.append(hook)
    return installed


def uninstall_hooks(hooks: Iterable[QueryHook]) -> None:
    for hook in hooks:
        hook.uninstall()


def leftovers() -> list[str]:
    """Every hook still installed, and anything an uninstalled hook left behind."""
    found: list[str] = []
    for name, hook in list(_hooks.items()):
        if hook.installed:
            found.append(f"query hook {name} still installed ({hook._users} users)")
        found.extend(hook.leftovers())
    return found


class QueryHooks:
    """What a detector holds: the hooks its ``start()`` installed, removed by ``stop()``."""

    def __init__(self, names: Iterable[str] | None = None) -> None:
        self._names = list(names) if names is not None else None
        self._hooks: list[QueryHook] = []

    def start(self) -> None:
        if not self._hooks:
            self._hooks = install_hooks(self._names)

    def stop(self) -> None:
        hooks, self._hooks = self._hooks, []
        uninstall_hooks(hooks)

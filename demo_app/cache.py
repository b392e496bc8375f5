"""Caches for the caching pair: an in-process TTL cache (guide 003) and a shared one (001, 004).

``make_ttl_cache`` gives ``cachetools.TTLCache`` when cachetools is installed, else a small
stand-in with the part of its interface the demo uses. ``SharedCache`` stores bytes in Redis when
``REDIS_URL`` is set (``redis.asyncio``, which replaced ``aioredis``), in-process otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

TTL_SECONDS = 60.0


class SmallTTLCache:
    """A dict whose entries expire ``ttl`` seconds after they were set; at most ``maxsize``."""

    def __init__(self, maxsize: int, ttl: float, timer: Callable[[], float] = time.monotonic):
        self.maxsize = maxsize
        self.ttl = ttl
        self._timer = timer
        self._data: dict[Any, tuple[float, Any]] = {}

    def __contains__(self, key: object) -> bool:
        entry = self._data.get(key)
        if entry is None:
            return False
        if entry[0] <= self._timer():
            del self._data[key]
            return False
        return True

    def __getitem__(self, key: Any) -> Any:
        if key not in self:
            raise KeyError(key)
        return self._data[key][1]

    def __setitem__(self, key: Any, value: Any) -> None:
        if key not in self._data and len(self._data) >= self.maxsize:
            del self._data[min(self._data, key=lambda k: self._data[k][0])]
        self._data[key] = (self._timer() + self.ttl, value)

    def __len__(self) -> int:
        return sum(1 for key in list(self._data) if key in self)

    def get(self, key: Any, default: Any = None) -> Any:
        if key in self:
            return self._data[key][1]
        return default


def make_ttl_cache(maxsize: int, ttl: float) -> Any:
    """``cachetools.TTLCache`` if installed; the demo needs only ``in``, ``[]`` and ``get``."""
    try:
        from cachetools import TTLCache  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return SmallTTLCache(maxsize, ttl)
    return TTLCache(maxsize=maxsize, ttl=ttl)


class SharedCache:
    """Bytes shared between workers: Redis when a client is given, else this process only."""

    def __init__(self, redis: Any = None, *, ttl: float = TTL_SECONDS) -> None:
        self.redis = redis
        self.ttl = ttl
        self._local = make_ttl_cache(1024, ttl)

    @property
    def backend(self) -> str:
        return "redis" if self.redis is not None else "memory"

    async def get(self, key: str) -> bytes | None:
        if self.redis is not None:
            value: bytes | None = await self.redis.get(key)
            return value
        found: bytes | None = self._local.get(key)
        return found

    async def set(self, key: str, value: bytes) -> None:
        if self.redis is not None:
            await self.redis.set(key, value, ex=int(self.ttl))
        else:
            self._local[key] = value

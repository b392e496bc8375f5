"""Where the demo's data lives: read from the environment when the app starts."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    """``DATABASE_URL`` (unset: a temporary SQLite file) and ``REDIS_URL`` (unset: no Redis)."""

    database_url: str | None = None
    redis_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            redis_url=env.get("REDIS_URL") or None,
        )

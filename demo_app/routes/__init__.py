"""One module per guide topic, each an ``APIRouter`` with the pitfalls and their twins."""

from __future__ import annotations

from fastapi import APIRouter

from demo_app.routes import (
    async_io,
    blocking,
    caching,
    duplicate,
    index,
    indexing,
    n_plus_one,
    pooling,
    serialization,
)

ROUTERS: tuple[APIRouter, ...] = (
    index.router,
    blocking.router,
    n_plus_one.router,
    duplicate.router,
    pooling.router,
    indexing.router,
    serialization.router,
    caching.router,
    async_io.router,
)

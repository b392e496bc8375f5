"""Backends by name. A user passes a name from :data:`BACKENDS` or a :class:`Backend` subclass.

Like uvicorn's ``config.py``, names map to ``"module:attr"`` strings resolved on first use, so an
optional dependency (yappi, py-spy) is imported only when its backend is chosen.
"""

from __future__ import annotations

import importlib
from typing import Any

from fastprof.backends.base import Backend, BackendUnavailable, Capture, TreeSource

BACKENDS: dict[str, str] = {
    "pyinstrument": "fastprof.backends.pyinstrument:PyinstrumentBackend",
    "yappi": "fastprof.backends.yappi:YappiBackend",
    "py-spy": "fastprof.backends.pyspy:PySpyBackend",
    "continuous": "fastprof.backends.continuous:ContinuousBackend",
}

__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "Capture", "TreeSource", "backend_class"]


def backend_class(spec: str | type[Backend]) -> type[Backend]:
    """Resolve a backend name or class; a bad name raises ValueError listing the valid ones."""
    if isinstance(spec, type):
        if not issubclass(spec, Backend):
            raise ValueError(
                f"backend class {spec.__qualname__} is not a fastprof Backend subclass"
            )
        return spec
    target = BACKENDS.get(spec) if isinstance(spec, str) else None
    if target is None:
        raise ValueError(
            f"backend={spec!r} is not a known backend; use one of {', '.join(sorted(BACKENDS))} "
            "or a Backend subclass"
        )
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    cls: Any = getattr(module, attr)
    return cls  # type: ignore[no-any-return]


def make_backend(spec: str | type[Backend] | Backend, **options: Any) -> Backend:
    if isinstance(spec, Backend):
        return spec
    return backend_class(spec)(**options)

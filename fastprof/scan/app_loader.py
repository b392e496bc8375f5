"""``MODULE:APP`` to an ASGI application, or a one-line error saying what is wrong."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any


class AppLoadError(Exception):
    """The app could not be loaded; ``str()`` is a one-line explanation."""


def load_app(spec: str, *, factory: bool = False, app_dir: str | None = None) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AppLoadError(f"{spec!r} is not MODULE:APP (e.g. 'myproject.main:app')")
    directory = app_dir if app_dir is not None else os.getcwd()
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppLoadError(
                f"module {module_name!r} not found (looked in {directory} and sys.path)"
            ) from None
        raise AppLoadError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    except Exception as exc:
        raise AppLoadError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    if factory:
        if not callable(target):
            raise AppLoadError(f"{spec} is not callable, so it cannot be an app factory")
        try:
            target = target()
        except Exception as exc:
            raise AppLoadError(
                f"the app factory {spec} raised {type(exc).__name__}: {exc}"
            ) from None
    if not is_asgi_app(target):
        hint = " (it looks like a factory: pass --factory)" if _looks_like_factory(target) else ""
        raise AppLoadError(f"{spec} is a {type(target).__name__}, not an ASGI app{hint}")
    return target


def is_asgi_app(obj: Any) -> bool:
    if inspect.isclass(obj):
        return False
    if inspect.iscoroutinefunction(obj):
        return _takes_three(obj)
    call = getattr(obj, "__call__", None)  # noqa: B004 - an instance's __call__ is what ASGI calls
    return call is not None and inspect.iscoroutinefunction(call) and _takes_three(call)


def _takes_three(func: Any) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return any(p.kind == p.VAR_POSITIONAL for p in positional) or len(positional) == 3


def _looks_like_factory(obj: Any) -> bool:
    if not callable(obj) or inspect.isclass(obj):
        return False
    try:
        return not any(
            p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            for p in inspect.signature(obj).parameters.values()
        )
    except (TypeError, ValueError):
        return False

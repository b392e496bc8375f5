"""Renderers by name. A user passes a name from :data:`RENDERERS` or a :class:`Renderer` subclass.

Like uvicorn's ``config.py``, names map to ``"module:attr"`` strings resolved on first use, so
asking for the text tree never imports the HTML renderer.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

from fastprof.model import CallTree
from fastprof.renderers.base import Renderer

RendererName = Literal["text", "speedscope", "collapsed", "html", "svg"]

RENDERERS: dict[str, str] = {
    "text": "fastprof.renderers.text:TextRenderer",
    "speedscope": "fastprof.renderers.speedscope:SpeedscopeRenderer",
    "collapsed": "fastprof.renderers.collapsed:CollapsedRenderer",
    "html": "fastprof.renderers.html:HTMLRenderer",
    "svg": "fastprof.renderers.svg:SVGRenderer",
}

__all__ = ["RENDERERS", "Renderer", "RendererName", "render", "renderer_class"]


def renderer_class(spec: str | type[Renderer]) -> type[Renderer]:
    """Resolve a renderer name or class; a bad name raises ValueError listing the valid ones."""
    if isinstance(spec, type):
        if not issubclass(spec, Renderer):
            raise ValueError(f"{spec.__qualname__} is not a fastprof Renderer subclass")
        return spec
    target = RENDERERS.get(spec) if isinstance(spec, str) else None
    if target is None:
        raise ValueError(
            f"format={spec!r} is not a known renderer; use one of {', '.join(sorted(RENDERERS))} "
            "or a Renderer subclass"
        )
    module_name, _, attr = target.partition(":")
    cls: Any = getattr(importlib.import_module(module_name), attr)
    return cls  # type: ignore[no-any-return]


def render(tree: CallTree, fmt: str | type[Renderer], *, title: str = "", **options: Any) -> str:
    """Render ``tree`` in format ``fmt``; ``options`` go to that renderer's constructor."""
    return renderer_class(fmt)(**options).render(tree, title=title)

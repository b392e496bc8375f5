"""Live Python frames and profiler frame identifiers turned into ``FrameKey`` tuples."""

from __future__ import annotations

import sys
from types import CodeType, FrameType

from fastprof.model import FrameKey


def code_key(code: CodeType) -> FrameKey:
    return (code.co_name, code.co_filename, code.co_firstlineno)


def stack_below(anchor: FrameType | None, start: FrameType | None = None) -> list[FrameKey]:
    """The frames between ``anchor`` (excluded) and ``start`` (included), outermost first.

    ``start`` defaults to the caller. Without ``anchor`` (or when it is not on the stack) the
    whole stack is returned.
    """
    frame: FrameType | None = start if start is not None else sys._getframe(1)
    keys: list[FrameKey] = []
    while frame is not None and frame is not anchor:
        keys.append(code_key(frame.f_code))
        frame = frame.f_back
    keys.reverse()
    return keys


def parse_identifier(identifier: str) -> FrameKey:
    """pyinstrument's ``"function\\x00file\\x00line"`` (attributes after ``\\x01`` dropped)."""
    identifier = identifier.partition("\x01")[0]
    function, _, rest = identifier.partition("\x00")
    file, _, line = rest.partition("\x00")
    try:
        return (function, file, int(line))
    except ValueError:
        return (function, file, 0)

"""The one value type every detector produces: a :class:`Finding`.

A finding says what is wrong (``kind``, a stable identifier, and ``title``), how bad
(``severity``), where (``route`` - ``"GET /users/{user_id}"``, or None for the whole app - and
``location``, the line of user code responsible), the ``evidence`` measured, and ``advice``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import Any, Literal, TypedDict

from fastprof.model import is_library_file

Severity = Literal["high", "medium", "low"]
SEVERITIES: tuple[Severity, ...] = ("high", "medium", "low")
SEVERITY_RANK: dict[str, int] = {"high": 3, "medium": 2, "low": 1}

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class LocationDict(TypedDict):
    file: str
    line: int
    function: str


class FindingDict(TypedDict):
    kind: str
    severity: Severity
    route: str | None
    title: str
    evidence: dict[str, Any]
    location: LocationDict | None
    advice: str


@dataclass(frozen=True, slots=True)
class Location:
    """A line of code: where a finding points."""

    file: str
    line: int
    function: str

    def to_dict(self) -> LocationDict:
        return {"file": self.file, "line": self.line, "function": self.function}

    @classmethod
    def of_frame(cls, frame: FrameType) -> Location:
        return cls(frame.f_code.co_filename, frame.f_lineno or 0, frame.f_code.co_name)

    def __str__(self) -> str:
        return f"{self.file}:{self.line} in {self.function}"


def is_user_file(file: str) -> bool:
    """The user's own code: not the standard library, not installed packages, not fastprof."""
    return not is_library_file(file) and not file.startswith(_PACKAGE_DIR)


def user_frame(frame: FrameType | None = None) -> FrameType | None:
    """The innermost frame of user code on the stack (from ``frame``, default the caller's)."""
    current: FrameType | None = frame if frame is not None else sys._getframe(1)
    while current is not None:
        if is_user_file(current.f_code.co_filename):
            return current
        current = current.f_back
    return None


def user_location(frame: FrameType | None = None) -> Location | None:
    found = user_frame(frame if frame is not None else sys._getframe(1))
    return Location.of_frame(found) if found is not None else None


@dataclass(frozen=True, slots=True)
class Finding:
    """One diagnosed problem, with its evidence and the fix."""

    kind: str
    severity: Severity
    title: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    location: Location | None = None
    advice: str = ""
    route: str | None = None

    def __post_init__(self) -> None:
        if self.severity not in SEVERITY_RANK:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def on_route(self, route: str | None) -> Finding:
        return replace(self, route=route)

    @property
    def key(self) -> tuple[str, str | None, str | None, int | None]:
        """What makes two findings the same problem (for de-duplication across requests)."""
        loc = self.location
        return (self.kind, self.route, loc.file if loc else None, loc.line if loc else None)

    def to_dict(self) -> FindingDict:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "route": self.route,
            "title": self.title,
            "evidence": dict(self.evidence),
            "location": self.location.to_dict() if self.location else None,
            "advice": self.advice,
        }

    @classmethod
    def from_dict(cls, data: FindingDict) -> Finding:
        loc = data.get("location")
        return cls(
            kind=data["kind"],
            severity=data["severity"],
            title=data["title"],
            evidence=dict(data.get("evidence") or {}),
            location=Location(loc["file"], loc["line"], loc["function"]) if loc else None,
            advice=data.get("advice", ""),
            route=data.get("route"),
        )

"""The labelled corpus: small endpoints that do (positives) or do not (look-alike negatives)
show each problem, across drivers. ``test_corpus.py`` serves each module's app through
``FastprofMiddleware(detect=True)``, calls every case, and scores the detectors.

A corpus module defines ``build() -> FastAPI`` (it may need services: then ``SERVICE =
("postgres", "127.0.0.1", 5432)``) and ``CASES``: a list of :class:`Case`. A positive's
``line`` is found by a marker comment on the responsible user line: ``# expect: <kind>``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType


@dataclass(frozen=True)
class Case:
    """One request to the corpus app and what the detectors should say about it."""

    path: str
    #: finding kinds expected on this route (empty: a negative - nothing may be reported)
    kinds: frozenset[str] = frozenset()
    method: str = "GET"
    #: for event_loop_blocking: "cpu" or "wait", the right classification
    blocking: str | None = None
    #: kinds this case is not scored on (a case about N+1 may also be a duplicate_query)
    ignore: frozenset[str] = field(default_factory=frozenset)
    #: how many times to call it (some detectors need repeats)
    repeat: int = 1
    json: object | None = None
    #: how many of the ``repeat`` calls are in flight at once (saturation needs a crowd)
    concurrency: int = 1


def expected_lines(module: ModuleType) -> dict[str, list[int]]:
    """``kind -> [line numbers]`` of ``# expect: kind`` markers in the module's source."""
    found: dict[str, list[int]] = {}
    source = Path(inspect.getfile(module)).read_text().splitlines()
    for number, text in enumerate(source, start=1):
        if "# expect:" in text:
            for kind in text.split("# expect:", 1)[1].split(","):
                found.setdefault(kind.strip(), []).append(number)
    return found

"""The contract every detector implements.

A detector is created once per middleware (or ``profile()``/pytest guard). ``start()`` installs
what it needs (a watchdog thread, query hooks) and ``stop()`` removes all of it; both are
counted, so two middlewares sharing a hook install it once. While a request runs, hooks write
raw facts onto its :class:`~fastprof.record.RequestState` (queries, connections, loop stalls);
``finish(state)`` runs when the request ends, on the request's own context, and turns those
facts into :class:`~fastprof.findings.Finding` values. A finding raised outside ``finish`` (a
watchdog noticing a stall) is appended to ``state.findings`` directly.
"""

from __future__ import annotations

from abc import ABC
from typing import Any, ClassVar

from fastprof.findings import Finding
from fastprof.record import RequestState


class Detector(ABC):
    """A source of findings. Subclass, set ``kind``, register it in ``DETECTORS``."""

    kind: ClassVar[str]
    #: Query capture hooks this detector needs (names from fastprof.queries.HOOKS).
    needs_queries: ClassVar[bool] = False
    #: The middleware fingerprints GET response bodies for this detector: ``finish`` then
    #: finds ``state.facts["response_digest"]`` (hex blake2b-128 of the body),
    #: ``["duration"]`` (seconds) and ``["endpoint"]`` (the routed endpoint, or None).
    wants_body: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        if options:
            raise ValueError(
                f"{type(self).__name__} takes no option(s) {', '.join(sorted(options))}"
            )

    def start(self) -> None:  # noqa: B027
        """Install hooks. Called once before the first request it watches."""

    def stop(self) -> None:  # noqa: B027
        """Remove everything ``start`` installed."""

    def begin(self, state: RequestState) -> None:  # noqa: B027
        """A request starts (on its own task and context). Override only if needed: the
        middleware calls it only on detectors that do, on every request."""

    def finish(self, state: RequestState) -> list[Finding]:
        """Findings about the request that just ended (route already set on ``state``)."""
        return []

    def app_findings(self, app: Any) -> list[Finding]:
        """Findings about the app as a whole (route None), computed once at startup."""
        return []

"""fastprof: profiling and diagnostics for FastAPI and other ASGI apps."""

from __future__ import annotations

from fastprof.config import ConfigError
from fastprof.findings import Finding, Location
from fastprof.guard import FastprofAssertion, guard
from fastprof.middleware import FastprofMiddleware
from fastprof.model import CallTree, Node
from fastprof.profile import ProfileResult, profile
from fastprof.record import ProfileRecord, RequestRecord
from fastprof.store import ProfileStore

__version__ = "0.1.0"

__all__ = [
    "CallTree",
    "ConfigError",
    "FastprofAssertion",
    "FastprofMiddleware",
    "Finding",
    "Location",
    "Node",
    "ProfileRecord",
    "ProfileResult",
    "ProfileStore",
    "RequestRecord",
    "guard",
    "profile",
]

"""slow_serialization: a big JSON response encoded on the slow path.

What is timed, while the detector is started (hooks installed once, however many detectors):

* FastAPI's ``serialize_response`` when it does **not** take the Pydantic-to-JSON-bytes path
  (no declared return type / response_model, so ``jsonable_encoder`` runs; or an older FastAPI;
  or a custom ``response_class``), plus the ``JSONResponse.render`` (stdlib ``json.dumps``) that
  follows it. Reported at the endpoint's ``return`` statement.
* ``JSONResponse(content=...)`` built by user code: its ``render`` (stdlib ``json.dumps``).
* ``json.dumps`` called by user code (``Response(json.dumps(data))``, a cache write).

Those two are reported at the user line that made the call. An encode is a finding when its
output is at least ``min_bytes`` and it took at least ``threshold_ms``. For the finding,
the suggested path (Pydantic's JSON serialiser on current FastAPI, orjson on older) is timed on
the very payload, off the request: at ``finish``, on about ``sample_bytes`` of it, at most
once per route every ``remeasure_s`` seconds (other requests reuse the ratio).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import os
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from types import FrameType
from typing import Any, ClassVar

from fastprof._context import current_request
from fastprof.advice import advice, fastapi_serialises_with_pydantic, installed
from fastprof.detectors.base import Detector
from fastprof.findings import Finding, Location, Severity, is_user_file
from fastprof.record import RequestState

_RECORDS = "slow_serialization"
_PENDING = "slow_serialization.pending"
# Frames past which a json.dumps/render is the framework's own (e.g. /openapi.json), not user code.
_BOUNDARIES = tuple(
    os.sep + os.path.join(*parts)
    for parts in (
        ("starlette", "routing.py"),
        ("fastapi", "routing.py"),
        ("starlette", "applications.py"),
        ("fastapi", "applications.py"),
        ("starlette", "middleware", "errors.py"),
    )
)


@dataclass(slots=True, eq=False)
class _Encode:
    """One slow-path encode seen during a request."""

    via: str  # "fastapi" | "JSONResponse" | "json.dumps"
    seconds: float
    nbytes: int = 0
    model: bool = False
    rendered: bool = False
    on_loop: bool = True
    location: Location | None = None
    endpoint: Any = None
    #: a reference to what was encoded, kept only for big encodes until the request ends
    payload: Any = None


class _Hooks:
    """The patched functions, installed while at least one detector is started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._floors: list[int] = []
        self._saved: list[tuple[Any, str, Any]] = []
        #: records smaller than this keep neither their payload nor a location
        self.floor = 0
        self.render_code: Any = None

    @property
    def installed(self) -> bool:
        return bool(self._floors)

    def install(self, floor: int) -> None:
        with self._lock:
            self._floors.append(floor)
            self.floor = min(self._floors)
            if len(self._floors) == 1:
                self._patch()

    def uninstall(self, floor: int) -> None:
        with self._lock:
            if floor not in self._floors:
                return
            self._floors.remove(floor)
            self.floor = min(self._floors, default=0)
            if not self._floors:
                for owner, name, original in reversed(self._saved):
                    setattr(owner, name, original)
                self._saved.clear()

    def _replace(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = getattr(owner, name)
        self._saved.append((owner, name, original))
        setattr(owner, name, make(original))

    def _patch(self) -> None:
        from starlette.responses import JSONResponse

        self.render_code = JSONResponse.render.__code__
        self._replace(json, "dumps", _wrap_dumps)
        self._replace(JSONResponse, "render", _wrap_render)
        try:
            import fastapi.routing
        except ImportError:  # a Starlette app: nothing FastAPI-specific to time
            return
        if inspect.iscoroutinefunction(getattr(fastapi.routing, "serialize_response", None)):
            self._replace(fastapi.routing, "serialize_response", _wrap_serialize_response)


HOOKS = _Hooks()


def _on_loop() -> bool:
    return asyncio._get_running_loop() is not None


def _user_site(frame: FrameType | None) -> Location | None:
    """The innermost user line on the stack, unless the framework's dispatch comes first."""
    depth = 0
    while frame is not None and depth < 64:
        file = frame.f_code.co_filename
        if is_user_file(file):
            return Location.of_frame(frame)
        if file.endswith(_BOUNDARIES):
            return None
        frame = frame.f_back
        depth += 1
    return None


def _note(state: RequestState, via: str, seconds: float, nbytes: int, payload: Any) -> None:
    if nbytes < HOOKS.floor:
        return
    location = _user_site(sys._getframe(2))
    if location is None:
        return
    record = _Encode(via, seconds, nbytes, on_loop=_on_loop(), location=location)
    record.payload = payload
    state.facts.setdefault(_RECORDS, []).append(record)


def _wrap_dumps(original: Callable[..., str]) -> Callable[..., str]:
    def dumps(obj: Any, *args: Any, **kwargs: Any) -> str:
        state = current_request.get()
        if state is None or sys._getframe(1).f_code is HOOKS.render_code:
            return original(obj, *args, **kwargs)
        started = time.perf_counter()
        out = original(obj, *args, **kwargs)
        _note(state, "json.dumps", time.perf_counter() - started, len(out), obj)
        return out

    dumps.__wrapped__ = original  # type: ignore[attr-defined]
    return dumps


def _wrap_render(original: Callable[[Any, Any], bytes]) -> Callable[[Any, Any], bytes]:
    def render(self: Any, content: Any) -> bytes:
        state = current_request.get()
        if state is None:
            return original(self, content)
        started = time.perf_counter()
        out = original(self, content)
        seconds = time.perf_counter() - started
        pending: _Encode | None = state.facts.pop(_PENDING, None)
        if pending is not None:  # FastAPI rendering what the endpoint returned
            pending.seconds += seconds
            pending.nbytes = len(out)
            pending.rendered = True
            if pending.nbytes < HOOKS.floor:
                pending.payload = None
        else:
            _note(state, "JSONResponse", seconds, len(out), content)
        return out

    render.__wrapped__ = original  # type: ignore[attr-defined]
    return render


def _wrap_serialize_response(original: Callable[..., Any]) -> Callable[..., Any]:
    async def serialize_response(*args: Any, **kwargs: Any) -> Any:
        state = current_request.get()
        if state is None or kwargs.get("dump_json"):  # dump_json: Pydantic straight to bytes
            return await original(*args, **kwargs)
        # The caller is FastAPI's request handler; ``dependant`` is in its closure.
        caller = sys._getframe(1)
        dependant = caller.f_locals.get("dependant") if caller.f_code.co_name == "app" else None
        started = time.perf_counter()
        out = await original(*args, **kwargs)
        record = _Encode(
            "fastapi",
            time.perf_counter() - started,
            model=kwargs.get("field") is not None,
            endpoint=getattr(dependant, "call", None),
            payload=kwargs.get("response_content"),
        )
        state.facts.setdefault(_RECORDS, []).append(record)
        state.facts[_PENDING] = record
        return out

    serialize_response.__wrapped__ = original  # type: ignore[attr-defined]
    return serialize_response


@lru_cache(maxsize=256)
def _return_line(code: Any) -> int | None:
    """The line of the function's only ``return <value>`` (None: several, none, or no source)."""
    try:
        lines, start = inspect.getsourcelines(code)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return None
    function = tree.body[0] if tree.body else None
    if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    found: list[int] = []
    todo: list[ast.AST] = list(function.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Return) and node.value is not None:
            found.append(node.lineno)
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            todo.extend(ast.iter_child_nodes(node))
    return start + found[0] - 1 if len(found) == 1 else None


def _endpoint_site(endpoint: Any) -> Location | None:
    code = getattr(inspect.unwrap(endpoint), "__code__", None) if endpoint is not None else None
    if code is None or not is_user_file(code.co_filename):
        return None
    line = _return_line(code)
    return Location(code.co_filename, line or code.co_firstlineno, code.co_name)


def _sample(value: Any, nbytes: float, budget: int, depth: int = 0) -> tuple[Any, float]:
    """Part of ``value`` worth about ``budget`` bytes of JSON, and the share of it that it is.

    A list is cut (its items taken as alike; one item too big is cut inside in turn), a dict in
    its longest list, down to four levels. ``nbytes``: the JSON size of ``value``.
    """
    if nbytes <= budget or depth > 3:
        return value, 1.0
    if isinstance(value, list | tuple) and value:
        each = nbytes / len(value)
        keep = max(1, int(budget // each))
        if keep > 1 or each <= budget:
            return list(value[:keep]), keep / len(value)
        inner, share = _sample(value[0], each, budget, depth + 1)
        return [inner], share / len(value)
    if isinstance(value, dict):
        lists = [k for k, v in value.items() if isinstance(v, list | tuple) and v]
        if lists:
            key = max(lists, key=lambda k: len(value[k]))
            inner, share = _sample(value[key], nbytes, budget, depth + 1)
            return {**value, key: inner}, share
    return value, 1.0


@dataclass(frozen=True, slots=True)
class _Measured:
    suggested: str
    #: slow-path seconds / suggested-path seconds, on the payload it was measured on
    speedup: float
    at: float
    #: what was re-encoded: "the whole payload", "126 KB of 2.4 MB"
    measured_on: str


class SlowSerializationDetector(Detector):
    """Big JSON responses encoded through jsonable_encoder or the stdlib json module.

    :param threshold_ms: report an encode that took at least this long (default 5 ms).
    :param min_bytes: ... and whose JSON output is at least this big (default 32 KiB).
    :param sample_bytes: the suggested path is timed on about this much of the payload.
    :param remeasure_s: time the suggested path at most once per route in this period.
    """

    kind: ClassVar[str] = "slow_serialization"

    def __init__(
        self,
        *,
        threshold_ms: float = 5.0,
        min_bytes: int = 32 * 1024,
        sample_bytes: int = 128 * 1024,
        remeasure_s: float = 60.0,
    ) -> None:
        super().__init__()
        if threshold_ms < 0 or min_bytes < 0 or sample_bytes < 1 or remeasure_s < 0:
            raise ValueError("slow_serialization options must be non-negative (sample_bytes >= 1)")
        self.threshold = threshold_ms / 1000
        self.min_bytes = min_bytes
        self.sample_bytes = sample_bytes
        self.remeasure_s = remeasure_s
        self.clock: Callable[[], float] = time.monotonic
        self._measured: dict[tuple[str, str], _Measured] = {}
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            HOOKS.install(self.min_bytes)

    def stop(self) -> None:
        if self._started:
            self._started = False
            HOOKS.uninstall(self.min_bytes)

    def finish(self, state: RequestState) -> list[Finding]:
        records: list[_Encode] | None = state.facts.pop(_RECORDS, None)
        state.facts.pop(_PENDING, None)
        if not records:
            return []
        found: dict[Location, Finding] = {}
        for record in records:
            nbytes = record.nbytes
            if record.via == "fastapi" and not record.rendered:
                nbytes = int(state.facts.get("response_bytes", 0))
            if nbytes < self.min_bytes or record.seconds < self.threshold:
                continue
            location = record.location or _endpoint_site(record.endpoint)
            if location is None or location in found:
                continue
            found[location] = self._finding(state, record, nbytes, location)
            record.payload = None
        return list(found.values())

    def _finding(
        self, state: RequestState, record: _Encode, nbytes: int, location: Location
    ) -> Finding:
        encode_ms = record.seconds * 1000
        encoder = _encoder(record)
        facts: dict[str, Any] = {
            "via": record.via,
            "model": record.model,
            "encoder": encoder,
            "encode_ms": round(encode_ms, 2),
            "fastapi": installed("fastapi"),
        }
        measured = self._suggested(state.route, record, nbytes)
        if measured is not None:
            facts["suggested"] = measured.suggested
            facts["suggested_ms"] = round(encode_ms / measured.speedup, 2)
        evidence: dict[str, Any] = {
            "encoder": encoder,
            "response_bytes": nbytes,
            "encode_ms": round(encode_ms, 2),
            "on_event_loop": record.on_loop,
        }
        if measured is not None:
            evidence.update(
                suggested=measured.suggested,
                suggested_ms=facts["suggested_ms"],
                speedup=round(measured.speedup, 1),
                suggested_measured_on=measured.measured_on,
            )
        if record.via == "fastapi":
            evidence["response_model"] = record.model
        if record.endpoint is not None:
            evidence["endpoint"] = getattr(record.endpoint, "__qualname__", repr(record.endpoint))
        evidence["fastapi"] = facts["fastapi"]
        severity: Severity = "high" if encode_ms >= 50 else "medium" if encode_ms >= 10 else "low"
        return Finding(
            kind=self.kind,
            severity=severity,
            title=f"{encoder} took {encode_ms:.0f} ms to encode {_size(nbytes)} of JSON",
            evidence=evidence,
            location=location,
            advice=advice(self.kind, **{k: v for k, v in facts.items() if v is not None}),
            route=state.route or None,
        )

    def _suggested(self, route: str, record: _Encode, nbytes: int) -> _Measured | None:
        """Time the suggested path on (a sample of) this payload, or reuse a recent ratio."""
        key = (route, record.via)
        now = self.clock()
        cached = self._measured.get(key)
        if cached is not None and (now - cached.at < self.remeasure_s or record.payload is None):
            return replace(cached, measured_on=f"an earlier request ({cached.measured_on})")
        if record.payload is None:
            return None
        sample, fraction = _sample(record.payload, nbytes, self.sample_bytes)
        timed = _time_suggested(sample)
        if timed is None:
            return None
        name, seconds = timed
        measured_on = "the whole payload"
        if fraction < 1:
            measured_on = f"{_size(round(nbytes * fraction))} of {_size(nbytes)}"
        measured = _Measured(name, record.seconds / max(seconds / fraction, 1e-7), now, measured_on)
        self._measured[key] = measured
        return measured


def _time_suggested(sample: Any) -> tuple[str, float] | None:
    """Encode ``sample`` the way the advice suggests; (what, seconds) or None if it can't."""
    tries: list[tuple[str, Callable[[Any], Any] | None]]
    pydantic = _pydantic_to_json()
    orjson_dumps = _orjson_dumps()
    if fastapi_serialises_with_pydantic():
        tries = [("Pydantic (pydantic_core.to_json)", pydantic), ("orjson", orjson_dumps)]
    else:
        tries = [("orjson", orjson_dumps), ("Pydantic (pydantic_core.to_json)", pydantic)]
    for name, encode in tries:
        if encode is None:
            continue
        best = float("inf")
        try:
            for _ in range(3):
                started = time.perf_counter()
                encode(sample)
                best = min(best, time.perf_counter() - started)
        except Exception:  # orjson's JSONEncodeError, PydanticSerializationError: try the next
            continue
        return name, best
    return None


def _pydantic_to_json() -> Callable[[Any], Any] | None:
    try:
        from pydantic_core import to_json
    except ImportError:
        return None
    return to_json


def _orjson_dumps() -> Callable[[Any], Any] | None:
    import orjson

    option = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
    return lambda value: orjson.dumps(value, option=option)


def _encoder(record: _Encode) -> str:
    if record.via == "fastapi":
        step = "response_model serialisation" if record.model else "jsonable_encoder"
        return f"{step} + json.dumps" if record.rendered else step
    if record.via == "JSONResponse":
        return "JSONResponse -> json.dumps"
    return "json.dumps"


def _size(nbytes: int) -> str:
    if nbytes >= 1024 * 1024:
        return f"{nbytes / (1024 * 1024):.1f} MB"
    return f"{nbytes / 1024:.0f} KB"

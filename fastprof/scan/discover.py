"""Which routes a scan can call: the app's OpenAPI schema plus the scenario files.

A route is called when a scenario describes it, or when it needs nothing a scan cannot make
up: a ``GET`` whose path parameters all have an example in the schema (FastAPI:
``Path(examples=[7])``), with no required query/header/cookie parameters and no security
requirement. Everything else is listed as skipped, with the reason and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fastprof.load.client import RequestSpec
from fastprof.scan.scenario import ScenarioRequest

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


@dataclass
class Target:
    """A route to load, with the requests that exercise it."""

    key: str
    specs: list[RequestSpec]
    source: str  # "openapi" or "scenario"


@dataclass
class Discovery:
    targets: list[Target] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def discover(
    openapi: Mapping[str, Any] | None, scenario_requests: Sequence[ScenarioRequest]
) -> Discovery:
    by_route: dict[str, list[ScenarioRequest]] = {}
    for request in scenario_requests:
        by_route.setdefault(request.key, []).append(request)
    found = Discovery()
    seen: set[str] = set()
    paths = (openapi or {}).get("paths", {}) if isinstance(openapi, Mapping) else {}
    global_security = (openapi or {}).get("security") if isinstance(openapi, Mapping) else None
    for path, operations in paths.items():
        if not isinstance(operations, Mapping):
            continue
        shared = operations.get("parameters", [])
        for method in _METHODS:
            operation = operations.get(method)
            if not isinstance(operation, Mapping):
                continue
            key = f"{method.upper()} {path}"
            seen.add(key)
            if key in by_route:
                found.targets.append(Target(key, [r.spec() for r in by_route[key]], "scenario"))
                continue
            parameters = [
                *(shared if isinstance(shared, list) else []),
                *operation.get("parameters", []),
            ]
            filled = _fill_examples(path, parameters)
            reason = _why_not(method, filled, operation, shared, global_security)
            if reason:
                found.skipped.append((key, reason))
            else:
                found.targets.append(Target(key, [RequestSpec("GET", filled, name=key)], "openapi"))
    for key, requests in by_route.items():
        if key not in seen:  # not in the schema (include_in_schema=False, or no schema)
            found.targets.append(Target(key, [r.spec() for r in requests], "scenario"))
    return found


def _fill_examples(path: str, parameters: list[Any]) -> str:
    """``path`` with each ``{param}`` that has an example in the schema filled in."""
    examples: dict[str, Any] = {}
    for param in parameters:
        if not isinstance(param, Mapping) or param.get("in") != "path":
            continue
        schema = param.get("schema")
        holders: list[Mapping[str, Any]] = [param]
        if isinstance(schema, Mapping):
            holders.append(schema)
        for holder in holders:
            if "example" in holder:
                examples[param.get("name", "")] = holder["example"]
                break
            listed = holder.get("examples")
            if isinstance(listed, list) and listed:
                examples[param.get("name", "")] = listed[0]
                break
            if isinstance(listed, Mapping) and listed:
                first = next(iter(listed.values()))
                if isinstance(first, Mapping) and "value" in first:
                    examples[param.get("name", "")] = first["value"]
                    break

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return quote(str(examples[name]), safe="") if name in examples else match.group(0)

    return _PARAM.sub(fill, path)


def _why_not(
    method: str,
    path: str,
    operation: Mapping[str, Any],
    shared: Any,
    global_security: Any,
) -> str | None:
    if method != "get":
        return (
            f"{method.upper()} may change data or need a body: describe it in a scenario "
            "([[request]] with method, path and json)"
        )
    names = _PARAM.findall(path)
    if names:
        return f"needs path parameter(s) {', '.join(names)}: add params = {{ ... }} in a scenario"
    parameters = [*(shared if isinstance(shared, list) else []), *operation.get("parameters", [])]
    required = [
        p
        for p in parameters
        if isinstance(p, Mapping) and p.get("required") and p.get("in") != "path"
    ]
    if required:
        described = ", ".join(f"{p.get('name')} ({p.get('in')})" for p in required)
        return f"needs required parameter(s) {described}: give them in a scenario"
    body = operation.get("requestBody")
    if isinstance(body, Mapping) and body.get("required"):
        return "needs a request body: add json = { ... } in a scenario"
    security = operation.get("security", global_security)
    if security:
        return "needs authentication: add headers = { Authorization = ... } in a scenario"
    return None

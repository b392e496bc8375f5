"""Scenario files: which requests to send, with what parameters, bodies and weights.

```toml
[settings]                       # optional; command-line options win
concurrency = 8
duration = 3.0                   # seconds per route
# rate = 100                     # fixed requests/s instead of closed-loop concurrency

[[request]]
name = "author by id"            # optional label
method = "GET"                    # default GET
path = "/authors/{author_id}"     # a route template of the app
params = { author_id = 7 }        # fills {author_id}
query = { limit = 10 }            # optional
headers = { Authorization = "Bearer demo" }
json = { title = "x" }            # optional JSON body
weight = 1.0                      # relative frequency among requests of the same route
expect_status = 200               # another status counts as an error
```

Errors name the file, the line and what is wrong: ``scenarios/x.toml:12: [[request]] #3:
'params' must be a table like { author_id = 7 }``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from fastprof.load.client import RequestSpec

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")
_REQUEST_KEYS = {
    "name",
    "method",
    "path",
    "params",
    "query",
    "headers",
    "json",
    "weight",
    "expect_status",
}
_SETTINGS_KEYS = {"concurrency", "duration", "rate"}


class ScenarioError(ValueError):
    """A scenario file is malformed; the message names file, line and problem."""


@dataclass(frozen=True)
class ScenarioRequest:
    method: str
    path: str
    name: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    query: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    weight: float = 1.0
    expect_status: int | None = None
    line: int = 0

    @property
    def key(self) -> str:
        """The route key, ``"GET /authors/{author_id}"``."""
        return f"{self.method} {self.path}"

    def spec(self) -> RequestSpec:
        def fill(match: re.Match[str]) -> str:
            return quote(str(self.params[match.group(1)]), safe="")

        target = _PARAM.sub(fill, self.path)
        if self.query:
            target += "?" + urlencode(self.query, doseq=True)
        headers = [(k, str(v)) for k, v in self.headers.items()]
        body = None
        if self.json is not None:
            body = orjson.dumps(self.json)
            if not any(k.lower() == "content-type" for k, _ in headers):
                headers.append(("content-type", "application/json"))
        return RequestSpec(
            method=self.method,
            path=target,
            headers=tuple(headers),
            body=body,
            weight=self.weight,
            expect_status=self.expect_status,
            name=self.key,
        )


@dataclass(frozen=True)
class Scenario:
    path: str
    requests: list[ScenarioRequest]
    concurrency: int | None = None
    duration: float | None = None
    rate: float | None = None

    def by_route(self) -> dict[str, list[ScenarioRequest]]:
        routes: dict[str, list[ScenarioRequest]] = {}
        for request in self.requests:
            routes.setdefault(request.key, []).append(request)
        return routes


def load_scenario(path: str | Path) -> Scenario:
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{name}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{name}: cannot be read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        where = f"{name}:{line.group(1)}" if line else name
        raise ScenarioError(f"{where}: not valid TOML: {exc}") from None
    return parse_scenario(data, name, text)


def parse_scenario(data: Mapping[str, Any], name: str, text: str = "") -> Scenario:
    request_lines = [
        number
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip().startswith("[[request]]")
    ]
    unknown = sorted(set(data) - {"settings", "request"})
    if unknown:
        raise ScenarioError(
            f"{name}:{_line_of(text, unknown[0])}: unknown section {unknown[0]!r}; "
            "a scenario has [settings] and [[request]] entries"
        )
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise ScenarioError(f"{name}: [settings] must be a table")
    bad = sorted(set(settings) - _SETTINGS_KEYS)
    if bad:
        raise ScenarioError(
            f"{name}:{_line_of(text, bad[0])}: unknown setting {bad[0]!r}; "
            f"use {', '.join(sorted(_SETTINGS_KEYS))}"
        )
    concurrency = settings.get("concurrency")
    if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
        raise ScenarioError(
            f"{name}:{_line_of(text, 'concurrency')}: concurrency must be an integer >= 1"
        )
    for key in ("duration", "rate"):
        value = settings.get(key)
        if value is not None and (not isinstance(value, int | float) or value <= 0):
            raise ScenarioError(f"{name}:{_line_of(text, key)}: {key} must be a number > 0")
    raw_requests = data.get("request", [])
    if not isinstance(raw_requests, list):
        raise ScenarioError(f"{name}: 'request' must be an array of tables: use [[request]]")
    requests = []
    for index, raw in enumerate(raw_requests):
        line = request_lines[index] if index < len(request_lines) else 0
        requests.append(_request(raw, f"{name}:{line}: [[request]] #{index + 1}", line))
    return Scenario(
        name,
        requests,
        concurrency=concurrency,
        duration=settings.get("duration"),
        rate=settings.get("rate"),
    )


def _request(raw: Any, where: str, line: int) -> ScenarioRequest:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: must be a table")
    unknown = sorted(set(raw) - _REQUEST_KEYS)
    if unknown:
        raise ScenarioError(
            f"{where}: unknown key {unknown[0]!r}; use {', '.join(sorted(_REQUEST_KEYS))}"
        )
    path = raw.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ScenarioError(f"{where}: 'path' is required and must start with '/', e.g. '/items'")
    method = raw.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise ScenarioError(f"{where}: method {method!r} is not one of {', '.join(METHODS)}")
    tables = {}
    for key, example in (
        ("params", "{ item_id = 7 }"),
        ("query", "{ limit = 10 }"),
        ("headers", '{ Authorization = "Bearer x" }'),
    ):
        value = raw.get(key, {})
        if not isinstance(value, dict):
            raise ScenarioError(f"{where}: {key!r} must be a table like {example}")
        tables[key] = value
    needed = _PARAM.findall(path)
    missing = [p for p in needed if p not in tables["params"]]
    if missing:
        raise ScenarioError(
            f"{where}: path {path} needs params {', '.join(missing)}: "
            f"add params = {{ {missing[0]} = ... }}"
        )
    extra = sorted(set(tables["params"]) - set(needed))
    if extra:
        raise ScenarioError(f"{where}: params {', '.join(extra)} do not appear in path {path}")
    weight = raw.get("weight", 1.0)
    if not isinstance(weight, int | float) or isinstance(weight, bool) or weight <= 0:
        raise ScenarioError(f"{where}: weight must be a number > 0")
    status = raw.get("expect_status")
    if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
        raise ScenarioError(f"{where}: expect_status must be an HTTP status code like 200")
    label = raw.get("name", "")
    if not isinstance(label, str):
        raise ScenarioError(f"{where}: name must be a string")
    return ScenarioRequest(
        method=method.upper(),
        path=path,
        name=label,
        params=tables["params"],
        query=tables["query"],
        headers={str(k): str(v) for k, v in tables["headers"].items()},
        json=raw.get("json"),
        weight=float(weight),
        expect_status=status,
        line=line,
    )


def _line_of(text: str, key: str) -> int | str:
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith((key, f"[{key}")):
            return number
    return "?"

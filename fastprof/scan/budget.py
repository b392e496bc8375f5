"""Per-route limits a scan must stay within (``fastprof scan --budget FILE``).

```toml
[default]                       # every route
p99_ms = 500
queries_per_request = 10
blocked_ms = 50

["GET /users/{user_id}"]        # one route (its key, quoted): overrides the default
p99_ms = 100
```
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from fastprof.scan.results import RouteResult, ScanResult

LIMITS = {
    "p99_ms": "p99 latency (ms)",
    "p90_ms": "p90 latency (ms)",
    "p50_ms": "p50 latency (ms)",
    "queries_per_request": "queries per request",
    "blocked_ms": "event-loop blocked time per request (ms)",
    "errors": "errors",
}


class BudgetError(ValueError):
    """A malformed budget file; the message names the file, the line and the problem."""


def load_budget(path: str) -> dict[str, dict[str, float]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BudgetError(f"{path}: no such file") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        raise BudgetError(
            f"{path}:{line.group(1) if line else '?'}: not valid TOML: {exc}"
        ) from None
    budget: dict[str, dict[str, float]] = {}
    for section, limits in data.items():
        where = f"{path}: [{section}]"
        if not isinstance(limits, dict):
            raise BudgetError(f"{where} must be a table of limits, e.g. p99_ms = 200")
        if section != "default" and not re.match(r"^[A-Z]+ /", section):
            raise BudgetError(
                f'{where} is neither [default] nor a route key like ["GET /users/{{user_id}}"]'
            )
        for name, value in limits.items():
            if name not in LIMITS:
                raise BudgetError(f"{where}: unknown limit {name!r}; use {', '.join(LIMITS)}")
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise BudgetError(f"{where}: {name} must be a number >= 0")
        budget[section] = {k: float(v) for k, v in limits.items()}
    return budget


def _value(route: RouteResult, limit: str) -> float:
    if limit.endswith("_ms") and limit[:-3] in ("p99", "p90", "p50"):
        return float(route["latency_ms"][limit[:-3]])  # type: ignore[literal-required]
    value: Any = route[limit]  # type: ignore[literal-required]
    return float(value)


def check_budget(result: ScanResult, budget: dict[str, dict[str, float]]) -> list[str]:
    """One line per limit a route exceeded."""
    broken = []
    default = budget.get("default", {})
    for route in result["routes"]:
        limits = {**default, **budget.get(route["route"], {})}
        for limit, allowed in limits.items():
            value = _value(route, limit)
            if value > allowed:
                broken.append(
                    f"{route['route']}: {LIMITS[limit]} is {value:g}, "
                    f"over the budget of {allowed:g}"
                )
    return broken

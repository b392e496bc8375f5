"""Validation of the middleware's options: bad configuration fails at startup, by name.

Every error names the parameter, what it got, and what is allowed, e.g.
``FastprofMiddleware: sample_rate=1.5 is out of range; use a number from 0.0 to 1.0``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastprof.backends import BACKENDS, Backend, backend_class
from fastprof.detectors import DETECTORS, Detector, make_detectors


class ConfigError(ValueError):
    """A middleware or profile() option has a value it cannot take."""


_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


@dataclass(frozen=True, slots=True)
class MiddlewareConfig:
    backend_class: type[Backend]
    path_filter: Callable[[str], bool] | None
    detectors: list[Detector]

    @classmethod
    def validate(cls, **options: Any) -> MiddlewareConfig:
        def fail(message: str) -> ConfigError:
            return ConfigError(f"FastprofMiddleware: {message}")

        backend = options["backend"] or "pyinstrument"
        try:
            resolved = backend_class(backend)
        except ValueError:
            raise fail(
                f"backend={backend!r} is not a backend; use one of "
                f"{', '.join(repr(n) for n in sorted(BACKENDS))} or a Backend subclass"
            ) from None
        except ImportError as exc:
            raise fail(f"backend={backend!r} cannot be loaded: {exc}") from None

        for name in ("interval", "continuous_interval"):
            value = options[name]
            if not _is_number(value) or not 0 < value <= 1:
                raise fail(
                    f"{name}={value!r} is not valid; use seconds between 0 and 1, e.g. 0.001"
                )

        rate = options["sample_rate"]
        if not _is_number(rate) or not 0.0 <= rate <= 1.0:
            raise fail(f"sample_rate={rate!r} is out of range; use a number from 0.0 to 1.0")

        slow = options["slow_ms"]
        if slow is not None and (not _is_number(slow) or slow < 0):
            raise fail(f"slow_ms={slow!r} is not valid; use None or a number of milliseconds >= 0")

        for name in ("trigger_header", "trigger_query"):
            value = options[name]
            if value is None:
                continue
            if not isinstance(value, str) or not _HEADER_NAME.match(value):
                raise fail(
                    f"{name}={value!r} is not valid; use None (off) or a name made of letters, "
                    "digits and -_. (e.g. 'x-fastprof')"
                )

        token = options["token"]
        if token is not None and (not isinstance(token, str) or len(token) < 8):
            raise fail(
                "token must be None or a string of at least 8 characters "
                f"(got {type(token).__name__}"
                f"{f' of length {len(token)}' if isinstance(token, str) else ''})"
            )

        for name in ("keep_errors", "timing", "enabled"):
            if not isinstance(options[name], bool):
                raise fail(f"{name}={options[name]!r} is not valid; use True or False")

        for name in ("on_request", "on_profile", "on_finding"):
            value = options[name]
            if value is not None and not callable(value):
                raise fail(f"{name}={value!r} is not callable; pass a function or None")

        max_profiles = options["max_profiles"]
        if not isinstance(max_profiles, int) or isinstance(max_profiles, bool) or max_profiles < 1:
            raise fail(f"max_profiles={max_profiles!r} is not valid; use an integer >= 1")
        cap = options["max_directory_bytes"]
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
            raise fail(f"max_directory_bytes={cap!r} is not valid; use a positive integer")
        if options["store"] is not None and options["directory"] is not None:
            raise fail("pass either store= or directory=, not both (a store has its own directory)")

        record_to = options["record_to"]
        if record_to is not None and not isinstance(record_to, str | os.PathLike):
            raise fail(f"record_to={record_to!r} is not valid; use None or a file path")
        headers = options["record_headers"]
        if isinstance(headers, str) or not all(isinstance(h, str) for h in headers):
            raise fail(
                f"record_headers={headers!r} is not valid; use a list of header names, "
                "e.g. ['content-type', 'accept']"
            )
        cap = options["record_body_bytes"]
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
            raise fail(f"record_body_bytes={cap!r} is not valid; use an integer >= 0")

        metrics = options["metrics"]
        if not isinstance(metrics, bool):
            from fastprof.metrics import PrometheusMetrics

            if not isinstance(metrics, PrometheusMetrics):
                raise fail(
                    f"metrics={metrics!r} is not valid; use True, False or a PrometheusMetrics"
                )
        elif metrics:
            try:
                import prometheus_client  # noqa: F401
            except ImportError:
                raise fail(
                    "metrics=True needs prometheus_client: pip install 'fastprof-asgi[metrics]'"
                ) from None
        path = options["metrics_path"]
        if path is not None and (not isinstance(path, str) or not path.startswith("/")):
            raise fail(f"metrics_path={path!r} is not valid; use None or a path like '/metrics'")

        include = _patterns("include", options["include"], fail)
        exclude = _patterns("exclude", options["exclude"], fail)
        return cls(resolved, _path_filter(include, exclude), _detectors(options, fail))


def _detectors(options: dict[str, Any], fail: Callable[[str], ConfigError]) -> list[Detector]:
    detect, per = options["detect"], options["detector_options"]
    if not isinstance(detect, bool) and (
        isinstance(detect, str) or not isinstance(detect, Sequence)
    ):
        raise fail(
            f"detect={detect!r} is not valid; use True (all), False, or a list of names from "
            f"{', '.join(sorted(DETECTORS))}"
        )
    if per is not None and not (
        isinstance(per, dict) and all(isinstance(v, dict) for v in per.values())
    ):
        raise fail(
            "detector_options must be a dict of detector name -> dict of options, "
            "e.g. {'event_loop_blocking': {'threshold_ms': 50}}"
        )
    unknown = sorted(set(per or {}) - set(DETECTORS))
    if unknown:
        raise fail(
            f"detector_options names unknown detector(s) {', '.join(unknown)}; "
            f"use {', '.join(sorted(DETECTORS))}"
        )
    try:
        return make_detectors(detect, per)
    except (ValueError, TypeError) as exc:
        raise fail(str(exc)) from None
    except ImportError as exc:
        raise fail(f"a detector cannot be loaded: {exc}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _patterns(name: str, value: Any, fail: Callable[[str], ConfigError]) -> list[re.Pattern[str]]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise fail(f"{name}={value!r} is not valid; use a list of glob patterns like ['/api/*']")
    compiled = []
    for pattern in value:
        if not isinstance(pattern, str) or not pattern.startswith(("/", "*")):
            raise fail(
                f"{name} pattern {pattern!r} is not valid; patterns are path globs starting "
                "with '/' or '*', e.g. '/health' or '/api/*'"
            )
        compiled.append(re.compile(fnmatch.translate(pattern)))
    return compiled


def _path_filter(
    include: Sequence[re.Pattern[str]], exclude: Sequence[re.Pattern[str]]
) -> Callable[[str], bool] | None:
    if not include and not exclude:
        return None

    def allowed(path: str) -> bool:
        if include and not any(p.match(path) for p in include):
            return False
        return not any(p.match(path) for p in exclude)

    return allowed

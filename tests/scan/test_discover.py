from __future__ import annotations

from typing import Any

from fastprof.scan.discover import discover
from fastprof.scan.scenario import ScenarioRequest

OPENAPI: dict[str, Any] = {
    "paths": {
        "/": {"get": {}},
        "/items/{item_id}": {"get": {"parameters": [{"name": "item_id", "in": "path"}]}},
        "/search": {"get": {"parameters": [{"name": "q", "in": "query", "required": True}]}},
        "/optional": {"get": {"parameters": [{"name": "q", "in": "query", "required": False}]}},
        "/items": {"post": {"requestBody": {"required": True}}},
        "/me": {"get": {"security": [{"bearer": []}]}},
    }
}


def test_calls_what_it_can_and_says_why_not_for_the_rest() -> None:
    found = discover(OPENAPI, [])
    assert [t.key for t in found.targets] == ["GET /", "GET /optional"]
    assert all(t.source == "openapi" for t in found.targets)
    reasons = dict(found.skipped)
    assert "needs path parameter(s) item_id" in reasons["GET /items/{item_id}"]
    assert "needs required parameter(s) q (query)" in reasons["GET /search"]
    assert "POST may change data" in reasons["POST /items"]
    assert "needs authentication" in reasons["GET /me"]


def test_scenarios_fill_the_gaps_and_add_hidden_routes() -> None:
    requests = [
        ScenarioRequest("GET", "/items/{item_id}", params={"item_id": 5}),
        ScenarioRequest("POST", "/items", json={"a": 1}),
        ScenarioRequest("GET", "/hidden"),
    ]
    found = discover(OPENAPI, requests)
    by_key = {t.key: t for t in found.targets}
    assert by_key["GET /items/{item_id}"].specs[0].path == "/items/5"
    assert by_key["POST /items"].source == "scenario"
    assert "GET /hidden" in by_key
    assert "GET /items/{item_id}" not in dict(found.skipped)


def test_no_schema_means_scenarios_only() -> None:
    found = discover(None, [ScenarioRequest("GET", "/x")])
    assert [t.key for t in found.targets] == ["GET /x"] and not found.skipped


def test_path_parameters_with_examples_are_filled() -> None:
    openapi: dict[str, Any] = {
        "paths": {
            "/a/{x}": {
                "get": {
                    "parameters": [
                        {"name": "x", "in": "path", "required": True, "schema": {"examples": [7]}}
                    ]
                }
            },
            "/b/{y}": {"get": {"parameters": [{"name": "y", "in": "path", "example": "a b"}]}},
            "/c/{z}": {"get": {"parameters": [{"name": "z", "in": "path"}]}},
        }
    }
    found = discover(openapi, [])
    paths = {t.key: t.specs[0].path for t in found.targets}
    assert paths == {"GET /a/{x}": "/a/7", "GET /b/{y}": "/b/a%20b"}
    assert "needs path parameter(s) z" in dict(found.skipped)["GET /c/{z}"]

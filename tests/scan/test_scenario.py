from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fastprof.scan.scenario import ScenarioError, load_scenario

GOOD = """
[settings]
concurrency = 4
duration = 2.5

[[request]]
name = "one author"
path = "/authors/{author_id}"
params = { author_id = 7 }
query = { limit = 3, tag = ["a", "b"] }
headers = { Authorization = "Bearer demo" }
expect_status = 200

[[request]]
method = "post"
path = "/books"
json = { title = "Dune" }
weight = 3
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return str(path)


def test_a_good_scenario(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, GOOD))
    assert (scenario.concurrency, scenario.duration, scenario.rate) == (4, 2.5, None)
    first, second = scenario.requests
    assert first.key == "GET /authors/{author_id}" and first.line == 6
    spec = first.spec()
    assert spec.path == "/authors/7?limit=3&tag=a&tag=b"
    assert ("Authorization", "Bearer demo") in spec.headers
    assert spec.expect_status == 200 and spec.name == "GET /authors/{author_id}"
    post = second.spec()
    assert post.method == "POST" and post.weight == 3.0
    assert orjson.loads(post.body or b"") == {"title": "Dune"}
    assert ("content-type", "application/json") in post.headers
    assert set(scenario.by_route()) == {"GET /authors/{author_id}", "POST /books"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[request]]\npath = 'x'\n", "s.toml:1: [[request]] #1: 'path' is required and must"),
        ("[[request]]\n", "s.toml:1: [[request]] #1: 'path' is required"),
        (
            "[[request]]\npath = '/a'\n\n[[request]]\npath = '/b/{id}'\n",
            "s.toml:4: [[request]] #2: path /b/{id} needs params id",
        ),
        ("[[request]]\npath = '/a'\nparams = 3\n", "'params' must be a table like { item_id = 7 }"),
        ("[[request]]\npath = '/a'\nparams = { x = 1 }\n", "params x do not appear in path /a"),
        ("[[request]]\npath = '/a'\nmethod = 'FETCH'\n", "method 'FETCH' is not one of GET"),
        ("[[request]]\npath = '/a'\nweight = 0\n", "weight must be a number > 0"),
        ("[[request]]\npath = '/a'\nexpect_status = 42\n", "expect_status must be an HTTP status"),
        ("[[request]]\npath = '/a'\nbody = 'x'\n", "unknown key 'body'"),
        ("[settings]\nconcurrency = 0\n", "s.toml:2: concurrency must be an integer >= 1"),
        ("[settings]\nspeed = 1\n", "s.toml:2: unknown setting 'speed'"),
        ("[requests]\n", "s.toml:1: unknown section 'requests'"),
        ("[[request]\npath = '/a'\n", "s.toml:1: not valid TOML"),
        ("request = 3\n", "'request' must be an array of tables"),
    ],
)
def test_malformed_scenarios_name_file_line_and_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, text))
    assert message in str(info.value)
    assert "s.toml" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(tmp_path / "nope.toml")


def test_every_shipped_scenario_parses() -> None:
    root = Path(__file__).resolve().parents[2] / "scenarios"
    files = sorted(root.glob("*.toml"))
    for path in files:
        assert load_scenario(path).requests, f"{path} has no requests"

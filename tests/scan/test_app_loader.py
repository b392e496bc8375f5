from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fastprof.scan.app_loader import AppLoadError, is_asgi_app, load_app

MODULE = '''
from fastapi import FastAPI

app = FastAPI()
not_an_app = 42

def create_app():
    return FastAPI()

async def raw(scope, receive, send):
    pass

async def two(scope, receive):
    pass

class Pure:
    async def __call__(self, scope, receive, send):
        pass

pure = Pure()
'''


@pytest.fixture
def app_dir(tmp_path: Path) -> str:
    (tmp_path / "loadme_mod.py").write_text(MODULE)
    (tmp_path / "broken_mod.py").write_text("import nonexistent_dependency_xyz\n")
    (tmp_path / "raising_mod.py").write_text("raise RuntimeError('no config')\n")
    yield str(tmp_path)
    for name in ("loadme_mod", "broken_mod", "raising_mod"):
        sys.modules.pop(name, None)
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


@pytest.mark.parametrize("attr", ["app", "raw", "pure"])
def test_loads_asgi_apps(app_dir: str, attr: str) -> None:
    assert is_asgi_app(load_app(f"loadme_mod:{attr}", app_dir=app_dir))


def test_factory(app_dir: str) -> None:
    assert is_asgi_app(load_app("loadme_mod:create_app", factory=True, app_dir=app_dir))


@pytest.mark.parametrize(
    ("spec", "factory", "message"),
    [
        ("loadme_mod", False, "'loadme_mod' is not MODULE:APP"),
        ("missing_mod_xyz:app", False, "module 'missing_mod_xyz' not found"),
        ("broken_mod:app", False, "importing 'broken_mod' failed: ModuleNotFoundError"),
        ("raising_mod:app", False, "importing 'raising_mod' failed: RuntimeError: no config"),
        ("loadme_mod:nope", False, "module 'loadme_mod' has no attribute 'nope'"),
        ("loadme_mod:not_an_app", False, "loadme_mod:not_an_app is a int, not an ASGI app"),
        ("loadme_mod:two", False, "not an ASGI app"),
        ("loadme_mod:create_app", False, "(it looks like a factory: pass --factory)"),
        ("loadme_mod:not_an_app", True, "is not callable, so it cannot be an app factory"),
    ],
)
def test_errors_say_what_is_wrong(app_dir: str, spec: str, factory: bool, message: str) -> None:
    with pytest.raises(AppLoadError) as info:
        load_app(spec, factory=factory, app_dir=app_dir)
    assert message in str(info.value)

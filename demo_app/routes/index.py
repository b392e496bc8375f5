"""``GET /``: the list of pairs, so a reader (or a script) finds each pitfall's twin."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from demo_app.catalog import PAIRS

router = APIRouter(tags=["index"])


@router.get("/")
async def index() -> dict[str, Any]:
    return {"pairs": [asdict(pair) for pair in PAIRS]}

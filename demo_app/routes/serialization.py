"""A big JSON response (1.3 MB: 600 books with their authors) without and with a model.

Without a declared type FastAPI runs ``jsonable_encoder`` over every value in Python and then
``json.dumps``; with a return type (or ``response_model``) current FastAPI validates through
Pydantic and serialises straight to JSON bytes in Rust (guides 001 and 003 recommend response
models; 000 measured JSON response classes, whose advice current FastAPI makes unnecessary).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from demo_app.resources import ResourcesDep
from demo_app.schemas import Catalog

router = APIRouter(tags=["serialisation"])


# response_model=None: no model at all (a bare ``-> Any`` would still get a pass-through one).
@router.get("/pitfall/serialization/catalog", response_model=None)
async def catalog_as_dict(resources: ResourcesDep) -> dict[str, Any]:
    # No model: FastAPI walks the whole payload with jsonable_encoder, then json.dumps.
    return {"count": len(resources.catalog), "books": resources.catalog}


@router.get("/fixed/serialization/catalog")
async def catalog_with_model(resources: ResourcesDep) -> Catalog:
    return {"count": len(resources.catalog), "books": resources.catalog}  # type: ignore[return-value]

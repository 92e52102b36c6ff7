"""The library over the HTTP API: a FastAPI router the daemon's app includes.

The routes reach ``service.library`` (an ``agent.library_service.LibraryService``) at request
time, so the router can be built before the library exists (and answers 409 without it). The
app's middleware (token off loopback, JSON errors) applies here as everywhere.

    GET  /library                 counts, roots, the last scan, the refiner's state
    GET  /library/items           ?query=&kind=movie|episode|other&where=all|local|fleet&limit=
    GET  /library/items/{item}    an item id, a content id, or a path (absolute or under a root)
    GET  /library/artwork/{id}    the item's frame grab (image/jpeg)
    GET  /library/scan            progress of the running (or last) scan
    POST /library/scan            {"full": false} start a scan (or join the running one): 202
    POST /library/publish         {"item": …, "policy": …} a local item becomes a holding: 201
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from media.library_model import ITEM_ID_HEX, ITEM_ID_PREFIX, LIMIT_MAX
from tva.errors import Conflict, NotFound

ITEM_KEY_CHARS_MAX = 4096


class ScanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    full: bool = False


class PublishIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item: str = Field(min_length=1, max_length=ITEM_KEY_CHARS_MAX)
    policy: str | None = Field(default=None, pattern="^(public|f2f_only|search_only)$")


def library_router(service: Any) -> APIRouter:
    router = APIRouter(prefix="/library", tags=["library"])

    def lib():
        library = getattr(service, "library", None)
        if library is None:
            raise Conflict("this agent runs no library", hint="start the daemon: tva-agent run")
        return library

    @router.get("")
    async def status() -> dict:
        return lib().status()

    @router.get("/items")
    async def items(query: str | None = Query(default=None, max_length=200),
                    kind: str | None = Query(default=None, pattern="^(movie|episode|other)$"),
                    where: str = Query(default="all", pattern="^(all|local|fleet)$"),
                    limit: int | None = Query(default=None, ge=1, le=LIMIT_MAX)) -> list[dict]:
        return lib().items(query=query, kind=kind, where=where, limit=limit)

    @router.get("/items/{item:path}")
    async def item(item: str = Path(min_length=1, max_length=ITEM_KEY_CHARS_MAX)) -> dict:
        return lib().item(item)

    @router.get("/artwork/{item_id}", response_class=FileResponse,
                responses={200: {"content": {"image/jpeg": {}}, "description": "the frame grab"}})
    async def artwork(item_id: str = Path(pattern=f"^{ITEM_ID_PREFIX}[0-9a-f]{{{ITEM_ID_HEX}}}$")):
        found = lib().item(item_id)
        if not found.get("artwork"):
            raise NotFound(f"item {item_id} has no artwork", hint="only video items get a frame grab")
        return FileResponse(found["artwork"], media_type="image/jpeg")

    @router.get("/scan")
    async def scan_status() -> dict:
        return lib().scan_status()

    @router.post("/scan", status_code=202)
    async def scan(body: ScanIn = Body(default=ScanIn())) -> dict:
        return lib().request_scan(full=body.full)

    @router.post("/publish", status_code=201)
    async def publish(body: PublishIn = Body()) -> dict:
        return await lib().publish(body.item, body.policy)

    return router

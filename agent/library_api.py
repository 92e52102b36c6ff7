"""The library over the HTTP API: a FastAPI router the daemon's app includes.

The routes reach ``ctx.library`` (an ``agent.library_service.LibraryService``; the daemon's, None
in the CLI's in-process app, whose library commands run their own offline flow). The app's door
(token, Host, Origin, JSON bodies) applies here as everywhere (see ``agent.api``).

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
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from agent.api import Ctx
from media.library_model import ITEM_ID_HEX, ITEM_ID_PREFIX, LIMIT_MAX
from tva.errors import Conflict, NotFound

ITEM_KEY_CHARS_MAX = 4096
# No control characters (NUL, newline, …): the schema says what the handler accepts (schemathesis
# checks it), and a path parameter ending in a newline would otherwise reach the route without it
# (Starlette's route regex ends in `$`, which also matches before a final newline).
ITEM_KEY_PATTERN = "^[^\x00-\x1f\x7f]+$"


class ScanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    full: StrictBool = False  # JSON true/false only ("yes", 1 are refused: the schema says boolean)


class PublishIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item: str = Field(min_length=1, max_length=ITEM_KEY_CHARS_MAX, pattern=ITEM_KEY_PATTERN)
    policy: str | None = Field(default=None, pattern="^(public|f2f_only|search_only)$")


router = APIRouter(prefix="/library", tags=["library"])


def lib(ctx: Any):
    if ctx.library is None:
        raise Conflict("this agent runs no library", hint="start the daemon: tva-agent run")
    return ctx.library


@router.get("")
async def status(ctx: Ctx) -> dict:
    return lib(ctx).status()


@router.get("/items")
async def items(ctx: Ctx, query: str | None = Query(default=None, max_length=200),
                kind: str | None = Query(default=None, pattern="^(movie|episode|other)$"),
                where: str = Query(default="all", pattern="^(all|local|fleet)$"),
                limit: int | None = Query(default=None, ge=1, le=LIMIT_MAX)) -> list[dict]:
    return lib(ctx).items(query=query, kind=kind, where=where, limit=limit)


@router.get("/items/{item:path}")
async def item(ctx: Ctx, item: str = Path(min_length=1, max_length=ITEM_KEY_CHARS_MAX, pattern=ITEM_KEY_PATTERN)) -> dict:
    return lib(ctx).item(item)


@router.get("/artwork/{item_id}", response_class=FileResponse,
            responses={200: {"content": {"image/jpeg": {}}, "description": "the frame grab"}})
async def artwork(ctx: Ctx, item_id: str = Path(pattern=f"^{ITEM_ID_PREFIX}[0-9a-f]{{{ITEM_ID_HEX}}}$")):
    found = lib(ctx).item(item_id)
    if not found.get("artwork"):
        raise NotFound(f"item {item_id} has no artwork", hint="only video items get a frame grab")
    return FileResponse(found["artwork"], media_type="image/jpeg")


@router.get("/scan")
async def scan_status(ctx: Ctx) -> dict:
    return lib(ctx).scan_status()


@router.post("/scan", status_code=202)
async def scan(ctx: Ctx, body: ScanIn = Body(default=ScanIn())) -> dict:
    return lib(ctx).request_scan(full=body.full)


@router.post("/publish", status_code=201)
async def publish(ctx: Ctx, body: PublishIn = Body()) -> dict:
    return await lib(ctx).publish(body.item, body.policy)

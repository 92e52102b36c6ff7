"""Media URLs and the player over the agent's API — the remote-control API (behind the door: token).

The media plane itself (``agent.media_plane``) has its own listener and signed URLs; these routes
are how a person, the CLI, the companion app or an ECP-style remote gets those URLs and drives a
player. Every player route takes ``on`` — a peer id or host name — to act on that member's
player instead of this one (asked over the mesh: members only).

    GET  /media                 the media plane: port, addresses, counters, HLS transcodes
    POST /media/urls            {"item", "ttl_s": 21600, "hls": false} signed URLs (this host's or a holder's)
    GET  /player[?on=HOST]      state, position, duration, pause state, what plays and from where
    POST /player/play           {"item", "start_s"?, "headless": false, "on"?}  (no start_s: resume)
    POST /player/pause          {"on"?}
    POST /player/resume         {"on"?}
    POST /player/seek           {"position_s", "on"?}
    POST /player/stop           {"on"?}
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from agent.api import Ctx
from agent.playback import PLAY_KEY_PATTERN  # the schema says what the player's check accepts
from media.signed_urls import TTL_S_DEFAULT, TTL_S_MAX, TTL_S_MIN

ON_FIELD = Field(default=None, min_length=1, max_length=128)
POSITION_S_MAX = 7 * 24 * 3600


class UrlsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item: str = Field(min_length=1, max_length=128, pattern=PLAY_KEY_PATTERN)
    ttl_s: int = Field(default=TTL_S_DEFAULT, ge=TTL_S_MIN, le=TTL_S_MAX)
    hls: StrictBool = False


class OnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    on: str | None = ON_FIELD


class PlayIn(OnIn):
    item: str = Field(min_length=1, max_length=128, pattern=PLAY_KEY_PATTERN)
    start_s: float | None = Field(default=None, ge=0, le=POSITION_S_MAX)
    headless: StrictBool = False


class SeekIn(OnIn):
    position_s: float = Field(ge=0, le=POSITION_S_MAX)


router = APIRouter(tags=["media"])


def _playback(ctx: Any):
    ctx.need_daemon("playback")
    return ctx.playback


def _item_key(ctx: Any, item: str) -> str:
    """An item id, a content id, or a path of the library → the key the player and the plane use."""
    if len(item) <= 128 and all(c.isalnum() or c in "._:-" for c in item):
        return item
    found = ctx.library.item(item)  # a path, absolute or under a root: NotFound when it is none
    return found["id"]


@router.get("/media")
async def media_status(ctx: Ctx) -> dict:
    return _playback(ctx).plane.status()


@router.post("/media/urls")
async def media_urls(ctx: Ctx, body: UrlsIn = Body()) -> dict:
    pb = _playback(ctx)
    return await pb.media_urls(_item_key(ctx, body.item), ttl_s=body.ttl_s, hls=body.hls)


@router.get("/player")
async def player_status(ctx: Ctx, on: str | None = Query(default=None, min_length=1, max_length=128)) -> dict:
    return await _playback(ctx).control("status", {}, on)


@router.post("/player/play")
async def player_play(ctx: Ctx, body: PlayIn = Body()) -> dict:
    pb = _playback(ctx)
    return await pb.control("play", {"item": _item_key(ctx, body.item), "start_s": body.start_s,
                                     "headless": body.headless}, body.on)


@router.post("/player/pause")
async def player_pause(ctx: Ctx, body: OnIn = Body(default=OnIn())) -> dict:
    return await _playback(ctx).control("pause", {}, body.on)


@router.post("/player/resume")
async def player_resume(ctx: Ctx, body: OnIn = Body(default=OnIn())) -> dict:
    return await _playback(ctx).control("resume", {}, body.on)


@router.post("/player/seek")
async def player_seek(ctx: Ctx, body: SeekIn = Body()) -> dict:
    return await _playback(ctx).control("seek", {"position_s": body.position_s}, body.on)


@router.post("/player/stop")
async def player_stop(ctx: Ctx, body: OnIn = Body(default=OnIn())) -> dict:
    return await _playback(ctx).control("stop", {}, body.on)

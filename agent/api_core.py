"""Routes of the fleet itself: status, hosts, holdings, pins, custody, duties, peers, revocations,
invites and the tva0 fabric (see ``agent.api`` for how routers are registered)."""

from __future__ import annotations

from typing import Any, get_args

from fastapi import APIRouter, Body, Path
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from agent.api import Ctx
from tva import limits

router = APIRouter()

INFOHASH_PATTERN = r"^[0-9a-fA-F]{40}$"
CONTENT_PATTERN = f"^{limits.CONTENT_ID_PATTERN}$"
HOST_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"


class JsonBody(BaseModel):
    """A request body: no unknown fields, and an integer field takes only a JSON Schema integer
    (4 and 4.0 are; false and "4" are not — pydantic's lax mode would take both, its strict
    mode would refuse 4.0)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _json_integers(cls, value: Any, info: ValidationInfo) -> Any:
        kind = cls.model_fields[info.field_name].annotation
        if (kind is int or int in get_args(kind)) and isinstance(value, bool | str):
            raise ValueError("must be a JSON integer")
        return value


class HoldingIn(JsonBody):
    content: str = Field(pattern=CONTENT_PATTERN)
    infohash: str = Field(pattern=INFOHASH_PATTERN)
    size_bytes: int = Field(ge=0, le=limits.HOLDING_SIZE_BYTES_MAX)
    # None: public for public sources, search_only (closed) for a private tracker until opened.
    policy: str | None = Field(default=None, pattern="^(public|f2f_only|search_only)$")
    source: str = Field(default="local", pattern="^(local|public|private-tracker)$")


class PinIn(JsonBody):
    content: str = Field(pattern=CONTENT_PATTERN)
    copies: int = Field(ge=1, le=limits.PIN_COPIES_MAX)
    max_copies: int | None = Field(default=None, ge=1, le=limits.PIN_COPIES_MAX)
    friends: bool = Field(default=False, strict=True)  # friends' copies count (agent.policy.friend_custody)


class RevokeIn(JsonBody):
    host: str = Field(pattern=HOST_PATTERN)
    reason: str = Field(default="", max_length=200)


class GrantIn(JsonBody):
    host: str = Field(pattern=HOST_PATTERN)
    role: str = Field(pattern="^(admin|member)$")


class InviteIn(JsonBody):
    role: str = Field(default="member", pattern="^(admin|member|friend)$")
    ttl_ms: int = Field(default=24 * 3600 * 1000, ge=1000, le=30 * 24 * 3600 * 1000)


# --- reads ---------------------------------------------------------------------------------------


@router.get("/status")
async def status(ctx: Ctx) -> dict:
    return ctx.service.status()


@router.get("/hosts")
async def hosts(ctx: Ctx) -> list[dict]:
    return ctx.service.hosts()


@router.get("/holdings")
async def holdings(ctx: Ctx) -> list[dict]:
    return ctx.service.holdings()


@router.get("/custody")
async def custody(ctx: Ctx) -> list[dict]:
    return ctx.service.custody()


@router.get("/duties")
async def duties(ctx: Ctx) -> list[dict]:
    return ctx.service.duties()


@router.get("/reaper")
async def reaper(ctx: Ctx) -> list[dict]:
    return ctx.torrents.verdicts() if ctx.torrents is not None else []


@router.get("/peers_for/{infohash}")
async def peers_for(ctx: Ctx, infohash: str = Path(pattern=INFOHASH_PATTERN)) -> dict:
    return peers_for_answer(ctx, infohash)


def peers_for_answer(ctx: Any, infohash: str) -> dict:
    """Also served by the direct route table (agent.api_fast): one body for both."""
    ih = infohash.lower()
    external = ctx.torrents.external_peers(ih) if ctx.torrents is not None else []
    return ctx.service.peers_for(ih, external=external)


@router.get("/custodians_of/{content}")
async def custodians_of(ctx: Ctx, content: str = Path(pattern=CONTENT_PATTERN)) -> dict:
    return ctx.service.custodians_of(content)


@router.get("/wg")
async def wg_status(ctx: Ctx) -> dict:
    if ctx.fabric is None:
        return {"interface": {"mode": "unknown", "reason": "the daemon is not running"}, "peers": []}
    return {"interface": ctx.fabric.status(), "peers": await ctx.fabric.peer_status()}


# --- writes --------------------------------------------------------------------------------------


@router.post("/wg/{action}")
async def wg_control(ctx: Ctx, action: str = Path(pattern="^(up|down)$")) -> dict:
    ctx.need_daemon("tva0 (it is managed by the daemon)")
    if action == "down":
        await ctx.fabric.down()
    else:
        ctx.fabric.up()
    return {"message": f"{ctx.fabric.ifname} {action}", **ctx.fabric.status()}


@router.post("/holdings", status_code=201)
async def add_holding(ctx: Ctx, body: HoldingIn = Body()) -> dict:
    return ctx.service.add_holding(body.content, body.infohash.lower(), body.size_bytes, body.policy, body.source)


@router.delete("/holdings/{content}")
async def remove_holding(ctx: Ctx, content: str = Path(pattern=CONTENT_PATTERN)) -> dict:
    return ctx.service.remove_holding(content)


@router.post("/pins", status_code=201)
async def pin(ctx: Ctx, body: PinIn = Body()) -> dict:
    return ctx.service.pin(body.content, body.copies, body.max_copies, body.friends)


@router.delete("/pins/{content}")
async def unpin(ctx: Ctx, content: str = Path(pattern=CONTENT_PATTERN)) -> dict:
    return ctx.service.unpin(content)


@router.post("/revocations", status_code=201)
async def revoke(ctx: Ctx, body: RevokeIn = Body()) -> dict:
    return ctx.service.revoke(body.host, body.reason)


@router.post("/grants", status_code=201)
async def grant(ctx: Ctx, body: GrantIn = Body()) -> dict:
    return ctx.service.grant(body.host, body.role)


@router.post("/invites", status_code=201)
async def invite(ctx: Ctx, body: InviteIn = Body()) -> dict:
    return ctx.service.invite(body.role, body.ttl_ms)

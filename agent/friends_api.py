"""Routes of friend fleets: ``GET /friends``, ``POST /friends`` (link by invite), ``DELETE
/friends/{fleet}`` (end a link on both sides), ``POST /friends/{fleet}/offer`` (custody offered)."""

from __future__ import annotations

from typing import Literal, get_args

from fastapi import APIRouter, Body, Path
from pydantic import Field

from agent import friends_link
from agent.api import Ctx
from agent.api_core import JsonBody
from agent.policy.friend_links import CUSTODY_BYTES_MAX, SHAREABLE, parse_link
from mesh import invites
from tva.errors import Forbidden

router = APIRouter()

FLEET_PATTERN = r"^[A-Za-z0-9_=. -]{1,128}$"  # a fleet id, or a friend fleet's name


ShareKind = Literal["public", "f2f_only"]  # the schema names what the handler accepts (schemathesis)
assert set(get_args(ShareKind)) == set(SHAREABLE)


class FriendIn(JsonBody):
    invite: str = Field(min_length=5, max_length=invites.TOKEN_CHARS_MAX)
    custody_bytes: int | None = Field(default=None, ge=0, le=CUSTODY_BYTES_MAX)
    shares: list[ShareKind] | None = Field(default=None, min_length=1, max_length=2)


class OfferIn(JsonBody):
    custody_bytes: int = Field(ge=0, le=CUSTODY_BYTES_MAX)


@router.get("/friends")
async def friends(ctx: Ctx) -> list[dict]:
    if ctx.friends is not None:
        return ctx.friends.listing()
    rows = []  # offline: what the decisions say, without live state
    for fid, link in sorted(ctx.service.state.doc.friends().items()):
        parsed = parse_link(fid, link.name, link.link_dict(), by=link.by, since_ms=link.at_ms)
        row = {"fleet_id": fid, "name": link.name, "state": "unknown" if parsed else "unusable",
               "since_ms": link.at_ms, "by": link.by}
        if parsed is not None:
            row.update(side=parsed.side, our_gateways=list(parsed.our_gateways),
                       their_gateways=list(parsed.their_gateways), shares=sorted(parsed.shares),
                       custody_bytes_offered=parsed.custody_bytes)
        rows.append(row)
    return rows


@router.post("/friends", status_code=201)
async def add_friend(ctx: Ctx, body: FriendIn = Body()) -> dict:
    ctx.need_daemon("linking a friend fleet (it talks to their gateways)")
    if body.shares is not None and not set(body.shares) <= set(SHAREABLE):
        from tva.errors import InvalidInput

        raise InvalidInput(f"shares may hold only {', '.join(SHAREABLE)}", hint="search_only items never cross")
    return await friends_link.add(ctx.friends, body.invite, body.custody_bytes, body.shares)


@router.delete("/friends/{fleet}")
async def remove_friend(ctx: Ctx, fleet: str = Path(pattern=FLEET_PATTERN)) -> dict:
    if ctx.friends is not None:
        return await friends_link.remove(ctx.friends, fleet)
    # Offline: recorded here; their gateways learn it at their next poll of ours.
    service = ctx.service
    doc = service.state.doc
    if doc.role_of(service.state.peer_id) not in ("owner", "admin"):
        raise Forbidden("only an admin may end friend links", hint="ask an admin of this fleet")
    found = [f for f, link in doc.friends().items() if fleet in (f, link.name)]
    if len(found) != 1:
        from tva.errors import NotFound

        raise NotFound(f"no single friend fleet {fleet!r}", hint="`tva-agent friends` lists them (give the id)")
    doc.remove_friend(found[0], service.clock_ms())
    service.commit(doc_changed=True)
    return {"message": f"ended the link with fleet {fleet} (they learn it at their next poll)",
            "fleet_id": found[0], "told_them": False}


@router.post("/friends/{fleet}/offer")
async def offer(ctx: Ctx, fleet: str = Path(pattern=FLEET_PATTERN), body: OfferIn = Body()) -> dict:
    ctx.need_daemon("changing a friend link")
    return friends_link.set_offer(ctx.friends, fleet, body.custody_bytes)

"""Making and ending friend links: `friend add`, the inviter's side of it, `friend rm`, `friend set`.

* **Invitee** (``add``): an admin of fleet B pastes fleet A's friend invite. B checks the token
  (signature, expiry, role ``friend``, not our own fleet), then asks A's join listener to redeem
  it (``friend_link``) with B's side of the link: B's gateways and their join addresses, what B
  shares and the custody B offers. A's answer is A's side; B records the link.
* **Inviter** (``redeem``, on A's join listener): an admin of A checks the invite against A's
  decisions (issued by a current admin, unexpired, never redeemed by a friend link before) and
  that the asking host is one of the gateways it names, then records the link.
* **Ending** (``remove``): our admin records the end and tells their gateways (``friend_unlink``);
  their admins record it too. Nothing of theirs is needed for ours to end.
"""

from __future__ import annotations

import logging

import trio

from agent.friends_wire import link_reply
from agent.joining import ask
from agent.policy import friend_links as fl
from crdt.identity import is_peer_id
from mesh import invites
from tva.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    InviteError,
    NotFound,
    PeerUnavailable,
    RemoteDataError,
    TvaError,
)

log = logging.getLogger("tva.friends")

LINK_TIMEOUT_MS = 20_000
LINK_ATTEMPTS = 3
UNLINK_TIMEOUT_MS = 5_000


def _need_admin(mgr, what: str) -> None:
    if not mgr._is_admin():
        raise Forbidden(f"only an admin may {what}",
                        hint="ask an admin of this fleet (`tva-agent hosts` shows roles)")


def _used_nonces(doc) -> frozenset[str]:
    return fl.used_nonces(op.body for op in doc.ops() if op.kind == "friend")


def _gateway_field(mgr, peers) -> list[list]:
    return [[p, mgr._join_addrs_of(p)[: fl.ADDRS_MAX]] for p in peers]


def redeem(mgr, peer: str, body: dict) -> dict:
    """A friend fleet's gateway redeems one of our friend invites (our join listener)."""
    state, doc, now = mgr.state, mgr.state.doc, mgr.clock_ms()
    try:
        inv = invites.parse_invite(body["invite"])
        invites.check_friend_invite(inv, now_ms=now, fleet_id=state.fleet.fleet_id, roles=doc.roles(),
                                    revoked=state.revoked(), used=_used_nonces(doc))
        if not mgr._is_admin():
            raise InviteError("this host is not an admin and cannot record a link",
                              hint="dial the host that issued the invite")
    except InviteError as exc:
        log.info("refused a friend link from %s: %s", peer[:16], exc.message)
        raise
    fleet, name = body["fleet_id"], body["fleet_name"]
    theirs = [p for p, _ in body["gateways"]]
    if not all(is_peer_id(p) for p in theirs):
        raise RemoteDataError("a gateway is not a peer id")
    if peer not in theirs:
        raise RemoteDataError("the asking host is not one of the gateways it names")
    if fleet in doc.friends():
        raise Conflict(f"fleet {name} is already linked", hint="end it first (`tva-agent friend rm`)")
    ours = mgr.our_gateways()
    fields = fl.link_fields(side="inviter", nonce=inv.nonce_hex, their_gateways=theirs,
                            their_addrs=[a for _, addrs in body["gateways"] for a in addrs], our_gateways=ours,
                            shares=fl.DEFAULT_SHARES, custody_bytes=mgr.cfg.friend_custody_bytes)
    doc.add_friend(fleet, name, fields, now)
    mgr._commit()
    mgr.counters["links_made"] += 1
    mgr.kick()
    log.info("linked with friend fleet %s (%s), redeeming an invite of %s", name, fleet[:16], inv.inviter_peer_id[:16])
    return {"fleet_id": state.fleet.fleet_id, "fleet_name": state.fleet.fleet_name,
            "gateways": _gateway_field(mgr, ours), "custody_bytes": mgr.cfg.friend_custody_bytes,
            "shares": sorted(fl.DEFAULT_SHARES)}


async def add(mgr, token: str, custody_bytes: int | None = None, shares: list[str] | None = None) -> dict:
    """`tva-agent friend add INVITE`: redeem another fleet's friend invite and record the link."""
    state, doc = mgr.state, mgr.state.doc
    inv = invites.parse_invite(token)
    invites.check_usable(inv, mgr.clock_ms())
    if inv.role != "friend":
        raise InvalidInput("this invite admits a host to a fleet; it does not link fleets",
                           hint="to join it: `tva-agent join INVITE` (with another --state-dir or --fleet)")
    if inv.fleet_id == state.fleet.fleet_id:
        raise InvalidInput("this is a friend invite of our own fleet", hint="give it to an admin of the other fleet")
    _need_admin(mgr, "link friend fleets")
    if inv.fleet_id in doc.friends():
        raise Conflict(f"fleet {inv.fleet_name} is already linked", hint="`tva-agent friends` shows it")
    offer = mgr.cfg.friend_custody_bytes if custody_bytes is None else custody_bytes
    share_set = frozenset(shares) if shares else fl.DEFAULT_SHARES
    ours = mgr.our_gateways()
    fl.link_fields(side="invitee", nonce=inv.nonce_hex, their_gateways=ours, their_addrs=(), our_gateways=ours,
                   shares=share_set, custody_bytes=offer)  # check our side before dialling
    body = {"invite": token, "fleet_id": state.fleet.fleet_id, "fleet_name": state.fleet.fleet_name,
            "gateways": _gateway_field(mgr, ours), "custody_bytes": offer, "shares": sorted(share_set)}
    transport = await mgr.client(inv.fleet_id)
    reply, errors, answered_by = None, [], None
    for addr in inv.bootstrap:
        peer = addr.rsplit("/p2p/", 1)[-1] if "/p2p/" in addr else None
        if peer is None:
            errors.append(f"{addr}: no /p2p/ peer id")
            continue
        try:
            reply = link_reply(await _ask_patiently(transport, peer, addr, body))
            answered_by = peer
            break
        except TvaError as exc:
            errors.append(exc.message)
            if "redeemed" in exc.message or "admin" in exc.message or "linked" in exc.message:
                break
    if reply is None:
        detail = "; ".join(errors) or "no bootstrap address"
        raise InviteError(f"could not link with fleet {inv.fleet_name}: {detail}",
                          hint="friend invites are single-use; is the inviting host's agent running and reachable?")
    theirs = [p for p, _ in reply["gateways"]]
    if reply["fleet_id"] != inv.fleet_id or not all(is_peer_id(p) for p in theirs) or answered_by not in theirs:
        raise RemoteDataError("the inviting fleet answered with another fleet's link")
    fields = fl.link_fields(side="invitee", nonce=inv.nonce_hex, their_gateways=theirs,
                            their_addrs=[a for _, addrs in reply["gateways"] for a in addrs], our_gateways=ours,
                            shares=share_set, custody_bytes=offer)
    doc.add_friend(inv.fleet_id, reply["fleet_name"], fields, mgr.clock_ms())
    mgr._commit()
    mgr.counters["links_made"] += 1
    mgr.kick()
    log.info("linked with friend fleet %s (%s)", reply["fleet_name"], inv.fleet_id[:16])
    return {"message": f"linked with fleet {reply['fleet_name']}", "fleet_id": inv.fleet_id,
            "name": reply["fleet_name"], "our_gateways": list(ours), "their_gateways": theirs,
            "shares": sorted(share_set), "custody_bytes_offered": offer,
            "custody_bytes_offered_to_us": reply["custody_bytes"]}


async def _ask_patiently(transport, peer: str, addr: str, body: dict) -> dict:
    """A fresh host's first dial sometimes fails on a loaded machine: a few tries before giving up."""
    for attempt in range(LINK_ATTEMPTS):
        try:
            return await ask(transport, peer, [addr], "friend_link", body, LINK_TIMEOUT_MS)
        except PeerUnavailable:
            if attempt == LINK_ATTEMPTS - 1:
                raise
            await trio.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def resolve(mgr, ref: str) -> tuple[str, str]:
    """A friend fleet by id or by name → (fleet id, name)."""
    friends = mgr.state.doc.friends()
    if ref in friends:
        return ref, friends[ref].name
    named = [f for f, link in friends.items() if link.name == ref]
    if len(named) == 1:
        return named[0], ref
    if named:
        raise InvalidInput(f"{len(named)} friend fleets are named {ref!r}", hint="give the fleet id")
    raise NotFound(f"no friend fleet {ref!r}", hint="`tva-agent friends` lists them")


async def remove(mgr, ref: str) -> dict:
    """`tva-agent friend rm FLEET`: end the link here, and tell their gateways."""
    fleet, name = resolve(mgr, ref)
    _need_admin(mgr, "end friend links")
    link = mgr.links().get(fleet)
    transport = None
    if link is not None:
        try:
            transport = await mgr.client(fleet)
        except TvaError:
            pass
    # The client is ours from here: once the link is gone from our decisions, the sync loop closes
    # every client of an unlinked fleet — under the notice still being sent, if it were left there.
    held = mgr._clients.pop(fleet, None)
    mgr.state.doc.remove_friend(fleet, mgr.clock_ms())
    mgr._commit()
    mgr.counters["links_ended"] += 1
    try:
        told = await _tell(mgr, link, transport) if transport is not None else False
    finally:
        if held is not None and held[1] is not None:
            held[1].cancel()
    mgr._forget(fleet)
    log.info("ended the link with fleet %s (%s); they were %s", name, fleet[:16], "told" if told else "not reached")
    return {"message": f"ended the link with fleet {name}" + ("" if told else " (they learn it at their next poll)"),
            "fleet_id": fleet, "name": name, "told_them": told}


async def _tell(mgr, link: fl.FriendLinkView, transport) -> bool:
    for peer, addrs in mgr.their_gateways(link):
        for _attempt in range(2):  # their listener lets one request a second through per peer
            try:
                await ask(transport, peer, addrs, "friend_unlink", {"fleet_id": mgr.state.fleet.fleet_id},
                          UNLINK_TIMEOUT_MS)
                return True
            except TvaError as exc:
                log.debug("unlink notice to %s: %s", peer[:16], exc.message)
                if "busy" not in exc.message:
                    break
                await trio.sleep(1.1)
    return False


def set_offer(mgr, ref: str, custody_bytes: int) -> dict:
    """`tva-agent friend set FLEET --custody-bytes N`: what we offer them (0: nothing)."""
    fleet, name = resolve(mgr, ref)
    _need_admin(mgr, "change friend links")
    link = mgr.links().get(fleet)
    if link is None:
        raise Conflict(f"the link with {name} was written by a build this one cannot read", hint="upgrade tva-agent")
    mgr.state.doc.add_friend(fleet, name, fl.with_offer(link, custody_bytes), mgr.clock_ms())
    mgr._commit()
    mgr._served.pop(fleet, None)
    return {"message": f"offering fleet {name} {custody_bytes} bytes of custody", "fleet_id": fleet,
            "custody_bytes_offered": custody_bytes}

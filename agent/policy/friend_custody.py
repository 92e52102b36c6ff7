"""Cross-fleet custody, opt-in: friends' copies count for our pins, and we keep copies for theirs (pure).

A gift economy: a fleet offers a friend ``custody_bytes`` of its disks (``friend_custody_bytes``,
per link; 0 by default) — no ratios, no accounting beyond the offered bytes.

**Our side (the asking fleet).** A pin counts friends' copies only when it says so (``pin …
--friends``), only for an item we may share with that friend (``public`` or ``f2f_only``, never a
private tracker's), and at most one copy per friend fleet (a friend's claim is a gift, not a
guarantee: it stops counting as soon as its view goes stale). ``count_friends`` turns the own
custody plans into plans that count them: a pin under its minimum whose friend copies fill the gap
is ``ok``, and its own repairs shrink by what the friends hold. ``asks_for`` names the copies we
ask one friend to keep: those we count from it (so it keeps them), then, for what neither our own
hosts nor current friend copies can cover, new friends chosen by rendezvous among those whose offer
fits the item.

**Their side (the fleet asked).** ``accepted_asks`` takes a friend's asks in infohash order while
they fit what we offer it; ``target_of`` names our host that keeps each one (a live host already
holding it, else the first eligible storage host by rendezvous) — every member computes the same.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from . import checks, rendezvous
from .classes import ALIVE, CUSTODIAN, NEVER, PORTABLE, SRC_PRIVATE_TRACKER, STORAGE, host_weight
from .custody import OK, UNDER, CustodyPlan
from .friend_links import FriendLinkView
from .friend_view import Ask, SharedView
from .peers import _item_policy
from .view import FleetView

FRIEND_COPIES_PER_FLEET = 1

__all__ = ["Ask", "accepted_asks", "asks_for", "count_friends", "friend_holders", "shareable_pin", "target_of"]


def friend_holders(views: Mapping[str, SharedView]) -> dict[str, tuple[str, ...]]:
    """infohash → the friend fleets whose (fresh) view lists a holder of it, sorted."""
    out: dict[str, list[str]] = {}
    for fleet, v in sorted(views.items()):
        for it in v.items:
            out.setdefault(it.infohash, []).append(fleet)
    return {ih: tuple(f) for ih, f in out.items()}


def shareable_pin(view: FleetView, plan: CustodyPlan) -> str | None:
    """The item's policy when its pin may count friends (``--friends``, shareable, not a private
    tracker's), else None."""
    pin = view.pins.get(plan.content)
    if pin is None or not pin.friends or plan.infohash is None:
        return None
    holds = view.holdings_for(plan.content)
    if any(h.source == SRC_PRIVATE_TRACKER for h in holds.values()):
        return None
    policy = _item_policy(view, plan.infohash, (), None)
    return policy if policy in ("public", "f2f_only") else None


def _counted(view: FleetView, plan: CustodyPlan, links: Mapping[str, FriendLinkView],
             holders: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    policy = shareable_pin(view, plan)
    if policy is None:
        return ()
    fleets = holders.get(plan.infohash or "", ())
    return tuple(f for f in fleets if f in links and policy in links[f].shares)


def count_friends(view: FleetView, plans: Iterable[CustodyPlan], links: Mapping[str, FriendLinkView],
                  views: Mapping[str, SharedView]) -> tuple[CustodyPlan, ...]:
    """Own plans with friends' copies counted where allowed (see the module docstring)."""
    checks.instance(view, "view", FleetView)
    holders = friend_holders(views)
    out = []
    for plan in plans:
        fleets = _counted(view, plan, links, holders)
        if not fleets:
            out.append(plan)
            continue
        plan = dataclasses.replace(plan, friend_copies=fleets)
        if plan.status == UNDER:
            counted = plan.copies + len(fleets) * FRIEND_COPIES_PER_FLEET
            note = f"{len(fleets)} friend cop{'y' if len(fleets) == 1 else 'ies'} counted"
            if counted >= plan.min_copies:
                plan = dataclasses.replace(plan, status=OK, repairs=(), notes=(*plan.notes, note))
            else:
                need = max(0, plan.min_copies - counted - len(plan.pending))
                plan = dataclasses.replace(plan, repairs=plan.repairs[:need], notes=(*plan.notes, note))
        out.append(plan)
    return tuple(out)


def asks_for(view: FleetView, plans: Iterable[CustodyPlan], friend: str, links: Mapping[str, FriendLinkView],
             views: Mapping[str, SharedView]) -> tuple[Ask, ...]:
    """The copies we ask ``friend`` to keep. ``plans``: our own plans (friends not counted);
    ``views``: the fresh views of our linked friends (their offers to us are in them)."""
    checks.instance(view, "view", FleetView)
    if friend not in links:
        return ()
    holders = friend_holders(views)
    asks = []
    for plan in plans:
        policy = shareable_pin(view, plan)
        if policy is None or not plan.holders or plan.size_bytes is None:
            continue  # no live copy of ours to fetch from, or nothing to share
        counted = _counted(view, plan, links, holders)
        need = plan.min_copies - plan.copies - len(plan.pending) - len(counted)
        extra = max(0, need - len(plan.repairs))  # what our own hosts cannot cover
        chosen = list(counted)
        if extra:
            key = rendezvous.key_bytes("friend-ask", plan.content)
            room = [f for f in sorted(views) if f in links and f not in counted and policy in links[f].shares
                    and views[f].custody_bytes >= max(1, plan.size_bytes)]  # an empty item is still asked as 1 byte
            chosen += rendezvous.rank(key, [(f, 1.0) for f in room])[:extra]
        if friend in chosen:
            asks.append(Ask(plan.infohash, max(1, plan.size_bytes), policy, plan.content))  # type: ignore[arg-type]
    return tuple(sorted(asks, key=lambda a: a.infohash))


def accepted_asks(their_view: SharedView | None, link: FriendLinkView | None) -> tuple[Ask, ...]:
    """Their asks we take, in infohash order, while they fit our offer to them."""
    if their_view is None or link is None or link.custody_bytes <= 0:
        return ()
    taken, used = [], 0
    for a in sorted(their_view.asks, key=lambda a: a.infohash):
        if a.policy not in link.shares:
            continue
        if used + a.size_bytes > link.custody_bytes:
            continue
        used += a.size_bytes
        taken.append(a)
    return tuple(taken)


def target_of(view: FleetView, ask: Ask, reserve_bytes: int) -> str | None:
    """Our host that keeps ``ask``: a live host holding a complete copy, else one fetching it (a
    custody copy in progress), else the best eligible storage host by rendezvous; None when none
    has room."""
    checks.instance(view, "view", FleetView)
    held = view.holders_of_infohash(ask.infohash)
    complete = sorted(p for p, h in held.items() if h.complete and view.is_live(p))
    if complete:
        return complete[0]
    fetching = sorted(p for p, h in held.items() if h.custody and view.is_live(p))
    if fetching:
        return fetching[0]
    need = ask.size_bytes + reserve_bytes
    pool = []
    for h in view.hosts.values():
        if (h.revoked or h.liveness != ALIVE or h.host_class == PORTABLE or STORAGE not in h.services
                or h.disk_free_bytes is None or h.disk_free_bytes < need
                or view.duty_prefs.get(h.peer_id, {}).get(CUSTODIAN) == NEVER):
            continue
        pool.append((h.peer_id, host_weight(h.host_class, h.uptime_score)))
    ranked = rendezvous.rank(rendezvous.key_bytes("friend-keep", ask.infohash), pool)
    return ranked[0] if ranked else None

"""Keeping this node's own feed healthy for years: tombstone collection and recovery at start.

* **Tombstones** — ``collect_garbage`` raises the feed's GC horizon (``crdt.feed.tombstone_horizon``:
  every tombstone older than ``TOMBSTONE_TTL_MS``, and the oldest ones while they outnumber the
  live entries). The daemon calls it on its housekeeping tick and pushes the resulting head; a
  peer behind the horizon receives a full snapshot of the feed instead of deltas.
* **Recovery at start** — a commit pushed to peers but not saved before a crash leaves peers with
  a head of our feed we no longer have; every later delta of ours would fail their digest check
  (a feed split for good). Before writing anything, ``recover_own_feed`` asks the members it can
  reach for our feed (the ``own_feed`` query over the transport's request path) and adopts a
  newer head if one exists (it is signed by our own key, so it verifies). If some member did not
  answer, the daemon then ``rebase``s: its first head carries a GC horizon at its own version, so
  any replica holding an older head — the lost one too — takes a full snapshot.
  Residual case: a member unreachable at start that holds the lost head *and* a clock stepped
  back past the lost commit; the rebase then reads as stale there until the clock catches up.
"""

from __future__ import annotations

import logging

import trio

from agent import rpc
from crdt import records
from crdt.feed import DELTA_BYTES_MAX, decode_delta, encode_delta, tombstone_horizon
from crdt.identity import public_from_peer_id
from tva.errors import RemoteDataError, StaleData, TvaError

log = logging.getLogger("tva.feeds")

GC_INTERVAL_MS = 60_000
TOMBSTONE_TTL_MS = 3 * 24 * 3600 * 1000  # a host asleep for a long weekend still gets deltas
TOMBSTONES_FLOOR = 256  # small feeds keep a few: a delete then costs peers a delta, not a snapshot
RECOVER_TIMEOUT_MS = 3000  # per member, all asked at once: start-up waits at most this long


def collect_garbage(state, now_ms: int, *, ttl_ms: int = TOMBSTONE_TTL_MS,
                    tombstones_floor: int = TOMBSTONES_FLOOR) -> bytes | None:
    """Collect this node's collectable tombstones; the delta to push, or None (nothing to do,
    or uncommitted changes are waiting: the next tick will do it)."""
    feed = state.own.feed
    if feed is None or state.own.pending_count:
        return None
    horizon = tombstone_horizon(feed, now_ms, ttl_ms=ttl_ms, tombstones_floor=tombstones_floor)
    before = len(feed.tombstone_keys())
    delta = state.own.collect_tombstones(horizon)
    if delta is not None:
        log.info("collected %d tombstones of this host's feed (%d entries left)",
                 before - len(state.own.feed.tombstone_keys()), state.own.feed.entry_count)
    return delta


def finished_intent_keys(feed, plans, view, now_ms: int) -> list[str]:
    """The baton's side of a repair's end: the keys of this feed's intents whose target holds a
    complete copy, whose lease lapsed, whose target was revoked or whose pin is gone — deleted so
    intents never pile up in the feed (their tombstones are then collected on the GC horizon)."""
    if feed is None:
        return []
    by_content = {p.content: p for p in plans}
    out = []
    for suffix, intent in records.intents_of(feed).items():
        plan = by_content.get(intent.content_id)
        target = intent.target_peer_id
        if (plan is None or intent.lease_until_ms <= now_ms or target in view.revoked_peers
                or target in plan.holders or target in plan.other_holders):
            out.append(records.INTENT_PREFIX + suffix)
    return out


def answer_own_feed(state, asker: str, body: dict) -> dict:
    """A member asks for *its own* feed as we hold it, newer than the version it has."""
    feed = state.feeds.feed(public_from_peer_id(asker))
    theirs = body["version"]
    if feed is None or feed.version <= theirs:
        return {"delta": None}
    data = encode_delta(feed.delta_since(theirs))
    # A reply has a size limit; an oversized one (a snapshot of a huge feed) is left to the
    # rebase path rather than failing the asker's start.
    return {"delta": data if len(data) <= min(DELTA_BYTES_MAX, rpc.REPLY_BYTES_MAX - 1024) else None}


async def recover_own_feed(state, transport, *, timeout_ms: int = RECOVER_TIMEOUT_MS) -> tuple[bool, bool]:
    """Ask every other member for our own feed and adopt a newer head. Returns (adopted, all
    answered); call before this node writes anything."""
    me = state.peer_id
    owner = state.key.public
    peers = sorted(p for p in state.members() if p != me)
    answered: set[str] = set()
    adopted = False

    async def ask(peer: str) -> None:
        nonlocal adopted
        query = rpc.encode_query("own_feed", {"version": state.own.version})
        try:
            reply = rpc.decode_reply(await transport.request(peer, query, timeout_ms))
            rpc.raise_if_refused(reply)
        except TvaError as exc:
            log.debug("own feed from %s: %s", peer[:16], exc.message)
            return
        answered.add(peer)
        data = reply.get("delta")
        if data is None:
            return
        try:
            if not isinstance(data, bytes) or decode_delta(data).owner != owner:
                raise RemoteDataError("the reply carried another host's feed")
            applied = state.feeds.apply_delta(data)  # signed by our own key, or refused
        except StaleData:
            return  # another member's answer got there first
        except RemoteDataError as exc:
            log.info("own feed from %s not taken: %s", peer[:16], exc.message)
            return
        adopted = True
        log.warning("recovered this host's feed at version %d from %s: a commit had been pushed but "
                    "not saved before the last stop", applied.version, peer[:16])

    with trio.move_on_after(timeout_ms / 1000 + 1):
        async with trio.open_nursery() as nursery:
            for peer in peers:
                nursery.start_soon(ask, peer)
    return adopted, answered == set(peers)

"""MeshNode: one node's dissemination protocol, ``handle(event, now_ms) -> list[Effect]``.

Three mechanisms move state, each covering the others' gaps:

1. **Rumour mongering** (fast). A local feed delta is queued as a broadcast and pushed at once
   to ``fanout_max`` random live peers; every node that applies it fresh re-queues it and pushes
   it on at once too, and every ``gossip_interval_ms`` each node sends its queue to ``fanout_max``
   random live peers — each broadcast at most ``retransmit_limit(n)`` times by each node, least
   sent first, and only the first time that node sees it (a duplicate is known by its hash and not
   even decoded). Membership records and presence ride their own queue. A fleet-document change
   is pushed as a doc sync message to the fanout. ``gossip_stats()`` says where the bytes go.
2. **Push-pull anti-entropy** (complete). Every ``sync_interval_ms`` a 16-byte digest (hash of the
   feed version vector and the document heads) goes to ``digest_peers_max`` random live peers.
   Only on a mismatch does the receiver answer, with a SUMMARY (one hash per bucket of feed
   owners, see ``antientropy``); the other side answers with its vector for the differing buckets
   only (SYNC, reply=True), gets exactly the deltas it lacks there (DELTAS) plus the peer's vector
   for those buckets, and sends exactly the peer's missing deltas back. Differing heads start (or
   restart) a document sync. A delta that does not apply for a gap asks its sender for a SYNC.
3. **SWIM failure detection** (see ``swim``), with presence soft state piggybacked on ping/ack
   (only when the peer has not had our current presence) and broadcast on change and every
   ``presence_refresh_for(n)``; a presence is valid ``presence_ttl_for(n)`` after it was received.

Frames from a peer that is not a member are refused and counted; a frame that does not decode is
refused, counted and logged; neither ever raises out of ``handle``. The core is deterministic in
(rng state, event sequence, now_ms values): it iterates only lists and insertion-ordered dicts.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace

from tva.errors import GapError, InvalidInput, RemoteDataError, StaleData

from .antientropy import Reconciler
from .config import MeshConfig
from .frames import (
    ENDPOINT_CHARS_MAX,
    ENDPOINTS_MAX,
    HOST_CLASS_CHARS_MAX,
    INCARNATION_MAX,
    ITEMS_MAX,
    PEER_CHARS_MAX,
    U64_MAX,
    Ack,
    DeltaItem,
    Deltas,
    Digest,
    DocMessage,
    Frame,
    Gossip,
    Item,
    MemberRecord,
    Nack,
    Ping,
    PingReq,
    PresenceRecord,
    Summary,
    Sync,
    decode_frame,
)
from .outbox import FRAME_OVERHEAD_BYTES, BroadcastQueue, Outbox, error_name, gossip_stats, wire_item_size
from .swim import ALIVE, ASLEEP, LEFT, Swim
from .types import (
    AnnounceSleep,
    DocSync,
    Effect,
    Event,
    FeedStore,
    FrameReceived,
    Leave,
    Liveness,
    LocalChanged,
    MembersChanged,
    PeerUnreachable,
    Presence,
    RestorePresence,
    Rng,
    SetSoftState,
    StateChanged,
    Tick,
    Wake,
)

# delta hashes remembered as applied: a few times the rumour queue, so any delta still being
# rumoured is recognised (16-byte keys: ~0.3 MB at most)
SEEN_DELTAS_MAX = 4096
PSEQ_EPOCH_MAX = 2**37  # (incarnation << 24) stays far below the wire limit of 2**62 for a presence sequence


class MeshNode:
    def __init__(self, self_id: str, config: MeshConfig, feeds: FeedStore, doc: DocSync, rng: Rng,
                 *, incarnation: int = 0) -> None:
        if not isinstance(self_id, str) or not 0 < len(self_id) <= PEER_CHARS_MAX:
            raise InvalidInput(f"self_id must be a peer id of 1..{PEER_CHARS_MAX} characters")
        if type(incarnation) is not int or not 0 <= incarnation <= INCARNATION_MAX:
            raise InvalidInput(f"incarnation must be an int in 0..{INCARNATION_MAX}")
        self.self_id, self.cfg, self.feeds, self.doc, self.rng = self_id, config, feeds, doc, rng
        self.out = Outbox(config.frame_bytes_max)
        # membership and presence records (in gossip frames and on pings); feed deltas (gossip
        # frames only, a big one alone): an item bigger than the largest frame it can go in is
        # dropped when queued, counted (anti-entropy carries deltas; records are small)
        self.queue = BroadcastQueue(config.broadcast_queue_max, config.gossip_bytes_max)
        self.dqueue = BroadcastQueue(config.broadcast_queue_max, config.frame_bytes_max - FRAME_OVERHEAD_BYTES)
        self.swim = Swim(self_id, config, rng, self.out, self.queue, extras=self._extras,
                         on_gone=self._gone, incarnation=incarnation)
        self._now = 0
        self._next_gossip_ms: int | None = None
        self._next_sync_ms: int | None = None
        self._next_presence_ms: int | None = None
        self.sync = Reconciler(feeds, doc, self.out, config.frame_bytes_max)
        self._own: PresenceRecord | None = None
        self._presence: dict[str, Presence] = {}
        self._presence_sent: dict[str, tuple[int, int]] = {}  # peer -> (our pseq sent directly, when)
        # peer -> the highest presence sequence ever taken; outlives the member's death, so a record
        # heard again after we dropped it is not rumoured again, and a restart shows as a new epoch
        self._pseq_seen: dict[str, int] = {}
        self._gap_sync_ms: dict[str, int] = {}
        self._seen_deltas: dict[bytes, None] = {}  # hashes of deltas applied or found stale, oldest first
        self._fresh_delta = False  # the frame being handled brought a delta new to us
        self._feeds_changed = self._doc_changed = False

    # --- queries --------------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        return dict(self.out.stats)

    def gossip_stats(self) -> dict:
        """Where this node's gossip goes (see ``outbox.gossip_stats``)."""
        return gossip_stats(self.out, {"records": self.queue, "deltas": self.dqueue},
                            self.cfg.retransmit_limit(self.swim.n))

    def liveness(self) -> dict[str, Liveness]:
        return self.swim.liveness()

    def incarnation(self) -> int:
        return self.swim.incarnation

    def presence(self) -> dict[str, Presence]:
        """Unexpired soft state per member (this node included), except members dead or left."""
        live = self.swim.members
        out = {p: v for p, v in self._presence.items()
               if v.expires_ms > self._now and p in live and live[p].state not in (Liveness.DEAD, LEFT)}
        if self._own is not None:
            o = self._own
            out[self.self_id] = Presence(o.peer, o.pseq, o.disk_free_bytes, o.uptime_score, o.endpoints,
                                         o.host_class, o.asleep,
                                         self._now + self.cfg.presence_ttl_for(self.swim.n))
        return out

    def next_deadline_ms(self) -> int | None:
        """When the node next needs a Tick (None: only after another event)."""
        if self.swim.self_state is not ALIVE:  # asleep or left: only the broadcast queue drains
            return self._next_gossip_ms if self._pending() else None
        times = [t for t in (self._next_sync_ms, self._next_presence_ms, self.swim.next_deadline_ms())
                 if t is not None]
        if self._next_gossip_ms is not None and self._pending():
            times.append(self._next_gossip_ms)
        if not times:
            return self._now  # never ticked yet: start the timers
        return min(times)

    # --- events ---------------------------------------------------------------------------------

    def handle(self, event: Event, now_ms: int) -> list[Effect]:
        """Process one event; raises only InvalidInput, for local misuse (before changing anything)."""
        self.out.reset()  # nothing from an event that raised may leak into this one's effects
        if now_ms < self._now:
            self.out.count("clock_went_backwards", notable=True)
        self._now = now = max(now_ms, self._now)
        self._feeds_changed = self._doc_changed = False
        if isinstance(event, FrameReceived):
            self._on_frame(event.peer, event.data, now)
        elif isinstance(event, Tick):
            self._tick(now)
        elif isinstance(event, LocalChanged):
            self._on_local(event, now)
        elif isinstance(event, MembersChanged):
            bad = [p for p in event.members if not isinstance(p, str) or not 0 < len(p) <= PEER_CHARS_MAX]
            if bad:
                raise InvalidInput(f"{len(bad)} member ids are not peer ids of 1..{PEER_CHARS_MAX} characters")
            self.swim.set_members(event.members, dict(event.classes), now)
            members = self.swim.members
            self._pseq_seen = {p: q for p, q in self._pseq_seen.items() if p in members}
            self.sync.invalidate()  # membership changes usually come with feeds dropped or admitted
            self._seen_deltas.clear()  # a dropped owner's deltas are refused now, not duplicates
        elif isinstance(event, SetSoftState):
            self._set_soft_state(event, now)
        elif isinstance(event, RestorePresence):
            self._restore_presence(event.records, now)
        elif isinstance(event, AnnounceSleep | Wake | Leave):
            self._announce(event, now)
        elif isinstance(event, PeerUnreachable):
            self.out.count("peer_unreachable")
            self.swim.peer_unreachable(event.peer, now)
        if self._feeds_changed or self._doc_changed:
            self.sync.invalidate()
            self.out.emit(StateChanged(self._feeds_changed, self._doc_changed))
        return self.out.reset()

    def _tick(self, now: int) -> None:
        cfg = self.cfg
        if self._next_gossip_ms is None:
            self._next_gossip_ms = now + self.rng.randrange(cfg.gossip_interval_ms)
            self._next_sync_ms = now + self.rng.randrange(cfg.sync_interval_ms)
            # Say who we are now, as memberlist's join does: after a restart (a higher incarnation)
            # every peer learns it and sends us its presence directly (``_newer``); a peer already
            # holding this incarnation does not pass it on, so a fleet starting together stays quiet.
            self.queue.put(("m", self.self_id), self.swim.own_record())
        if now >= self._next_gossip_ms:
            self._next_gossip_ms = now + cfg.gossip_interval_ms
            self._flush_gossip()
        if self.swim.self_state is not ALIVE:
            return
        self.swim.tick(now)
        if self._next_sync_ms is not None and now >= self._next_sync_ms:
            self._next_sync_ms = now + cfg.sync_interval_ms
            digest = Digest(self.sync.digest())
            for peer in self.swim.alive.sample(self.rng, cfg.digest_peers_max):
                self.out.send(peer, digest)
        if self._next_presence_ms is not None and now >= self._next_presence_ms and self._own:
            self._issue_presence(self._own.disk_free_bytes, self._own.uptime_score, self._own.endpoints,
                                 self._own.host_class, self._own.asleep, now)

    def _on_local(self, event: LocalChanged, now: int) -> None:
        self.sync.invalidate()  # any LocalChanged, even an empty one, means "the replicas changed"
        if event.delta is not None:
            key = hashlib.blake2b(event.delta, digest_size=16).digest()
            self._remember_delta(key)
            self.dqueue.put(key, DeltaItem(event.delta))
            self._flush_gossip(self.cfg.eager_fanout_max)  # eager push: not at the next gossip round
        if event.doc_changed:
            self._push_doc(exclude="")

    def _announce(self, event: AnnounceSleep | Wake | Leave, now: int) -> None:
        state = {AnnounceSleep: ASLEEP, Wake: ALIVE, Leave: LEFT}[type(event)]
        if self.swim.self_state is LEFT or self.swim.self_state is state:
            return
        peers = self.swim.announce(state, now)
        if self._own is not None and state is not LEFT:
            o = self._own
            self._issue_presence(o.disk_free_bytes, o.uptime_score, o.endpoints, o.host_class,
                                 state is ASLEEP, now)
        if state is ALIVE:
            self._flush_gossip()
            return
        # sleeping or leaving: no time for rumours to spread from us, so tell every live peer now
        frame = Gossip((self.swim.own_record(),))
        for peer in peers:
            self.out.send(peer, frame)

    # --- frames ---------------------------------------------------------------------------------

    def _on_frame(self, peer: str, data: bytes, now: int) -> None:
        self.out.stats["frames_received"] += 1
        self.out.stats["bytes_received"] += len(data)
        if self.swim.self_state is LEFT:
            self.out.count("frames_ignored_after_leave")
            return
        if peer not in self.swim.members:
            self.out.count("frames_refused_nonmember", notable=True)
            self.out.log("warning", f"refused a frame from non-member {str(peer)[:16]}")
            return
        try:
            frame = decode_frame(data, self.cfg.frame_bytes_max)
        except RemoteDataError as e:
            self.out.count(f"frames_refused_{error_name(e)}", notable=True)
            self.out.log("warning", f"refused a frame from {peer[:16]}: {e}")
            return
        self.swim.begin_frame()
        self._fresh_delta = False
        self._dispatch(peer, frame, now)
        self.swim.end_frame(peer, now)
        if self._fresh_delta and self.swim.self_state is ALIVE:
            # eager push on every hop, not only the first: waiting for the next gossip round cost
            # each hop half an interval on average, ~0.7 s over the ~7 hops across 1000 nodes
            self._flush_gossip(self.cfg.eager_fanout_max)

    def _dispatch(self, peer: str, frame: Frame, now: int) -> None:
        if isinstance(frame, Ping | Ack):
            if frame.presence is not None:
                self._take_presence(frame.presence, now, rebroadcast=True)
            self._take_items(peer, frame.items, now)
            if isinstance(frame, Ping):
                self.swim.on_ping(peer, frame)
            else:
                self.swim.on_ack(peer, frame)
        elif isinstance(frame, PingReq):
            self._take_items(peer, frame.items, now)
            self.swim.on_ping_req(peer, frame, now)
        elif isinstance(frame, Gossip):
            self._take_items(peer, frame.items, now)
        elif isinstance(frame, Digest):
            self.sync.on_digest(peer, frame)
        elif isinstance(frame, Summary):
            self.sync.on_summary(peer, frame)
        elif isinstance(frame, Sync):
            if self.sync.on_sync(peer, frame):
                self._heads_differ(peer)
        elif isinstance(frame, Deltas):
            for d in frame.deltas:
                self._apply_delta(peer, d, now, rebroadcast=False)
        elif isinstance(frame, DocMessage):
            self._on_doc(peer, frame.data)
        elif isinstance(frame, Nack):
            self.swim.on_nack(peer, frame)

    def _take_items(self, peer: str, items: tuple[Item, ...], now: int) -> None:
        for item in items:
            if isinstance(item, MemberRecord):
                self.swim.apply(item, now)
            elif isinstance(item, PresenceRecord):
                self._take_presence(item, now, rebroadcast=True)
            else:
                self._apply_delta(peer, item.data, now, rebroadcast=True)

    # --- feeds and document -----------------------------------------------------------------------

    def _apply_delta(self, peer: str, data: bytes, now: int, *, rebroadcast: bool) -> None:
        # Under rumour mongering every node hears each delta ~retransmit_limit times: a delta
        # already applied (or already stale) here is known by its hash, without decoding it again.
        key = hashlib.blake2b(data, digest_size=16).digest()
        if key in self._seen_deltas:
            self.out.count("deltas_duplicate")
            return
        try:
            self.feeds.apply_delta(data)
        except StaleData:
            self._remember_delta(key)
            self.out.count("deltas_duplicate")
            return
        except GapError:
            self.out.count("deltas_gap")
            last = self._gap_sync_ms.get(peer)
            if last is None or now - last >= self.cfg.sync_interval_ms:
                self._gap_sync_ms[peer] = now
                self.sync.send_sync(peer, reply=False)  # "send me what I lack", at most once a period
            return
        except RemoteDataError as e:
            self.out.count(f"deltas_refused_{error_name(e)}", notable=True)
            self.out.log("warning", f"refused a delta from {peer[:16]}: {e}")
            return
        self._remember_delta(key)
        self.out.count("deltas_applied")
        self._feeds_changed = True
        if rebroadcast:
            self.dqueue.put(key, DeltaItem(data))
            self._fresh_delta = True

    def _remember_delta(self, key: bytes) -> None:
        seen = self._seen_deltas
        seen[key] = None
        if len(seen) > SEEN_DELTAS_MAX:
            del seen[next(iter(seen))]  # oldest first: a delta that old is stale by any other path too

    def _heads_differ(self, peer: str) -> None:
        msg = self._doc_message_for(peer)
        if msg is None:
            # heads differ yet the sync state thinks nothing is owed: a message was lost
            self.doc.forget_peer(peer)
            self.out.count("doc_sync_restarts")
            msg = self._doc_message_for(peer)
        if msg is not None:
            self.out.send(peer, DocMessage(msg))

    def _on_doc(self, peer: str, data: bytes) -> None:
        try:
            changed = self.doc.receive_sync_message(peer, data)
        except RemoteDataError as e:
            self.out.count(f"doc_refused_{error_name(e)}", notable=True)
            self.out.log("warning", f"refused a document sync message from {peer[:16]}: {e}")
            self.doc.forget_peer(peer)
            return
        reply = self._doc_message_for(peer)
        if reply is not None:
            self.out.send(peer, DocMessage(reply))
        if changed:
            self._doc_changed = True
            self._push_doc(exclude=peer)

    def _push_doc(self, exclude: str) -> None:
        for peer in self.swim.alive.sample(self.rng, self.cfg.fanout_max, exclude=(exclude,)):
            msg = self._doc_message_for(peer)
            if msg is not None:
                self.out.send(peer, DocMessage(msg))

    def _doc_message_for(self, peer: str) -> bytes | None:
        try:
            return self.doc.sync_message_for(peer)
        except RemoteDataError as e:  # e.g. TooLarge: the document cannot produce a sendable message
            self.out.count(f"doc_message_failed_{error_name(e)}", notable=True)
            self.out.log("warning", f"no document sync message for {peer[:16]}: {e}")
            self.doc.forget_peer(peer)
            return None

    # --- gossip and presence ------------------------------------------------------------------------

    def _pending(self) -> bool:
        return bool(len(self.queue) or len(self.dqueue))

    def _flush_gossip(self, fanout: int = 0) -> None:
        if not self._pending():
            return
        limit = self.cfg.retransmit_limit(self.swim.n)
        budget = self.cfg.gossip_bytes_max
        alone = self.cfg.frame_bytes_max - FRAME_OVERHEAD_BYTES
        for peer in self.swim.alive.sample(self.rng, fanout or self.cfg.fanout_max):
            items = self.dqueue.take(budget, limit, alone_bytes_max=alone)
            spent = sum(wire_item_size(i) for i in items)
            items += self.queue.take(budget - spent, limit, items_max=ITEMS_MAX - len(items))
            if not items:
                break
            self.out.send(peer, Gossip(tuple(items)))

    def _extras(self, peer: str) -> tuple[PresenceRecord | None, tuple[Item, ...]]:
        """Presence (when the peer lacks our current one) and piggyback for a ping/ack/ping-req."""
        presence = None
        sent = self._presence_sent.get(peer)
        if self._own is not None and (sent is None or sent[0] != self._own.pseq
                                      or self._now - sent[1] >= self.cfg.presence_resend_ms):
            presence = self._own
            self._presence_sent[peer] = (self._own.pseq, self._now)
        items: list[Item] = []
        m = self.swim.members.get(peer)
        if m is not None and m.state is not ALIVE:
            items.append(m.record())  # buddy system: tell a suspect it is suspected
        items += self.queue.take(self.cfg.piggyback_bytes_max, self.cfg.retransmit_limit(self.swim.n))
        return presence, tuple(items)

    def _set_soft_state(self, e: SetSoftState, now: int) -> None:
        # checked here, not on the wire: a bad value would otherwise make every peer refuse our frames
        if not _soft_state_ok(e.disk_free_bytes, e.uptime_score, e.endpoints, e.host_class):
            raise InvalidInput("SetSoftState out of range", hint=SOFT_STATE_HINT)
        asleep = self._own.asleep if self._own is not None else False
        self._issue_presence(e.disk_free_bytes, float(e.uptime_score), tuple(e.endpoints), e.host_class,
                             asleep, now)

    def _restore_presence(self, records: tuple[Presence, ...], now: int) -> None:
        if not isinstance(records, tuple | list):
            raise InvalidInput("RestorePresence.records must be a tuple of Presence")
        for r in records:  # all checked before any is taken
            if (not isinstance(r, Presence) or not isinstance(r.peer, str) or not 0 < len(r.peer) <= PEER_CHARS_MAX
                    or type(r.pseq) is not int or not 0 <= r.pseq <= INCARNATION_MAX or type(r.asleep) is not bool
                    or not _soft_state_ok(r.disk_free_bytes, r.uptime_score, r.endpoints, r.host_class)):
                raise InvalidInput("RestorePresence: a record is out of range",
                                   hint="peer ids of 1..64 chars, pseq 0..2^62, " + SOFT_STATE_HINT)
        for r in records:
            rec = PresenceRecord(r.peer, r.pseq, r.disk_free_bytes, float(r.uptime_score), tuple(r.endpoints),
                                 r.host_class, r.asleep)
            self._take_presence(rec, now, rebroadcast=False)

    def _issue_presence(self, disk: int, score: float, endpoints: tuple[str, ...], host_class: str,
                        asleep: bool, now: int) -> None:
        # A restarted node must not start below the presence sequence its peers still hold, or
        # they would ignore it: the first sequence comes from the incarnation, which the shell
        # raises on every restart (the agent seeds it from the wall clock).
        pseq = self._own.pseq + 1 if self._own is not None else (min(self.swim.incarnation, PSEQ_EPOCH_MAX) << 24) + 1
        self._own = PresenceRecord(self.self_id, pseq, disk, score, endpoints, host_class, asleep)
        self.queue.put(("p", self.self_id), self._own)
        self._next_presence_ms = now + self.cfg.presence_refresh_for(self.swim.n)

    def _take_presence(self, p: PresenceRecord, now: int, *, rebroadcast: bool) -> None:
        if p.peer == self.self_id:
            return
        if p.peer not in self.swim.members:
            self.out.count("presence_about_nonmember")
            return
        held = self._presence.get(p.peer)
        if held is not None and held.pseq >= p.pseq:
            return
        self._presence[p.peer] = Presence(p.peer, p.pseq, p.disk_free_bytes, p.uptime_score, p.endpoints,
                                          p.host_class, p.asleep,
                                          now + self.cfg.presence_ttl_for(self.swim.n))
        seen = self._pseq_seen.get(p.peer)
        if seen is not None and p.pseq <= seen:
            return  # held before (then dropped when the member died): already rumoured once
        self._pseq_seen[p.peer] = p.pseq
        if rebroadcast:
            # a presence from a later epoch than we knew (a fleet starting together is at epoch 0)
            # means its sender restarted since it last heard ours
            if (seen if seen is not None else 0) >> 24 < p.pseq >> 24:
                self._newer(p.peer)
            self.queue.put(("p", p.peer), p)

    def _newer(self, peer: str) -> None:
        """A member restarted (its presence sequence began a new epoch): it may have lost what it
        held, so send it our presence now — one small frame to it, not a fleet-wide rumour —
        instead of waiting for probing to pair us (N probe periods in a fleet of N). Not on a
        mere refutation (a higher incarnation, same epoch): a refuting member lost nothing, and
        every member answering every refutation cost each node one frame per refutation in the
        fleet — at 1000 nodes on a lossy WAN, 47 frames a second each."""
        if self._own is None:
            self._presence_sent.pop(peer, None)
            return
        self.out.send(peer, Gossip((replace(self._own),)))  # a direct reply, apart from the rumour
        self._presence_sent[peer] = (self._own.pseq, self._now)

    def _gone(self, peer: str) -> None:
        """A member died, left or was removed: drop its soft state and document sync session."""
        self._presence.pop(peer, None)
        self._presence_sent.pop(peer, None)
        self._gap_sync_ms.pop(peer, None)
        self.doc.forget_peer(peer)


SOFT_STATE_HINT = (f"disk_free_bytes 0..2^64-1, uptime_score 0..1, at most {ENDPOINTS_MAX} endpoints of "
                   f"1..{ENDPOINT_CHARS_MAX} chars, host_class up to {HOST_CLASS_CHARS_MAX} chars")


def _soft_state_ok(disk: object, score: object, endpoints: object, host_class: object) -> bool:
    # checked here, not on the wire: a bad value would otherwise make every peer refuse our frames
    return (type(disk) is int and 0 <= disk <= U64_MAX
            and type(score) in (int, float) and math.isfinite(score) and 0 <= score <= 1  # type: ignore[arg-type]
            and isinstance(endpoints, tuple | list) and len(endpoints) <= ENDPOINTS_MAX
            and all(isinstance(x, str) and 0 < len(x) <= ENDPOINT_CHARS_MAX for x in endpoints)
            and isinstance(host_class, str) and len(host_class) <= HOST_CLASS_CHARS_MAX)

"""MeshNode: one node's dissemination protocol, ``handle(event, now_ms) -> list[Effect]``.

Three mechanisms move state, each covering the others' gaps:

1. **Rumour mongering** (fast). A local feed delta is queued as a broadcast and pushed at once
   to ``eager_fanout_max`` random live peers; every node that applies it fresh re-queues it and
   pushes it on at once too, and every ``gossip_interval_ms`` each node sends its queue to
   ``fanout_max`` random live peers — each broadcast at most ``retransmit_limit(n)`` times by each
   node, least sent first, and only the first time that node sees it (a duplicate is known by its
   hash and not even decoded). Membership records and presence ride their own queue. A
   fleet-document change is pushed as a doc sync message to the fanout. ``gossip_stats()`` says
   where the bytes go.
2. **Push-pull anti-entropy** (complete). Every ``sync_interval_ms`` a 16-byte digest (hash of the
   feed version vector and the document heads) goes to ``digest_peers_max`` random live peers.
   Only on a mismatch does the receiver answer, with a SUMMARY (one hash per bucket of feed
   owners, see ``antientropy``); the other side answers with its vector for the differing buckets
   only (SYNC, reply=True), gets exactly the deltas it lacks there (DELTAS) plus the peer's vector
   for those buckets, and sends exactly the peer's missing deltas back. Differing heads start (or
   restart) a document sync. A delta that does not apply for a gap asks its sender for a SYNC.
3. **SWIM failure detection** (see ``swim``), with presence soft state piggybacked on ping/ack
   (only when the peer has not had our current presence) and broadcast on change and every
   ``presence_refresh_for(n)``; a presence is valid ``presence_ttl_for(n)`` after its owner issued
   it (see ``presence``). Membership and presence also ride anti-entropy (member buckets in the
   SUMMARY), so a missed rumour heals within a sync interval.

Trust: liveness statements and presence are signed by the member they are about (``signing``);
a forged record is refused, counted (``*_forged``) and logged at most once a minute per sender,
and the rest of that sender's frame is not checked further. At most
``signature_checks_per_frame_max`` signatures are checked per frame (~140 µs each), so no frame
can buy unbounded CPU; what was skipped heals through anti-entropy from honest peers.

Frames from a peer that is not a member are refused and counted; a frame that does not decode is
refused, counted and logged; neither ever raises out of ``handle``. The core is deterministic in
(rng state, event sequence, now_ms values): it iterates only lists and insertion-ordered dicts.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from tva.errors import GapError, InvalidInput, RemoteDataError, RevokedPeer, StaleData

from .antientropy import Reconciler, SoftVector
from .config import MeshConfig
from .frames import (
    FRAME_VERSION_MAX,
    FRAME_VERSION_MIN,
    INCARNATION_MAX,
    ITEMS_MAX,
    PEER_CHARS_MAX,
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
    Records,
    Scope,
    SoftEntry,
    Summary,
    Sync,
    UnknownFrame,
    UnknownItem,
    decode_frame,
)
from .outbox import (
    FRAME_OVERHEAD_BYTES,
    BroadcastQueue,
    Outbox,
    RecentKeys,
    error_name,
    gossip_stats,
)
from .presence import (
    SOFT_STATE_HINT,
    PresenceBook,
    as_presence,
    check_remembered,
    from_presence,
    restarted,
    soft_state_ok,
)
from .signing import Signer, Verifier, peer_verifier, presence_ok
from .swim import ALIVE, ASLEEP, LEFT, Swim
from .trust import SignatureGate, Unchecked
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
    PeerWireVersion,
    Presence,
    RestorePresence,
    Rng,
    SetSoftState,
    StateChanged,
    Tick,
    Wake,
)


class MeshNode:
    def __init__(self, self_id: str, config: MeshConfig, feeds: FeedStore, doc: DocSync, rng: Rng,
                 *, signer: Signer, verify: Verifier = peer_verifier, incarnation: int = 0) -> None:
        if not isinstance(self_id, str) or not 0 < len(self_id) <= PEER_CHARS_MAX:
            raise InvalidInput(f"self_id must be a peer id of 1..{PEER_CHARS_MAX} characters")
        if getattr(signer, "peer_id", None) != self_id:
            raise InvalidInput("the signer's peer id is not self_id", hint="pass this node's own NodeKey")
        if type(incarnation) is not int or not 0 <= incarnation < INCARNATION_MAX:
            raise InvalidInput(f"incarnation must be an int in 0..{INCARNATION_MAX - 1}")
        self.self_id, self.cfg, self.feeds, self.doc, self.rng = self_id, config, feeds, doc, rng
        self.out = Outbox(config.frame_bytes_max)
        self.gate = SignatureGate(verify, config, self.out)
        # membership and presence records (in gossip frames and on pings); feed deltas (gossip
        # frames only, a big one alone): an item bigger than the largest frame it can go in is
        # dropped when queued, counted (anti-entropy carries deltas; records are small)
        self.queue = BroadcastQueue(config.broadcast_queue_max, config.gossip_bytes_max)
        self.dqueue = BroadcastQueue(config.broadcast_queue_max, config.frame_bytes_max - FRAME_OVERHEAD_BYTES)
        self.swim = Swim(self_id, config, rng, self.out, self.queue, signer=signer, verify=self.gate.verify,
                         extras=self._extras, on_gone=self._gone, incarnation=incarnation,
                         on_forged=lambda rec: self._forged("member_records", rec.peer),
                         on_incarnation=self._incarnation_changed, on_record=self._soft_changed)
        self._now = 0
        self._next_gossip_ms: int | None = None
        self._next_sync_ms: int | None = None
        self._next_presence_ms: int | None = None
        self.soft = SoftVector()
        self.sync = Reconciler(feeds, doc, self.out, config.frame_bytes_max, soft=self.soft,
                               soft_answer=self._soft_answer, records_bytes_max=config.gossip_bytes_max)
        self.book = PresenceBook(signer)
        self._presence_sent: dict[str, tuple[int, int]] = {}  # peer -> (our pseq sent directly, when)
        self._gap_sync_ms: dict[str, int] = {}
        self._seen_deltas = RecentKeys()  # hashes of deltas applied or found stale here
        self._fresh_delta = False  # the frame being handled brought a delta new to us
        self._feeds_changed = self._doc_changed = False
        self._soft_changed(self_id)

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
        out = {}
        for peer, m in self.swim.members.items():
            if m.state not in (Liveness.DEAD, LEFT):
                p = self.book.view(peer, self._now)
                if p is not None:
                    out[peer] = p
        if self.book.own is not None:
            out[self.self_id] = as_presence(self.book.own, self._now + self.cfg.presence_ttl_for(self.swim.n))
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
        self.gate.begin("")
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
            for peer in [p for p in self.book.held if p not in self.swim.members]:
                self.book.drop(peer)
            self.gate.forget(self.swim.members)
            self.sync.forget_refusals()  # an owner refused so far may be admitted now
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
        elif isinstance(event, PeerWireVersion):
            if type(event.version) is not int or not FRAME_VERSION_MIN <= event.version <= FRAME_VERSION_MAX:
                raise InvalidInput(f"wire version {event.version!r} is not one this build speaks "
                                   f"({FRAME_VERSION_MIN}..{FRAME_VERSION_MAX})")
            self.out.versions[event.peer] = event.version
        if self._feeds_changed or self._doc_changed:
            self.sync.invalidate()
            self.out.emit(StateChanged(self._feeds_changed, self._doc_changed))
        return self.out.reset()

    def _tick(self, now: int) -> None:
        cfg = self.cfg
        if self._next_gossip_ms is None:
            self._next_gossip_ms = now + self.rng.randrange(cfg.gossip_interval_ms)
            self._next_sync_ms = now + self.rng.randrange(cfg.sync_interval_ms)
            # Say who we are now, as memberlist's join does: after a restart every peer learns it (and
            # from our presence, that we restarted: it sends us its own, ``_newer``); a peer already
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
            self.sync.forget_refusals(now)
            digest = self.sync.digest_frame()
            for peer in self.swim.alive.sample(self.rng, cfg.digest_peers_max):
                self.out.send(peer, digest)
        if self._next_presence_ms is not None and now >= self._next_presence_ms and self.book.own:
            o = self.book.own
            self._issue_presence(o.disk_free_bytes, o.uptime_score, o.endpoints, o.host_class, o.asleep, now)

    def _on_local(self, event: LocalChanged, now: int) -> None:
        self.sync.invalidate()  # any LocalChanged, even an empty one, means "the replicas changed"
        if event.delta is not None:
            key = hashlib.blake2b(event.delta, digest_size=16).digest()
            self._seen_deltas.add(key)
            self.dqueue.put(key, DeltaItem(event.delta))
            self._flush_gossip(self.cfg.eager_fanout_max)  # eager push: not at the next gossip round
        if event.doc_changed:
            self._push_doc(exclude="")

    def _announce(self, event: AnnounceSleep | Wake | Leave, now: int) -> None:
        state = {AnnounceSleep: ASLEEP, Wake: ALIVE, Leave: LEFT}[type(event)]
        if self.swim.self_state is LEFT or self.swim.self_state is state:
            return
        peers = self.swim.announce(state, now)
        if self.book.own is not None and state is not LEFT:
            o = self.book.own
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
            self._refused(str(peer), "a frame", "not a member")
            return
        try:
            frame = decode_frame(data, self.cfg.frame_bytes_max)
        except RemoteDataError as e:
            self.out.count(f"frames_refused_{error_name(e)}", notable=True)
            self._refused(peer, "a frame", str(e))
            return
        if isinstance(frame, UnknownFrame):  # a newer minor version's addition: not an error
            self.out.count("frames_unknown_kind")
            return
        self.gate.begin(peer)
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
                self.swim.on_ack(peer, frame, now)
        elif isinstance(frame, PingReq):
            self._take_items(peer, frame.items, now)
            self.swim.on_ping_req(peer, frame, now)
        elif isinstance(frame, Gossip):
            self._take_items(peer, frame.items, now)
        elif isinstance(frame, Records):
            self._take_items(peer, frame.items, now, rebroadcast=False)
        elif isinstance(frame, Digest):
            self.sync.on_digest(peer, frame)
        elif isinstance(frame, Summary):
            self.sync.on_summary(peer, frame)
        elif isinstance(frame, Sync):
            if self.sync.on_sync(peer, frame):
                self.sync.heads_differ(peer)
        elif isinstance(frame, Deltas):
            for d in frame.deltas:
                self._apply_delta(peer, d, now, rebroadcast=False)
        elif isinstance(frame, DocMessage):
            self._on_doc(peer, frame.data)
        elif isinstance(frame, Nack):
            self.swim.on_nack(peer, frame)

    def _take_items(self, peer: str, items: tuple[Item, ...], now: int, *, rebroadcast: bool = True) -> None:
        for item in items:
            try:
                if isinstance(item, MemberRecord):
                    self.swim.apply(item, now, rebroadcast=rebroadcast)
                elif isinstance(item, PresenceRecord):
                    self._take_presence(item, now, rebroadcast=rebroadcast)
                elif isinstance(item, UnknownItem):  # a newer minor version's: skip it, keep the rest
                    self.out.count("items_unknown_kind")
                else:
                    self._apply_delta(peer, item.data, now, rebroadcast=rebroadcast)
            except Unchecked:
                self.out.count("records_unchecked")

    def _forged(self, what: str, subject: str) -> None:
        self.gate.forged(what, subject, self._now, self.swim.members)

    def _refused(self, sender: str, what: str, detail: str) -> None:
        self.gate.refused(sender, what, detail, self._now, self.swim.members)

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
            self._seen_deltas.add(key)
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
            self._refused(peer, "a delta", str(e))
            if isinstance(e, RevokedPeer):
                self._refuse_owner(data, now)
            return
        self._seen_deltas.add(key)
        self.out.count("deltas_applied")
        self._feeds_changed = True
        if rebroadcast:
            self.dqueue.put(key, DeltaItem(data))
            self._fresh_delta = True

    def _refuse_owner(self, data: bytes, now: int) -> None:
        """We refuse this delta's owner as such (not admitted here): remember it for a while, so
        peers holding that feed stop re-sending it every sync round (``Reconciler.refused``)."""
        head = getattr(self.feeds, "delta_head", None)
        if head is None:
            return
        try:
            owner, version = head(data)
        except RemoteDataError:
            return
        self.sync.refuse(owner, version, now + self.cfg.refused_feed_ttl_ms)

    def _on_doc(self, peer: str, data: bytes) -> None:
        if self.sync.on_doc(peer, data, self._refused):
            self._doc_changed = True
            self._push_doc(exclude=peer)

    def _push_doc(self, exclude: str) -> None:
        self.sync.push_doc(self.swim.alive.sample(self.rng, self.cfg.fanout_max, exclude=(exclude,)))

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
            spent = self.dqueue.taken_bytes
            items += self.queue.take(budget - spent, limit, items_max=ITEMS_MAX - len(items))
            if not items:
                break
            self.out.send(peer, Gossip(tuple(items)))

    def _extras(self, peer: str, with_presence: bool) -> tuple[PresenceRecord | None, tuple[Item, ...]]:
        """Presence (when the frame has a slot for it and the peer lacks our current one) and
        piggyback for a ping/ack/ping-req."""
        presence = None
        sent = self._presence_sent.get(peer)
        own = self.book.own
        if with_presence and own is not None and (sent is None or sent[0] != own.pseq
                                                  or self._now - sent[1] >= self.cfg.presence_resend_ms):
            presence = self._own_presence()
            self._presence_sent[peer] = (own.pseq, self._now)
        items: list[Item] = []
        m = self.swim.members.get(peer)
        if m is not None and m.state is not ALIVE:
            items.append(m.record())  # buddy system: tell a suspect it is suspected
        items += self.queue.take(self.cfg.piggyback_bytes_max, self.cfg.retransmit_limit(self.swim.n))
        return presence, tuple(items)

    def _set_soft_state(self, e: SetSoftState, now: int) -> None:
        # checked here, not on the wire: a bad value would otherwise make every peer refuse our frames
        if not soft_state_ok(e.disk_free_bytes, e.uptime_score, e.endpoints, e.host_class):
            raise InvalidInput("SetSoftState out of range", hint=SOFT_STATE_HINT)
        asleep = self.book.own.asleep if self.book.own is not None else False
        self._issue_presence(e.disk_free_bytes, float(e.uptime_score), tuple(e.endpoints), e.host_class,
                             asleep, now)

    def _restore_presence(self, records: tuple[Presence, ...], now: int) -> None:
        check_remembered(records)  # all checked before any is taken: InvalidInput
        ttl = self.cfg.presence_ttl_for(self.swim.n)
        for r in records:
            try:
                rec = from_presence(r, ttl)
            except RemoteDataError:
                self.out.count("presence_restore_refused", notable=True)
                continue
            # A remembered record is re-checked like any other: the state dir is ours, but a
            # presence is only ever taken signed by its owner.
            self._take_presence(rec, now, rebroadcast=False, restored=True)

    def _issue_presence(self, disk: int, score: float, endpoints: tuple[str, ...], host_class: str,
                        asleep: bool, now: int) -> None:
        # Ordered by (incarnation, sequence): a restart at any incarnation starts at sequence 1 and
        # is accepted once peers have told it where it stood (see ``presence``).
        self.book.issue(self.swim.incarnation, disk, score, endpoints, host_class, asleep)
        self.queue.put(("p", self.self_id), self._own_presence())
        # up to a tenth early, at random: a fleet that started together must not refresh together
        refresh = self.cfg.presence_refresh_for(self.swim.n)
        self._next_presence_ms = now + refresh - self.rng.randrange(refresh // 10 + 1)
        self._soft_changed(self.self_id)

    def _own_presence(self) -> PresenceRecord | None:
        """Our presence as it goes on the wire: valid for a whole TTL from now."""
        own = self.book.own
        return None if own is None else replace(own, remaining_ms=self.cfg.presence_ttl_for(self.swim.n))

    def _incarnation_changed(self) -> None:
        """We refuted or announced: our presence names the incarnation, so it is issued again."""
        if self.book.own is not None and self.book.own.incarnation != self.swim.incarnation:
            o = self.book.own
            self._issue_presence(o.disk_free_bytes, o.uptime_score, o.endpoints, o.host_class, o.asleep, self._now)
        self._soft_changed(self.self_id)

    def _take_presence(self, p: PresenceRecord, now: int, *, rebroadcast: bool, restored: bool = False) -> None:
        if p.peer == self.self_id:
            own = self.book.own
            if own is not None and p.order >= own.order and p.sig != own.sig and not restored:
                # our own presence from before a restart stands at or above what we say now: refute
                if not presence_ok(self.gate.verify, p):
                    self._forged("presence", p.peer)
                    return
                self.swim.refute_above(p.incarnation)
            return
        if p.peer not in self.swim.members:
            self.out.count("presence_about_nonmember")
            return
        if not self.book.newer(p):
            held = self.book.held[p.peer].record
            if p.peer == self.gate.sender and held.sig != p.sig:
                # its owner is behind (or beside) what it said before — a restart at an equal or
                # lower incarnation: tell it, so it refutes above it; end_frame rate-limits this
                self.swim.correct(self.book.with_remaining(p.peer, now))
            return
        if not presence_ok(self.gate.verify, p):
            self._forged("presence", p.peer)
            return
        held = self.book.held.get(p.peer)
        self.book.put(p, now, self.cfg.presence_ttl_for(self.swim.n))
        self._soft_changed(p.peer)
        if rebroadcast:
            self.queue.put(("p", p.peer), self.book.with_remaining(p.peer, now))
            if restarted(p, held.record if held is not None else None):
                self._newer(p.peer)

    def _newer(self, peer: str) -> None:
        """A member restarted (its presence says so, see ``presence.restarted``): it may have lost what it
        held, so send it our presence now — one small frame to it, not a fleet-wide rumour — instead
        of waiting for probing to pair us (N probe periods in a fleet of N). Not on a mere
        refutation: a refuting member lost nothing, and every member answering every refutation
        cost each node one frame per refutation in the fleet — 47 a second at 1000 nodes on a
        lossy WAN (issue 19)."""
        own = self._own_presence()
        if own is None:
            self._presence_sent.pop(peer, None)
            return
        self.out.send(peer, Gossip((own,)))  # _own_presence() is a copy, apart from the rumour
        self._presence_sent[peer] = (own.pseq, self._now)

    def _gone(self, peer: str) -> None:
        """A member died, left or was removed: drop its document sync session. Its presence stays
        held (``presence()`` hides it) so anti-entropy compares the same thing on every node."""
        self._presence_sent.pop(peer, None)
        self._gap_sync_ms.pop(peer, None)
        self.doc.forget_peer(peer)

    # --- membership and presence in anti-entropy ----------------------------------------------------

    def _soft_changed(self, peer: str) -> None:
        """Keep the anti-entropy vector entry of ``peer`` equal to what we hold about it."""
        if peer == self.self_id:
            entry: SoftEntry = (self.swim.incarnation, self.swim.self_state.rank, *self.book.order_of(peer))
        else:
            m = self.swim.members.get(peer)
            if m is None:
                self.soft.set(peer, None)
                return
            entry = (m.incarnation, m.state.rank, *self.book.order_of(peer))
        self.soft.set(peer, entry)

    def _soft_answer(self, theirs: dict[str, SoftEntry], scope: Scope | None) -> list[Item]:
        """The member and presence records the holder of ``theirs`` lacks, within ``scope``."""
        out: list[Item] = []
        for peer, (inc, rank, pinc, pseq) in self.soft.scoped(scope).items():
            t = theirs.get(peer, (0, 0, 0, 0))
            if (inc, rank) > (t[0], t[1]):
                out.append(self.swim.own_record() if peer == self.self_id else self.swim.members[peer].record())
            if (pinc, pseq) > (t[2], t[3]):
                p = self._own_presence() if peer == self.self_id else self.book.with_remaining(peer, self._now)
                if p is not None:
                    out.append(p)
        if out:
            self.out.count("records_sent_by_sync", len(out))
        return out



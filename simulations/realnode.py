"""A simulated host running the real cores: ``mesh.core.MeshNode`` over a real ``crdt.FeedSet``
and ``crdt.FleetDoc``, with ``agent.policy`` (custody, duties, actions, peers_for) run on this
node's own view — so disagreement during a partition is visible to the checkers.

What is the simulator's and not the product's: when policy runs (every ``policy_interval_ms``),
how a FetchCopy becomes a transfer (the world simulates it), and where a DHT announce is
decided (the public-swarm-face duty primary announces items whose policy the core says is public).
"""

from __future__ import annotations

import random

from agent.feed_upkeep import GC_INTERVAL_MS, collect_garbage, finished_intent_keys
from agent.policy import (
    CustodyConfig,
    DropCopy,
    ExternalPeer,
    FetchCopy,
    FriendPeer,
    StartRepair,
    actions_for,
    item_policy,
    peers_for,
)
from agent.policy.friend_custody import count_friends
from crdt import records
from crdt.feedset import AppliedDelta, FeedSet, OwnFeed
from crdt.fleetdoc import FleetDoc
from crdt.identity import NodeKey, public_from_peer_id
from mesh.core import (
    AnnounceSleep,
    Leave,
    Liveness,
    LivenessChanged,
    LocalChanged,
    MembersChanged,
    MeshConfig,
    MeshNode,
    Presence,
    RestorePresence,
    SetSoftState,
    StateChanged,
    Tick,
    Wake,
)
from mesh.core import FrameReceived as MeshFrame
from mesh.core import Send as MeshSend
from mesh.core.presence import as_presence
from mesh.core.signing import CachingVerifier, issue_presence
from simulations.adapter import (
    AddFriend,
    AddHolding,
    Announce,
    Applied,
    Change,
    DeclaredDead,
    Effect,
    Fetch,
    FriendOffer,
    FriendsCounted,
    HoldingBatch,
    PeerAnswer,
    RemoveFriend,
    RemoveHolding,
    RepairStart,
    Revoke,
    Send,
    SetDiskFull,
    SetPin,
    Trimmed,
    Unpin,
    infohash_of,
)
from simulations.realview import Interner, SharedView, ViewBuilder
from simulations.sharing import (
    FeedPool,
    RecentVerdicts,
    SharedFeedSet,
    SharedState,
    VectorPool,
    install_antientropy_memo,
    install_decode_memo,
)
from tva.errors import InvalidInput, RemoteDataError

DISK_FREE_BYTES = 4 * 1024**4  # a roomy server disk; "full" is 0
FETCH_RETRY_MS = 10_000
GC_FIRST_MS = 5_000  # the housekeeping's first tick after a start
TORRENT_PORT = 6881


def host_card(name: str, host_class: str, index: int, fleet: int, addressed: bool) -> records.HostCard:
    """A simulated host's card. ``addressed``: with an underlay address and a torrent port, so its
    copies show in ``peers_for`` and in friend views (multi-fleet runs; older scenarios keep the
    bare card, and their traces, as they were)."""
    if not addressed:
        return records.HostCard(name, host_class)
    ip = f"10.{100 + fleet}.{index // 200}.{index % 200 + 1}"
    return records.HostCard(name, host_class, listen_addrs=(f"/ip4/{ip}/tcp/4810",), torrent_port=TORRENT_PORT)


def holding_record(op: AddHolding) -> records.Holding:
    source = op.source or ("private-tracker" if op.policy == "f2f_only" else "public")
    return records.Holding(op.item, infohash_of(op.item), op.size_bytes, "complete", op.policy, source,
                           custody=op.custody)


def soft_state(disk_free_bytes: int, host_class: str) -> SetSoftState:
    """A simulated host's soft state: its disk, perfect uptime, no endpoints."""
    return SetSoftState(disk_free_bytes, 1.0, (), host_class)


class TrackedFeeds:
    """The FeedStore seam, passed through to the real FeedSet, noting what got applied."""

    def __init__(self, feeds: FeedSet) -> None:
        self.inner = feeds
        self.applied: list[tuple[bytes, int]] = []

    def version_vector(self) -> dict[bytes, int]:
        return self.inner.version_vector()

    def deltas_since(self, vv: dict[bytes, int], bytes_max: int) -> list[bytes]:
        return self.inner.deltas_since(vv, bytes_max)

    def delta_head(self, data: bytes) -> tuple[bytes, int]:
        return self.inner.delta_head(data)

    def apply_delta(self, data: bytes) -> AppliedDelta:
        result = self.inner.apply_delta(data)
        self.applied.append((result.owner, result.version))
        return result


class RealShared:
    """Per-run values every node starts from: the fleet's genesis document and configs."""

    def __init__(self, genesis: bytes, fleet_id: str, mesh: MeshConfig, custody: CustodyConfig,
                 policy_interval_ms: int, policy_memo: bool = True, share_state: bool = True,
                 fleet: int = 0, addressed: bool = False) -> None:
        self.genesis = genesis
        self.fleet = fleet  # this fleet's number in a multi-fleet run
        self.addressed = addressed  # cards carry an underlay address and a torrent port
        # share_state: feeds copied on write and vectors shared between nodes (simulations.sharing);
        # off, every node parses and holds its own (the reference the sharing is tested against)
        self.feed_pool = FeedPool() if share_state else None
        self.vectors = VectorPool() if share_state else None
        if share_state:
            install_antientropy_memo()
            install_decode_memo()
        self.fleet_id = fleet_id
        self.mesh = mesh
        self.custody = custody
        self.policy_interval_ms = policy_interval_ms
        # policy_memo: share parses, views, duties and plans between nodes (simulations.realview);
        # off, every node computes its own (the reference the memo is tested against).
        self.interner = Interner(memo=policy_memo)
        # Every node starts from this one verified replica (``FleetDoc.clone`` shares it until a
        # node changes its own); admissions do not change during a run (invites are not simulated).
        self.template = FleetDoc.load(genesis, None, expected_fleet_id=fleet_id)
        self.genesis_members = self.template.members()
        # Every node checks every record's signature, as in production; a verdict is a pure function
        # of (peer, signature, message), so the nodes share one cache instead of each paying ~140 µs.
        self.verify = RecentVerdicts(CachingVerifier(entries_max=1 << 18))


def make_genesis(founder: NodeKey, members: list[str], nonce: bytes) -> bytes:
    """One genesis for the fleet, the founder its owner, every other member admitted (invites are
    not simulated). The fleet id is derived from it: ``fleet_id_of``."""
    doc = FleetDoc.genesis("sim", founder, "host-0", 1, nonce)
    for i, peer in enumerate(members):
        if peer != founder.peer_id:
            doc.admit(peer, f"host-{i}", "member", None, 1)
    return doc.save()


def fleet_id_of(genesis: bytes) -> str:
    return FleetDoc.load(genesis, None).fleet_id


def warm_state(shared: RealShared, keys: list[NodeKey], classes: list[str],
               holdings: list[list[AddHolding]], pins: list[SetPin], friends: list[str],
               first_index: int = 0) -> dict:
    """A converged fleet's state, made through the real writers: each host's OwnFeed signs
    its card and holdings; the founder's replica of the genesis records the pins and friends.
    A running fleet also holds everyone's presence: the records each host will issue at start
    (incarnation 0, sequence 1) are handed over as remembered presence (``RestorePresence``)."""
    template = FeedSet()
    for i, (key, host_class, holds) in enumerate(zip(keys, classes, holdings, strict=True)):
        own = OwnFeed(key, FeedSet())
        card = host_card(f"host-{first_index + i}", host_class, first_index + i, shared.fleet, shared.addressed)
        own.put(records.CARD_KEY, records.encode_card(card))
        for h in holds:
            own.put(records.holding_key(h.item), records.encode_holding(holding_record(h)))
        template.apply_delta(own.commit(1))  # type: ignore[arg-type]
    doc = shared.template.clone(keys[0])  # the owner records the pins and friend links
    for pin in pins:
        doc.pin(pin.item, pin.copies_min, pin.copies_max, 1, friends=pin.friends)
    for f in friends:
        doc.add_friend(f, "friend", {}, 1)
    # exactly what each node's first SetSoftState will issue (sequence 1 at incarnation 0, signed
    # by the node: Ed25519 is deterministic), so peers already hold it and its rumour stops at the
    # first hop
    presence: list[Presence] = []
    for key, host_class in zip(keys, classes, strict=True):
        soft = soft_state(DISK_FREE_BYTES, host_class)
        presence.append(as_presence(issue_presence(key, 0, 1, soft.disk_free_bytes, soft.uptime_score,
                                                   soft.endpoints, soft.host_class, False), 0))
    if shared.feed_pool is not None:  # shared (simulations.sharing): the objects, not their bytes
        pool = shared.feed_pool
        feeds: object = SharedState({o: pool.intern(template.feed(o)) for o in template.owners()},  # type: ignore[arg-type]
                                    template.allowed, template.revoked)
        return {"feeds": feeds, "doc": doc, "incarnation": -1, "presence": tuple(presence)}
    return {"feeds": template.to_bytes(), "doc": doc.save(), "incarnation": -1, "presence": tuple(presence)}


class RealNode:
    def __init__(self, key: NodeKey, host_class: str, rng: random.Random, shared: RealShared,
                 name: str, saved: dict | None, index: int = 0, friend_inputs=None) -> None:
        self.key = key
        self.index = index
        # (node) -> agent.friend_inputs.FriendInputs of this node now (simulations.friends), or None
        self.friend_inputs = friend_inputs
        self.peer_id = key.peer_id
        self.host_class = host_class
        self.name = name
        self.shared = shared
        if shared.feed_pool is not None:
            feeds: FeedSet = SharedFeedSet(shared.feed_pool, shared.vectors, saved["feeds"] if saved else None,  # type: ignore[arg-type]
                                           key.public)
        else:
            feeds = FeedSet.from_bytes(saved["feeds"]) if saved else FeedSet()
        saved_doc = saved["doc"] if saved else None
        if saved_doc is None:
            self.doc = shared.template.clone(key)
        elif isinstance(saved_doc, FleetDoc):  # shared: what load(save()) gives, without re-verifying
            self.doc = saved_doc.clone(key)
        else:
            self.doc = FleetDoc.load(saved_doc, key, expected_fleet_id=shared.fleet_id)
        self.feeds = TrackedFeeds(feeds)
        self.own = OwnFeed(key, feeds)
        incarnation = saved["incarnation"] + 1 if saved else 0
        self._remembered = saved.get("presence", ()) if saved else ()
        self.mesh = MeshNode(self.peer_id, shared.mesh, self.feeds, self.doc, rng, signer=key,
                             verify=shared.verify, incarnation=incarnation)
        self.views = ViewBuilder(shared.interner)
        self.disk_free = DISK_FREE_BYTES
        self._started = False
        self._members: frozenset[str] = frozenset()
        self._revoked: frozenset[str] = frozenset()
        self._classes: dict[str, str] = {}
        self._next_policy_ms = 0
        self._view = None
        self._fetching: dict[str, int] = {}
        self._announced: set[str] = set()
        self.refused = 0
        saved_counts = saved or {}
        self.writes_refused = saved_counts.get("writes_refused", 0)  # own writes the feed limits refused
        self.tombstones_collected = saved_counts.get("tombstones_collected", 0)
        self._next_gc_ms = 0
        self.gc_mark = (0, 0)  # (own feed version, live entries) right after the last GC

    # --- plumbing -----------------------------------------------------------------------------------
    def _handle(self, event: object, now_ms: int, out: list[Effect]) -> None:
        for eff in self.mesh.handle(event, now_ms):  # type: ignore[arg-type]
            if isinstance(eff, MeshSend):
                out.append(Send(eff.peer, eff.data, eff.bulk))
            elif isinstance(eff, LivenessChanged):
                if eff.state is Liveness.DEAD:
                    out.append(DeclaredDead(eff.peer, eff.incarnation))
                self._view = None
            elif isinstance(eff, StateChanged):
                self._view = None
                if eff.doc:
                    self._doc_changed(now_ms, out)
        for owner, version in self.feeds.applied:
            out.append(Applied(self.shared.interner.peer(owner), version))
        self.feeds.applied.clear()

    def _members_event(self, now_ms: int, out: list[Effect], classes: dict[str, str]) -> None:
        self._classes = classes
        self._handle(MembersChanged(self._members, classes), now_ms, out)

    def _doc_changed(self, now_ms: int, out: list[Effect]) -> None:
        revoked = frozenset(self.doc.revocations())
        if revoked == self._revoked:
            return
        self._revoked = revoked
        for peer in sorted(revoked):
            if peer != self.peer_id:  # a revoked host keeps its own feed; nobody listens to it
                self.feeds.inner.revoke(public_from_peer_id(peer))
        self._members = self.shared.genesis_members - revoked
        self._members_event(now_ms, out, self._classes)

    def _commit(self, now_ms: int, out: list[Effect]) -> None:
        delta = self.own.commit(now_ms)
        if delta is not None:
            out.append(Applied(self.peer_id, self.own.version))
            self._view = None
            self._handle(LocalChanged(delta=delta), now_ms, out)

    def _soft_state(self, now_ms: int, out: list[Effect]) -> None:
        self._handle(soft_state(self.disk_free, self.host_class), now_ms, out)

    def _start(self, now_ms: int, out: list[Effect]) -> None:
        self._started = True
        self._revoked = frozenset(self.doc.revocations())
        self._members = self.shared.genesis_members - self._revoked
        self._members_event(now_ms, out, {})
        if self._remembered:  # warm start only: a restarted agent keeps no presence (nor does this)
            self._handle(RestorePresence(self._remembered), now_ms, out)
        self._soft_state(now_ms, out)
        if self.own.feed is None or records.card_of(self.own.feed) is None:
            card = host_card(self.name, self.host_class, self.index, self.shared.fleet, self.shared.addressed)
            self.own.put(records.CARD_KEY, records.encode_card(card))
            self._commit(now_ms, out)
        self._next_policy_ms = now_ms + self.shared.policy_interval_ms
        self._next_gc_ms = now_ms + GC_FIRST_MS

    def _collect_garbage(self, now_ms: int, out: list[Effect]) -> None:
        """The agent's housekeeping: tombstones collected on the GC horizon, the head pushed."""
        self._next_gc_ms = now_ms + GC_INTERVAL_MS
        feed = self.own.feed
        before = len(feed.tombstone_keys()) if feed is not None else 0
        delta = collect_garbage(self, now_ms)
        feed = self.own.feed
        if feed is not None and not self.own.pending_count:  # what the GC left (long-haul checkers)
            self.tombstones_collected += before - len(feed.tombstone_keys())
            self.gc_mark = (feed.version, feed.entry_count - len(feed.tombstone_keys()))
        if delta is not None:
            out.append(Applied(self.peer_id, self.own.version))
            self._view = None
            self._handle(LocalChanged(delta=delta), now_ms, out)

    # --- SimNode -----------------------------------------------------------------------------------
    def tick(self, now_ms: int) -> list[Effect]:
        out: list[Effect] = []
        if not self._started:
            self._start(now_ms, out)
        self._handle(Tick(), now_ms, out)
        if now_ms >= self._next_policy_ms:
            self._next_policy_ms = now_ms + self.shared.policy_interval_ms
            self._policy(now_ms, out)
        if now_ms >= self._next_gc_ms:
            self._collect_garbage(now_ms, out)
        return out

    def next_deadline_ms(self, now_ms: int) -> int:
        d = self.mesh.next_deadline_ms()
        if not self._started:
            return now_ms
        mine = min(self._next_policy_ms, self._next_gc_ms)
        return min(d, mine) if d is not None else mine

    def receive(self, src: str, frame: bytes, now_ms: int) -> list[Effect]:
        out: list[Effect] = []
        if not self._started:
            self._start(now_ms, out)
        self._handle(MeshFrame(src, frame), now_ms, out)
        return out

    def change(self, op: Change, now_ms: int) -> list[Effect]:
        out: list[Effect] = []
        if not self._started:
            self._start(now_ms, out)
        if isinstance(op, AddHolding | RemoveHolding | HoldingBatch):
            try:
                for c in op.changes if isinstance(op, HoldingBatch) else (op,):
                    self._write_holding(c)
            except InvalidInput:
                self.writes_refused += 1  # the agent's torrent manager would log it and retry
                self.own._clear_pending()
                return out
            self._commit(now_ms, out)
        elif isinstance(op, SetPin | Unpin | Revoke | AddFriend | RemoveFriend):
            if isinstance(op, SetPin):
                self.doc.pin(op.item, op.copies_min, op.copies_max, now_ms, friends=op.friends)
            elif isinstance(op, Unpin):
                self.doc.unpin(op.item, now_ms)
            elif isinstance(op, Revoke):
                self.doc.revoke(op.peer, "simulated revocation", now_ms)
            elif isinstance(op, RemoveFriend):
                self.doc.remove_friend(op.fleet_id, now_ms)
            else:
                self.doc.add_friend(op.fleet_id, "friend", dict(op.link), now_ms)
            self._view = None
            self._handle(LocalChanged(doc_changed=True), now_ms, out)
            self._doc_changed(now_ms, out)
        elif isinstance(op, SetDiskFull):
            self.disk_free = 0 if op.full else DISK_FREE_BYTES
            self._soft_state(now_ms, out)
        return out

    def _write_holding(self, op: AddHolding | RemoveHolding) -> None:
        if isinstance(op, RemoveHolding):
            self.own.delete(records.holding_key(op.item))
            return
        self.own.put(records.holding_key(op.item), records.encode_holding(holding_record(op)))
        self._fetching.pop(op.item, None)

    def leave(self, now_ms: int) -> list[Effect]:
        out: list[Effect] = []
        self._handle(Leave(), now_ms, out)
        return out

    def sleep(self, now_ms: int) -> list[Effect]:
        out: list[Effect] = []
        if self._started:
            self._handle(AnnounceSleep(), now_ms, out)
        return out

    def wake(self, now_ms: int) -> list[Effect]:
        out: list[Effect] = []
        if self._started:
            self._handle(Wake(), now_ms, out)
        return out

    def snapshot(self) -> dict:
        inner = self.feeds.inner
        # the counters are the simulator's (the agent keeps them in its log and status)
        counts = {"writes_refused": self.writes_refused, "tombstones_collected": self.tombstones_collected}
        if isinstance(inner, SharedFeedSet):  # shared: what the atomic save would load, as objects
            return {"feeds": inner.shared_state(), "doc": self.doc, "incarnation": self.mesh.incarnation(), **counts}
        return {"feeds": inner.to_bytes(), "doc": self.doc.save(), "incarnation": self.mesh.incarnation(), **counts}

    def incarnation(self) -> int:
        return self.mesh.incarnation()

    # --- policy ------------------------------------------------------------------------------------
    def _shared_view(self) -> SharedView:
        # ``_view`` holds a SharedView (possibly shared with other nodes: read-only); None: rebuild.
        if self._view is None:
            slots = len(self._friends().links) if self.friend_inputs is not None else 0
            self._view = self.views.build(self.peer_id, self.feeds.inner, self.doc, self.mesh.liveness(),
                                          self.mesh.presence(), friend_slots=slots)
        return self._view

    def _friends(self):
        return self.friend_inputs(self)  # type: ignore[misc]

    def view(self):
        return self._shared_view().view

    def _policy(self, now_ms: int, out: list[Effect]) -> None:
        self._view = None  # presence and leases age with time: rebuild
        shared = self._shared_view()
        view = shared.view
        classes = {p: h.host_class for p, h in view.hosts.items()}
        if classes != self._classes:  # new cards: tell the core which hosts are portable
            self._members_event(now_ms, out, classes)
        plans = shared.plans(now_ms, self.shared.custody)
        if self.friend_inputs is not None:  # as agent.service.custody_plans: friends' copies counted where allowed
            f = self._friends()
            if f.links:
                plans = count_friends(view, plans, f.links, f.views)
                out.extend(FriendsCounted(p.content, p.friend_copies) for p in plans if p.friend_copies)
        duties = shared.duties()
        for act in actions_for(self.peer_id, plans, duties, view, now_ms):
            if isinstance(act, StartRepair):
                intent = records.RepairIntent(act.content, act.target, act.lease_until_ms)
                # one key per target, as the agent records them: a pin needing two copies has two
                # intents in flight (one key per item let the second overwrite the first)
                self.own.put(records.intent_key(act.content, act.target), records.encode_intent(intent))
                out.append(RepairStart(act.content, act.target, self.peer_id))
            elif isinstance(act, FetchCopy):
                started = self._fetching.get(act.content)
                if started is None or now_ms - started >= FETCH_RETRY_MS:
                    self._fetching[act.content] = now_ms
                    out.append(Fetch(act.content, self.peer_id))
            elif isinstance(act, DropCopy):
                self.own.delete(records.holding_key(act.content))
                out.append(Trimmed(act.content, self.peer_id))
        for key in self._finished_intents(plans, view, now_ms):
            self.own.delete(key)
        self._commit(now_ms, out)
        face = next((d.primary for d in duties if d.duty == "public_swarm_face"), None)
        if face == self.peer_id:
            mine = view.by_peer.get(self.peer_id, set())
            for content in sorted(mine - self._announced):
                hold = view.by_content[content][self.peer_id]
                if item_policy(view, hold.infohash) == "public":
                    self._announced.add(content)
                    out.append(Announce(content, "dht", self.peer_id))

    def _finished_intents(self, plans, view, now_ms: int) -> list[str]:
        return finished_intent_keys(self.own.feed, plans, view, now_ms)

    # --- read-only views for the checkers ----------------------------------------------------------
    def gossip_stats(self) -> dict:
        return self.mesh.gossip_stats()

    def version_vector(self) -> dict[str, int]:
        peer = self.shared.interner.peer
        return {peer(o): v for o, v in sorted(self.feeds.inner.version_vector().items())}

    def doc_digest(self) -> str:
        return ",".join(sorted(h.hex()[:16] for h in self.doc.heads()))

    def live_view(self) -> frozenset[str]:
        lv = self.mesh.liveness()
        return frozenset(p for p, s in lv.items() if s in (Liveness.ALIVE, Liveness.SUSPECT)) | {self.peer_id}

    def duties(self) -> dict[str, str]:
        return {d.duty: d.primary or "" for d in self._shared_view().duties()}

    def peers_for(self, item: str, offers: tuple[FriendOffer, ...],
                  external: tuple[str, ...]) -> list[PeerAnswer]:
        ih = infohash_of(item)
        friends = [FriendPeer(o.fleet_id, o.peer, f"10.77.0.{i + 1}", 6881, ih, o.policy)
                   for i, o in enumerate(offers)]
        linked = sorted(self.doc.friends())
        if self.friend_inputs is not None:  # as agent.service.peers_for: verified views, usable links
            f = self._friends()
            friends.extend(f.peers_of(ih))
            linked = sorted(f.links)
        ext = [ExternalPeer(f"198.51.100.{i + 1}", 6881, src) for i, src in enumerate(external)]
        try:
            answer = peers_for(self.view(), ih, friends=friends, friend_fleets=linked, external=ext)
        except RemoteDataError:
            self.refused += 1
            return []
        return [PeerAnswer(p.peer_id or p.addr, p.source, (p.host or "") if p.source == "friend" else "")
                for p in answer.peers]


def install_verify_cache() -> None:
    """Memoise Ed25519 verification inside ``crdt.feed`` for this simulator process.

    Verification is a pure function of (key, signature, message): a thousand nodes verifying one
    signed head get one answer, so computing it once is exactly equivalent and saves ~0.2 ms per
    node per delta. Only the simulator installs this; the product never does."""
    import crdt.decision_ops as ops_mod
    import crdt.feed as feed_mod
    if getattr(feed_mod.verify, "sim_cache", None) is not None:
        return
    real = feed_mod.verify
    cache: dict[tuple[bytes, bytes, bytes], bool] = {}

    def cached(public: bytes, signature: bytes, message: bytes) -> bool:
        key = (public, signature, message)
        ok = cache.get(key)
        if ok is None:
            ok = cache[key] = real(public, signature, message)
        return ok

    cached.sim_cache = cache  # type: ignore[attr-defined]
    feed_mod.verify = cached  # type: ignore[assignment]
    ops_mod.verify = cached  # type: ignore[assignment]


def missing() -> str | None:
    """None: the real cores are usable. (Import errors surface when this module is imported.)"""
    return None

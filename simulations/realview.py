"""Adapts one node's replicated state (FeedSet, FleetDoc, MeshNode liveness/presence) into the
policy core's inputs (``agent.policy.FleetView``), the way the runtime does.

Per-owner parsing is cached by feed version and the frozen input values are interned across nodes
(a ``HostView`` with the same fields is the same value on every node), because a 1000-node fleet
rebuilds 1000 views per policy round; the view itself is built fresh every time.
"""

from __future__ import annotations

from agent.policy import FleetView, HoldingView, HostView, IntentView, PinView
from agent.views import SOURCE_MAP  # records' sources → the policy's, one map for agent and simulator
from crdt import records
from crdt.feedset import FeedSet
from crdt.fleetdoc import FleetDoc
from crdt.identity import peer_id_from_public
from mesh.core import Liveness, Presence

LIVENESS_MAP = {Liveness.ALIVE: "alive", Liveness.SUSPECT: "suspect", Liveness.DEAD: "dead",
                Liveness.ASLEEP: "asleep", Liveness.LEFT: "left"}
DISK_FREE_UNKNOWN = None


class Interner:
    """Shared by all nodes of one run: identical frozen values become one object."""

    def __init__(self) -> None:
        self.hosts: dict[tuple, HostView] = {}
        self.holdings: dict[tuple, HoldingView] = {}
        self.intents: dict[tuple, IntentView] = {}
        self.peer_of: dict[bytes, str] = {}

    def peer(self, owner: bytes) -> str:
        p = self.peer_of.get(owner)
        if p is None:
            p = self.peer_of[owner] = peer_id_from_public(owner)
        return p

    def host(self, *key: object) -> HostView:
        h = self.hosts.get(key)
        if h is None:
            peer, name, host_class, liveness, disk, uptime, revoked = key
            h = self.hosts[key] = HostView(peer, name, host_class, liveness, None, disk, uptime,  # type: ignore[arg-type]
                                           revoked=revoked)  # type: ignore[arg-type]
        return h

    def holding(self, peer: str, h: records.Holding) -> HoldingView:
        key = (peer, h.content_id, h.infohash, h.size_bytes, h.state, h.policy, h.source)
        v = self.holdings.get(key)
        if v is None:
            v = self.holdings[key] = HoldingView(peer, h.content_id, h.infohash, h.size_bytes,
                                                 h.state == "complete", h.policy,
                                                 SOURCE_MAP.get(h.source, "private"))
        return v

    def intent(self, baton: str, i: records.RepairIntent) -> IntentView:
        key = (baton, i.content_id, i.target_peer_id, i.lease_until_ms)
        v = self.intents.get(key)
        if v is None:
            v = self.intents[key] = IntentView(i.content_id, baton, i.target_peer_id, i.lease_until_ms)
        return v


class ViewBuilder:
    """One node's adapter from replicas to a FleetView."""

    def __init__(self, interner: Interner) -> None:
        self.interner = interner
        # owner → (feed version, card, holding views, intent views)
        self._parsed: dict[bytes, tuple[int, records.HostCard | None, tuple, tuple]] = {}

    def _owner(self, feeds: FeedSet, owner: bytes, version: int) -> tuple:
        hit = self._parsed.get(owner)
        if hit is not None and hit[0] == version:
            return hit
        feed = feeds.feed(owner)
        peer = self.interner.peer(owner)
        card = records.card_of(feed) if feed is not None else None
        holds = tuple(self.interner.holding(peer, h) for _, h in sorted(records.holdings_of(feed).items())) \
            if feed is not None else ()
        ints = tuple(self.interner.intent(peer, i) for _, i in sorted(records.intents_of(feed).items())) \
            if feed is not None else ()
        hit = self._parsed[owner] = (version, card, holds, ints)
        return hit

    def build(self, me: str, feeds: FeedSet, doc: FleetDoc, liveness: dict[str, Liveness],
              presence: dict[str, Presence]) -> FleetView:
        revoked = frozenset(doc.revocations())
        hosts: list[HostView] = []
        holdings: list[HoldingView] = []
        intents: list[IntentView] = []
        for owner, version in sorted(feeds.version_vector().items()):
            _, card, holds, ints = self._owner(feeds, owner, version)
            peer = self.interner.peer(owner)
            if card is None:
                continue
            if peer == me:
                state = "alive"
            else:
                lv = liveness.get(peer)
                state = LIVENESS_MAP.get(lv, "dead") if lv is not None else "dead"
            pres = presence.get(peer)
            disk = pres.disk_free_bytes if pres is not None else DISK_FREE_UNKNOWN
            uptime = pres.uptime_score if pres is not None else 0.0
            host_class = card.host_class if card.host_class in ("desktop", "server", "nas", "seedbox",
                                                                 "portable") else "desktop"
            hosts.append(self.interner.host(peer, card.name, host_class, state, disk, uptime, peer in revoked))
            holdings.extend(holds)
            intents.extend(ints)
        pins = [PinView(c, p.min_copies, p.max_copies) for c, p in sorted(doc.pins().items())]
        return FleetView.build(hosts, holdings, pins, intents, revoked=sorted(revoked), strict=False)

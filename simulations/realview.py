"""Adapts one node's replicated state (FeedSet, FleetDoc, MeshNode liveness/presence) into the
policy core's inputs (``agent.policy.FleetView``), the way the runtime does.

A 1000-node fleet rebuilds 1000 views per policy round, and converged nodes build equal views.
So, with ``memo`` on (the default), everything here that is a pure function of its inputs is
computed once per run and shared by all nodes (simulator-only; the product never does this):

* a feed's parse (card, holdings, intents) per (owner, version), checked against the feed's
  content digest (its multiset accumulator), so a forked version can never be served stale;
* the fleet document's pins and revocations per document heads (heads identify the content);
* the frozen input values (a ``HostView`` with the same fields is one object on every node);
* the ``FleetView`` itself, per exact inputs (the ids of those interned values, which the
  interner keeps alive for the whole run so an id is never reused), with its plans computed
  once per lease bucket of ``now_ms`` (see ``SharedView.plans``) and its duties once per set
  of hosts (views differing only in holdings share them).

With ``memo`` off every node parses, builds and plans on its own (the reference the tests compare
the memo against: same results, same trace).
"""

from __future__ import annotations

from bisect import bisect_right

from agent.policy import (
    CustodyConfig,
    CustodyPlan,
    DutyAssignment,
    FleetView,
    HoldingView,
    HostView,
    IntentView,
    PinView,
    assign_duties,
    plan_all,
)
from agent.policy.classes import HOST_CLASSES  # unknown classes read as desktop, as in agent.views
from agent.views import SOURCE_MAP  # records' sources → the policy's, one map for agent and simulator
from crdt import records
from crdt.feedset import FeedSet
from crdt.fleetdoc import FleetDoc
from crdt.identity import peer_id_from_public
from mesh.core import Liveness, Presence

LIVENESS_MAP = {Liveness.ALIVE: "alive", Liveness.SUSPECT: "suspect", Liveness.DEAD: "dead",
                Liveness.ASLEEP: "asleep", Liveness.LEFT: "left"}
DISK_FREE_UNKNOWN = None
# Shared views kept for reuse. Converged nodes share a handful; each one of a 1000-host fleet
# costs ~1 MB, so the oldest go first (a node still holding one keeps it alive; nothing else
# depends on it staying here).
VIEWS_KEPT_MAX = 48
# Duty maps kept, per hosts (duties read nothing else): holdings change far more often than hosts.
DUTIES_KEPT_MAX = 512


class SharedView:
    """A FleetView with what is computed from it alone: duties once, plans once per lease bucket.
    The view is shared between nodes, so nobody may change it (the policy core only reads it).

    ``duties_key`` names the view's hosts and revocations — all ``assign_duties`` reads when
    there are no overrides, as in the simulator — so views that differ only in holdings, pins
    or intents share one duty map through ``duties_cache``."""

    __slots__ = ("_duties", "_duties_cache", "_duties_key", "_lease_edges", "_plans", "memo", "view")

    def __init__(self, view: FleetView, memo: bool, duties_key: tuple | None = None,
                 duties_cache: dict | None = None) -> None:
        self.view = view
        self.memo = memo
        self._duties_key = duties_key
        self._duties_cache = duties_cache
        self._duties: tuple[DutyAssignment, ...] | None = None
        self._lease_edges: list[int] | None = None
        self._plans: dict[tuple[int, CustodyConfig], tuple[CustodyPlan, ...]] = {}

    def duties(self) -> tuple[DutyAssignment, ...]:
        if not self.memo:
            return assign_duties(self.view)
        if self._duties is None:
            cache, key = self._duties_cache, self._duties_key
            if cache is None or key is None or self.view.overrides:  # overrides: prefs and classes
                cache = None
            duties = cache.get(key) if cache is not None else None
            if duties is None:
                duties = assign_duties(self.view)
                if cache is not None:
                    if len(cache) >= DUTIES_KEPT_MAX:
                        del cache[next(iter(cache))]
                    cache[key] = duties
            self._duties = duties
        return self._duties

    def plans(self, now_ms: int, config: CustodyConfig) -> tuple[CustodyPlan, ...]:
        """``plan_all(view, now_ms, config)``. Time enters a plan only through which intent
        leases have ended (``lease_until_ms <= now_ms``: plans hold lease durations, not
        deadlines — see agent.policy.custody), so every ``now_ms`` between two consecutive
        lease ends gives the same plans; tests/sim/test_sim_policy_cache.py checks it."""
        if not self.memo:
            return plan_all(self.view, now_ms, config)
        if self._lease_edges is None:
            self._lease_edges = sorted({i.lease_until_ms for per in self.view.intents.values() for i in per})
        key = (bisect_right(self._lease_edges, now_ms), config)
        plans = self._plans.get(key)
        if plans is None:
            plans = self._plans[key] = plan_all(self.view, now_ms, config)
        return plans


class Interner:
    """Shared by all nodes of one run: identical frozen values become one object; with ``memo``
    on, also the parse, document and view caches described in the module docstring."""

    def __init__(self, memo: bool = True) -> None:
        self.memo = memo
        self.hosts: dict[tuple, HostView] = {}
        self.holdings: dict[tuple, HoldingView] = {}
        self.intents: dict[tuple, IntentView] = {}
        self.peer_of: dict[bytes, str] = {}
        # (owner, version) → (accumulator, card, holding views, intent views). Every entry ever
        # made stays in ``_parsed_kept`` so its id() is unique for the run (view keys use ids).
        self.parsed: dict[tuple[bytes, int], tuple] = {}
        self._parsed_kept: list[tuple] = []
        # document heads → (pin views, revoked peer ids sorted); never dropped, ids in view keys.
        self.docs: dict[tuple[bytes, ...], tuple[tuple[PinView, ...], tuple[str, ...]]] = {}
        self.views: dict[tuple, SharedView] = {}
        self.duties: dict[tuple, tuple[DutyAssignment, ...]] = {}
        self.view_hits = 0
        self.view_misses = 0

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
        key = (peer, h.content_id, h.infohash, h.size_bytes, h.state, h.policy, h.source, h.custody)
        v = self.holdings.get(key)
        if v is None:
            v = self.holdings[key] = HoldingView(peer, h.content_id, h.infohash, h.size_bytes,
                                                 h.state == "complete", h.policy,
                                                 SOURCE_MAP.get(h.source, "private"), h.custody)
        return v

    def intent(self, baton: str, i: records.RepairIntent) -> IntentView:
        key = (baton, i.content_id, i.target_peer_id, i.lease_until_ms)
        v = self.intents.get(key)
        if v is None:
            v = self.intents[key] = IntentView(i.content_id, baton, i.target_peer_id, i.lease_until_ms)
        return v

    def parse(self, feeds: FeedSet, owner: bytes, version: int) -> tuple:
        """(accumulator, card, holding views, intent views, peer id, card's host class as the
        policy reads it) of ``owner``'s feed in ``feeds``."""
        feed = feeds.feed(owner)
        acc = feed.accumulator if feed is not None else None
        if self.memo:
            hit = self.parsed.get((owner, version))
            if hit is not None and hit[0] == acc:
                return hit
        peer = self.peer(owner)
        if feed is None:
            entry: tuple = (acc, None, (), (), peer, None)
        else:
            card = records.card_of(feed)
            host_class = None if card is None else card.host_class if card.host_class in HOST_CLASSES else "desktop"
            entry = (acc, card,
                     tuple(self.holding(peer, h) for _, h in sorted(records.holdings_of(feed).items())),
                     tuple(self.intent(peer, i) for _, i in sorted(records.intents_of(feed).items())),
                     peer, host_class)
        if self.memo:
            self.parsed[(owner, version)] = entry
            self._parsed_kept.append(entry)
        return entry

    def doc_state(self, doc: FleetDoc) -> tuple[tuple[PinView, ...], tuple[str, ...]]:
        """The document's pins (as views, sorted by content) and revoked peer ids (sorted)."""
        heads = tuple(doc.heads()) if self.memo else ()
        hit = self.docs.get(heads) if self.memo else None
        if hit is None:
            hit = (tuple(PinView(c, p.min_copies, p.max_copies) for c, p in sorted(doc.pins().items())),
                   tuple(sorted(doc.revocations())))
            if self.memo:
                self.docs[heads] = hit
        return hit

    def shared_view(self, key: tuple, hosts: list[HostView], holdings: list[HoldingView],
                    doc_state: tuple[tuple[PinView, ...], tuple[str, ...]],
                    intents: list[IntentView]) -> SharedView:
        if self.memo:
            hit = self.views.get(key)
            if hit is not None:
                self.view_hits += 1
                return hit
        self.view_misses += 1
        pins, revoked = doc_state
        view = FleetView.build(hosts, holdings, pins, intents, revoked=revoked, strict=False)
        sv = SharedView(view, self.memo, (key[0], revoked) if self.memo else None, self.duties)
        if self.memo:
            if len(self.views) >= VIEWS_KEPT_MAX:
                del self.views[next(iter(self.views))]  # oldest first (dicts keep insertion order)
            self.views[key] = sv
        return sv


class ViewBuilder:
    """One node's adapter from replicas to a FleetView."""

    def __init__(self, interner: Interner) -> None:
        self.interner = interner
        # owner → (feed version, parse): this node's own parse cache, used with the memo off.
        self._parsed: dict[bytes, tuple[int, tuple]] = {}

    def _owner(self, feeds: FeedSet, owner: bytes, version: int) -> tuple:
        if self.interner.memo:
            return self.interner.parse(feeds, owner, version)
        hit = self._parsed.get(owner)
        if hit is not None and hit[0] == version:
            return hit[1]
        entry = self.interner.parse(feeds, owner, version)
        self._parsed[owner] = (version, entry)
        return entry

    def build(self, me: str, feeds: FeedSet, doc: FleetDoc, liveness: dict[str, Liveness],
              presence: dict[str, Presence]) -> SharedView:
        # The hot loop of a 1000-node run (a million owners per policy round): the cache hits
        # are looked up inline, the misses go through ``_owner``/``interner.host``.
        interner = self.interner
        doc_state = interner.doc_state(doc)
        revoked = frozenset(doc_state[1])
        hosts: list[HostView] = []
        parts: list[tuple] = []
        holdings: list[HoldingView] = []
        intents: list[IntentView] = []
        parsed = interner.parsed if interner.memo else {}
        interned_hosts = interner.hosts
        feed_of = feeds.feed
        liveness_map = LIVENESS_MAP
        for owner in feeds.owners():  # sorted
            feed = feed_of(owner)
            version = feed.version  # type: ignore[union-attr]
            part = parsed.get((owner, version))
            if part is None or part[0] != feed.accumulator:  # type: ignore[union-attr]
                part = self._owner(feeds, owner, version)
            _, card, holds, ints, peer, host_class = part
            if card is None:
                continue
            if peer == me:
                state = "alive"
            else:
                lv = liveness.get(peer)
                state = liveness_map.get(lv, "dead") if lv is not None else "dead"
            pres = presence.get(peer)
            if pres is not None:
                hkey = (peer, card.name, host_class, state, pres.disk_free_bytes, pres.uptime_score, peer in revoked)
            else:
                hkey = (peer, card.name, host_class, state, DISK_FREE_UNKNOWN, 0.0, peer in revoked)
            host = interned_hosts.get(hkey)
            hosts.append(host if host is not None else interner.host(*hkey))
            parts.append(part)
            holdings.extend(holds)
            intents.extend(ints)
        # Every id below is of an object the interner keeps for the whole run: equal key, equal
        # inputs (hosts in owner order; each owner's holdings and intents in their parse).
        key = (tuple(map(id, hosts)), tuple(map(id, parts)), id(doc_state)) if interner.memo else ()
        return interner.shared_view(key, hosts, holdings, doc_state, intents)

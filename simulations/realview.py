"""One simulated node's policy view, built by the agent's own code (``agent.views.build_snapshot``)
from its replicas (FeedSet, FleetDoc) and its mesh core's liveness and presence — so the
simulator checks the agent's planning, not a copy of it.

A 1000-node fleet rebuilds 1000 views per policy round, and converged nodes build equal views.
So, with ``memo`` on (the default), ``Interner`` — the ``agent.views.ViewMemo`` the simulator
passes — computes every part that is a pure function of its inputs once per run and shares it
between nodes (simulator-only; the agent computes them afresh):

* a feed's parts (card, holdings, intents) per (owner, version), checked against the feed's
  content digest (its multiset accumulator), so a forked version can never be served stale;
* the fleet document's parts (members, revocations, overrides, pins) per document heads;
* the ``HostView`` of equal inputs (one object on every node);
* the ``FleetView`` itself, per exact inputs (the ids of those values, which the interner keeps
  alive for the whole run so an id is never reused), with its plans computed once per lease
  bucket of ``now_ms`` (see ``SharedView.plans``) and its duties once per set of hosts (views
  differing only in holdings share them).

With ``memo`` off every node builds and plans on its own (the reference the tests compare the
memo against: same results, same trace).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping

from agent import views
from agent.policy import (
    CustodyConfig,
    CustodyPlan,
    DutyAssignment,
    FleetView,
    HostView,
    assign_duties,
    plan_all,
)
from crdt import records
from crdt.feedset import FeedSet
from crdt.identity import peer_id_from_public
from mesh.core import Liveness, Presence

_STATE_NAMES = {s: s.value for s in Liveness}

# Shared views kept for reuse. Converged nodes share a handful; each one of a 1000-host fleet
# costs ~1 MB, so the oldest go first (a node still holding one keeps it alive; nothing else
# depends on it staying here).
VIEWS_KEPT_MAX = 48
PARTS_KEPT_PER_OWNER = 8  # parsed states of one feed (nodes converge on its latest)
# Duty maps kept, per hosts (duties read nothing else): holdings change far more often than hosts.
DUTIES_KEPT_MAX = 512


class SharedView:
    """A FleetView with what is computed from it alone: duties once, plans once per lease bucket.
    The view is shared between nodes, so nobody may change it (the policy core only reads it).

    ``duties_key`` names the view's hosts and revocations — all ``assign_duties`` reads when
    there are no overrides — so views that differ only in holdings, pins or intents share one
    duty map through ``duties_cache``."""

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


class Interner(views.ViewMemo):
    """Shared by all nodes of one run: with ``memo`` on, the caches in the module docstring."""

    def __init__(self, memo: bool = True) -> None:
        self.memo = memo
        self.peer_of: dict[bytes, str] = {}
        # owner → {(version, accumulator): parts}, the last few states of each feed (a month of a
        # busy feed's states, each kept, grew without bound). View keys use ids of parts: each
        # cached view holds its parts, so no id in a key is ever reused while the key exists.
        self.parsed: dict[bytes, dict[tuple[int, int], views.FeedParts]] = {}
        self.docs: dict[tuple[bytes, ...], views.DocParts] = {}  # heads → parts; never dropped
        self.hosts: dict[tuple, HostView] = {}
        self.views: dict[tuple, tuple[SharedView, tuple[views.FeedParts, ...]]] = {}
        self.duties: dict[tuple, tuple[DutyAssignment, ...]] = {}
        self._last: SharedView | None = None
        self.view_hits = 0
        self.view_misses = 0

    def peer(self, owner: bytes) -> str:
        p = self.peer_of.get(owner)
        if p is None:
            p = self.peer_of[owner] = peer_id_from_public(owner)
        return p

    # --- agent.views.ViewMemo ---------------------------------------------------------------------
    def feed_parts(self, feeds: FeedSet, owner: bytes) -> views.FeedParts:
        feed = feeds.feed(owner)
        acc = feed.accumulator  # type: ignore[union-attr]
        key = (feed.version, acc)  # type: ignore[union-attr]
        states = self.parsed.setdefault(owner, {}) if self.memo else {}
        hit = states.get(key)
        if hit is not None:
            return hit
        parts = views.feed_parts(self.peer(owner), feed)
        if self.memo:
            if len(states) >= PARTS_KEPT_PER_OWNER:
                del states[next(iter(states))]  # the oldest
            states[key] = parts
        return parts

    def doc_parts(self, doc) -> views.DocParts:
        if not self.memo:
            return views.doc_parts(doc)
        heads = tuple(doc.heads())
        hit = self.docs.get(heads)
        if hit is None:
            hit = self.docs[heads] = views.doc_parts(doc)
        return hit

    def host(self, peer: str, card: records.HostCard, liveness: str, presence: views.Presence,
             revoked: bool) -> HostView:
        if not self.memo:
            return views.host_view(peer, card, liveness, presence, revoked)
        key = (peer, card, liveness, presence.disk_free_bytes, presence.uptime_score, revoked)
        h = self.hosts.get(key)
        if h is None:
            h = self.hosts[key] = views.host_view(peer, card, liveness, presence, revoked)
        return h

    def fleet_view(self, hosts: list[HostView], parts: list[views.FeedParts], doc: views.DocParts,
                   friend_slots: int = 0) -> FleetView:
        # Hosts and doc parts are kept for the whole run; parts are held by the cached entry
        # itself: an id in a key stays unique while the key exists. Equal key, equal inputs.
        key = (tuple(map(id, hosts)), tuple(map(id, parts)), id(doc), friend_slots) if self.memo else None
        if key is not None:
            entry = self.views.get(key)
            if entry is not None:
                self.view_hits += 1
                self._last = entry[0]
                return entry[0].view
        self.view_misses += 1
        view = super().fleet_view(hosts, parts, doc, friend_slots)
        shared = SharedView(view, self.memo, (key[0], doc.revoked) if key is not None else None, self.duties)
        if key is not None:
            if len(self.views) >= VIEWS_KEPT_MAX:
                del self.views[next(iter(self.views))]  # oldest first (dicts keep insertion order)
            self.views[key] = (shared, tuple(parts))
        self._last = shared
        return view

    def shared(self, view: FleetView) -> SharedView:
        """The SharedView around the view ``fleet_view`` just returned."""
        last = self._last
        return last if last is not None and last.view is view else SharedView(view, False)


class _Replicas:
    """What ``build_snapshot`` reads of a node's state."""

    __slots__ = ("doc", "feeds", "peer_id")

    def __init__(self, peer_id: str, feeds: FeedSet, doc) -> None:
        self.peer_id, self.feeds, self.doc = peer_id, feeds, doc


class ViewBuilder:
    """One node's view, through the agent's ``build_snapshot``."""

    def __init__(self, interner: Interner) -> None:
        self.interner = interner

    def build(self, me: str, feeds: FeedSet, doc, liveness: Mapping[str, Liveness],
              presence: Mapping[str, Presence], friend_slots: int = 0) -> SharedView:
        value = _STATE_NAMES  # an enum's .value is a property lookup: a thousand per view
        live = views.live_info({p: value[s] for p, s in liveness.items()}, presence)
        mine = live.presence.get(me, views.NO_PRESENCE)  # our own soft state, as the mesh holds it
        snap = views.build_snapshot(_Replicas(me, feeds, doc), live, mine, memo=self.interner,
                                    friend_slots=friend_slots)
        return self.interner.shared(snap.view)

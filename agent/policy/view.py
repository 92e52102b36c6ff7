"""FleetView: one agent's converged view of the fleet, validated and indexed once.

Built from the input values in any order; the indexes are keyed, never ordered by arrival, so two
agents that received the same state in different orders hold equal views. Host overrides from
the fleet document are applied here (they win over the card).

The view is read-only to callers. ``CustodyPlanner`` (agent.policy.planner) takes ownership of
one and changes it one fact at a time through the underscore methods below, which keep every
index exactly as a fresh ``build`` would (pass it ``view.copy()`` to keep using the original).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from tva.errors import InvalidInput

from . import checks
from .classes import LIVE
from .inputs import HoldingView, HostView, IntentView, Override, PinView

HOSTS_MAX = 4096
PINS_MAX = 1_000_000
HOLDINGS_MAX = 10_000_000


class FleetView:
    __slots__ = ("by_content", "by_infohash", "by_peer", "duty_prefs", "friend_slots", "hosts", "intents",
                 "overrides", "pins", "rejected_pins", "revoked_listed", "revoked_peers")

    def __init__(self) -> None:
        self.hosts: dict[str, HostView] = {}
        self.duty_prefs: dict[str, dict[str, str]] = {}
        self.overrides: dict[str, Override] = {}
        # Revoked by the fleet document, and that plus every card saying revoked.
        self.revoked_listed: frozenset[str] = frozenset()
        self.revoked_peers: frozenset[str] = frozenset()
        self.pins: dict[str, PinView] = {}
        self.rejected_pins: tuple[tuple[PinView, str], ...] = ()
        # content id → peer id → holding; infohash → peer id → content id → holding (a peer may
        # list one infohash under two content ids); peer id → content ids.
        self.by_content: dict[str, dict[str, HoldingView]] = {}
        self.by_infohash: dict[str, dict[str, dict[str, HoldingView]]] = {}
        self.by_peer: dict[str, set[str]] = {}
        self.intents: dict[str, tuple[IntentView, ...]] = {}
        self.friend_slots = 0  # friend fleets offering custody (see ``build``)

    @classmethod
    def build(
        cls,
        hosts: Iterable[HostView],
        holdings: Iterable[HoldingView] = (),
        pins: Iterable[PinView] = (),
        intents: Iterable[IntentView] = (),
        overrides: Iterable[Override] = (),
        revoked: Iterable[str] = (),
        *,
        strict: bool = True,
        friend_slots: int = 0,
    ) -> FleetView:
        """Validate and index. ``revoked`` lists revoked peer ids from the fleet document (a revoked
        host may have no card at all); hosts whose card says ``revoked`` are added to it.

        Raises ``InvalidInput`` on duplicates (two cards for one peer, one holding listed twice, two
        pins for one content) and on a pin whose ``min_copies`` exceeds the hosts that could ever
        count as copies. With ``strict=False`` such pins are left out and listed with the reason in
        ``rejected_pins`` instead, so one impossible pin in the fleet document is reported without
        stopping all planning (the runtime's choice). ``friend_slots``: friend fleets that offer us
        custody; a pin that counts friends' copies may ask for that many more copies than our hosts.
        """
        view = cls()
        host_list = checks.instances(hosts, "hosts", HostView)
        if len(host_list) > HOSTS_MAX:
            raise checks.fail(f"{len(host_list)} hosts (max {HOSTS_MAX})", "a fleet this large is not supported")
        over = {}
        for o in checks.instances(overrides, "overrides", Override):
            if o.peer_id in over:
                raise checks.fail(f"two overrides for host {o.peer_id}", "merge them into one Override")
            over[o.peer_id] = o
        view.overrides = over
        view.duty_prefs = {p: dict(o.duty_prefs) for p, o in over.items()}
        view.revoked_listed = frozenset(checks.peer_id(p, "revoked peer id") for p in _iter(revoked, "revoked"))
        for h in host_list:
            if h.peer_id in view.hosts:
                raise checks.fail(f"two host cards for {h.peer_id}", "a peer id has exactly one card")
            view._put_host(h, recompute=False)
        view._recompute_revoked()
        hold_list = checks.instances(holdings, "holdings", HoldingView)
        if len(hold_list) > HOLDINGS_MAX:
            raise checks.fail(f"{len(hold_list)} holdings (max {HOLDINGS_MAX})", "a fleet this large is not supported")
        for hold in hold_list:
            if hold.content_id in view.by_peer.get(hold.peer_id, ()):
                raise checks.fail(f"holding {hold.content_id!r:.60} of {hold.peer_id} listed twice",
                                  "a host holds a content id at most once")
            view._put_holding(hold)
        pin_list = checks.instances(pins, "pins", PinView)
        if len(pin_list) > PINS_MAX:
            raise checks.fail(f"{len(pin_list)} pins (max {PINS_MAX})", "fewer pins")
        checks.boolean(strict, "strict")
        hosts_usable = view.usable_host_count()
        view.friend_slots = checks.integer(friend_slots, "friend_slots", maximum=HOSTS_MAX)
        rejected = []
        for p in pin_list:
            if p.content in view.pins:
                raise checks.fail(f"two pins for {p.content!r:.60}", "a content is pinned once")
            try:
                _check_pin_fits(p, hosts_usable + (view.friend_slots if p.friends else 0))
            except InvalidInput as e:
                if strict:
                    raise
                rejected.append((p, e.message))
                continue
            view.pins[p.content] = p
        view.rejected_pins = tuple(rejected)
        grouped: dict[str, list[IntentView]] = {}
        for i in checks.instances(intents, "intents", IntentView):
            grouped.setdefault(i.content, []).append(i)
        view.intents = {c: _canonical_intents(v) for c, v in grouped.items()}
        return view

    # --- queries ----------------------------------------------------------------------------

    def usable_host_count(self) -> int:
        """Hosts that could ever count as a copy: not revoked, not departed, not portable."""
        return sum(1 for h in self.hosts.values()
                   if not h.revoked and h.liveness != "left" and h.host_class != "portable")

    def is_live(self, peer_id: str) -> bool:
        h = self.hosts.get(peer_id)
        return h is not None and not h.revoked and h.liveness in LIVE

    def holdings_for(self, content: str) -> dict[str, HoldingView]:
        """Holdings matching a pin's content, by content id or by infohash (one per peer; read-only).

        When one peer has two matching holdings (two content ids for one infohash) the complete
        one wins, then the smaller content id, so the choice never depends on arrival order.
        """
        a = self.by_content.get(content)
        b = self.by_infohash.get(content) if checks.is_infohash(content) else None
        if not b:
            return a if a else {}  # the index itself: callers only read it
        out = dict(a) if a else {}
        for peer, per in b.items():
            for h in per.values():
                cur = out.get(peer)
                if cur is None or _better(h, cur):
                    out[peer] = h
        return out

    def holders_of_infohash(self, infohash: str) -> dict[str, HoldingView]:
        """One holding per peer for an infohash (canonical choice as in ``holdings_for``)."""
        out: dict[str, HoldingView] = {}
        for peer, per in self.by_infohash.get(infohash, {}).items():
            best = None
            for h in per.values():
                if best is None or _better(h, best):
                    best = h
            if best is not None:
                out[peer] = best
        return out

    def pins_touching(self, hold: HoldingView) -> list[str]:
        """Pin keys whose plan depends on this holding."""
        return [c for c in (hold.content_id, hold.infohash) if c in self.pins]

    def intents_for(self, content: str) -> tuple[IntentView, ...]:
        return self.intents.get(content, ())

    # --- mutation, for CustodyPlanner only ---------------------------------------------------

    def _put_holding(self, hold: HoldingView) -> HoldingView | None:
        old = self.by_content.get(hold.content_id, {}).get(hold.peer_id)
        if old is not None:
            self._drop_holding(old.peer_id, old.content_id)
        self.by_content.setdefault(hold.content_id, {})[hold.peer_id] = hold
        self.by_infohash.setdefault(hold.infohash, {}).setdefault(hold.peer_id, {})[hold.content_id] = hold
        self.by_peer.setdefault(hold.peer_id, set()).add(hold.content_id)
        return old

    def _put_host(self, h: HostView, *, recompute: bool = True) -> None:
        """Apply the host's override and the revocation list, then store the card."""
        o = self.overrides.get(h.peer_id)
        if o is not None:
            h = _apply_override(h, o)
        if not h.revoked and (h.liveness == "revoked" or h.peer_id in self.revoked_listed):
            h = dataclasses.replace(h, revoked=True)  # a revocation wins over a stale card
        self.hosts[h.peer_id] = h
        if recompute:
            self._recompute_revoked()

    def _drop_host(self, peer_id: str) -> bool:
        gone = self.hosts.pop(peer_id, None) is not None
        self._recompute_revoked()
        return gone

    def _recompute_revoked(self) -> None:
        self.revoked_peers = self.revoked_listed | {p for p, h in self.hosts.items() if h.revoked}

    def _drop_holding(self, peer_id: str, content_id: str) -> HoldingView | None:
        per = self.by_content.get(content_id)
        old = per.pop(peer_id, None) if per else None
        if old is None:
            return None
        if not per:
            del self.by_content[content_id]
        self.by_peer[peer_id].discard(content_id)
        if not self.by_peer[peer_id]:
            del self.by_peer[peer_id]
        per_hash = self.by_infohash[old.infohash]
        per_peer = per_hash[peer_id]
        del per_peer[content_id]
        if not per_peer:
            del per_hash[peer_id]
            if not per_hash:
                del self.by_infohash[old.infohash]
        return old

    def _set_intents(self, content: str, intents: Iterable[IntentView]) -> None:
        items = checks.instances(intents, "intents", IntentView)
        for i in items:
            if i.content != content:
                raise checks.fail(f"intent for {i.content!r:.60} given as intents of {content!r:.60}",
                                  "pass only the intents of that content")
        if items:
            self.intents[content] = _canonical_intents(items)
        else:
            self.intents.pop(content, None)

    def copy(self) -> FleetView:
        """An independent copy (indexes copied; the frozen values inside are shared)."""
        v = FleetView()
        v.hosts = dict(self.hosts)
        v.duty_prefs = {k: dict(p) for k, p in self.duty_prefs.items()}
        v.overrides = dict(self.overrides)
        v.revoked_listed = self.revoked_listed
        v.revoked_peers = self.revoked_peers
        v.pins = dict(self.pins)
        v.rejected_pins = self.rejected_pins
        v.by_content = {k: dict(d) for k, d in self.by_content.items()}
        v.by_infohash = {k: {p: dict(c) for p, c in d.items()} for k, d in self.by_infohash.items()}
        v.by_peer = {k: set(s) for k, s in self.by_peer.items()}
        v.intents = dict(self.intents)
        v.friend_slots = self.friend_slots
        return v


def _better(h: HoldingView, cur: HoldingView) -> bool:
    """Canonical choice between two holdings of one peer: complete first, then smaller content id."""
    return (h.complete, cur.content_id) > (cur.complete, h.content_id)


def _check_pin_fits(p: PinView, hosts_usable: int) -> None:
    if p.min_copies > hosts_usable:
        raise checks.fail(
            f"pin {p.content!r:.60} wants {p.min_copies} copies but the fleet has {hosts_usable} usable hosts",
            "lower min_copies or add hosts (portable hosts never count as copies)",
        )


def _apply_override(h: HostView, o: Override) -> HostView:
    cls = o.host_class or h.host_class
    if o.services is not None:
        services = o.services
    elif o.host_class is not None and o.host_class != h.host_class:
        services = None  # a class override brings its preset unless services are overridden too
    else:
        services = h.services
    return dataclasses.replace(h, host_class=cls, services=services)


def _canonical_intents(items: Iterable[IntentView]) -> tuple[IntentView, ...]:
    # Duplicates (the same intent adapted twice) collapse; order is by value, not arrival.
    return tuple(sorted(set(items), key=lambda i: (i.target_peer, i.baton_peer, i.lease_until_ms)))


def _iter(values: object, name: str) -> tuple:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise checks.fail(f"{name} must be an iterable of peer ids", f"pass {name} as a list")
    return tuple(values)

"""Adapting replicated state (feeds + fleet document) and live info into the policy core's inputs.

Kept apart from the service so the mapping between the two vocabularies is in one place:
* record sources → policy content sources: ``local`` and ``public`` are public sources (the
  item's policy is what its holder declared), ``private-tracker`` is a private tracker (clamped to
  ``f2f_only`` at most), ``friend`` is a private source (closed until opened).
* a host with no card yet (admitted, not synced) is left out: there is nothing to plan with.
* liveness comes from the failure detector; without a daemon it is unknown, and planning then
  assumes every member is alive (the CLI says so).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.policy.classes import HOST_CLASSES
from agent.policy.inputs import HoldingView, HostView, IntentView, Override, PinView
from agent.policy.view import FleetView
from crdt import records
from tva import limits
from tva.errors import InvalidInput

log = logging.getLogger("tva.views")

SOURCE_MAP = {"local": "public", "public": "public", "private-tracker": "private_tracker", "friend": "private"}
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Presence:
    disk_free_bytes: int | None = None
    uptime_score: float = 0.0


@dataclass(frozen=True)
class LiveInfo:
    """What the running mesh knows right now (empty when no daemon runs)."""

    liveness: Mapping[str, str] = field(default_factory=dict)
    presence: Mapping[str, Presence] = field(default_factory=dict)
    daemon: bool = False


@dataclass(frozen=True)
class Snapshot:
    """Everything one planning pass needs, adapted once."""

    view: FleetView
    cards: dict[str, records.HostCard]
    holdings: dict[str, dict[str, records.Holding]]
    liveness: dict[str, str]  # as shown to people: includes "unknown"
    invalid_pins: tuple[tuple[str, str], ...]
    invalid_overrides: tuple[tuple[str, str], ...] = ()


def underlay_ips(card: records.HostCard) -> tuple[str, ...]:
    """The IPs of a card's listen addresses; loopback only when that is all it has (one machine)."""
    ips = []
    for addr in card.listen_addrs:
        parts = addr.split("/")
        if len(parts) > 2 and parts[1] in ("ip4", "ip6"):
            try:
                ips.append(ipaddress.ip_address(parts[2]))
            except ValueError:
                continue
    ips = [ip for ip in ips if not ip.is_unspecified and not ip.is_link_local]
    usable = [ip for ip in ips if not ip.is_loopback] or ips
    return tuple(dict.fromkeys(str(ip) for ip in usable))[:16]


def _liveness(peer: str, self_id: str, revoked: frozenset[str], live: LiveInfo) -> str:
    if peer in revoked:
        return "revoked"
    if peer == self_id:
        return "alive"
    if not live.daemon:
        return UNKNOWN
    return live.liveness.get(peer, UNKNOWN)


def build_snapshot(state, live: LiveInfo, self_presence: Presence, *, friend_slots: int = 0) -> Snapshot:
    """``state`` is an ``agent.state.NodeState`` (typed loosely to keep this module import-light).
    ``friend_slots``: linked friend fleets (a ``--friends`` pin may want that many more copies)."""
    doc, self_id = state.doc, state.peer_id
    revoked = frozenset(doc.revocations())
    members = doc.members()
    cards = records.cards(state.feeds)
    overrides = doc.overrides()
    shown: dict[str, str] = {}
    hosts: list[HostView] = []
    for peer in sorted(members | revoked):
        card = cards.get(peer)
        state_shown = _liveness(peer, self_id, revoked, live)
        shown[peer] = state_shown
        if card is None:
            continue
        # Planning needs a definite liveness: unknown (no daemon) plans as alive.
        planned = "alive" if state_shown == UNKNOWN else state_shown
        presence = self_presence if peer == self_id else live.presence.get(peer, Presence())
        host_class = card.host_class if card.host_class in HOST_CLASSES else "desktop"
        try:
            hosts.append(HostView(
                peer_id=peer, name=card.name, host_class=host_class, liveness=planned,
                disk_free_bytes=presence.disk_free_bytes, uptime_score=presence.uptime_score,
                overlay_ipv4=card.overlay_ipv4 or None, overlay_ipv6=card.overlay_ipv6 or None,
                torrent_port=card.torrent_port or None, revoked=peer in revoked,
                underlay_addrs=underlay_ips(card),
            ))
        except InvalidInput:
            continue  # a card the policy core cannot use (e.g. an unknown class from a newer peer)
    all_holdings = records.holdings(state.feeds)
    holding_views: list[HoldingView] = []
    for peer, items in all_holdings.items():
        if peer not in shown:
            continue
        for h in items.values():
            try:
                holding_views.append(HoldingView(
                    peer_id=peer, content_id=h.content_id, infohash=h.infohash, size_bytes=h.size_bytes,
                    complete=h.state == "complete", policy=h.policy, source=SOURCE_MAP.get(h.source, "private"),
                    custody=h.custody,
                ))
            except InvalidInput:
                continue  # a record the policy core cannot use: skipped like a malformed one
    intents: list[IntentView] = []
    for baton, items in records.intents(state.feeds).items():
        if baton in revoked:
            continue
        for intent in items.values():
            try:
                intents.append(IntentView(intent.content_id, baton, intent.target_peer_id, intent.lease_until_ms))
            except InvalidInput:
                continue
    override_views, bad_overrides = [], []
    for peer, o in overrides.items():
        why = limits.override_problem(o.host_class, o.services, o.duty_prefs)
        if why is None:
            try:
                override_views.append(Override(peer_id=peer, host_class=o.host_class, services=o.services,
                                               duty_prefs=tuple(o.duty_prefs or ())))
                continue
            except (InvalidInput, TypeError) as exc:
                why = getattr(exc, "message", str(exc))
        bad_overrides.append((peer, why))
    pins, bad_pins = _pins(doc)
    # strict=False: one impossible pin (more copies than usable hosts) is reported, not fatal.
    view = FleetView.build(hosts, holding_views, pins, intents, override_views, revoked, strict=False,
                           friend_slots=friend_slots)
    bad_pins += [(p.content, why) for p, why in getattr(view, "rejected_pins", ())]
    snap = Snapshot(view, cards, all_holdings, shown, tuple(sorted(bad_pins)), tuple(sorted(bad_overrides)))
    _log_once(self_id, snap)
    return snap


def _pins(doc) -> tuple[list[PinView], list[tuple[str, str]]]:
    """The document's pins as policy inputs; a stored pin outside tva.limits is skipped and
    reported, never raised (a bad decision must not take custody, hosts or peers-for down)."""
    bad = list(getattr(doc, "invalid_pins", dict)().items())
    pins: dict[str, tuple[PinView, str]] = {}
    for key, p in sorted(doc.pins().items()):
        try:
            view = PinView(p.content, p.min_copies, p.max_copies, p.friends is True)
        except (InvalidInput, TypeError) as exc:
            bad.append((key, getattr(exc, "message", str(exc))))
            continue
        if view.content in pins:
            # One infohash pinned under two spellings (upper and lower case): keep the pin that
            # asks more (never fewer copies, never a trim the other would not make).
            (keep, kept_key), (_drop, dropped_key) = sorted(
                [pins[view.content], (view, key)], key=lambda v: (-v[0].min_copies, -(v[0].max_copies or 1 << 30)))
            pins[view.content] = (keep, kept_key)
            bad.append((dropped_key, f"pins the same item as {kept_key!r:.60}, which is kept"))
            continue
        pins[view.content] = (view, key)
    return [v for v, _ in pins.values()], bad


# (node, kind, key, why) already logged: a bad stored value is reported once per process, not
# on every snapshot. Bounded: a flood of bad values stops adding log lines, never memory.
_LOGGED: set[tuple[str, str, str, str]] = set()
_LOGGED_MAX = 10_000


def _log_once(self_id: str, snap: Snapshot) -> None:
    for kind, items in (("pin", snap.invalid_pins), ("override", snap.invalid_overrides)):
        for key, why in items:
            mark = (self_id, kind, key, why)
            if mark in _LOGGED or len(_LOGGED) >= _LOGGED_MAX:
                continue
            _LOGGED.add(mark)
            log.warning("skipping the %s %r from the fleet document: %s", kind, key[:80], why)

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
from typing import Any

from agent.policy.classes import HOST_CLASSES
from agent.policy.inputs import HoldingView, HostView, IntentView, Override, PinView
from agent.policy.view import FleetView
from crdt import records
from crdt.identity import peer_id_from_public
from tva import limits
from tva.errors import InvalidInput

log = logging.getLogger("tva.views")

SOURCE_MAP = {"local": "public", "public": "public", "private-tracker": "private_tracker", "friend": "private"}
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Presence:
    disk_free_bytes: int | None = None
    uptime_score: float = 0.0


NO_PRESENCE = Presence()


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


def live_info(liveness: Mapping[str, str], presence: Mapping[str, Any]) -> LiveInfo:
    """The running mesh's view as planning reads it: liveness by state name, and of each peer's
    presence (``mesh.core.Presence``) the disk and uptime. The daemon and the simulator both
    build it here."""
    return LiveInfo(liveness=dict(liveness),
                    presence={peer: Presence(p.disk_free_bytes, p.uptime_score) for peer, p in presence.items()},
                    daemon=True)


# --- the parts a snapshot is made of ------------------------------------------------------------
# Each is a pure function of one feed or of the fleet document. ``build_snapshot`` gets them
# through a ``ViewMemo``: the agent computes them afresh (``DIRECT``); the simulator, running a
# thousand agents whose replicas are mostly equal, computes each once and shares it.


@dataclass(frozen=True)
class FeedParts:
    """What one host's feed contributes: its card, holdings and repair intents (usable ones)."""

    peer: str
    card: records.HostCard | None
    holdings: Mapping[str, records.Holding]  # content id -> record; read-only
    holding_views: tuple[HoldingView, ...]
    intent_views: tuple[IntentView, ...]


@dataclass(frozen=True)
class DocParts:
    """What the fleet document contributes: members, revocations, overrides and pins, and the
    stored pins and overrides outside the limits (skipped, reported)."""

    members: frozenset[str]
    revoked: frozenset[str]
    overrides: tuple[Override, ...]
    pins: tuple[PinView, ...]
    bad_pins: tuple[tuple[str, str], ...]
    bad_overrides: tuple[tuple[str, str], ...]


def feed_parts(peer: str, feed) -> FeedParts:
    card = records.card_of(feed)
    holdings = records.holdings_of(feed)
    holding_views = []
    for h in holdings.values():
        try:
            holding_views.append(HoldingView(
                peer_id=peer, content_id=h.content_id, infohash=h.infohash, size_bytes=h.size_bytes,
                complete=h.state == "complete", policy=h.policy, source=SOURCE_MAP.get(h.source, "private"),
                custody=h.custody,
            ))
        except InvalidInput:
            continue  # a record the policy core cannot use: skipped like a malformed one
    intents = []
    for intent in records.intents_of(feed).values():
        try:
            intents.append(IntentView(intent.content_id, peer, intent.target_peer_id, intent.lease_until_ms))
        except InvalidInput:
            continue
    return FeedParts(peer, card, holdings, tuple(holding_views), tuple(intents))


def doc_parts(doc) -> DocParts:
    override_views, bad_overrides = [], []
    for peer, o in doc.overrides().items():
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
    return DocParts(doc.members(), frozenset(doc.revocations()), tuple(override_views), tuple(pins),
                    tuple(bad_pins), tuple(bad_overrides))


def host_view(peer: str, card: records.HostCard, liveness: str, presence: Presence, revoked: bool) -> HostView:
    host_class = card.host_class if card.host_class in HOST_CLASSES else "desktop"
    return HostView(
        peer_id=peer, name=card.name, host_class=host_class, liveness=liveness,
        disk_free_bytes=presence.disk_free_bytes, uptime_score=presence.uptime_score,
        overlay_ipv4=card.overlay_ipv4 or None, overlay_ipv6=card.overlay_ipv6 or None,
        torrent_port=card.torrent_port or None, revoked=revoked,
        underlay_addrs=underlay_ips(card),
    )


class ViewMemo:
    """How ``build_snapshot`` gets its parts; this one computes each afresh (the agent's)."""

    def feed_parts(self, feeds, owner: bytes) -> FeedParts:
        return feed_parts(peer_id_from_public(owner), feeds.feed(owner))

    def doc_parts(self, doc) -> DocParts:
        return doc_parts(doc)

    def host(self, peer: str, card: records.HostCard, liveness: str, presence: Presence,
             revoked: bool) -> HostView:
        return host_view(peer, card, liveness, presence, revoked)

    def fleet_view(self, hosts: list[HostView], parts: list[FeedParts], doc: DocParts,
                   friend_slots: int = 0) -> FleetView:
        """The view of exactly these inputs (``parts``: every held feed, in owner order;
        ``friend_slots``: linked friend fleets, as many more copies a ``--friends`` pin may want)."""
        listed = doc.members | doc.revoked  # holdings of members and revoked hosts (shown as such)
        holdings = [h for part in parts if part.peer in listed for h in part.holding_views]
        intents = [i for part in parts if part.peer not in doc.revoked for i in part.intent_views]
        # strict=False: one impossible pin (more copies than usable hosts) is reported, not fatal.
        return FleetView.build(hosts, holdings, doc.pins, intents, doc.overrides, doc.revoked, strict=False,
                               friend_slots=friend_slots)


DIRECT = ViewMemo()


def build_snapshot(state, live: LiveInfo, self_presence: Presence, memo: ViewMemo = DIRECT, *,
                   friend_slots: int = 0) -> Snapshot:
    """``state`` is an ``agent.state.NodeState`` (typed loosely to keep this module import-light:
    anything with ``doc``, ``feeds`` and ``peer_id``). ``friend_slots``: linked friend fleets."""
    doc, self_id, feeds = memo.doc_parts(state.doc), state.peer_id, state.feeds
    revoked = doc.revoked
    parts = {}
    for owner in feeds.owners():
        part = memo.feed_parts(feeds, owner)
        parts[part.peer] = part
    shown: dict[str, str] = {}
    hosts: list[HostView] = []
    for peer in sorted(doc.members | revoked):
        part = parts.get(peer)
        state_shown = _liveness(peer, self_id, revoked, live)
        shown[peer] = state_shown
        if part is None or part.card is None:
            continue
        # Planning needs a definite liveness: unknown (no daemon) plans as alive.
        planned = "alive" if state_shown == UNKNOWN else state_shown
        presence = self_presence if peer == self_id else live.presence.get(peer, NO_PRESENCE)
        try:
            hosts.append(memo.host(peer, part.card, planned, presence, peer in revoked))
        except InvalidInput:
            continue  # a card the policy core cannot use (e.g. an unknown class from a newer peer)
    view = memo.fleet_view(hosts, list(parts.values()), doc, friend_slots)
    bad_pins = [*doc.bad_pins, *((p.content, why) for p, why in getattr(view, "rejected_pins", ()))]
    cards = {peer: part.card for peer, part in parts.items() if part.card is not None}
    holdings = {peer: dict(part.holdings) for peer, part in parts.items()}
    snap = Snapshot(view, cards, holdings, shown, tuple(sorted(bad_pins)), tuple(sorted(doc.bad_overrides)))
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

"""peers_for(infohash) and custodians_of(content), answered from this agent's local view.

Sources, in trust order: ``fleet`` (live holders' overlay addresses and torrent port), ``seedbox``
(the same, for holders of class seedbox), ``friend`` (holders a linked friend fleet shared),
``tracker`` and ``dht`` (peers the runtime looked up outside). Each peer carries its provenance;
an address:port given by several sources is kept once, under the most trusted one.

Gates, by the item's effective policy:

* ``public`` — all sources;
* ``f2f_only`` — fleet, seedbox and friends only: never dht, tracker or an unlinked fleet;
* ``search_only`` — no peers at all (metadata only).

The item policy is the most closed of what the holders and friends say, each holding's policy
clamped by its source (``classes.effective_policy``): private-tracker content is at most
``f2f_only`` whatever any override says; a private source is ``search_only`` until opened.
When views differ the most closed wins. Revoked hosts — by peer id and by their overlay
addresses — never appear, whatever source names them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import checks
from .canonical import JsonOutput
from .classes import (
    FLEET,
    FRIEND,
    GATE_ALLOWS,
    PEER_SOURCE_RANK,
    POLICIES,
    PUBLIC,
    SEEDBOX,
    SEEDBOX_SRC,
    SRC_PUBLIC,
    effective_policy,
    most_closed,
)
from .inputs import ExternalPeer, FriendPeer, HoldingView, HostView
from .view import FleetView

PEERS_MAX_DEFAULT = 200
PEERS_MAX_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Peer(JsonOutput):
    peer_id: str | None
    host: str | None  # the fleet host's name, or the friend fleet's id; None for dht/tracker
    addr: str
    port: int
    source: str


@dataclass(frozen=True, slots=True)
class PeerAnswer(JsonOutput):
    infohash: str
    policy: str
    peers: tuple[Peer, ...]


@dataclass(frozen=True, slots=True)
class Custodians(JsonOutput):
    content: str
    infohash: str | None
    peers: tuple[Peer, ...]


def item_policy(
    view: FleetView,
    infohash: str,
    friends: Iterable[FriendPeer] = (),
    policy_override: str | None = None,
) -> str:
    """The effective policy of an item (see the module docstring)."""
    checks.instance(view, "view", FleetView)
    infohash = checks.infohash(infohash)
    if policy_override is not None:
        checks.choice(policy_override, "policy_override", POLICIES)
    return _item_policy(view, infohash, checks.instances(friends, "friends", FriendPeer), policy_override)


def _item_policy(view: FleetView, infohash: str, friends: tuple[FriendPeer, ...], override: str | None) -> str:
    said = [effective_policy(override if override is not None else h.policy, h.source)
            for per in view.by_infohash.get(infohash, {}).values() for h in per.values()]
    said.extend(f.policy for f in friends if f.infohash == infohash)
    if not said:
        said.append(effective_policy(override, SRC_PUBLIC))
    return most_closed(said) or PUBLIC


def peers_for(
    view: FleetView,
    infohash: str,
    *,
    friends: Iterable[FriendPeer] = (),
    friend_fleets: Iterable[str] = (),
    external: Iterable[ExternalPeer] = (),
    policy_override: str | None = None,
    exclude_peer: str | None = None,
    peers_max: int = PEERS_MAX_DEFAULT,
) -> PeerAnswer:
    """Who can give us ``infohash``, gated by the item's policy.

    ``friends``: friend fleets' shared holders (entries for other infohashes are ignored);
    ``friend_fleets``: the fleet ids we are linked with now (a peer of any other fleet is dropped);
    ``external``: DHT/tracker peers the runtime looked up; ``exclude_peer``: the asking host.
    """
    checks.instance(view, "view", FleetView)
    infohash = checks.infohash(infohash)
    friend_list = checks.instances(friends, "friends", FriendPeer)
    linked = frozenset(checks.text(f, "friend fleet id") for f in _strings(friend_fleets))
    ext = checks.instances(external, "external", ExternalPeer)
    if policy_override is not None:
        checks.choice(policy_override, "policy_override", POLICIES)
    checks.optional_peer_id(exclude_peer, "exclude_peer")
    checks.integer(peers_max, "peers_max", maximum=PEERS_MAX_LIMIT)

    policy = _item_policy(view, infohash, friend_list, policy_override)
    allowed = GATE_ALLOWS[policy]
    if not allowed:
        return PeerAnswer(infohash, policy, ())
    revoked = view.revoked_peers
    revoked_addrs = _revoked_addrs(view)
    found: list[Peer] = []
    if FLEET in allowed or SEEDBOX_SRC in allowed:
        for peer in view.by_infohash.get(infohash, {}):
            host = view.hosts.get(peer)
            if host is None or peer == exclude_peer or not view.is_live(peer):
                continue
            source = SEEDBOX_SRC if host.host_class == SEEDBOX else FLEET
            if source in allowed:
                found.extend(_host_peers(host, source))
    if FRIEND in allowed:
        for f in friend_list:
            if f.infohash == infohash and f.fleet_id in linked and f.peer_id not in revoked:
                found.append(Peer(f.peer_id, f.fleet_id, f.addr, f.port, FRIEND))
    for e in ext:
        if e.source in allowed:
            found.append(Peer(None, None, e.addr, e.port, e.source))
    return PeerAnswer(infohash, policy, _dedupe(found, revoked_addrs, peers_max))


def custodians_of(view: FleetView, content: str, *, exclude_peer: str | None = None) -> Custodians:
    """Live, non-revoked fleet hosts holding a complete copy of ``content`` (content id or
    infohash), with their overlay addresses: where to copy from over the fabric. Fleet-internal,
    so not gated by the item policy (the fabric never reaches a public swarm)."""
    checks.instance(view, "view", FleetView)
    content = checks.text(content, "content")
    if checks.is_infohash(content):
        content = content.lower()
    checks.optional_peer_id(exclude_peer, "exclude_peer")
    holds = view.holdings_for(content)
    complete: list[HoldingView] = [h for h in holds.values() if h.complete]
    found: list[Peer] = []
    for h in complete:
        host = view.hosts.get(h.peer_id)
        if host is None or h.peer_id == exclude_peer or not view.is_live(h.peer_id):
            continue
        found.extend(_host_peers(host, SEEDBOX_SRC if host.host_class == SEEDBOX else FLEET))
    infohash = min((h.infohash for h in complete), default=content if checks.is_infohash(content) else None)
    return Custodians(content, infohash, _dedupe(found, _revoked_addrs(view), PEERS_MAX_LIMIT))


def _host_peers(host: HostView, source: str) -> list[Peer]:
    if host.torrent_port is None:
        return []
    return [Peer(host.peer_id, host.name, a, host.torrent_port, source)
            for a in _fleet_addrs(host)]


def _fleet_addrs(host: HostView) -> tuple[str, ...]:
    """The overlay addresses when the host has tva0, else its underlay addresses (mesh-only hosts)."""
    overlay = tuple(a for a in (host.overlay_ipv4, host.overlay_ipv6) if a is not None)
    return overlay or host.underlay_addrs


def _revoked_addrs(view: FleetView) -> frozenset[str]:
    out = set()
    for peer in view.revoked_peers:
        h = view.hosts.get(peer)
        if h is not None:
            # Overlay addresses only: they are derived from keys and never reused, while an underlay
            # address may be handed to another machine by the LAN's DHCP.
            out.update(a for a in (h.overlay_ipv4, h.overlay_ipv6) if a is not None)
    return frozenset(out)


def _dedupe(found: list[Peer], revoked_addrs: frozenset[str], peers_max: int) -> tuple[Peer, ...]:
    best: dict[tuple[str, int], Peer] = {}
    for p in found:
        if p.addr in revoked_addrs:
            continue
        k = (p.addr, p.port)
        cur = best.get(k)
        if cur is None or _order(p) < _order(cur):
            best[k] = p
    return tuple(sorted(best.values(), key=_order)[:peers_max])


def _order(p: Peer) -> tuple:
    return (PEER_SOURCE_RANK[p.source], p.addr, p.port, p.peer_id or "", p.host or "")


def _strings(values: object) -> tuple:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise checks.fail("friend_fleets must be an iterable of fleet ids", "pass a list or frozenset")
    return tuple(values)

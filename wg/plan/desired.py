"""The ``tva0`` configuration this node should have, rendered from replicated state.

Inputs are plain values the runtime adapts from the fleet document and the host feeds: the
member list, the revoked set, each member's card (WireGuard public key, endpoints, class, NAT) and
the resolved IPv4 claims. Cards come from peers, so every field is checked here: a card that does
not make sense drops that one peer (listed in ``skipped`` with the reason), never the whole config.

Safety rules enforced here, not left to callers:
* AllowedIPs are exactly the peer's own /32 (inside the fleet /24) and /128 (computed from its key,
  never taken from the card): no default route, no LAN prefix, nothing another peer owns.
* A revoked or non-member host gets no peer entry at all.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from tva.errors import DecodeError, InvalidInput
from wg.plan.addressing import host_ipv6
from wg.plan.keys import clamp_private, key_from_b64, key_to_b64, public_from_private

KEEPALIVE_S_DEFAULT = 25
LISTEN_PORT_DEFAULT = 51820
ENDPOINT_CHARS_MAX = 64
ENDPOINTS_PER_CARD_MAX = 16
# Host classes whose machines sleep, roam or sit behind someone else's NAT.
KEEPALIVE_CLASSES = frozenset({"portable"})


def parse_endpoint(text: object) -> str:
    """Canonical ``ip:port`` / ``[ipv6]:port`` from outside; ``DecodeError`` for anything else.

    IP literals only: the fabric must not resolve names (no DNS lookups from a pure renderer, and a
    name would let a card redirect traffic whenever its DNS changes).
    """
    if not isinstance(text, str) or not 0 < len(text) <= ENDPOINT_CHARS_MAX:
        raise DecodeError("an endpoint is a short 'ip:port' string")
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not port_text.isascii():
        raise DecodeError(f"endpoint without a port: {text!r}")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise DecodeError(f"endpoint port out of range: {text!r}")
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        ip = ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        raise DecodeError(f"endpoint host is not an IP literal: {text!r}") from None
    if isinstance(ip, IPv6Address):
        if not bracketed:
            raise DecodeError(f"an IPv6 endpoint needs brackets: {text!r}")
        if ip.scope_id:
            raise DecodeError(f"scoped IPv6 endpoints are not supported: {text!r}")
        return f"[{ip}]:{port}"
    if bracketed:
        raise DecodeError(f"brackets around an IPv4 endpoint: {text!r}")
    return f"{ip}:{port}"


@dataclass(frozen=True)
class PeerCard:
    """What the runtime takes from a member's host card (unchecked: it came from that peer)."""

    peer_id: str
    wg_public_key: str  # base64, as published
    endpoints: tuple[str, ...] = ()  # best first
    host_class: str = ""
    behind_nat: bool = False


@dataclass(frozen=True)
class DesiredPeer:
    public_key: str  # base64
    endpoint: str | None  # canonical ip:port, None when nothing usable is known
    allowed_ips: tuple[str, ...]  # canonical CIDRs, sorted: the peer's /32 and /128 only
    keepalive_s: int | None  # None = off


@dataclass(frozen=True)
class DesiredInterface:
    private_key: str  # base64
    listen_port: int
    addresses: tuple[str, ...]  # canonical interface CIDRs, e.g. 10.77.3.5/24 and fd…/64, sorted
    peers: tuple[DesiredPeer, ...]  # sorted by public key


@dataclass(frozen=True)
class Rendered:
    interface: DesiredInterface
    skipped: tuple[tuple[str, str], ...]  # (peer id, why) for members left out


def sort_cidrs(cidrs: Iterable[str]) -> tuple[str, ...]:
    # IPv4 first, then by text: a stable order every node and every backend agrees on.
    return tuple(sorted(set(cidrs), key=lambda c: (":" in c, c)))


def render_desired(
    *,
    self_peer: str,
    private_key: bytes,
    members: Iterable[str],
    revoked: Collection[str],
    cards: Mapping[str, PeerCard],
    prefix64: IPv6Network,
    ipv4_subnet: IPv4Network | None,
    ipv4_assigned: Mapping[str, IPv4Address],
    listen_port: int = LISTEN_PORT_DEFAULT,
    keepalive_s: int = KEEPALIVE_S_DEFAULT,
) -> Rendered:
    """Render this node's ``tva0`` config. ``ipv4_subnet`` None means IPv6-only on this node."""
    if not 1 <= listen_port <= 65535:
        raise InvalidInput(f"listen port must be 1..65535, got {listen_port}")
    if not 1 <= keepalive_s <= 65535:
        raise InvalidInput(f"keepalive must be 1..65535 s, got {keepalive_s}")
    own_public = public_from_private(private_key)
    own_card = cards.get(self_peer)
    # Our own NAT mapping has to be kept open too, so a NATed or portable node keeps every peer alive.
    self_needs_keepalive = own_card is not None and _needs_keepalive(own_card)

    addresses = [f"{host_ipv6(prefix64, own_public)}/64"]
    own_v4 = ipv4_assigned.get(self_peer)
    if ipv4_subnet is not None and own_v4 is not None and own_v4 in ipv4_subnet:
        addresses.append(f"{own_v4}/{ipv4_subnet.prefixlen}")

    skipped: list[tuple[str, str]] = []
    peers: list[DesiredPeer] = []
    # Who publishes which key, over every card we hold (revoked hosts' too): a key published twice
    # is ambiguous (it could steal another member's traffic) and a key a revoked host published
    # must not come back under another member's name, so both are refused.
    publishers: dict[str, set[str]] = {}
    for pid, c in cards.items():
        publishers.setdefault(_key_text(c), set()).add(pid)
    revoked_keys = {_key_text(cards[r]) for r in revoked if r in cards} - {""}
    v4_seen: dict[IPv4Address, str] = {own_v4: self_peer} if own_v4 is not None else {}
    for peer in sorted(set(members)):
        if peer == self_peer or peer in revoked:
            continue
        card = cards.get(peer)
        if card is None:
            skipped.append((peer, "no host card yet"))
            continue
        try:
            public = key_from_b64(card.wg_public_key)
        except DecodeError as e:
            skipped.append((peer, f"bad WireGuard key: {e.message}"))
            continue
        if public == own_public:
            skipped.append((peer, "publishes this node's own WireGuard key"))
            continue
        others = sorted(publishers.get(_key_text(card), set()) - {peer})
        if others:
            skipped.append((peer, f"WireGuard key also published by {', '.join(others[:3])}"))
            continue
        if _key_text(card) in revoked_keys:
            skipped.append((peer, "WireGuard key belongs to a revoked host"))
            continue
        allowed = [f"{host_ipv6(prefix64, public)}/128"]
        v4 = ipv4_assigned.get(peer)
        if ipv4_subnet is not None and isinstance(v4, IPv4Address) and v4 in ipv4_subnet:
            if v4 in v4_seen:
                # Only possible when the caller did not use resolve_claims: never route one
                # address to two peers; the host stays reachable over IPv6.
                skipped.append((peer, f"IPv4 {v4} already routed to {v4_seen[v4]}; IPv6 only"))
            else:
                v4_seen[v4] = peer
                allowed.append(f"{v4}/32")
        peers.append(
            DesiredPeer(
                public_key=key_to_b64(public),
                endpoint=_best_endpoint(card.endpoints),
                allowed_ips=sort_cidrs(allowed),
                keepalive_s=keepalive_s if self_needs_keepalive or _needs_keepalive(card) else None,
            )
        )
    interface = DesiredInterface(
        private_key=key_to_b64(clamp_private(private_key)),
        listen_port=listen_port,
        addresses=sort_cidrs(addresses),
        peers=tuple(sorted(peers, key=lambda p: p.public_key)),
    )
    return Rendered(interface=interface, skipped=tuple(skipped))


def _key_text(card: object) -> str:
    key = getattr(card, "wg_public_key", "")
    return key if isinstance(key, str) else ""


def _needs_keepalive(card: PeerCard) -> bool:
    return card.behind_nat is True or (isinstance(card.host_class, str) and card.host_class in KEEPALIVE_CLASSES)


def _best_endpoint(endpoints: object) -> str | None:
    """The first endpoint that parses; the card lists them best first."""
    if not isinstance(endpoints, tuple | list):
        return None
    for text in list(endpoints)[:ENDPOINTS_PER_CARD_MAX]:
        try:
            return parse_endpoint(text)
        except DecodeError:
            continue
    return None

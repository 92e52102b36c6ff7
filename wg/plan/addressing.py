"""Overlay addresses on ``tva0``, computed by every node alike from replicated inputs.

* IPv6: a ULA /48 (RFC 4193) whose 40-bit global id is a hash of the fleet id; ``tva0`` uses its
  first /64, and a host's address is that /64 plus 64 bits hashed from its WireGuard public key.
  No coordination at all: two hosts collide with probability ~n²/2⁶⁵.
* IPv4: a /24 for the fleet, picked at ``init`` from :func:`ipv4_candidates` by the shell's
  collision probe (this module never looks at the host). Each host claims an address in its feed
  (:func:`preferred_ipv4` is its first choice); :func:`resolve_claims` settles clashes the same way
  on every node: in admission order, the earlier host keeps an address, the later one moves.

Pure: hashes only. Fleet ids and peer ids come in as plain values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import NamedTuple

from tva.errors import InvalidInput

# Host octets .1 … .253: .0 is the network, .255 broadcast, and .254 stays free for a future gateway.
IPV4_HOST_OCTET_MIN = 1
IPV4_HOST_OCTET_MAX = 253
IPV4_HOSTS_MAX = IPV4_HOST_OCTET_MAX - IPV4_HOST_OCTET_MIN + 1
IPV4_CANDIDATES_DEFAULT = 16

# Ranges home routers, VPNs, container runtimes and other overlays commonly use. The pool itself is
# 10.0.0.0/8 (so 100.64.0.0/10 of Tailscale, 172.16.0.0/12 of Docker and 192.168.0.0/16 of home
# LANs are outside it already); these are the parts of 10/8 we also stay out of.
AVOIDED_IPV4 = tuple(
    IPv4Network(n)
    for n in (
        "10.0.0.0/16",  # home routers (10.0.0.1)
        "10.1.0.0/16",  # home routers (10.1.1.1)
        "10.6.0.0/16",  # PiVPN WireGuard default
        "10.8.0.0/16",  # OpenVPN default
        "10.9.0.0/16",  # the other overlay the seed fleet already runs at 10.9.0.x
        "10.10.0.0/16",  # ISP boxes, lab networks
        "10.13.13.0/24",  # linuxserver/wireguard
        "10.42.0.0/15",  # k3s pods and services
        "10.66.66.0/24",  # wireguard-install
        "10.96.0.0/12",  # Kubernetes services
        "10.244.0.0/16",  # flannel / Kubernetes pods
        "100.64.0.0/10",  # Tailscale, CGNAT (outside the pool; listed so callers can test against it)
        "172.16.0.0/12",  # Docker bridges (172.17.x) and user networks
        "192.168.0.0/16",  # home LANs (192.168.0.x, 192.168.1.x …)
    )
)
# Third octets .0, .1 and .255 are what people pick by hand (10.x.0.1, 10.x.1.1): skip them too.
_AVOIDED_THIRD_OCTETS = frozenset({0, 1, 255})
_CANDIDATE_DRAWS_MAX = 4096
_POOL = IPv4Network("10.0.0.0/8")


def _fleet_bytes(fleet_id: bytes | str) -> bytes:
    if isinstance(fleet_id, str):
        fleet_id = fleet_id.encode("utf-8")
    if not isinstance(fleet_id, bytes) or not fleet_id:
        raise InvalidInput("fleet id must be non-empty bytes or text")
    return fleet_id


def _h(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        # Length-prefixed so ("ab", "c") and ("a", "bc") hash apart.
        h.update(len(p).to_bytes(4, "big"))
        h.update(p)
    return h.digest()


# --- IPv6 ---------------------------------------------------------------------------------------


def ula_prefix48(fleet_id: bytes | str) -> IPv6Network:
    """The fleet's ULA /48: ``fd`` + 40 bits of hash of the fleet id."""
    global_id = _h(b"tva0-ula", _fleet_bytes(fleet_id))[:5]
    return IPv6Network((bytes([0xFD]) + global_id + bytes(10), 48))


def overlay_prefix64(fleet_id: bytes | str) -> IPv6Network:
    """The /64 used on ``tva0``: subnet 0 of the fleet's /48."""
    p48 = ula_prefix48(fleet_id)
    return IPv6Network((p48.network_address, 64))


def host_ipv6(prefix64: IPv6Network, public_key: bytes) -> IPv6Address:
    """A host's overlay IPv6: the fleet /64 plus 64 bits hashed from its WireGuard public key."""
    if prefix64.prefixlen != 64:
        raise InvalidInput(f"overlay IPv6 prefix must be a /64, got /{prefix64.prefixlen}")
    if not isinstance(public_key, bytes) or len(public_key) != 32:
        raise InvalidInput("a WireGuard public key has 32 bytes")
    iid = int.from_bytes(_h(b"tva0-iid", public_key)[:8], "big")
    # The all-zero interface id is the subnet-router anycast address (RFC 4291): never a host.
    iid = iid or 1
    return IPv6Address(int(prefix64.network_address) | iid)


# --- IPv4 subnet candidates ---------------------------------------------------------------------


def is_avoided_ipv4(net: IPv4Network) -> bool:
    return not net.subnet_of(_POOL) or any(net.overlaps(a) for a in AVOIDED_IPV4)


def ipv4_candidates(fleet_id: bytes | str, count: int = IPV4_CANDIDATES_DEFAULT) -> list[IPv4Network]:
    """Distinct /24s inside 10/8, outside :data:`AVOIDED_IPV4`, in an order fixed by the fleet id.

    Every node computes the same list, so the probe at ``init`` and a later joiner's check agree on
    what the fleet would have picked; the init node records its choice in the fleet document.
    """
    if not 1 <= count <= 256:
        raise InvalidInput(f"candidate count must be 1..256, got {count}")
    fb = _fleet_bytes(fleet_id)
    out: list[IPv4Network] = []
    seen: set[IPv4Network] = set()
    for i in range(_CANDIDATE_DRAWS_MAX):
        d = _h(b"tva0-v4net", fb, i.to_bytes(4, "big"))
        second, third = d[0], d[1]
        if third in _AVOIDED_THIRD_OCTETS:
            continue
        net = IPv4Network(f"10.{second}.{third}.0/24")
        if net in seen or is_avoided_ipv4(net):
            continue
        seen.add(net)
        out.append(net)
        if len(out) == count:
            break
    return out


# --- IPv4 host claims ---------------------------------------------------------------------------


def _check_subnet(subnet: IPv4Network) -> None:
    if not isinstance(subnet, IPv4Network) or subnet.prefixlen != 24:
        raise InvalidInput(f"the fleet IPv4 subnet must be a /24, got {subnet}")


def _host_octet(subnet: IPv4Network, addr: IPv4Address | None) -> int | None:
    """The claim's host octet, or None when the claim is absent or not a usable host in ``subnet``."""
    if not isinstance(addr, IPv4Address) or addr not in subnet:
        return None
    octet = int(addr) - int(subnet.network_address)
    return octet if IPV4_HOST_OCTET_MIN <= octet <= IPV4_HOST_OCTET_MAX else None


def preferred_octet(peer: str) -> int:
    """A host's first-choice host octet: hash(peer) mod 253 + 1."""
    return int.from_bytes(_h(b"tva0-v4host", peer.encode("utf-8")), "big") % IPV4_HOSTS_MAX + 1


def preferred_ipv4(subnet: IPv4Network, peer: str) -> IPv4Address:
    _check_subnet(subnet)
    return subnet.network_address + preferred_octet(peer)


def claim_ipv4(subnet: IPv4Network, peer: str, taken: Iterable[IPv4Address]) -> IPv4Address | None:
    """The first free address in ``peer``'s probe order (preferred, then upward with wrap-around).

    None when the /24 is full: that host runs IPv6-only on ``tva0``.
    """
    _check_subnet(subnet)
    used = {o for a in taken if (o := _host_octet(subnet, a)) is not None}
    start = preferred_octet(peer)
    for step in range(IPV4_HOSTS_MAX):
        octet = (start - 1 + step) % IPV4_HOSTS_MAX + 1
        if octet not in used:
            return subnet.network_address + octet
    return None


class Ipv4Claim(NamedTuple):
    """What a host's feed says: the address it claims (None: none yet) and when it was admitted."""

    peer: str
    ipv4: IPv4Address | None
    admitted_at_ms: int


def resolve_claims(
    claims: Iterable[Ipv4Claim | tuple[str, IPv4Address | None, int]], subnet: IPv4Network
) -> dict[str, IPv4Address]:
    """Settle every host's IPv4, the same way on every node.

    One pass in admission order (ties by peer id): a host keeps its claim when it is a usable host
    address of ``subnet`` not yet given to an earlier host; otherwise it gets the first free address
    in its own probe order. So a host's address depends only on hosts admitted before it: hosts
    admitted later never move it, and the result is stable across restarts and input orderings.
    Hosts beyond the /24's 253 addresses are left out (IPv6-only). A peer listed twice counts once,
    with its earliest admission.
    """
    _check_subnet(subnet)
    first: dict[str, tuple[int, IPv4Address | None]] = {}
    for c in claims:
        peer, ipv4, admitted_at_ms = c
        if not isinstance(peer, str) or not isinstance(admitted_at_ms, int):
            raise InvalidInput("a claim is (peer id, IPv4 address or None, admitted_at_ms)")
        prev = first.get(peer)
        if prev is None or (admitted_at_ms, str(ipv4)) < (prev[0], str(prev[1])):
            first[peer] = (admitted_at_ms, ipv4)
    order = sorted(first.items(), key=lambda kv: (kv[1][0], kv[0]))
    used: set[int] = set()
    out: dict[str, IPv4Address] = {}
    for peer, (_, ipv4) in order:
        octet = _host_octet(subnet, ipv4)
        if octet is None or octet in used:
            addr = claim_ipv4(subnet, peer, (subnet.network_address + o for o in used))
            if addr is None:
                continue
            octet = int(addr) - int(subnet.network_address)
        used.add(octet)
        out[peer] = subnet.network_address + octet
    return out


def addresses_for(
    resolved: Mapping[str, IPv4Address], peer: str, prefix64: IPv6Network, public_key: bytes
) -> tuple[IPv4Address | None, IPv6Address]:
    """Convenience: a host's two overlay addresses from the resolved claims and its key."""
    return resolved.get(peer), host_ipv6(prefix64, public_key)

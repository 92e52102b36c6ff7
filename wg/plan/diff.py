"""Desired vs actual ``tva0``: the smallest list of operations that makes them equal.

Pure. Backends report what the interface has (:class:`ActualInterface`); :func:`diff` returns
frozen operations the backend carries out; :func:`apply_ops` is the reference meaning of those
operations (the in-memory backend uses it, and the property "apply, then diff again → nothing"
is tested against it).

Two things are deliberately left alone:
* IPv6 link-local addresses (fe80::/10) the kernel adds by itself;
* a peer's endpoint while its handshake is fresh: WireGuard learns the real endpoint from the
  packets it receives (a NATed or roaming peer), and the mesh's idea of it may be worse. Once the
  handshake is stale (or there never was one), the mesh's best known endpoint is pushed again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from ipaddress import ip_interface

from wg.plan.desired import DesiredInterface, DesiredPeer, sort_cidrs

ENDPOINT_STALE_S_DEFAULT = 180  # WireGuard re-handshakes every 120 s while traffic flows


@dataclass(frozen=True)
class ActualPeer:
    public_key: str  # base64
    endpoint: str | None = None
    allowed_ips: tuple[str, ...] = ()
    keepalive_s: int | None = None
    last_handshake_unix_s: int | None = None  # None: never
    rx_bytes: int = 0
    tx_bytes: int = 0


@dataclass(frozen=True)
class ActualInterface:
    exists: bool = False
    up: bool = False
    private_key: str | None = None  # base64
    listen_port: int | None = None
    addresses: tuple[str, ...] = ()
    peers: tuple[ActualPeer, ...] = ()


# --- operations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetDevice:
    private_key: str
    listen_port: int


@dataclass(frozen=True)
class AddAddress:
    cidr: str


@dataclass(frozen=True)
class RemoveAddress:
    cidr: str


@dataclass(frozen=True)
class RemovePeer:
    public_key: str


@dataclass(frozen=True)
class AddPeer:
    peer: DesiredPeer


@dataclass(frozen=True)
class UpdatePeer:
    """Set allowed IPs (replacing) and keepalive; the endpoint too when ``set_endpoint``."""

    peer: DesiredPeer
    set_endpoint: bool


@dataclass(frozen=True)
class LinkUp:
    pass


Op = SetDevice | AddAddress | RemoveAddress | RemovePeer | AddPeer | UpdatePeer | LinkUp


def is_link_local(cidr: str) -> bool:
    iface = ip_interface(cidr)
    return iface.version == 6 and iface.ip.is_link_local


def diff(
    actual: ActualInterface,
    desired: DesiredInterface,
    *,
    now_unix_s: int | None = None,
    endpoint_stale_s: int = ENDPOINT_STALE_S_DEFAULT,
) -> list[Op]:
    """Operations turning ``actual`` into ``desired``, in a safe order.

    Removals come before additions so an address or allowed IP moving between peers never
    exists twice. ``now_unix_s`` None treats every handshake as stale.
    """
    ops: list[Op] = []
    if actual.private_key != desired.private_key or actual.listen_port != desired.listen_port:
        ops.append(SetDevice(desired.private_key, desired.listen_port))

    have_addrs = {a for a in actual.addresses if not is_link_local(a)}
    want_addrs = set(desired.addresses)
    ops.extend(RemoveAddress(a) for a in sort_cidrs(have_addrs - want_addrs))
    ops.extend(AddAddress(a) for a in sort_cidrs(want_addrs - have_addrs))

    have = {p.public_key: p for p in actual.peers}
    want = {p.public_key: p for p in desired.peers}
    ops.extend(RemovePeer(k) for k in sorted(have.keys() - want.keys()))
    for key in sorted(want):
        w = want[key]
        h = have.get(key)
        if h is None:
            ops.append(AddPeer(w))
            continue
        set_endpoint = (
            w.endpoint is not None
            and w.endpoint != h.endpoint
            and _handshake_stale(h, now_unix_s, endpoint_stale_s)
        )
        same_ips = set(h.allowed_ips) == set(w.allowed_ips)
        same_keepalive = (h.keepalive_s or None) == w.keepalive_s
        if set_endpoint or not same_ips or not same_keepalive:
            ops.append(UpdatePeer(w, set_endpoint))
    if not actual.up:
        ops.append(LinkUp())
    return ops


def _handshake_stale(peer: ActualPeer, now_unix_s: int | None, stale_s: int) -> bool:
    if now_unix_s is None or not peer.last_handshake_unix_s:
        return True
    return now_unix_s - peer.last_handshake_unix_s > stale_s


def apply_ops(actual: ActualInterface, ops: Sequence[Op]) -> ActualInterface:
    """The meaning of ``ops``: what a correct backend's interface looks like afterwards."""
    state = replace(actual, exists=True)
    addrs = list(state.addresses)
    peers = {p.public_key: p for p in state.peers}
    for op in ops:
        match op:
            case SetDevice(private_key=k, listen_port=port):
                state = replace(state, private_key=k, listen_port=port)
            case AddAddress(cidr=c):
                if c not in addrs:
                    addrs.append(c)
            case RemoveAddress(cidr=c):
                addrs = [a for a in addrs if a != c]
            case RemovePeer(public_key=k):
                peers.pop(k, None)
            case AddPeer(peer=p):
                peers[p.public_key] = ActualPeer(
                    p.public_key, p.endpoint, sort_cidrs(p.allowed_ips), p.keepalive_s
                )
            case UpdatePeer(peer=p, set_endpoint=set_ep):
                old = peers.get(p.public_key, ActualPeer(p.public_key))
                peers[p.public_key] = replace(
                    old,
                    endpoint=p.endpoint if set_ep else old.endpoint,
                    allowed_ips=sort_cidrs(p.allowed_ips),
                    keepalive_s=p.keepalive_s,
                )
            case LinkUp():
                state = replace(state, up=True)
    # An allowed IP belongs to one peer only: WireGuard moves it to the peer set last, so do we.
    owner: dict[str, str] = {}
    for op in ops:
        if isinstance(op, AddPeer | UpdatePeer):
            for cidr in op.peer.allowed_ips:
                owner[cidr] = op.peer.public_key
    fixed = []
    for key in sorted(peers):
        p = peers[key]
        keep = tuple(c for c in p.allowed_ips if owner.get(c, key) == key)
        fixed.append(replace(p, allowed_ips=keep))
    return replace(state, addresses=sort_cidrs(addrs), peers=tuple(fixed))

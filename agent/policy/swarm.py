"""BEP 27 where bytes move: which torrents may meet the public swarm, and where engines listen (pure).

An item's bytes may reach the DHT, peer exchange or local service discovery only when everything
we know says it is ``public``: what this host declared for it, what the whole fleet and our friends
say of it (the most closed wins, ``agent.policy.peers.item_policy``), and the torrent itself (a
.torrent carrying BEP 27's private flag never does). Everything else is *closed*: the engine adds it
with per-torrent DHT, PEX and LSD off, never announces it to the DHT (not even on the
public_swarm_face host, not even when the reaper nudges it), and fleet copies of it carry no
tracker. Closed is the default: a torrent is opened only once it is known to be public.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from .classes import POLICIES, PUBLIC


def swarm_public(entry_policy: str | None, item_policy: str, private_flag: bool) -> bool:
    """Whether a torrent may use the public swarm's discovery (DHT/PEX/LSD)."""
    if entry_policy is not None and entry_policy not in POLICIES:
        return False
    return not private_flag and entry_policy == PUBLIC and item_policy == PUBLIC


def torrent_listen_ips(*, overlay: Iterable[str], underlay: Iterable[str], public_face: bool,
                       friends: bool) -> tuple[str, ...]:
    """The addresses the torrent engine binds: never a wildcard.

    The fleet's own addresses (tva0) always; the underlay (this host's concrete LAN/WAN addresses,
    the ones its card advertises) only where something outside the fabric must reach it — a host
    without tva0 (mesh-only), the public_swarm_face host, or a host whose fleet has friends (friend
    fleets' engines dial our holders over the underlay)."""
    ov = [a for a in _ips(overlay)]
    un = [a for a in _ips(underlay) if a not in ov]
    if not ov:
        return tuple(un)
    if public_face or friends:
        return tuple(ov + un)
    return tuple(ov)


def _ips(values: Iterable[str]) -> list[str]:
    out = []
    for v in values:
        try:
            ip = ipaddress.ip_address(v)
        except ValueError:
            continue
        if ip.is_unspecified or ip.is_multicast:
            continue
        out.append(ip.compressed)
    return list(dict.fromkeys(out))

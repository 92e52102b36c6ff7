"""Which addresses this host can be dialled at (for the host card and for invites)."""

from __future__ import annotations

import ipaddress
import logging

log = logging.getLogger("tva.netinfo")
_WILDCARDS = {"/ip4/0.0.0.0/": 4, "/ip6/::/": 6}


def local_ips(version: int) -> list[str]:
    """Unicast addresses of this host's interfaces (global first, loopback last)."""
    try:
        from pyroute2 import IPRoute

        family = 2 if version == 4 else 10
        with IPRoute() as ipr:
            found = [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=family)]
    except Exception as exc:  # no netlink (containers, odd kernels): fall back to loopback only
        log.debug("cannot list addresses: %s", exc)
        found = []
    ips = []
    for text in found:
        try:
            ip = ipaddress.ip_address(text)
        except (TypeError, ValueError):
            continue
        if ip.is_link_local or ip.is_multicast:
            continue
        ips.append(ip)
    ips.sort(key=lambda ip: (ip.is_loopback, ip.is_private, str(ip)))
    loop = "127.0.0.1" if version == 4 else "::1"
    out = [str(ip) for ip in ips]
    if loop not in out:
        out.append(loop)
    return out


def dialable(addrs: list[str]) -> list[str]:
    """Replace wildcard listen addresses (0.0.0.0, ::) by this host's concrete addresses."""
    out: list[str] = []
    for addr in addrs:
        for prefix, version in _WILDCARDS.items():
            if addr.startswith(prefix):
                rest = addr[len(prefix):]
                out.extend(f"/ip{version}/{ip}/{rest}" for ip in local_ips(version))
                break
        else:
            out.append(addr)
    seen: set[str] = set()
    return [a for a in out if not (a in seen or seen.add(a))]

"""Collision probe: is a subnet free on this host (or inside a network namespace)?

Shell (pyroute2 ``IPRoute``, no root needed). A subnet collides with any address on any interface
whose network overlaps it, and with any route in any routing table whose destination overlaps it
(default routes excepted: they overlap everything and shadow nothing). ``tva-agent wg probe CIDR``
prints the collisions; ``init`` walks :func:`wg.plan.addressing.ipv4_candidates` with
:func:`choose_ipv4_subnet`; a joiner checks the fleet's /24 the same way and runs IPv6-only when
it collides, so ``tva0`` never installs a route that shadows a local network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_interface, ip_network

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from tva.errors import InvalidInput, WgBackendError

Subnet = IPv4Network | IPv6Network
_TABLE_NAMES = {253: "default", 254: "main", 255: "local"}


@dataclass(frozen=True)
class Collision:
    kind: str  # "address" or "route"
    prefix: str  # the colliding address (with its prefix length) or route destination
    ifname: str | None
    table: int | None = None

    def describe(self) -> str:
        dev = f" on {self.ifname}" if self.kind == "address" else (f" dev {self.ifname}" if self.ifname else "")
        if self.kind == "address":
            return f"address {self.prefix}{dev}"
        table = _TABLE_NAMES.get(self.table or 254, str(self.table))
        return f"route {self.prefix}{dev} table {table}"


def parse_subnet(text: str) -> Subnet:
    """A CIDR from the command line; ``InvalidInput`` with a hint otherwise."""
    try:
        return ip_network(text.strip(), strict=False)
    except (ValueError, AttributeError):
        raise InvalidInput(f"not a CIDR subnet: {text!r}", hint="e.g. 10.77.3.0/24") from None


def probe(subnet: Subnet | str, *, netns: str | None = None, ignore_ifname: str | None = None) -> list[Collision]:
    """Everything on the host that ``subnet`` overlaps; empty means the subnet is free.

    ``ignore_ifname`` skips our own interface (``tva0``) when re-checking a subnet already in use.
    """
    net = parse_subnet(subnet) if isinstance(subnet, str) else subnet
    try:
        ipr = IPRoute(netns=netns, flags=0) if netns else IPRoute()
    except (OSError, NetlinkError) as e:
        raise WgBackendError(f"cannot open netlink (netns={netns}): {e}") from e
    try:
        names = {link["index"]: link.get("IFLA_IFNAME") for link in ipr.get_links()}
        addrs = list(ipr.get_addr(family=_family(net)))
        routes = list(ipr.get_routes(family=_family(net)))
    except NetlinkError as e:
        raise WgBackendError(f"netlink dump failed (netns={netns}): {e}") from e
    finally:
        ipr.close()
    out: list[Collision] = []
    for a in addrs:
        ifname = names.get(a["index"])
        addr = a.get("IFA_ADDRESS") or a.get("IFA_LOCAL")
        if not addr or ifname == ignore_ifname:
            continue
        iface = ip_interface(f"{addr}/{a['prefixlen']}")
        if iface.network.overlaps(net):
            out.append(Collision("address", str(iface), ifname))
    for r in routes:
        if r["dst_len"] == 0:
            continue  # a default route overlaps everything and shadows nothing
        dst = r.get("RTA_DST")
        ifname = names.get(r.get("RTA_OIF"))
        if not dst or (ignore_ifname is not None and ifname == ignore_ifname):
            continue
        rnet = ip_network(f"{dst}/{r['dst_len']}", strict=False)
        if rnet.overlaps(net):
            table = r.get("RTA_TABLE") or r["table"]
            c = Collision("route", str(rnet), ifname, table)
            if c not in out:
                out.append(c)
    return out


def _family(net: Subnet) -> int:
    return 2 if net.version == 4 else 10  # AF_INET / AF_INET6 (no socket import needed)


def choose_ipv4_subnet(
    candidates: Iterable[IPv4Network], probe_fn: Callable[[IPv4Network], list[Collision]] = probe
) -> tuple[IPv4Network | None, list[tuple[IPv4Network, list[Collision]]]]:
    """The first candidate the probe accepts (None if all collide) and the ones it refused, with why."""
    refused: list[tuple[IPv4Network, list[Collision]]] = []
    for net in candidates:
        hits = probe_fn(net)
        if not hits:
            return net, refused
        refused.append((net, hits))
    return None, refused

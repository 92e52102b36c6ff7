"""Link and address handling for ``tva0`` through pyroute2 (both backends use it).

Shell. One ``IPRoute`` per backend, opened lazily, optionally inside a named network namespace
(``flags=0``: pyroute2's default flags would silently *create* a missing namespace).
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import ip_interface

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from tva.errors import WgBackendError
from wg.plan.diff import AddAddress, LinkUp, Op, RemoveAddress

IFA_F_NODAD = 0x02  # no duplicate address detection: the overlay /64 is ours alone
IFF_UP = 0x1
EEXIST = 17
EADDRNOTAVAIL = 99


class Netlink:
    def __init__(self, ifname: str, netns: str | None = None) -> None:
        self.ifname = ifname
        self.netns = netns
        self._ipr: IPRoute | None = None

    def _ip(self) -> IPRoute:
        if self._ipr is None:
            try:
                self._ipr = IPRoute(netns=self.netns, flags=0) if self.netns else IPRoute()
            except (OSError, NetlinkError) as e:
                raise WgBackendError(f"cannot open netlink (netns={self.netns}): {e}") from e
        return self._ipr

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    def index(self) -> int | None:
        try:
            found = self._ip().link_lookup(ifname=self.ifname)
        except NetlinkError as e:
            raise WgBackendError(f"netlink lookup of {self.ifname} failed: {e}") from e
        return found[0] if found else None

    def state(self) -> tuple[bool, bool, tuple[str, ...]]:
        """(exists, up, addresses as canonical interface CIDRs): two netlink round trips."""
        ipr = self._ip()
        try:
            link = ipr.link("get", ifname=self.ifname)[0]
        except NetlinkError as e:
            if e.code == 19:  # ENODEV
                return False, False, ()
            raise WgBackendError(f"netlink read of {self.ifname} failed: {e}") from e
        try:
            addrs = ipr.get_addr(index=link["index"])
        except NetlinkError as e:
            raise WgBackendError(f"netlink read of {self.ifname} failed: {e}") from e
        up = bool(link["flags"] & IFF_UP)
        out = []
        for a in addrs:
            addr = a.get("IFA_ADDRESS") or a.get("IFA_LOCAL")
            if addr:
                out.append(str(ip_interface(f"{addr}/{a['prefixlen']}")))
        return True, up, tuple(out)

    def apply(self, ops: Sequence[Op]) -> None:
        """The address and link ops (removals first, as :func:`wg.plan.diff.diff` orders them)."""
        link_ops = [op for op in ops if isinstance(op, AddAddress | RemoveAddress | LinkUp)]
        if not link_ops:
            return
        idx = self.index()
        if idx is None:
            raise WgBackendError(f"{self.ifname} does not exist", hint="bring the fabric up first")
        ipr = self._ip()
        for op in link_ops:
            try:
                if isinstance(op, LinkUp):
                    ipr.link("set", index=idx, state="up")
                    continue
                iface = ip_interface(op.cidr)
                if isinstance(op, AddAddress):
                    ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen,
                             flags=IFA_F_NODAD if iface.version == 6 else 0)
                else:
                    ipr.addr("del", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
            except NetlinkError as e:
                # Already there / already gone (removing a primary IPv4 address takes its
                # secondaries with it): the goal of the op holds, so it is not a failure.
                if (isinstance(op, AddAddress) and e.code == EEXIST) or (
                    isinstance(op, RemoveAddress) and e.code == EADDRNOTAVAIL
                ):
                    continue
                raise WgBackendError(f"netlink {type(op).__name__} on {self.ifname} failed: {e}") from e

    def delete_link(self) -> None:
        idx = self.index()
        if idx is not None:
            try:
                self._ip().link("del", index=idx)
            except NetlinkError as e:
                if e.code != 19:  # ENODEV: already gone
                    raise WgBackendError(f"cannot delete {self.ifname}: {e}") from e

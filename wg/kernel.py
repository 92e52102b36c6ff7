"""Kernel backend: the in-kernel WireGuard module through pyroute2 (IPRoute + generic netlink).

Shell. Used only when the module is present (:func:`kernel_module_reason`). The development
machines of this project have no module, so this path is exercised only by its detection test;
its netlink calls follow pyroute2 0.9.7's documented ``WireGuard.set`` / ``info`` API.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import ip_network
from pathlib import Path

from pyroute2 import IPRoute, WireGuard
from pyroute2.netlink.exceptions import NetlinkError

from tva.errors import DecodeError, WgBackendError
from wg.backend import IFNAME_DEFAULT
from wg.netlink import Netlink
from wg.plan.desired import DesiredPeer, parse_endpoint, sort_cidrs
from wg.plan.diff import ActualInterface, ActualPeer, AddPeer, Op, RemovePeer, SetDevice, UpdatePeer
from wg.plan.keys import key_to_b64

SYS_MODULE = Path("/sys/module/wireguard")


def kernel_module_reason(sys_module: Path = SYS_MODULE) -> str | None:
    """None when the kernel has WireGuard loaded (or built in); else why not."""
    if sys_module.exists():
        return None
    return "kernel WireGuard module not loaded (/sys/module/wireguard missing)"


class KernelBackend:
    kind = "kernel"

    def __init__(self, ifname: str = IFNAME_DEFAULT, *, netns: str | None = None) -> None:
        self.ifname = ifname
        self.netns = netns
        self.netlink = Netlink(ifname, netns)

    def _wg(self) -> WireGuard:
        return WireGuard(netns=self.netns, flags=0) if self.netns else WireGuard()

    def up(self) -> None:
        if self.netlink.index() is not None:
            return
        try:
            with (IPRoute(netns=self.netns, flags=0) if self.netns else IPRoute()) as ipr:
                ipr.link("add", ifname=self.ifname, kind="wireguard")
        except NetlinkError as e:
            raise WgBackendError(f"cannot create {self.ifname} (kernel WireGuard): {e}") from e

    def down(self) -> None:
        self.netlink.delete_link()
        self.netlink.close()

    def actual(self) -> ActualInterface:
        exists, up, addresses = self.netlink.state()
        if not exists:
            return ActualInterface()
        try:
            with self._wg() as wg:
                msgs = list(wg.info(self.ifname))
        except NetlinkError as e:
            raise WgBackendError(f"WireGuard netlink info on {self.ifname} failed: {e}") from e
        private_key = listen_port = None
        peers: list[ActualPeer] = []
        for msg in msgs:
            pk = msg.get("WGDEVICE_A_PRIVATE_KEY")
            private_key = _b64(pk) if pk else private_key
            listen_port = msg.get("WGDEVICE_A_LISTEN_PORT") or listen_port
            for p in msg.get("WGDEVICE_A_PEERS") or []:
                peers.append(_peer(p))
        return ActualInterface(True, up, private_key, listen_port, addresses, tuple(peers))

    def apply(self, ops: Sequence[Op]) -> None:
        try:
            with self._wg() as wg:
                for op in ops:
                    if isinstance(op, SetDevice):
                        wg.set(self.ifname, private_key=op.private_key, listen_port=op.listen_port)
                    elif isinstance(op, RemovePeer):
                        wg.set(self.ifname, peer={"public_key": op.public_key, "remove": True})
                    elif isinstance(op, AddPeer):
                        wg.set(self.ifname, peer=_peer_dict(op.peer, True))
                    elif isinstance(op, UpdatePeer):
                        wg.set(self.ifname, peer=_peer_dict(op.peer, op.set_endpoint))
        except NetlinkError as e:
            raise WgBackendError(f"WireGuard netlink set on {self.ifname} failed: {e}") from e
        self.netlink.apply(ops)


def _b64(value: object) -> str:
    """pyroute2 decodes keys to base64 bytes (its ``value``); accept raw 32 bytes too."""
    if isinstance(value, dict):
        value = value.get("value") or value.get("key")
    if isinstance(value, bytes):
        return key_to_b64(value) if len(value) == 32 else value.decode("ascii")
    return str(value)


def _peer_dict(peer: DesiredPeer, set_endpoint: bool) -> dict[str, object]:
    d: dict[str, object] = {
        "public_key": peer.public_key,
        "persistent_keepalive": peer.keepalive_s or 0,
        "replace_allowed_ips": True,
        "allowed_ips": list(peer.allowed_ips),
    }
    if set_endpoint and peer.endpoint is not None:
        host, _, port = peer.endpoint.rpartition(":")
        d["endpoint_addr"] = host.strip("[]")
        d["endpoint_port"] = int(port)
    return d


def _peer(p: object) -> ActualPeer:
    get = p.get  # type: ignore[attr-defined]
    endpoint = None
    ep = get("WGPEER_A_ENDPOINT")
    if isinstance(ep, dict) and ep.get("addr"):
        host = ep["addr"]
        text = f"[{host}]:{ep['port']}" if ":" in host else f"{host}:{ep['port']}"
        try:
            endpoint = parse_endpoint(text)
        except DecodeError:
            endpoint = text
    ips = [a.get("addr") for a in get("WGPEER_A_ALLOWEDIPS") or [] if hasattr(a, "get")]
    hs = get("WGPEER_A_LAST_HANDSHAKE_TIME")
    hs_s = int(hs.get("tv_sec", 0)) if isinstance(hs, dict) else 0
    return ActualPeer(
        public_key=_b64(get("WGPEER_A_PUBLIC_KEY")),
        endpoint=endpoint,
        allowed_ips=sort_cidrs(str(ip_network(i, strict=False)) for i in ips if i),
        keepalive_s=get("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL") or None,
        last_handshake_unix_s=hs_s or None,
        rx_bytes=int(get("WGPEER_A_RX_BYTES") or 0),
        tx_bytes=int(get("WGPEER_A_TX_BYTES") or 0),
    )

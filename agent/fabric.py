"""The daemon's side of the tva0 fabric: keys, addresses, and a reconcile loop over wg.fabric.

Addresses need no server: the IPv6 /64 comes from the fleet id and each host's /128 from its
WireGuard key; the fleet's IPv4 /24 was chosen by the collision probe at ``init`` and lives in the
fleet document; each host claims an IPv4 in its own feed and every node resolves the claims the
same way (earlier admission keeps a clashing address). A host whose own addresses or routes
collide with the fleet's /24 runs IPv6-only and says so in ``status``; it never installs a route
that shadows a local network. Without root or any backend the agent runs mesh-only, says why
once, and carries on.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable
from dataclasses import asdict

import trio

from agent.config import Config
from agent.views import underlay_ips
from crdt import records
from tva.errors import StateCorrupt, TvaError

log = logging.getLogger("tva.fabric")

WG_KEY_FILE = "wg_key"
_BACKEND_PREFERENCE = {"auto": "auto", "kernel": "kernel", "userspace": "userspace", "off": "none"}


def load_or_create_wg_key(store, random_bytes: Callable[[int], bytes] = os.urandom):
    """The node's X25519 key: separate from its Ed25519 identity, kept (0600) in the state dir."""
    from wg.plan.keys import WgKey

    raw = store.read(WG_KEY_FILE, fallback=False)
    if raw is None:
        raw = random_bytes(32)
        store.write(WG_KEY_FILE, raw, secret=True)
    if len(raw) != 32:
        raise StateCorrupt(f"{store.path(WG_KEY_FILE)} is not a 32-byte key",
                           hint="move it away to make a new one (peers then see a new WireGuard key)")
    return WgKey(raw)


def choose_fleet_subnet(state, now_ms: int) -> str | None:
    """At ``init``: the first candidate /24 that overlaps nothing on this host; recorded in the fleet doc."""
    from wg.plan.addressing import ipv4_candidates
    from wg.probe import choose_ipv4_subnet

    try:
        subnet, refused = choose_ipv4_subnet(ipv4_candidates(state.fleet.fleet_id))
    except TvaError as exc:  # no netlink here: leave it to a later `run` on a host that has one
        log.warning("collision probe unavailable (%s): the fleet has no IPv4 subnet yet", exc.message)
        return None
    for net, hits in refused:
        log.info("tva0: %s refused: %s", net, "; ".join(h.describe() for h in hits))
    if subnet is None:
        log.warning("tva0: every IPv4 candidate collides here: the fleet runs IPv6-only")
        return None
    state.doc.set_setting("ipv4_subnet", str(subnet), now_ms)
    return str(subnet)


class FabricManager:
    """The ``fabric`` component. Only the trio thread changes state here: worker threads do the
    blocking netlink/UAPI/probe work and return what they found."""

    def __init__(self, cfg: Config, state, *, on_card: Callable[[dict], None], reconcile_interval_ms: int,
                 on_health: Callable[[str, str | None], None] = lambda _s, _r: None) -> None:
        from wg.plan.addressing import host_ipv6, overlay_prefix64

        self.cfg = cfg
        self.state = state
        self.ifname = cfg.wg_interface
        self.key = load_or_create_wg_key(state.store)
        self._on_card = on_card
        self._on_health = on_health
        self._claim = None
        self.reconcile_interval_ms = reconcile_interval_ms
        self.prefix64 = overlay_prefix64(state.fleet.fleet_id)
        self.ipv6 = str(host_ipv6(self.prefix64, self.key.public))
        self.fabric = None
        self.ipv4: str | None = None
        self.ipv4_problem: str | None = None
        self.last_report = None
        self.held_down = False  # `tva-agent wg down`: stay down until `wg up`
        self._iface = None  # the interface as the last reconcile left it (wg.fabric.FabricStatus)
        self._kick = trio.Event()
        self._prepared = None  # a backend opened by prepare(), for the first run

    # --- addresses --------------------------------------------------------------------------------

    def _subnet(self):
        text = self.state.doc.settings().get("ipv4_subnet")
        return ipaddress.IPv4Network(text) if text else None

    def resolve_ipv4(self) -> dict[str, ipaddress.IPv4Address]:
        """Every member's IPv4, resolved from the claims in their feeds (the same on every node)."""
        from wg.plan.addressing import Ipv4Claim, resolve_claims

        subnet = self._subnet()
        if subnet is None:
            return {}
        admissions = self.state.doc.admissions()
        revoked = self.state.revoked()
        claims = []
        for peer, claim in records.claims(self.state.feeds).items():
            admission = admissions.get(peer)
            if admission is None or peer in revoked:
                continue
            claims.append(Ipv4Claim(peer, ipaddress.IPv4Address(claim.ipv4), admission.at_ms))
        return resolve_claims(claims, subnet)

    async def _check_own_ipv4(self) -> None:
        """Claim (or keep) this host's IPv4 unless the fleet /24 collides with something local.
        The probe (netlink) runs in a worker thread and returns its hits; the claim is written here."""
        from wg.plan.addressing import preferred_ipv4
        from wg.probe import probe

        subnet = self._subnet()
        if subnet is None:
            self.ipv4, self.ipv4_problem = None, "the fleet has no IPv4 subnet (IPv6-only)"
            return
        try:
            hits = await trio.to_thread.run_sync(lambda: probe(subnet, ignore_ifname=self.ifname))
        except TvaError as exc:
            hits, self.ipv4_problem = [], f"collision probe failed: {exc.message}"
        if hits:
            self.ipv4 = None
            self.ipv4_problem = (f"{subnet} collides with " + "; ".join(h.describe() for h in hits)
                                 + ": running IPv6-only on tva0")
            return
        resolved = self.resolve_ipv4().get(self.state.peer_id)
        mine = str(resolved) if resolved is not None else str(preferred_ipv4(subnet, self.state.peer_id))
        current = records.claims(self.state.feeds).get(self.state.peer_id)
        if current is None or current.ipv4 != mine:
            self.state.own.put(records.CLAIM_IPV4_KEY, records.encode_claim(records.AddressClaim(mine)))
        self.ipv4, self.ipv4_problem = mine, None

    def card_fields(self) -> dict:
        """What the host card says about tva0 — nothing while it is down or mesh-only, so no peer is
        ever pointed at an overlay address that does not answer."""
        if self.held_down or self.fabric is None or self.fabric.backend is None:
            return {"wg_public_key": "", "overlay_ipv6": "", "overlay_ipv4": ""}
        return {"wg_public_key": self.key.public_b64, "overlay_ipv6": self.ipv6, "overlay_ipv4": self.ipv4 or ""}

    # --- desired config ---------------------------------------------------------------------------

    def desired(self):
        from wg.plan.desired import PeerCard, render_desired

        cards = {}
        for peer, card in records.cards(self.state.feeds).items():
            if not card.wg_public_key:
                continue
            endpoints = tuple(f"{ip}:{self.cfg.wg_listen_port}" for ip in _card_ips(card))
            cards[peer] = PeerCard(peer, card.wg_public_key, endpoints, card.host_class)
        assigned = self.resolve_ipv4()
        if self.ipv4 is None:
            assigned.pop(self.state.peer_id, None)
        rendered = render_desired(
            self_peer=self.state.peer_id, private_key=self.key.private, members=self.state.members(),
            revoked=self.state.revoked(), cards=cards, prefix64=self.prefix64,
            ipv4_subnet=self._subnet(), ipv4_assigned=assigned, listen_port=self.cfg.wg_listen_port)
        for peer, why in rendered.skipped:
            log.debug("tva0: peer %s left out: %s", peer[:16], why)
        return rendered.interface

    # --- the loop ---------------------------------------------------------------------------------

    def kick(self) -> None:
        """State changed: reconcile soon instead of at the next interval."""
        self._kick.set()

    async def _open(self):
        """The backend to use, if this agent may own the interface (agent.wg_owner); else mesh-only."""
        from agent.wg_owner import InterfaceClaim
        from wg.fabric import WgFabric

        sock_dir, ifname = self.cfg.wg_socket_dir, self.ifname
        fabric = await trio.to_thread.run_sync(
            lambda: WgFabric.auto(_BACKEND_PREFERENCE[self.cfg.wg_backend], ifname=ifname, sock_dir=sock_dir))
        if fabric.backend is None:  # (WgFabric logs the mesh-only reason once itself)
            return fabric
        claim = InterfaceClaim(ifname, self.cfg.state_dir, claim_dir=sock_dir)
        why = await trio.to_thread.run_sync(claim.take, fabric.backend, self.key.private_b64, self.key.public_b64)
        if why is None:
            self._claim = claim
            return fabric
        return WgFabric(None, reason=why + ": mesh-only")

    async def prepare(self) -> None:
        """Open the backend ahead of ``run`` (it writes nothing: the daemon calls this while other
        components start). A failure here is left for ``run`` to meet again, and report."""
        try:
            self._prepared = await self._open()
        except Exception as exc:
            log.debug("%s: early start failed (%s); the fabric component tries again", self.ifname, exc)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        prepared, self._prepared = self._prepared, None
        self.fabric = prepared or await self._open()
        try:
            if self.fabric.backend is not None:
                await self._check_own_ipv4()
                self._on_card(self.card_fields())
            else:
                self._on_health("off", self.fabric.mesh_only_reason)
            task_status.started()
            while True:
                # A kick while the work below runs must not be lost: the event it sets is the one
                # waited on next (wave 1 made a new Event after the work and dropped such kicks).
                self._kick = trio.Event()
                if self.fabric.backend is not None and not self.held_down:
                    await self._reconcile_once()
                with trio.move_on_after(self.reconcile_interval_ms / 1000):
                    await self._kick.wait()
        finally:
            with trio.CancelScope(shield=True):
                if self.fabric is not None and self.fabric.backend is not None:
                    try:
                        await trio.to_thread.run_sync(self.fabric.close)
                    except TvaError as exc:
                        log.warning("%s: stopping: %s", self.ifname, exc.message)
                if self._claim is not None:
                    self._claim.release()
                    self._claim = None

    async def _reconcile_once(self) -> None:
        await self._check_own_ipv4()
        self._on_card(self.card_fields())
        try:
            desired = self.desired()
        except (TvaError, ValueError) as exc:
            log.warning("%s: cannot render the desired config: %s", self.ifname, exc)
            self._on_health("degraded", f"cannot render the desired config: {exc}")
            return
        report = await trio.to_thread.run_sync(self.fabric.reconcile, desired)
        # What `status` shows is read here, off the event loop, not by every status request.
        self._iface = await trio.to_thread.run_sync(self.fabric.interface_status)
        self.last_report = report
        if report.ops and report.applied:
            log.info("%s: applied %d change(s) in %.1f ms", self.ifname, len(report.ops), report.duration_ms)
            await poke_new_peers(report.ops)
        self._on_health("ok" if report.error is None else "degraded", report.error)

    async def down(self) -> None:
        self.held_down = True
        self._on_card(self.card_fields())
        if self.fabric is not None and self.fabric.backend is not None:
            await trio.to_thread.run_sync(self.fabric.down)
            self._iface = await trio.to_thread.run_sync(self.fabric.interface_status)

    def up(self) -> None:
        self.held_down = False
        self.kick()

    def overlay_addrs(self) -> tuple[str, ...]:
        """This host's tva0 addresses once the last reconcile applied cleanly (no backend query)."""
        report = self.last_report
        if self.fabric is None or self.fabric.backend is None or self.held_down or report is None \
                or not report.applied:
            return ()
        return tuple(a for a in (self.ipv4, self.ipv6) if a)

    def status(self) -> dict:
        if self.fabric is None:
            return {"mode": "starting", "reason": None}
        if self.fabric.backend is None:
            return {"mode": "mesh-only", "reason": self.fabric.mesh_only_reason, "ifname": self.ifname}
        st = self._iface
        if st is None:
            return {"mode": "starting", "reason": None, "ifname": self.ifname}
        mode = "down" if self.held_down or not st.up else "ipv6-only" if self.ipv4 is None else "up"
        return {"mode": mode, "reason": self.ipv4_problem or st.error, "backend": st.backend, "ifname": self.ifname,
                "overlay_ipv4": self.ipv4, "overlay_ipv6": self.ipv6, "public_key": self.key.public_b64}

    async def peer_status(self) -> list[dict]:
        """`wg status`'s peers: read from the backend in a worker thread, named here."""
        if self.fabric is None or self.fabric.backend is None:
            return []
        peers = await trio.to_thread.run_sync(self.fabric.status)
        by_key = {c.wg_public_key: (p, c) for p, c in records.cards(self.state.feeds).items() if c.wg_public_key}
        out = []
        for peer in peers:
            owner, card = by_key.get(peer.public_key, (None, None))
            out.append({**asdict(peer), "peer_id": owner, "name": card.name if card else None,
                        "allowed_ips": list(peer.allowed_ips)})
        return out


POKE_PORT = 9  # discard: nothing answers; the datagram only makes WireGuard shake hands


async def poke_new_peers(ops) -> None:
    """Start a handshake with each peer just added (or given new addresses) that has an endpoint.

    A peer's first handshake initiation is dropped when it reaches a host that has not added it
    yet, and WireGuard tries again only after REKEY_TIMEOUT (5 s): a joiner's first ping over tva0
    waited that out whenever its packet beat its card to the inviter. So the side that adds a peer
    second sends it one datagram over tva0 at once: that side's handshake finds the other ready,
    and the packets the other one queued flow as soon as the session is up."""
    from wg.plan.diff import AddPeer, UpdatePeer

    for op in ops:
        if not isinstance(op, AddPeer | UpdatePeer) or not op.peer.endpoint or not op.peer.allowed_ips:
            continue
        cidr = min(op.peer.allowed_ips, key=lambda c: ":" in c)  # IPv4 first, as applications dial it
        addr = cidr.split("/", 1)[0]
        family = trio.socket.AF_INET6 if ":" in addr else trio.socket.AF_INET
        try:
            with trio.socket.socket(family, trio.socket.SOCK_DGRAM) as sock:
                await sock.sendto(b"tva0", (addr, POKE_PORT))
        except OSError as exc:  # no route yet, interface going down: the next reconcile tries again
            log.debug("tva0: could not poke %s: %s", addr, exc)


def _card_ips(card: records.HostCard) -> list[str]:
    """Underlay IPs of a card, as WireGuard endpoint hosts (IPv6 in brackets; loopback left out)."""
    out = []
    for ip in underlay_ips(card):
        if ipaddress.ip_address(ip).is_loopback:
            continue
        out.append(f"[{ip}]" if ":" in ip else ip)
    return out

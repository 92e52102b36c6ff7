"""The daemon: one trio nursery that owns the transport, the mesh, planning, persistence and the API.

Start-up order matters and is expressed with ``nursery.start``: the transport listens before the
card (which names its addresses) is published; the mesh runs before the API accepts writes that
push to it; ``daemon.json`` (how the CLI finds us) is written last and removed first.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Callable

import trio

from agent import rpc, views
from agent.config import Config
from agent.fabric import FabricManager
from agent.http import bind_text, serve_api
from agent.mesh_driver import MeshDriver, monotonic_ms
from agent.netinfo import dialable
from agent.presence_memory import PresenceMemory
from agent.probes import UptimeScore, disk_free_bytes
from agent.service import Service, wall_ms
from agent.state import NodeState
from cli.client import DAEMON_FILE
from crdt import records
from mesh import invites
from mesh.core import types as t
from mesh.transport import Transport
from tva.errors import InvalidInput, InviteError, RemoteDataError, TvaError

log = logging.getLogger("tva.agent")

JOIN_REPLY_BYTES_MAX = 3 * 1024 * 1024
INCARNATION_EPOCH_S = 1_577_836_800  # 2020-01-01


class Agent:
    def __init__(self, cfg: Config, state: NodeState, transport: Transport, *,
                 clock_ms: Callable[[], int] = wall_ms, mesh_config=None, rng: random.Random | None = None) -> None:
        from mesh.core.config import MeshConfig
        from mesh.core.node import MeshNode

        self.cfg = cfg
        self.state = state
        self.transport = transport
        self.clock_ms = clock_ms
        self._liveness: dict[str, str] = {}
        self._dirty = False
        self._stopping = trio.Event()
        self._api_port = 0
        self._soft_sent: t.SetSoftState | None = None
        self.uptime = UptimeScore(state.local.uptime_score, state.local.uptime_sample_ms).after_downtime(clock_ms())
        self.state.set_uptime(self.uptime.score, self.uptime.last_sample_ms)
        mesh_config = mesh_config or MeshConfig(
            gossip_interval_ms=cfg.gossip_interval_ms, sync_interval_ms=cfg.sync_interval_ms,
            probe_interval_ms=cfg.probe_interval_ms, probe_timeout_ms=max(1, cfg.probe_interval_ms // 2),
            frame_bytes_max=transport_frame_max(transport))
        # Seconds since 2020 as the first incarnation: it grows across restarts, so a restarted agent
        # outbids what peers remember of its previous run (liveness records and presence alike).
        self.node = MeshNode(state.peer_id, mesh_config, feeds=state.feeds, doc=state.doc,
                             rng=rng or random.Random(os.urandom(16)),
                             incarnation=max(0, clock_ms() // 1000 - INCARNATION_EPOCH_S))
        self.driver = MeshDriver(self.node, transport, on_liveness=self._on_liveness, on_state=self._on_remote_state)
        # Peers' presence survives a restart in the state dir (agent.presence_memory).
        self.presence_memory = PresenceMemory(state.store, self_id=state.peer_id, presence=self.node.presence,
                                              wall_ms=clock_ms, mono_ms=monotonic_ms)
        self.service = Service(state, clock_ms=clock_ms, live=self._live_info, on_change=self._on_local_change,
                               media_dir=cfg.media_dir(), bootstrap=self._bootstrap_addrs,
                               extras=self._status_extras,
                               # [torrents] DHT peers for peers_for, reaper verdicts (agent.torrents)
                               external_peers=lambda ih: self.torrents.external_peers(ih),
                               reaper_verdicts=lambda: self.torrents.verdicts())
        self._card_extra: dict = {}
        # [torrents] engine, holdings, repairs, reaper; the API reaches it as service.torrents
        from agent.torrents import TorrentManager

        self.torrents = TorrentManager(cfg, state, self.service, clock_ms=clock_ms, on_card=self._update_card)
        self.service.torrents = self.torrents
        self.fabric = FabricManager(cfg, state, on_card=self._update_card, reconcile_interval_ms=cfg.tick_interval_ms)
        self.service._wg = self.fabric

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self.transport.set_peer_filter(lambda peer: peer not in self.state.revoked())
                self.transport.set_request_handler(self._handle_request)
                await nursery.start(self.transport.run)
                await nursery.start(self.torrents.run)  # [torrents] before the card: it names torrent_port
                self._publish_card()
                await nursery.start(self.driver.run)
                self._members_changed()
                self._restore_presence()  # the core takes it only about members it already knows
                nursery.start_soon(self.presence_memory.run)
                self._learn_peer_addrs()
                await nursery.start(self.fabric.run)
                nursery.start_soon(self._policy_loop)
                nursery.start_soon(self._housekeeping_loop)
                host, port = self.cfg.api_host_port()
                self._api_port = await nursery.start(serve_api, self.service, [bind_text(host, port)],
                                                     self.state.local.api_token)
                self._publish_card()
                if self.cfg.overlay_api:
                    nursery.start_soon(self._overlay_api_loop)
                self._write_daemon_file()
                log.info("agent %s of fleet %s running; api on %s", self.state.peer_id, self.state.fleet.fleet_name,
                         self._api_address())
                task_status.started()
                await self._stopping.wait()
                await self._leave_gracefully()
                nursery.cancel_scope.cancel()
        finally:
            self._remove_daemon_file()
            with trio.CancelScope(shield=True):
                self._save()
                self.presence_memory.save()

    def stop(self) -> None:
        self._stopping.set()

    async def _leave_gracefully(self) -> None:
        # Tell peers we are leaving (left, not dead) and give the rumour a moment to spread.
        self.driver.submit(t.Leave())
        with trio.move_on_after(1.0):
            while True:
                await trio.sleep(0.1)
                self.driver.submit(t.Tick())

    # --- state changes ------------------------------------------------------------------------

    def _on_local_change(self, delta: bytes | None, doc_changed: bool) -> None:
        self._dirty = True
        if doc_changed:
            self._members_changed()
        self.driver.submit(t.LocalChanged(delta=delta, doc_changed=doc_changed))

    def _on_remote_state(self, feeds: bool, doc: bool) -> None:
        self._dirty = True
        if doc:
            self.state.refresh_membership()
            self._members_changed()
            # refresh_membership may drop feeds: the core caches its digest, so tell it.
            self.driver.submit(t.LocalChanged())
        if feeds:
            self._learn_peer_addrs()
        self.service.invalidate()
        self.fabric.kick()

    def _on_liveness(self, peer: str, state: str) -> None:
        self._liveness[peer] = state
        self.service.invalidate()

    def _members_changed(self) -> None:
        members = self.state.members()
        cards = records.cards(self.state.feeds)
        classes = {p: cards[p].host_class for p in members if p in cards}
        self.driver.submit(t.MembersChanged(members=frozenset(members), classes=classes))
        self.service.invalidate()
        self.fabric.kick()

    def _restore_presence(self) -> None:
        ttl_ms = self.node.cfg.presence_ttl_for(max(1, len(self.state.members())))
        records = self.presence_memory.load(ttl_ms=ttl_ms)
        if not records:
            return
        try:  # a bad file is bad data, not a core bug: one warning line, not a traceback
            self.driver.submit(t.RestorePresence(records), raise_invalid=True)
        except InvalidInput as exc:
            self.presence_memory.refused(exc)
            return
        taken = {r.peer for r in records} & self.node.presence().keys()  # the core skips non-members
        log.info("restored the presence of %d hosts from before the restart", len(taken))

    def _learn_peer_addrs(self) -> None:
        for peer, card in records.cards(self.state.feeds).items():
            if peer != self.state.peer_id and card.listen_addrs:
                self.transport.add_peer_addrs(peer, list(card.listen_addrs))

    def _live_info(self) -> views.LiveInfo:
        return views.live_info(self._liveness, self.node.presence())

    # --- the host card ------------------------------------------------------------------------

    def _bootstrap_addrs(self) -> list[str]:
        return dialable(self.transport.listen_addrs())

    def _update_card(self, fields: dict) -> None:
        """A component (fabric, torrents) has new card fields; publish if anything changed."""
        if any(self._card_extra.get(k) != v for k, v in fields.items()):
            self._card_extra.update(fields)
            self._publish_card()

    def _publish_card(self) -> None:
        old = self.state.card()
        extra = self._card_extra
        card = records.HostCard(
            name=self.cfg.host_name, host_class=self.cfg.host_class,
            services=old.services if old else (), wg_public_key=extra.get("wg_public_key", ""),
            overlay_ipv4=extra.get("overlay_ipv4", ""), overlay_ipv6=extra.get("overlay_ipv6", ""),
            listen_addrs=tuple(self._bootstrap_addrs()[: records.LISTEN_ADDRS_MAX]),
            # With the embedded engine off, the configured port names an external client (if any).
            api_port=self._api_port, torrent_port=extra.get("torrent_port", self.cfg.torrent_port))
        if card != old:
            self.state.own.put(records.CARD_KEY, records.encode_card(card))
            self.service.commit()

    # --- loops --------------------------------------------------------------------------------

    async def _overlay_api_loop(self) -> None:
        """Serve the API on this host's tva0 addresses too (token required there), once they exist."""
        serving: tuple[str, ...] = ()
        while True:
            addrs = self.fabric.overlay_addrs()
            if addrs and addrs != serving:
                binds = [bind_text(a, self._api_port) for a in addrs]
                try:
                    async with trio.open_nursery() as nursery:
                        await nursery.start(serve_api, self.service, binds, self.state.local.api_token)
                        serving = addrs
                        log.info("api also on the overlay: %s", ", ".join(binds))
                        while self.fabric.overlay_addrs() == serving:
                            await trio.sleep(1)
                        nursery.cancel_scope.cancel()
                except OSError as exc:  # tva0 not quite ready (address not assigned yet): retry
                    log.debug("overlay api not yet: %s", exc)
                serving = ()
            await trio.sleep(1)

    async def _policy_loop(self) -> None:
        while True:
            await trio.sleep(self.cfg.tick_interval_ms / 1000)
            self.service.invalidate()
            try:
                self.service.custody_plans()
            except TvaError as exc:
                log.warning("planning failed: %s", exc.message)

    async def _housekeeping_loop(self) -> None:
        """Soft state to the mesh, uptime, and saving — each on its own period, one task."""
        last_save = self.clock_ms()
        while True:
            await trio.sleep(min(self.cfg.save_interval_ms, self.cfg.probe_interval_ms) / 1000)
            now = self.clock_ms()
            self.uptime = self.uptime.sample(now)
            self.state.set_uptime(self.uptime.score, self.uptime.last_sample_ms)
            soft = t.SetSoftState(disk_free_bytes=disk_free_bytes(self.cfg.media_dir()) or 0,
                                  uptime_score=self.uptime.score, endpoints=tuple(self._bootstrap_addrs()[:8]),
                                  host_class=self.cfg.host_class)
            if soft_state_moved(self._soft_sent, soft):
                # Every submission becomes a presence record rumoured to the whole fleet: only
                # changes that matter to planning go out (the core refreshes presence by itself).
                self._soft_sent = soft
                self.driver.submit(soft)
            if self._dirty and now - last_save >= self.cfg.save_interval_ms:
                self._save()
                last_save = now

    def _save(self) -> None:
        try:
            self.state.save()
            self._dirty = False
        except OSError as exc:
            log.error("could not save state to %s: %s (will retry)", self.cfg.state_dir, exc)

    # --- peer queries -------------------------------------------------------------------------

    async def _handle_request(self, peer: str, payload: bytes) -> bytes:
        try:
            query = rpc.decode_query(payload)
            if query.kind == "join":
                return self._admit(peer, query.body)
            if peer not in self.state.members():
                raise RemoteDataError("only members may query this agent")
        except TvaError as exc:
            # An expected refusal travels as data, so the asker can show why (not just "refused").
            return rpc.encode_refusal(exc.message, exc.hint)
        if query.kind == "peers_for":
            return rpc.encode_reply(self.service.peers_for(query.body["infohash"]))
        return rpc.encode_reply(self.service.status())

    def _admit(self, joiner: str, body: dict) -> bytes:
        now = self.clock_ms()
        doc = self.state.doc
        try:
            inv = invites.parse_invite(body["invite"])
            invites.check_admission(inv, now_ms=now, fleet_id=self.state.fleet.fleet_id,
                                    members=self.state.members(), revoked=self.state.revoked(),
                                    redeemed=frozenset(doc.redeemed()), joiner=joiner)
        except InviteError as exc:
            log.info("refused join of %s: %s", joiner[:16], exc.message)
            raise
        from crdt.feed import decode_delta
        from crdt.identity import public_from_peer_id

        # The joiner's card must come signed by the joiner itself: checked before anything merges.
        joiner_key = public_from_peer_id(joiner)
        if decode_delta(body["card_delta"]).owner != joiner_key:
            raise RemoteDataError("the join request carried another host's feed")
        self.state.feeds.set_allowed(frozenset(set(self.state.feeds.allowed or ()) | {joiner_key}))
        applied = self.state.feeds.apply_delta(body["card_delta"])
        card = records.card_of(self.state.feeds.feed(applied.owner))
        name = card.name if card else joiner[:12]
        doc.redeem_invite(inv.nonce_hex, joiner, now)
        doc.admit(joiner, name, "member", inv.nonce_hex, self.state.peer_id, now)
        self.service.commit(doc_changed=True)
        self._learn_peer_addrs()
        log.info("admitted %s (%s) with invite %s…", name, joiner[:16], inv.nonce_hex[:8])
        doc_bytes = doc.save()
        deltas = self.state.feeds.deltas_since({}, JOIN_REPLY_BYTES_MAX - len(doc_bytes))
        return rpc.encode_reply({"doc": doc_bytes, "deltas": deltas, "fleet_name": self.state.fleet.fleet_name})

    # --- discovery by the CLI -----------------------------------------------------------------

    def _api_address(self) -> str:
        host, _ = self.cfg.api_host_port()
        return f"{host}:{self._api_port}"

    def _status_extras(self) -> dict:
        return {"api": self._api_address(), "listen_addrs": self._bootstrap_addrs(), "daemon": True,
                "wg": self.fabric.status(), "mesh": dict(self.driver.counters), "transport": self.transport.stats(),
                "gossip": self.node.gossip_stats()}

    def _write_daemon_file(self) -> None:
        path = self.cfg.state_dir / DAEMON_FILE
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "api": self._api_address(), "token": self.state.local.api_token,
                       "peer_id": self.state.peer_id}, f)
        os.replace(tmp, path)

    def _remove_daemon_file(self) -> None:
        try:
            info = json.loads((self.cfg.state_dir / DAEMON_FILE).read_text())
            if info.get("pid") == os.getpid():
                (self.cfg.state_dir / DAEMON_FILE).unlink()
        except (OSError, ValueError):
            pass


DISK_FREE_CHANGE_BYTES_MIN = 256 * 1024**2  # and at least 1 % of the last value sent
UPTIME_CHANGE_MIN = 0.02  # the policy quantises uptime into quarters anyway


def soft_state_moved(last: t.SetSoftState | None, new: t.SetSoftState) -> bool:
    if last is None or last.endpoints != new.endpoints or last.host_class != new.host_class:
        return True
    disk_step = max(DISK_FREE_CHANGE_BYTES_MIN, last.disk_free_bytes // 100)
    return (abs(new.disk_free_bytes - last.disk_free_bytes) >= disk_step
            or abs(new.uptime_score - last.uptime_score) >= UPTIME_CHANGE_MIN)


def transport_frame_max(transport: Transport) -> int:
    limits = getattr(transport, "limits", None)
    return getattr(limits, "frame_bytes_max", 4 * 1024 * 1024)

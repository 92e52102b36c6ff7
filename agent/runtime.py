"""The daemon: supervised components in one trio nursery, and the glue between them.

Components (each restarted on failure by ``agent.supervisor``; health in ``status`` →
``components``): ``persistence`` (saves, off the event loop), ``jobs``, ``mesh`` (the transport
and the driver of the mesh core over it), ``torrents``, ``presence`` (peers' presence remembered
across restarts), ``fabric`` (tva0), ``policy`` and ``housekeeping`` loops, ``api`` (loopback) and
``overlay_api`` (tva0 addresses). They are built here, wired by construction, and started in an
order that matters: the mesh before the card (which names its listen addresses), the torrent
engine before the card too (its port), the API last, and ``daemon.json`` (how commands find the
daemon) once the API answers.

A host that learns it was revoked stops taking part — mesh, torrents, fabric, planning and the
overlay API stop for good — says so once, keeps its data, and keeps answering on the local API.
"""

from __future__ import annotations

import errno
import logging
import os
import random
from collections.abc import Callable
from functools import partial

import trio

from agent import feed_upkeep, peer_queries, revocation, transports, views
from agent.api_context import ApiContext
from agent.config import Config
from agent.discovery import remove_daemon_file, write_daemon_file
from agent.fabric import FabricManager
from agent.fleet_key import FleetKeyKeeper
from agent.friends import FriendsManager
from agent.http import bind_text, os_error_in, serve_api
from agent.jobs import Jobs
from agent.joining import JoinListener
from agent.logs import PeerLog
from agent.mesh_driver import MeshDriver, monotonic_ms
from agent.netinfo import dialable
from agent.persistence import Persistence
from agent.policy.custody import CustodyConfig
from agent.presence_memory import PresenceMemory
from agent.probes import UptimeScore, disk_free_bytes, soft_state_moved
from agent.service import Service, wall_ms
from agent.state import NodeState
from agent.supervisor import Supervisor
from crdt import records
from mesh.core import types as t
from mesh.transport import Transport
from tva.errors import InvalidInput, TvaError

log = logging.getLogger("tva.agent")

INCARNATION_EPOCH_S = 1_577_836_800  # 2020-01-01
EXIT_STATE_UNWRITABLE = 5


class Agent:
    def __init__(self, cfg: Config, state: NodeState, transport: Transport, *,
                 clock_ms: Callable[[], int] = wall_ms, mesh_config=None, rng: random.Random | None = None,
                 new_transport: Callable[[], Transport] | None = None, faults: bool = False,
                 supervisor: Supervisor | None = None, join_transport: Transport | None = None,
                 new_join_transport: Callable[[], Transport] | None = None, recover_own_feed: bool = True) -> None:
        """``transport`` serves the first run of the mesh; a restarted mesh component gets a new one
        from ``new_transport`` (a libp2p transport runs once), or fails to restart without it."""
        from mesh.core.config import MeshConfig
        from mesh.core.node import MeshNode

        self.cfg = cfg
        self.state = state
        self.transport = transport
        self._new_transport = new_transport
        self._mesh_runs = 0
        self._recover_first = recover_own_feed
        self.clock_ms = clock_ms
        self.supervisor = supervisor or Supervisor(clock_ms=clock_ms)
        self._liveness: dict[str, str] = {}
        self._stopping = trio.Event()
        self._api_port = 0
        self._soft_sent: t.SetSoftState | None = None
        self._nursery: trio.Nursery | None = None
        self.revocations = revocation.RevocationWatch(self)
        self.exit_code = 0
        self.exit_reason: str | None = None
        self.uptime = UptimeScore(state.local.uptime_score, state.local.uptime_sample_ms).after_downtime(clock_ms())
        self.state.set_uptime(self.uptime.score, self.uptime.last_sample_ms)
        mesh_config = mesh_config or MeshConfig(
            gossip_interval_ms=cfg.gossip_interval_ms, sync_interval_ms=cfg.sync_interval_ms,
            probe_interval_ms=cfg.probe_interval_ms, probe_timeout_ms=max(1, cfg.probe_interval_ms // 2),
            frame_bytes_max=transports.frame_bytes_max(transport))
        # Seconds since 2020 as the first incarnation: it grows across restarts, so a restarted agent
        # outbids what peers remember of its previous run (liveness records and presence alike).
        self.node = MeshNode(state.peer_id, mesh_config, feeds=state.feeds, doc=state.doc,
                             rng=rng or random.Random(os.urandom(16)), signer=state.key,
                             incarnation=max(0, clock_ms() // 1000 - INCARNATION_EPOCH_S))
        self.driver = MeshDriver(self.node, transport, on_liveness=self._on_liveness, on_state=self.on_remote_state,
                                 peer_log=PeerLog(logging.getLogger("tva.mesh"), describe=self._describe_peer))
        # Peers' presence survives a restart in the state dir (agent.presence_memory).
        self.presence_memory = PresenceMemory(state.store, self_id=state.peer_id, presence=self.node.presence,
                                              wall_ms=clock_ms, mono_ms=monotonic_ms)
        self.persistence = Persistence(state, save_interval_ms=cfg.save_interval_ms, clock_ms=clock_ms,
                                       on_health=partial(self.supervisor.report, "persistence"),
                                       on_unwritable=self._state_unwritable)
        self.service = Service(state, clock_ms=clock_ms, live=self._live_info, on_change=self._on_local_change,
                               media_dir=cfg.media_dir(), bootstrap=self._join_addrs, extras=self._status_extras,
                               custody_config=CustodyConfig(lease_ms_max=cfg.repair_lease_ms_max),
                               friends=lambda: self.friends.inputs())
        # [friends] friend fleets: links, the views that cross, serving their gateways (agent.friends)
        self.friends = FriendsManager(cfg, state, self.service, clock_ms=clock_ms,
                                      commit=lambda: self.service.commit(doc_changed=True),
                                      client_factory=lambda fleet_id: transports.friend_client(
                                          state, fleet_id, self.transport, self.join.transport),
                                      mesh_request=lambda peer, data, t: self.transport.request(peer, data, t),
                                      live=self._live_peers, own_join_addrs=self._join_addrs)
        self._card_extra: dict = {}
        from agent.torrents import TorrentManager

        self.torrents = TorrentManager(cfg, state, self.service, clock_ms=clock_ms, on_card=self._update_card,
                                       fetch_torrent=lambda peer, ih: peer_queries.fetch_torrent_file(self.transport, peer, ih))
        self.fabric = FabricManager(cfg, state, on_card=self._update_card, reconcile_interval_ms=cfg.tick_interval_ms,
                                    on_health=partial(self.supervisor.report, "fabric"))
        self.jobs = Jobs(clock_ms=clock_ms)
        # Joiners and members behind on the fleet key knock here (agent.joining), not on the mesh.
        make_join = new_join_transport or partial(transports.join_transport, cfg, state, transport)
        self.join = JoinListener(state, join_transport or make_join(), new_transport=make_join,
                                 commit=lambda: self.service.commit(doc_changed=True),
                                 on_admitted=self._learn_peer_addrs, clock_ms=clock_ms,
                                 friend_handler=self.friends.handle_request)
        self.fleet_key = FleetKeyKeeper(state, clock_ms=clock_ms, transport=lambda: self.transport, join=self.join,
                                        liveness=lambda: self._liveness, on_decisions=self._decisions_learnt,
                                        on_adopted=self.persistence.mark_dirty)
        from agent.library_service import LibraryService  # [library] scans, lists, publishes

        self.library = LibraryService(cfg, self.service, torrents=self.torrents)
        from agent.metrics import AgentMetrics
        from agent.notify import Notifier  # [notify] webhooks, sent by the notifier duty's host

        self.notifier = Notifier(cfg, state, self.service, clock_ms=clock_ms,
                                 on_health=partial(self.supervisor.report, "notify"))

        self.metrics = AgentMetrics(self)
        from agent import playback  # [media] the media plane, the player, watch state

        self.playback = playback.build(self)
        self.api_context = ApiContext(service=self.service, daemon=True, torrents=self.torrents, fabric=self.fabric,
                                      jobs=self.jobs, supervisor=self.supervisor, faults=faults,
                                      library=self.library, playback=self.playback, friends=self.friends)

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sup = self.supervisor
        # The API app first (FastAPI's import and the build: 0.3–0.45 s of CPU), then the mesh. Built
        # after the mesh, a joiner's first ping came ~0.4 s sooner, but the app then waited behind
        # the first sync's CPU: the CLI answered ~0.5 s later (join → fully synced, 2,000 holdings:
        # 2.4 vs 1.9 s; first ping 1.4 vs 1.0 s — both within their goals this way, not the other).
        from agent.api import build_app  # not with agent.runtime: the CLI's own imports stay light
        app = build_app(self.api_context)
        self.metrics.attach(app)  # [metrics] GET /metrics, and the API's request latency
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await sup.start(nursery, "persistence", self.persistence.run)
                await sup.start(nursery, "jobs", self.jobs.run)
                if self.state.revocation() is None:
                    await self._start_participation(nursery)
                else:
                    self.revocations.stop_participating()
                await sup.start(nursery, "api", partial(self._run_api, app))
                if self.cfg.overlay_api and self.state.revocation() is None:
                    await sup.start(nursery, "overlay_api", partial(self._overlay_api_loop, app))
                log.info("agent %s of fleet %s running; api on %s", self.state.peer_id, self.state.fleet.fleet_name,
                         self._api_address())
                task_status.started()
                await self._stopping.wait()
                if sup.health("mesh").state == "ok":
                    await self._leave_gracefully()
                nursery.cancel_scope.cancel()
        finally:
            remove_daemon_file(self.cfg.state_dir, os.getpid())
            with trio.CancelScope(shield=True):
                self.presence_memory.save()  # small; the state's save below waits on a worker thread
                await self.persistence.save()
                await self.library.aclose()

    async def _start_participation(self, nursery: trio.Nursery) -> None:
        sup = self.supervisor
        await sup.start(nursery, "join", self.join.run)  # before the card: it names the join addresses
        # tva0 early: its backend opens (interface claim, netlink) while the mesh starts.
        async with trio.open_nursery() as early:
            early.start_soon(self.fabric.prepare)
            await sup.start(nursery, "mesh", self._run_mesh)
        await sup.start(nursery, "fabric", self.fabric.run)
        await sup.start(nursery, "torrents", self._run_torrents)  # before the card: it names torrent_port
        await sup.start(nursery, "library", self.library.run)  # [library]
        await sup.start(nursery, "media", self.playback.plane.run)  # [media] the media plane
        await sup.start(nursery, "player", self.playback.player.run)  # [media] mpv (a plane restart leaves it be)
        self._publish_card()
        self._members_changed()
        self._restore_presence()  # the core takes it only about members it already knows
        await sup.start(nursery, "presence", self._run_presence)
        await sup.start(nursery, "policy", self._policy_loop)
        await sup.start(nursery, "housekeeping", self._housekeeping_loop)
        await sup.start(nursery, "fleet_key", self.fleet_key.run)
        await sup.start(nursery, "notify", self.notifier.run)  # [notify]
        await sup.start(nursery, "friends", self.friends.run)  # [friends]

    def stop(self) -> None:
        self._stopping.set()

    async def _recover_own_feed(self) -> None:
        """[feeds] Adopt a newer head of our own feed from peers; rebase unless all answered."""
        self._learn_peer_addrs()
        adopted, everyone = await feed_upkeep.recover_own_feed(self.state, self.transport)
        if adopted:
            self.persistence.mark_dirty()
        if not everyone:
            delta = self.state.own.rebase(self.clock_ms())
            if delta is not None:
                self.persistence.mark_dirty()
                self.driver.submit(t.LocalChanged(delta=delta))

    async def _leave_gracefully(self) -> None:
        # Tell peers we are leaving (left, not dead) and give the rumour a moment to spread.
        self.driver.submit(t.Leave())
        with trio.move_on_after(1.0):
            while True:
                await trio.sleep(0.1)
                self.driver.submit(t.Tick())

    def _state_unwritable(self, why: str) -> None:
        log.critical("stopping: %s", why)
        self.exit_code, self.exit_reason = EXIT_STATE_UNWRITABLE, why
        self.stop()

    # --- components ---------------------------------------------------------------------------

    def _fresh_transport(self) -> Transport:
        self._mesh_runs += 1
        if self._mesh_runs == 1:
            return self.transport
        if self._new_transport is None:
            raise InvalidInput("the mesh transport cannot be restarted (no new_transport factory)")
        return self._new_transport()

    async def _run_mesh(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The transport and the mesh driver over it: one component (a new transport per run)."""
        transport = self._fresh_transport()
        transport.set_peer_filter(self.revocations.peer_allowed)
        transport.set_request_handler(partial(peer_queries.answer, self))
        self.transport = transport
        self._learn_peer_addrs()
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.run)
            self._members_changed()  # before the first frame is read: members' frames are not refused
            await nursery.start(self.driver.run, transport)
            if self._mesh_runs == 1 and self._recover_first:
                await self._recover_own_feed()  # [feeds] before this node writes anything (the card)
            self._publish_card()  # a new run may listen on new addresses
            task_status.started()

    async def _run_torrents(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self.cfg.torrent_engine == "off":
            self.supervisor.report("torrents", "off", "torrent_engine = off")
        await self.torrents.run(task_status=task_status)

    async def _run_presence(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self.presence_memory.run()

    async def _run_api(self, app, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The loopback API. A default port another agent already holds falls back to a free one (the
        CLI finds the port in daemon.json); a configured one is only ever retried."""
        host, port = self.cfg.api_host_port()
        if self._api_port:
            port = self._api_port  # a restart keeps the port the CLI already knows
        async with trio.open_nursery() as nursery:
            try:
                self._api_port = await nursery.start(serve_api, app, [bind_text(host, port)],
                                                     self.state.local.api_token)
            except (OSError, BaseExceptionGroup) as exc:
                taken = os_error_in(exc)
                if taken is None or taken.errno != errno.EADDRINUSE or self.cfg.api != Config().api or port == 0:
                    raise
                log.warning("api: %s:%d is taken (%s): another agent on this host? using a free port",
                            host, port, taken.strerror or taken)
                self._api_port = await nursery.start(serve_api, app, [bind_text(host, 0)], self.state.local.api_token)
            self._publish_card()
            write_daemon_file(self.cfg.state_dir, {"pid": os.getpid(), "api": self._api_address(),
                                                   "token": self.state.local.api_token,
                                                   "peer_id": self.state.peer_id})
            task_status.started()

    # --- revocation (agent.revocation) ---------------------------------------------------------

    def spawn(self, fn, *args) -> bool:
        """A helper task in the daemon's nursery: a bug in it is logged, never the daemon's end.
        False (nothing started) before the daemon runs."""
        async def guarded() -> None:
            try:
                await fn(*args)
            except Exception:
                log.exception("%s failed", getattr(fn, "__name__", fn))

        if self._nursery is None:
            return False
        self._nursery.start_soon(guarded)
        return True

    # --- state changes ------------------------------------------------------------------------

    def _on_local_change(self, delta: bytes | None, doc_changed: bool) -> None:
        self.persistence.mark_dirty()
        if doc_changed:
            self._members_changed()
            self.revocations.changed()
            self.fleet_key.check()
            self.friends.kick()
        self.driver.submit(t.LocalChanged(delta=delta, doc_changed=doc_changed))

    def on_remote_state(self, feeds: bool, doc: bool) -> None:
        self.persistence.mark_dirty()
        if doc:
            self.state.refresh_membership()
            self._members_changed()
            # refresh_membership may drop feeds: the core caches its digest, so tell it.
            self.driver.submit(t.LocalChanged())
            self.revocations.changed()
            self.fleet_key.check()
            self.friends.kick()
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

    def _describe_peer(self, peer: str) -> tuple[str, int]:
        """(name, number of listen addresses) for log lines about a peer."""
        feed = self.state.feeds.feed(_public_of(peer))
        card = records.card_of(feed) if feed is not None else None
        return (card.name if card else peer[:16]), (len(card.listen_addrs) if card else 0)

    def _live_info(self) -> views.LiveInfo:
        return views.live_info(self._liveness, self.node.presence())

    # --- the host card ------------------------------------------------------------------------

    def _bootstrap_addrs(self) -> list[str]:
        return dialable(self.transport.listen_addrs())

    def _join_addrs(self) -> list[str]:
        return dialable(self.join.listen_addrs())

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
            join_addrs=tuple(self._join_addrs()[: records.LISTEN_ADDRS_MAX]),
            # With the embedded engine off, the configured port names an external client (if any).
            api_port=self._api_port, torrent_port=extra.get("torrent_port", self.cfg.torrent_port))
        if card != old:
            self.state.own.put(records.CARD_KEY, records.encode_card(card))
            self.service.commit()

    # --- loops --------------------------------------------------------------------------------

    async def _overlay_api_loop(self, app, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                                ) -> None:
        """Serve the API on this host's tva0 addresses too (behind the same door), once they exist.
        A bind that fails (tva0 not ready, addresses taken) raises: the supervisor retries it."""
        task_status.started()
        while True:
            addrs = self.fabric.overlay_addrs()
            if not addrs:
                self.supervisor.report("overlay_api", "off", "no tva0 addresses (yet)")
                await trio.sleep(1)
                continue
            binds = [bind_text(a, self._api_port) for a in addrs]
            async with trio.open_nursery() as nursery:
                await nursery.start(serve_api, app, binds, self.state.local.api_token)
                log.info("api also on the overlay: %s", ", ".join(binds))
                self.supervisor.report("overlay_api", "ok")
                while self.fabric.overlay_addrs() == addrs:
                    await trio.sleep(1)
                nursery.cancel_scope.cancel()

    async def _policy_loop(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            planned = trio.current_time() + self.cfg.tick_interval_ms / 1000
            await trio.sleep_until(planned)
            self.metrics.tick_lag.observe(max(0.0, trio.current_time() - planned))  # [metrics]
            self.service.refresh()
            try:
                self.service.custody_plans()
            except TvaError as exc:
                log.warning("planning failed: %s", exc.message)

    async def _housekeeping_loop(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Soft state to the mesh, and uptime (saving is the persistence component's)."""
        task_status.started()
        last_gc = self.clock_ms()
        while True:
            await trio.sleep(self.cfg.probe_interval_ms / 1000)
            now = self.clock_ms()
            if now - last_gc >= feed_upkeep.GC_INTERVAL_MS:  # [feeds] tombstones on the GC horizon
                last_gc = now
                gc_delta = feed_upkeep.collect_garbage(self.state, now)
                if gc_delta is not None:
                    self._on_local_change(gc_delta, False)
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

    # --- peer queries -------------------------------------------------------------------------

    def _live_peers(self) -> frozenset[str]:
        return frozenset(p for p, s in self._liveness.items() if s in ("alive", "suspect"))

    def _decisions_learnt(self) -> None:
        """Decisions arrived outside the mesh (a join listener's rekey answer): process them as synced ones."""
        self.on_remote_state(False, True)
        self.driver.submit(t.LocalChanged(doc_changed=True))

    # --- discovery by the CLI -----------------------------------------------------------------

    def _api_address(self) -> str:
        host, _ = self.cfg.api_host_port()
        return f"{host}:{self._api_port}"

    def _status_extras(self) -> dict:
        return {"api": self._api_address(), "listen_addrs": self._bootstrap_addrs(), "daemon": True,
                "join_addrs": self._join_addrs(), "fleet_key": self.fleet_key.status(),
                "join": dict(self.join.counters),
                "wg": self.fabric.status(), "mesh": dict(self.driver.counters), "transport": self.transport.stats(),
                "gossip": self.node.gossip_stats(),
                "custody": dict(self.torrents.counters), "friends": dict(self.friends.counters),
                "components": self.supervisor.status(), "save_problem": self.persistence.problem}


def _public_of(peer: str) -> bytes:
    from crdt.identity import public_from_peer_id

    try:
        return public_from_peer_id(peer)
    except TvaError:
        return b""

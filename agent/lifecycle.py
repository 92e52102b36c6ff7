"""Founding, joining and running: the work behind `tva-agent init`, `join` and `run`.

The CLI is only their face (arguments, output, exit codes). Each holds the state dir's writer
lock (``agent.discovery.StateLock``) while it works, so a second `run` on a state dir refuses, and
no command writes beside a running daemon.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import trio

from agent.config import Config
from agent.discovery import StateLock, describe_holder
from tva.errors import HostRevoked, InvalidInput, InviteError, StateDirBusy, StateUnwritable, TvaError

log = logging.getLogger("tva.agent")
JOIN_TIMEOUT_MS = 30_000
FAULT_INJECTION_ENV = "TVA_FAULT_INJECTION"


@contextmanager
def writer_lock(cfg: Config, role: str):
    """Hold the state dir's writer lock, or refuse: another daemon or command works on it."""
    lock = StateLock(cfg.state_dir)
    try:
        taken = lock.try_acquire(role)
    except OSError as exc:
        raise StateUnwritable(f"cannot lock {cfg.state_dir}: {exc.strerror or exc}",
                              hint="check that the state dir exists and is writable by this user") from None
    if not taken:
        holder = lock.holder()
        raise StateDirBusy(f"{cfg.state_dir} is in use by {describe_holder(holder)}",
                           hint="one agent per state dir: stop that one first, or use another --state-dir")
    try:
        yield lock
    finally:
        lock.release()


def _store(cfg: Config):
    from agent.store import StateStore

    return StateStore(cfg.state_dir)


def host_card(cfg: Config, listen_addrs: list[str] | tuple[str, ...] = ()):
    from crdt import records

    return records.HostCard(name=cfg.host_name, host_class=cfg.host_class,
                            listen_addrs=tuple(listen_addrs[: records.LISTEN_ADDRS_MAX]))


def found(cfg: Config, fleet_name: str):
    """A new fleet: genesis, then the fleet's IPv4 /24 from the collision probe (IPv6-only if none)."""
    from agent.fabric import choose_fleet_subnet
    from agent.service import wall_ms
    from agent.state import NodeState

    now = wall_ms()
    state = NodeState.found(_store(cfg), fleet_name=fleet_name, card=host_card(cfg), now_ms=now)
    if choose_fleet_subnet(state, now):
        state.save()
    return state


def summary(state) -> dict[str, Any]:
    return {"peer_id": state.peer_id, "fleet_id": state.fleet.fleet_id, "fleet_name": state.fleet.fleet_name,
            "members": len(state.members()), "hosts_synced": len(state.feeds.owners()),
            "ipv4_subnet": state.doc.settings().get("ipv4_subnet")}


def _transport(cfg: Config, seed: bytes, psk: bytes, listen: tuple[str, ...] | None = None):
    """The mesh transport; its fleet key may rotate while it runs (mesh.rekeyable_transport)."""
    from mesh.libp2p_transport import Libp2pTransport
    from mesh.rekeyable_transport import RekeyableTransport

    return RekeyableTransport(lambda key, addrs: Libp2pTransport(seed, key, listen_addrs=addrs), psk,
                              listen or tuple(cfg.listen))


def _join_net_transport(seed: bytes, fleet_id: str, listen: tuple[str, ...]):
    """A requests-only host on the fleet's join network (agent.transports)."""
    from agent.transports import join_network_host

    return join_network_host(seed, fleet_id, listen)


async def join(cfg: Config, token: str, progress: Callable[[str], None] = lambda _m: None, *,
               background: trio.Nursery | None = None):
    """Knock on the inviter's join listener, be admitted, adopt the fleet's decisions, feeds and key,
    persist them. The invite carries no fleet key: it arrives sealed to this host's key.

    ``background``: a nursery of the caller's where the join's libp2p host runs, and closes after
    the answer while the caller goes on (py-libp2p pauses 0.1 s per connection it closes): `join
    --run` starts the daemon meanwhile."""
    from agent.joining import ask, fleet_key_from
    from agent.service import wall_ms
    from agent.state import FleetInfo, NodeState
    from agent.store import load_or_create_identity
    from crdt import records
    from crdt.feedset import FeedSet, OwnFeed
    from mesh import invites
    from tva.errors import DecodeError

    inv = invites.parse_invite(token)
    invites.check_usable(inv, wall_ms())
    store = _store(cfg)
    if NodeState.exists(store):
        raise InvalidInput(f"{cfg.state_dir} already belongs to a fleet",
                           hint="use another --state-dir for a second fleet, or remove this one")
    key = load_or_create_identity(store)
    progress(f"joining fleet {inv.fleet_name!r} via {len(inv.bootstrap)} join address(es)…")
    from agent.logs import take_over_library_logs

    take_over_library_logs()
    transport = _join_net_transport(key.seed, inv.fleet_id, ("/ip4/127.0.0.1/tcp/0",))
    stop = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        await (background or nursery).start(_run_within, stop, transport.run)
        feeds = FeedSet()
        own = OwnFeed(key, feeds)
        own.put(records.CARD_KEY, records.encode_card(host_card(cfg)))
        card_delta = own.commit(wall_ms())
        reply, errors = None, []
        for addr in inv.bootstrap:
            peer = addr.rsplit("/p2p/", 1)[-1] if "/p2p/" in addr else None
            if peer is None:
                errors.append(f"{addr}: no /p2p/ peer id")
                continue
            progress(f"dialling {addr} and asking to be admitted…")
            try:
                reply = await ask(transport, peer, [addr], "join", {"invite": token, "card_delta": card_delta},
                                  JOIN_TIMEOUT_MS)
                doc_bytes, deltas = reply.get("doc"), reply.get("deltas")
                if not isinstance(doc_bytes, bytes) or not isinstance(deltas, list):
                    raise DecodeError("the join reply lacks the fleet document or feeds")
                fleet_key = fleet_key_from(reply, key)
                if fleet_key is None:
                    raise DecodeError("the join reply lacks the fleet key")
                progress(f"admitted: received the fleet's decisions, {len(deltas)} host feed(s) and the fleet key")
                break
            except TvaError as exc:
                reply = None
                errors.append(exc.message)
                if "redeemed" in exc.message or "revoked" in exc.message or "member" in exc.message:
                    break  # the fleet said no: another bootstrap would say the same
        stop.cancel()
    if reply is None:
        detail = "; ".join(errors) or "no bootstrap address"
        hint = "invites are single-use: ask for a new one" if "redeemed" in detail else \
            "is the inviting host's agent running and reachable?"
        raise InviteError(f"could not join: {detail}", hint=hint)
    fleet = FleetInfo(inv.fleet_id, inv.fleet_name, fleet_key[1], fleet_key[0])
    return NodeState.joined(store, key, fleet, doc_bytes, [d for d in deltas if isinstance(d, bytes)], feeds)


async def _run_within(scope: trio.CancelScope, run, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                      ) -> None:
    with scope:
        await run(task_status=task_status)


DEFAULT_LISTEN = Config().listen


def listen_for_this_host(cfg: Config) -> tuple[str, ...]:
    """The configured listen addresses; the *default* port, when another agent on this host already
    holds it, becomes a free port instead (an explicitly configured one is never changed). The
    check is a plain bind, since libp2p's SO_REUSEPORT listeners would otherwise share the port
    and split connections between two agents (FIELD-NOTES)."""
    if tuple(cfg.listen) != DEFAULT_LISTEN:
        return tuple(cfg.listen)
    from mesh.libp2p_addrs import check_listen_addr_free

    try:
        for addr in cfg.listen:
            check_listen_addr_free(addr)
    except TvaError as exc:
        log.warning("%s (another agent on this host?): listening on a free port instead", exc.message)
        return tuple(a.rsplit("/tcp/", 1)[0] + "/tcp/0" for a in cfg.listen)
    return tuple(cfg.listen)


def join_listen_for_this_host(cfg: Config, listen: tuple[str, ...]) -> tuple[str, ...]:
    """The join listener's addresses: configured, or each mesh listen address's port + 2 — free
    ports when the mesh itself fell back to one (another agent on this host)."""
    if cfg.join_listen:
        return tuple(cfg.join_listen)
    if listen != tuple(cfg.listen):
        return tuple(a.rsplit("/tcp/", 1)[0] + "/tcp/0" for a in listen)
    from mesh.libp2p_addrs import check_listen_addr_free

    derived = cfg.join_listen_addrs()
    try:
        for addr in derived:
            check_listen_addr_free(addr)
    except TvaError as exc:
        log.warning("%s (another agent on this host?): the join listener takes a free port", exc.message)
        return tuple(a.rsplit("/tcp/", 1)[0] + "/tcp/0" for a in derived)
    return derived


def load_for_run(cfg: Config):
    """The state to run: loaded, or a one-node fleet founded on first run. A revoked state dir is
    refused (``HostRevoked``): its data stays for inspection, but it no longer takes part."""
    from agent.state import NodeState

    store = _store(cfg)
    if not NodeState.exists(store):
        state = found(cfg, cfg.host_name)
        log.info("founded a one-node fleet %r (%s): invite other hosts with `tva-agent invite`",
                 state.fleet.fleet_name, state.fleet.fleet_id)
        return state
    state = NodeState.load(store)
    rev = state.revocation()
    if rev is not None:
        raise HostRevoked(f"this host was revoked from fleet {state.fleet.fleet_name} by {rev.by} "
                          f"({rev.reason or 'no reason given'}); it does not run any more",
                          hint=f"its data is kept in {cfg.state_dir} (`tva-agent status` still works); "
                               "to rejoin, use a fresh state dir and a new invite")
    return state


async def run_daemon(cfg: Config, state, *, just_joined: bool = False) -> None:
    """Run the daemon until SIGINT/SIGTERM (the caller holds the writer lock). ``just_joined``:
    this process made the state by `join` a moment ago — there is no newer head of its own feed
    anywhere to recover first (the inviter holds exactly what the join sent)."""
    from agent.runtime import Agent

    listen = listen_for_this_host(cfg)
    join_listen = join_listen_for_this_host(cfg, listen)
    # state.fleet.psk is read when each transport is made: a restart after a rotation uses the new key
    agent = Agent(cfg, state, _transport(cfg, state.key.seed, state.fleet.psk, listen),
                  new_transport=lambda: _transport(cfg, state.key.seed, state.fleet.psk, listen),
                  new_join_transport=lambda: _join_net_transport(state.key.seed, state.fleet.fleet_id, join_listen),
                  faults=os.environ.get(FAULT_INJECTION_ENV) == "1", recover_own_feed=not just_joined)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, agent)
        await agent.run()
        nursery.cancel_scope.cancel()
    if agent.exit_reason is not None:
        raise StateUnwritable(agent.exit_reason, hint="fix the state dir (space, permissions, mount) and start again")


async def _stop_on_signal(agent) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("%s: leaving the mesh and saving", signal.Signals(signum).name)
            agent.stop()
            return

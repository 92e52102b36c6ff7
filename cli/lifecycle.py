"""`init`, `join` and `run`: the commands that create state or run the daemon.

`run` with no state founds a one-node fleet named after the host: the embedded default that
makes `./setup.sh run` work on a fresh machine with no config.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import trio

from agent.config import Config
from cli import output
from tva.errors import DecodeError, InvalidInput, InviteError, TvaError

log = logging.getLogger("tva.cli")
JOIN_TIMEOUT_MS = 30_000


def _card(cfg: Config, listen_addrs: list[str] = ()):
    from crdt import records

    return records.HostCard(name=cfg.host_name, host_class=cfg.host_class,
                            listen_addrs=tuple(listen_addrs[: records.LISTEN_ADDRS_MAX]))


def _store(cfg: Config):
    from agent.store import StateStore

    return StateStore(cfg.state_dir)


def main(args: argparse.Namespace, cfg: Config) -> int:
    if args.command == "init":
        return _init(args, cfg)
    if args.command == "join":
        state = trio.run(_join, cfg, args.invite)
        summary = {"peer_id": state.peer_id, "fleet_id": state.fleet.fleet_id, "fleet_name": state.fleet.fleet_name,
                   "members": len(state.members()), "hosts_synced": len(state.feeds.owners())}
        if args.json:
            output.emit_json(summary)
        else:
            print(f"joined fleet {summary['fleet_name']} ({summary['fleet_id']}) as {summary['peer_id']}; "
                  f"{summary['members']} members, {summary['hosts_synced']} host feeds synced")
        if not args.run:
            return 0
    return trio.run(_run, cfg)


def _init(args: argparse.Namespace, cfg: Config) -> int:
    state = _found(cfg, args.name)
    summary = {"peer_id": state.peer_id, "fleet_id": state.fleet.fleet_id, "fleet_name": state.fleet.fleet_name,
               "ipv4_subnet": state.doc.settings().get("ipv4_subnet")}
    if args.json:
        output.emit_json(summary)
    else:
        print(f"founded fleet {state.fleet.fleet_name} ({state.fleet.fleet_id}); this host is {state.peer_id}")
    return 0


def _progress(message: str) -> None:
    """Long work says what it is doing, on stderr (stdout stays clean for --json)."""
    print(f"tva-agent: {message}", file=sys.stderr, flush=True)


def _found(cfg: Config, fleet_name: str):
    """A new fleet: genesis, then the fleet's IPv4 /24 from the collision probe (IPv6-only if none)."""
    from agent.fabric import choose_fleet_subnet
    from agent.service import wall_ms
    from agent.state import NodeState

    now = wall_ms()
    state = NodeState.found(_store(cfg), fleet_name=fleet_name, card=_card(cfg), now_ms=now)
    if choose_fleet_subnet(state, now):
        state.save()
    return state


def _transport(cfg: Config, seed: bytes, psk: bytes):
    """The mesh transport; its fleet key may rotate while it runs (mesh.rekeyable_transport)."""
    from mesh.libp2p_transport import Libp2pTransport
    from mesh.rekeyable_transport import RekeyableTransport

    return RekeyableTransport(lambda key, listen: Libp2pTransport(seed, key, listen_addrs=listen), psk,
                              tuple(cfg.listen))


async def _join(cfg: Config, token: str):
    """Knock on the inviter's join listener, be admitted, adopt the fleet's state and key, persist."""
    from agent import secrets
    from agent.joining import ask, fleet_key_from
    from agent.service import wall_ms
    from agent.state import FleetInfo, NodeState
    from agent.store import load_or_create_identity
    from crdt import records
    from crdt.feedset import FeedSet, OwnFeed
    from mesh import invites
    from mesh.libp2p_transport import Libp2pTransport

    inv = invites.parse_invite(token)
    invites.check_usable(inv, wall_ms())
    store = _store(cfg)
    if NodeState.exists(store):
        raise InvalidInput(f"{cfg.state_dir} already belongs to a fleet",
                           hint="use another --state-dir for a second fleet, or remove this one")
    key = load_or_create_identity(store)
    _progress(f"joining fleet {inv.fleet_name!r} via {len(inv.bootstrap)} join address(es)…")
    # The join network's key is public (derived from the fleet id): the invite carries no fleet key.
    transport = Libp2pTransport(key.seed, secrets.join_psk(inv.fleet_id), listen_addrs=("/ip4/127.0.0.1/tcp/0",),
                                serve_frames=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.run)
        feeds = FeedSet()
        own = OwnFeed(key, feeds)
        own.put(records.CARD_KEY, records.encode_card(_card(cfg)))
        card_delta = own.commit(wall_ms())
        reply, errors = None, []
        for addr in inv.bootstrap:
            peer = addr.rsplit("/p2p/", 1)[-1] if "/p2p/" in addr else None
            if peer is None:
                errors.append(f"{addr}: no /p2p/ peer id")
                continue
            _progress(f"dialling {addr} and asking to be admitted…")
            try:
                reply = await ask(transport, peer, [addr], "join", {"invite": token, "card_delta": card_delta},
                                  JOIN_TIMEOUT_MS)
                doc_bytes, deltas = reply["doc"], reply["deltas"]
                if not isinstance(doc_bytes, bytes) or not isinstance(deltas, list):
                    raise DecodeError("the join reply lacks the fleet document or feeds")
                fleet_key = fleet_key_from(reply, key)
                if fleet_key is None:
                    raise DecodeError("the join reply lacks the fleet key")
                _progress(f"admitted: received the fleet's decisions, {len(deltas)} host feed(s) and the fleet key")
                break
            except TvaError as exc:
                reply = None
                errors.append(exc.message)
                if "redeemed" in exc.message or "revoked" in exc.message or "member" in exc.message:
                    break  # the fleet said no: another bootstrap would say the same
        nursery.cancel_scope.cancel()
    if reply is None:
        detail = "; ".join(errors) or "no bootstrap address"
        hint = "invites are single-use: ask for a new one" if "redeemed" in detail else \
            "is the inviting host's agent running and reachable?"
        raise InviteError(f"could not join: {detail}", hint=hint)
    fleet = FleetInfo(inv.fleet_id, inv.fleet_name, fleet_key[1], fleet_key[0])
    return NodeState.joined(store, key, fleet, doc_bytes, [d for d in deltas if isinstance(d, bytes)], feeds)


async def _run(cfg: Config) -> int:
    from agent.runtime import Agent
    from agent.state import NodeState

    store = _store(cfg)
    if not NodeState.exists(store):
        state = _found(cfg, cfg.host_name)
        log.info("founded a one-node fleet %r (%s): invite other hosts with `tva-agent invite`",
                 state.fleet.fleet_name, state.fleet.fleet_id)
    else:
        state = NodeState.load(store)
    agent = Agent(cfg, state, _transport(cfg, state.key.seed, state.fleet.psk))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, agent)
        await agent.run()
        nursery.cancel_scope.cancel()
    return 0


async def _stop_on_signal(agent) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            print(f"tva-agent: {signal.Signals(signum).name}: leaving the mesh and saving", file=sys.stderr)
            agent.stop()
            return

"""`init`, `join` and `run`: the CLI's face on ``agent.lifecycle`` (arguments in, lines and exit codes out).

`run` with no state founds a one-node fleet named after the host: the embedded default that
makes `./setup.sh run` work on a fresh machine with no config.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

import trio

from agent import lifecycle
from agent.config import Config
from cli import output


def _progress(message: str) -> None:
    """Long work says what it is doing, on stderr (stdout stays clean for --json)."""
    print(f"tva-agent: {message}", file=sys.stderr, flush=True)


JOIN_IMPORTS = ("agent.joining", "agent.lifecycle", "agent.logs", "agent.secrets", "agent.service", "agent.state",
                "agent.store", "agent.transports", "crdt.feedset", "crdt.records", "mesh.invites", "mesh.libp2p_addrs",
                "mesh.libp2p_transport", "mesh.rekeyable_transport",
                "libp2p.network.connection.swarm_connection")  # imported by libp2p on the first dial
# The daemon's own (the components, pyroute2 for tva0). FastAPI is imported by Agent.run on the main
# thread (adding agent.api here changed neither join figure, within the bench's 0.1–0.25 s polls).
DAEMON_IMPORTS = ("agent.runtime", "agent.library_service", "agent.wg_owner", "wg.fabric")


def _warm_daemon_imports() -> threading.Thread:
    """`join --run`: import the daemon's modules in a thread while the join waits on the network,
    so the daemon starts — and the new host's WireGuard key reaches the fleet — that much sooner
    after admission (tva0's modules too: imported by the fabric at start-up, they held up the
    event loop, and the mesh with it, for 0.2-0.5 s).

    Race-free by construction: everything the join itself imports is imported here first, on this
    thread, and the caller waits for the thread before it imports anything more (two threads
    importing the same package cycle — agent.policy's __init__ and its submodules — can each see
    the other's module half-initialised: an ImportError at random)."""
    import importlib

    for name in JOIN_IMPORTS:
        importlib.import_module(name)

    def warm() -> None:
        for name in DAEMON_IMPORTS:
            try:
                importlib.import_module(name)
            except Exception:  # the daemon's own import reports any real problem
                pass

    thread = threading.Thread(target=warm, name="warm-imports", daemon=True)
    thread.start()
    return thread


def _joined(args: argparse.Namespace, cfg: Config, state) -> Config:
    cfg = _keep_class(args, cfg)
    summary = lifecycle.summary(state)
    if args.json:
        output.emit_json({k: v for k, v in summary.items() if k != "ipv4_subnet"})
    else:
        print(f"joined fleet {summary['fleet_name']} ({summary['fleet_id']}) as {summary['peer_id']}; "
              f"{summary['members']} members, {summary['hosts_synced']} host feeds synced")
    return cfg


async def _join_and_run(args: argparse.Namespace, cfg: Config, token: str, warming: threading.Thread) -> None:
    """`join --run` in one trio run: the join's libp2p host closes in the background while the
    daemon starts (issue 18: join → first ping)."""
    try:
        async with trio.open_nursery() as background:
            state = await lifecycle.join(cfg, token, _progress, background=background)
            await trio.to_thread.run_sync(warming.join)  # no import on this thread while that one imports
            cfg = _joined(args, cfg, state)
            from agent import logs

            logs.setup(cfg.log_level, cfg.log_format, capture_prints=True)
            await lifecycle.run_daemon(cfg, state, just_joined=True)
    except BaseExceptionGroup as group:  # the nursery's wrapping of what the join or the daemon raised
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


def _keep_class(args: argparse.Namespace, cfg: Config) -> Config:
    """`init`/`join --class C` (or a first `run`): the class this host was set up as is kept in its state dir, so a
    later `run` (or the service) without flags keeps it. A seedbox is set up to be the fleet's
    public-swarm face: its engine may use the DHT while it holds that duty (``public_swarm``)."""
    if getattr(args, "host_class", None) is None:
        return cfg
    from dataclasses import replace

    from agent.fleet_dirs import remember

    values: dict[str, object] = {"host_class": args.host_class}
    if args.host_class == "seedbox":
        values["public_swarm"] = True
    remember(cfg.state_dir, values)
    if "TVA_PUBLIC_SWARM" in os.environ:  # the environment still wins over the state dir's settings
        values.pop("public_swarm", None)
    return replace(cfg, **values)  # type: ignore[arg-type]


def main(args: argparse.Namespace, cfg: Config) -> int:
    with lifecycle.writer_lock(cfg, args.command):
        if args.command == "init":
            state = lifecycle.found(cfg, args.name)
            cfg = _keep_class(args, cfg)
            if args.json:
                output.emit_json({k: v for k, v in lifecycle.summary(state).items()
                                  if k in ("peer_id", "fleet_id", "fleet_name", "ipv4_subnet")})
            else:
                print(f"founded fleet {state.fleet.fleet_name} ({state.fleet.fleet_id}); this host is {state.peer_id}")
            return 0
        if args.command == "join":
            from cli.invite_arg import read_invite

            token = read_invite(args.invite)
            if args.run:
                trio.run(_join_and_run, args, cfg, token, _warm_daemon_imports())
            else:
                _joined(args, cfg, trio.run(lifecycle.join, cfg, token, _progress))
            return 0
        from agent.state import NodeState
        from agent.store import StateStore

        founding = not NodeState.exists(StateStore(cfg.state_dir))
        state = lifecycle.load_for_run(cfg)
        if founding:  # the first `run` founds a fleet: its --class is kept like init's
            cfg = _keep_class(args, cfg)
        from agent import logs

        logs.setup(cfg.log_level, cfg.log_format, capture_prints=True)
        trio.run(lifecycle.run_daemon, cfg, state)
        return 0

"""`tva-agent` — the command people run.

The state dir is resolved exactly as the daemon resolves it (``--state-dir`` > ``TVA_STATE_DIR``
> the config file's ``state_dir`` > the default; ``--config`` included). Commands talk to that
state dir's running daemon when there is one (writes included); otherwise they take the state
dir's writer lock and run the *same* route handler in-process (``agent.offline``). A daemon that
holds the lock but does not answer makes the command fail loudly — it never writes beside it.
Read commands take ``--json``: a stable machine interface documented in the README. Errors are
one line with a hint and an exit code: 2 misuse, 3 daemon needed but unreachable, 4 this host
was revoked, 5 the state dir is in use by another agent or cannot be written, 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from agent.discovery import agent_version
from cli import output
from tva.errors import DaemonUnavailable, HostRevoked, LocalError, StateDirBusy, StateUnwritable, TvaError

# libp2p imports dnspython, which imports httpx, whose package imports its own command-line client
# (rich, click, pygments: ~0.1 s) unless that import fails — httpx guards it for installs without
# the CLI extra. Nothing in this process runs httpx's CLI, and `run`/`join` pay the libp2p import
# before the host is reachable (issue 18: join → first ping).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

EXIT_ERROR, EXIT_USAGE, EXIT_DAEMON, EXIT_REVOKED, EXIT_STATE = 1, 2, 3, 4, 5
LOCK_WAIT_S = 10.0  # another command holding the lock finishes within this; a starting daemon answers


class _Version(argparse.Action):
    """--version, looked up only when asked: importlib.metadata reads the installed distributions
    (40-70 ms), which every command — and a joiner's time to its first ping — paid up front."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"tva-agent {agent_version()}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tva-agent", description="Peer-to-peer agent of a household media fleet.")
    p.add_argument("--state-dir", type=Path, help="state directory (default: XDG state dir, /var/lib when root)")
    p.add_argument("--config", type=Path, help="TOML config file (default: XDG config dir, /etc when root)")
    p.add_argument("--fleet", metavar="NAME", dest="agent_fleet",
                   help="this machine's agent of fleet NAME (its own state dir, interface and ports; "
                        "or TVA_FLEET); the first init/join/run of a new NAME sets it up")
    p.add_argument("-v", "--verbose", action="store_true", help="log more (same as --log-level debug)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="default: info")
    p.add_argument("--log-format", choices=["text", "json"], help="json: one object per line (journald)")
    p.add_argument("--version", action=_Version, help="show the version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def read(name: str, help_: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_)
        c.add_argument("--json", action="store_true", help="machine-readable output")
        return c

    c = sub.add_parser("init", help="found a new fleet with this host as its first member")
    c.add_argument("--name", required=True, help="the fleet's name")
    _class_flag(c)
    c.add_argument("--json", action="store_true")

    c = read("invite", "print an invite token for another host")
    c.add_argument("--role", choices=["admin", "member", "friend"], default="member",
                   help="what the invited host may do (default member; only admins may invite)")
    c.add_argument("--ttl", default="24h", help="validity, e.g. 30m, 24h, 7d (default 24h)")

    c = sub.add_parser("join", help="join a fleet with an invite token")
    c.add_argument("invite", help="the token, `-` to read it from standard input, or a file holding it "
                                   "(either keeps it out of `ps` and shell history)")
    c.add_argument("--run", action="store_true", help="keep running as the daemon after joining")
    c.add_argument("--json", action="store_true")
    _run_flags(c)

    c = sub.add_parser("run", help="run the agent (founds a one-node fleet on first run)")
    _run_flags(c)

    read("status", "this agent and its fleet")
    read("fleets", "the fleets this machine has an agent for (--fleet NAME)")
    read("hosts", "the fleet's hosts and their liveness")
    h = sub.add_parser("holdings", help="declare or list this host's content")
    hs = h.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = hs.add_parser("add", help="declare content this host holds")
    c.add_argument("content")
    c.add_argument("--infohash", required=True)
    c.add_argument("--size", type=int, required=True, help="size in bytes")
    c.add_argument("--policy", choices=["public", "f2f_only", "search_only"],
                   help="default: public; search_only (closed) for private-tracker content until opened")
    c.add_argument("--source", choices=["local", "public", "private-tracker"], default="local")
    c.add_argument("--json", action="store_true")
    c = hs.add_parser("rm", help="stop declaring content")
    c.add_argument("content")
    c.add_argument("--json", action="store_true")
    c = hs.add_parser("list", help="every host's holdings")
    c.add_argument("--json", action="store_true")

    c = sub.add_parser("pin", help="keep N copies of an item in the fleet")
    c.add_argument("content", help="a content id or an infohash")
    c.add_argument("--copies", type=int, required=True)
    c.add_argument("--max", type=int, dest="max_copies")
    c.add_argument("--friends", action="store_true",
                   help="friend fleets' copies count (they must offer custody; search_only items never cross)")
    c.add_argument("--json", action="store_true")
    c = sub.add_parser("unpin", help="stop keeping copies of an item")
    c.add_argument("content")
    c.add_argument("--json", action="store_true")

    read("custody", "copies of every pinned item and repairs under way")
    read("duties", "which host holds which duty")
    c = read("reaper", "health of this host's torrents")
    c.add_argument("--apply", action="store_true", help="send safe nudges (reannounce, verify) and connect fleet holders")
    c = read("peers-for", "where to get an infohash, by source")
    c.add_argument("infohash")
    c = read("custodians-of", "the hosts holding a content id")
    c.add_argument("content")
    w = sub.add_parser("wg", help="the tva0 WireGuard fabric")
    ws = w.add_subparsers(dest="action", required=True, metavar="ACTION")
    ws.add_parser("up", help="bring tva0 up (after `wg down`)").add_argument("--json", action="store_true")
    ws.add_parser("down", help="take tva0 down until `wg up`").add_argument("--json", action="store_true")
    ws.add_parser("status", help="tva0 and its peers: handshakes, bytes").add_argument("--json", action="store_true")
    c = ws.add_parser("probe", help="would this subnet collide with an address or route here?")
    c.add_argument("cidr")
    c.add_argument("--json", action="store_true")
    from cli import torrent as torrent_cli  # [torrents]

    torrent_cli.add_parser(sub)
    c = sub.add_parser("grant", help="give a member host a role (owner or admin only)")
    c.add_argument("host", help="a peer id or a host name")
    c.add_argument("role", choices=["admin", "member"])
    c.add_argument("--json", action="store_true")
    from cli import library as library_cli  # [library]

    library_cli.add_parser(sub)
    read("dashboard", "print a one-time login link to this agent's web dashboard")
    from cli import service as service_cli  # [service] systemd / launchd

    service_cli.add_parser(sub)
    from cli import media as media_cli  # [media]

    media_cli.add_parser(sub)
    from cli import friends as friends_cli  # [friends]

    friends_cli.add_parser(sub)
    c = sub.add_parser("revoke", help="remove a host from the fleet for good")
    c.add_argument("host", help="a peer id or a host name")
    c.add_argument("--reason", default="")
    c.add_argument("--json", action="store_true")
    return p


def _run_flags(c: argparse.ArgumentParser) -> None:
    c.add_argument("--listen", action="append", help="libp2p listen multiaddr (repeatable)")
    c.add_argument("--join-listen", action="append", dest="join_listen",
                   help="join listener multiaddr (repeatable; default: each --listen port + 2)")
    c.add_argument("--api", help="HTTP API HOST:PORT (default 127.0.0.1:4811)")
    c.add_argument("--media-root", help="directory of this host's media")
    c.add_argument("--host-name", help="this host's name in the fleet (default: hostname)")
    _class_flag(c)


def _class_flag(c: argparse.ArgumentParser) -> None:
    c.add_argument("--class", "--host-class", dest="host_class", choices=["desktop", "server", "nas", "seedbox", "portable"],
                   help="this host's class; given to init or join it is kept for later runs (seedbox: the always-on "
                        "custodian and the public-swarm face)")


def parse_ttl_ms(text: str) -> int:
    from tva.errors import InvalidInput

    units = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise InvalidInput(f"cannot read duration {text!r}", hint="use e.g. 30m, 24h or 7d")
    return int(text[:-1]) * units[text[-1]]


def _config(args: argparse.Namespace):
    from agent.config import load_config

    flags: dict[str, Any] = {"state_dir": args.state_dir, "log_format": args.log_format,
                             "log_level": "debug" if args.verbose else args.log_level}
    for name in ("listen", "join_listen", "api", "media_root", "host_name", "host_class"):
        flags[name] = getattr(args, name, None)
    fleet = args.agent_fleet or os.environ.get("TVA_FLEET") or None
    if fleet is not None:
        from agent import fleet_dirs
        from tva.errors import InvalidInput

        if args.state_dir is not None:
            raise InvalidInput("--fleet and --state-dir both name the state dir", hint="give one of them")
        main_cfg = load_config(file=args.config, flags=flags)
        fleets_dir = main_cfg.fleets_dir or main_cfg.state_dir / "fleets"
        flags["state_dir"] = fleet_dirs.resolve(fleets_dir, fleet, args.command, main_cfg.listen, main_cfg.api)
    return load_config(file=args.config, flags=flags)


def _fleets(args: argparse.Namespace, cfg) -> int:
    from agent import fleet_dirs

    fleets_dir = cfg.fleets_dir or cfg.state_dir / "fleets"
    rows = fleet_dirs.describe(fleets_dir)
    if args.json:
        output.emit_json(rows)
    else:
        output.table(rows, [("name", "fleet"), ("state_dir", "state dir"), ("wg_interface", "interface"),
                            ("api", "api"), ("host_class", "class"), ("running", "running")],
                     empty=f"no fleet agents in {fleets_dir}: set one up with `tva-agent --fleet NAME join INVITE`")
    return 0


# (command, action) -> (HTTP method, path template, body builder); reads and writes alike.
def _request_for(args: argparse.Namespace) -> tuple[str, str, dict | None]:
    cmd = args.command
    if cmd in ("status", "hosts", "custody", "duties"):
        return "GET", "/" + cmd, None
    if cmd == "reaper":
        return ("POST", "/reaper/apply", {}) if args.apply else ("GET", "/reaper", None)
    if cmd == "peers-for":
        return "GET", f"/peers_for/{_path_part(args.infohash)}", None
    if cmd == "custodians-of":
        return "GET", f"/custodians_of/{_path_part(args.content)}", None
    if cmd == "holdings":
        if args.action == "list":
            return "GET", "/holdings", None
        if args.action == "rm":
            return "DELETE", f"/holdings/{_path_part(args.content)}", None
        return "POST", "/holdings", {"content": args.content, "infohash": args.infohash,
                                     "size_bytes": args.size, "policy": args.policy, "source": args.source}
    if cmd == "pin":
        return "POST", "/pins", {"content": args.content, "copies": args.copies, "max_copies": args.max_copies,
                                 "friends": args.friends}
    if cmd == "unpin":
        return "DELETE", f"/pins/{_path_part(args.content)}", None
    if cmd == "revoke":
        return "POST", "/revocations", {"host": args.host, "reason": args.reason}
    if cmd == "grant":
        return "POST", "/grants", {"host": args.host, "role": args.role}
    if cmd == "invite":
        return "POST", "/invites", {"role": args.role, "ttl_ms": parse_ttl_ms(args.ttl)}
    if cmd == "dashboard":
        return "POST", "/dashboard/login-codes", {}
    if cmd == "torrent":  # [torrents]
        from cli import torrent as torrent_cli

        return torrent_cli.request_for(args)
    if cmd in ("friends", "friend"):  # [friends]
        from cli import friends as friends_cli

        return friends_cli.request_for(args)
    if cmd == "wg":
        return ("GET", "/wg", None) if args.action == "status" else ("POST", f"/wg/{args.action}", {})
    raise AssertionError(cmd)


def _path_part(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _library(args: argparse.Namespace, cfg) -> int:
    """Through the daemon when one runs; otherwise on the state dir, holding its writer lock."""
    from agent.discovery import daemon_info
    from cli import library as library_cli

    info = daemon_info(cfg.state_dir)
    if info is not None:
        return library_cli.run(args, lambda: cfg, info)
    from agent.lifecycle import writer_lock

    with writer_lock(cfg, "cli"):
        return library_cli.run(args, lambda: cfg, None)


def execute(cfg, method: str, path: str, body: dict | None) -> Any:
    """The command's answer: from the state dir's daemon, or from the same handler in-process with
    the state dir's writer lock held. Never both, never a write beside a running daemon."""
    from agent.discovery import StateLock, daemon_info, describe_holder
    from cli.client import call, interpret

    info = daemon_info(cfg.state_dir)
    if info is not None:
        return call(info, method, path, body)
    if not cfg.state_dir.is_dir():
        from tva.errors import NotInitialised

        raise NotInitialised(f"no fleet in {cfg.state_dir}", hint="found one with `tva-agent init --name NAME` "
                                                                  "or join with `tva-agent join INVITE`")
    from agent import offline

    lock = StateLock(cfg.state_dir)
    deadline = time.monotonic() + LOCK_WAIT_S
    while not lock.try_acquire("cli"):
        info = daemon_info(cfg.state_dir)
        if info is not None:  # a daemon that was starting answers now
            return call(info, method, path, body)
        if time.monotonic() >= deadline:
            raise DaemonUnavailable(f"{cfg.state_dir} is locked by {describe_holder(lock.holder())}, "
                                    "and no daemon of it answers",
                                    hint="is `tva-agent run` still starting, or hung? nothing was written")
        time.sleep(0.1)
    try:
        return interpret(*offline.call(cfg, method, path, body))
    finally:
        lock.release()


def _render(args: argparse.Namespace, result: Any) -> None:
    from cli import render

    if getattr(args, "json", False):
        output.emit_json(result)
    elif args.command == "torrent":  # [torrents]
        from cli import torrent as torrent_cli

        torrent_cli.render(args, result)
    elif args.command in ("friends", "friend"):  # [friends]
        from cli import friends as friends_cli

        friends_cli.render(args, result)
    else:
        render.human(args, result)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from agent import logs

    logs.setup("debug" if args.verbose else args.log_level or "info", args.log_format or "text")
    try:
        if args.command == "service" and args.config is not None and not args.config.exists():
            args.config = args.config.absolute()  # install creates it; the rest of the config: defaults
            cfg = _config(argparse.Namespace(**{**vars(args), "config": None}))
        else:
            cfg = _config(args)
        if args.command == "fleets":
            return _fleets(args, cfg)
        if args.command in ("run", "init", "join"):
            from cli import lifecycle

            return lifecycle.main(args, cfg)
        if args.command == "wg" and args.action == "probe":
            return _wg_probe(args)
        if args.command == "library":  # [library] its own flow: scan progress, offline scans
            return _library(args, cfg)
        if args.command == "service" and (args.agent_fleet or os.environ.get("TVA_FLEET")):
            from tva.errors import InvalidInput

            # one unit name per machine today: a fleet agent's unit would replace the default agent's
            raise InvalidInput("`service` manages the default agent only; a --fleet agent has no unit of its own yet",
                               hint="run it with `tva-agent --fleet NAME run` under your own unit or supervisor")
        if args.command == "service":  # [service] the service manager, not the daemon
            from cli import service as service_cli

            return service_cli.run(args, cfg, args.config)
        if args.command in ("play", "player", "media"):  # [media] the daemon's player and media plane
            from cli import media as media_cli

            return media_cli.run(args, cfg)
        method, path, body = _request_for(args)
        result = execute(cfg, method, path, body)
        if args.command == "dashboard":  # the code becomes a link to the daemon's own address
            from agent.dashboard_api import dashboard_info
            from agent.discovery import daemon_info

            result = dashboard_info(result, (daemon_info(cfg.state_dir) or {}).get("api", cfg.api))
        if args.command == "torrent" and args.action == "add":  # [torrents] a job: follow it
            from cli import torrent as torrent_cli

            result = torrent_cli.follow(cfg, result["job"], quiet=bool(getattr(args, "json", False)))
        _render(args, result)
        return 0
    except HostRevoked as exc:
        _fail(args, exc)
        return EXIT_REVOKED
    except (StateDirBusy, StateUnwritable) as exc:
        _fail(args, exc)
        return EXIT_STATE
    except DaemonUnavailable as exc:
        _fail(args, exc)
        return EXIT_DAEMON
    except LocalError as exc:
        _fail(args, exc)
        return EXIT_USAGE
    except TvaError as exc:
        _fail(args, exc)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into e.g. `head`, which stopped reading: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a bug: one clear line for people, the traceback with -v
        # The daemon's log gets the traceback at once; a command shows it with -v.
        logging.getLogger("tva.cli").log(logging.ERROR if args.command in ("run", "join") else logging.DEBUG,
                                         "internal error", exc_info=True)
        _fail(args, TvaError(f"internal error: {type(exc).__name__}: {exc}",
                             hint="run again with -v for the traceback, and report it"))
        return EXIT_ERROR


def _wg_probe(args: argparse.Namespace) -> int:
    """Exit 0 when the subnet is free here, 1 when it collides (naming what it collides with)."""
    from wg.probe import parse_subnet, probe

    subnet = parse_subnet(args.cidr)
    hits = [h.describe() for h in probe(subnet)]
    if args.json:
        output.emit_json({"subnet": str(subnet), "free": not hits, "collisions": hits})
    elif hits:
        print(f"{subnet} collides with:\n  " + "\n  ".join(hits))
    else:
        print(f"{subnet} is free on this host")
    return 0 if not hits else EXIT_ERROR


def _fail(args: argparse.Namespace, exc: TvaError) -> None:
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps({"error": exc.message, "hint": exc.hint}) + "\n")
    line = f"tva-agent: error: {exc.message}"
    if exc.hint:
        line += f"\n  hint: {exc.hint}"
    print(line, file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())

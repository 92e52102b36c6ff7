"""`tva-agent play | player | media`: playback and the media plane from the command line.

    tva-agent play ITEM [--on HOST] [--start SECONDS] [--headless] [--wait]
    tva-agent player status | pause | resume | seek SECONDS | stop [--on HOST]
    tva-agent media url ITEM [--ttl 6h] [--hls]
    tva-agent media status

All go through the running daemon's API (``agent.media_api``): the player lives in the daemon
(so a remote can drive it and its position is saved), and only the daemon's media plane serves.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from cli.output import emit_json, key_values, table
from media.library_model import duration_label
from tva.errors import DaemonUnavailable, InvalidInput

COMMANDS = ("play", "player", "media")
WAIT_POLL_S = 1.0


def add_parser(sub: Any) -> None:
    c = sub.add_parser("play", help="play an item: the file here, else streamed from a holder (or on another host)")
    c.add_argument("item", help="an item id, a content id or a path (`tva-agent library list` shows them)")
    c.add_argument("--on", metavar="HOST", help="play on that host's screen (a peer id or host name)")
    c.add_argument("--start", type=float, metavar="SECONDS",
                   help="start here (default: resume where it was stopped, on any host)")
    c.add_argument("--headless", action="store_true", help="no window and no sound (mpv vo=null, ao=null)")
    c.add_argument("--wait", action="store_true", help="follow playback until it ends")
    c.add_argument("--json", action="store_true")
    p = sub.add_parser("player", help="the player: status, pause, resume, seek, stop (here or --on HOST)")
    ps = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, help_ in (("status", "what plays, where, position and pause state"), ("pause", "pause"),
                          ("resume", "resume"), ("stop", "stop (the position is saved)")):
        c = ps.add_parser(action, help=help_)
        c.add_argument("--on", metavar="HOST", help="that host's player (a peer id or host name)")
        c.add_argument("--json", action="store_true")
    c = ps.add_parser("seek", help="jump to a position")
    c.add_argument("position", type=float, metavar="SECONDS")
    c.add_argument("--on", metavar="HOST", help="that host's player (a peer id or host name)")
    c.add_argument("--json", action="store_true")
    m = sub.add_parser("media", help="the HTTP media plane: signed URLs for players, its state")
    ms = m.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = ms.add_parser("url", help="a signed, expiring URL of an item (this host's, or a holder's)")
    c.add_argument("item")
    c.add_argument("--ttl", default="6h", help="validity: 10s to 7d, e.g. 30m, 6h, 2d (default 6h)")
    c.add_argument("--hls", action="store_true", help="the HLS playlist instead of the file (Roku, TVs, browsers)")
    c.add_argument("--json", action="store_true")
    ms.add_parser("status", help="port, addresses, requests, HLS transcodes").add_argument("--json", action="store_true")


def request_for(args: argparse.Namespace) -> tuple[str, str, dict | None]:
    if args.command == "play":
        if args.start is not None and not 0 <= args.start < 7 * 24 * 3600:
            raise InvalidInput("--start must be a number of seconds, 0 or more")
        return "POST", "/player/play", {"item": args.item, "start_s": args.start, "headless": args.headless,
                                        "on": args.on}
    if args.command == "player":
        if args.action == "status":
            from urllib.parse import quote

            return "GET", "/player" + (f"?on={quote(args.on, safe='')}" if args.on else ""), None
        body: dict[str, Any] = {"on": args.on}
        if args.action == "seek":
            body["position_s"] = args.position
        return "POST", f"/player/{args.action}", body
    if args.action == "url":
        from cli.main import parse_ttl_ms

        return "POST", "/media/urls", {"item": args.item, "ttl_s": parse_ttl_ms(args.ttl) // 1000, "hls": args.hls}
    return "GET", "/media", None


def run(args: argparse.Namespace, cfg) -> int:
    from agent.discovery import daemon_info
    from cli.client import call

    info = daemon_info(cfg.state_dir)
    if info is None:
        raise DaemonUnavailable(f"`{args.command}` needs the running daemon (it owns the player and the media plane)",
                                hint="start it with: tva-agent run")
    method, path, body = request_for(args)
    timeout_s = 40.0 if args.command == "play" or getattr(args, "on", None) else 15.0
    result = call(info, method, path, body, timeout_s=timeout_s)
    if args.command == "play" and args.wait:
        result = _follow(info, args, result)
    if args.json:
        emit_json(result)
    else:
        render(args, result)
    return 0


def _follow(info: dict, args: argparse.Namespace, status: dict) -> dict:
    from cli.client import call

    path = "/player" + (f"?on={args.on}" if args.on else "")
    live = sys.stderr.isatty() and not args.json
    while status.get("state") in ("loading", "playing", "paused"):
        if live:
            sys.stderr.write(f"\r{_position(status)}  {status.get('state')}".ljust(40))
            sys.stderr.flush()
        time.sleep(WAIT_POLL_S)
        status = call(info, "GET", path, timeout_s=40.0)
    if live:
        sys.stderr.write("\r" + " " * 40 + "\r")
    return status


def _position(s: dict) -> str:
    pos, dur = s.get("position_s"), s.get("duration_s")
    shown = duration_label(pos) if pos is not None else "-"
    return f"{shown} / {duration_label(dur)}" if dur else shown


def render(args: argparse.Namespace, result: dict) -> None:
    if args.command in ("play", "player"):
        what = result.get("title") or result.get("item") or "-"
        if args.command == "play":
            resumed = result.get("resumed_from")
            extra = f", resumed where {resumed.get('host') or 'a host'} stopped" if resumed else ""
            print(f"{result.get('state')}: {what} on {result.get('host')} from {result.get('via')}"
                  f" at {_position(result)}{extra}")
            return
        key_values([("host", result.get("host")), ("state", result.get("state")), ("item", what),
                    ("position", _position(result)), ("paused", result.get("paused")), ("from", result.get("via")),
                    ("problem", result.get("problem"))])
        return
    if args.action == "url":
        print(f"{result.get('title') or result.get('item')} on {result.get('host')}, valid until "
              f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(result.get('expires_s') or 0))}:")
        table(result.get("urls") or [], [("via", "via"), ("url", "url")])
        return
    hls = result.get("hls") or {}
    key_values([("port", result.get("port")), ("addresses", result.get("binds")),
                ("requests", result.get("requests")), ("connections", result.get("connections")),
                ("transcodes", f"{len(hls.get('transcodes') or [])} of {hls.get('transcodes_max')}"),
                ("hls cache", f"{hls.get('cached_bytes', 0)} of {hls.get('cache_bytes_max')} bytes")])

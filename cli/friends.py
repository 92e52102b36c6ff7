"""`tva-agent friends` and `tva-agent friend add|rm|set`: links with friend fleets (agent.friends).

``friend add INVITE`` redeems another fleet's friend invite (`tva-agent invite --role friend` there)
and needs the running daemon, which talks to their gateways; ``friend rm`` ends a link on both
sides (offline it is recorded here, and they learn it at their next poll).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from cli.output import human_bytes, short_id, table


def add_parser(sub: Any) -> None:
    c = sub.add_parser("friends", help="links with friend fleets and their state")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    f = sub.add_parser("friend", help="link with a friend fleet, end a link, change what we offer")
    fs = f.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = fs.add_parser("add", help="link with the fleet that issued this friend invite (admins; needs the daemon)")
    c.add_argument("invite", help="a tva1:… token from `tva-agent invite --role friend` in the other fleet, `-` to read "
                   "it from standard input, or a file holding it")
    c.add_argument("--custody-bytes", type=int, dest="custody_bytes",
                   help="bytes of our disks offered for their pins (default: friend_custody_bytes, 0)")
    c.add_argument("--share", action="append", choices=["public", "f2f_only"], dest="shares",
                   help="policies we share with them (repeatable; default both; search_only never crosses)")
    c.add_argument("--json", action="store_true")
    c = fs.add_parser("rm", help="end a link, on both sides (admins)")
    c.add_argument("fleet", help="the friend fleet's id or name")
    c.add_argument("--json", action="store_true")
    c = fs.add_parser("set", help="change what we offer a friend fleet (admins; needs the daemon)")
    c.add_argument("fleet", help="the friend fleet's id or name")
    c.add_argument("--custody-bytes", type=int, dest="custody_bytes", required=True,
                   help="bytes of our disks offered for their pins (0: none)")
    c.add_argument("--json", action="store_true")


def request_for(args: argparse.Namespace) -> tuple[str, str, dict | None]:
    from urllib.parse import quote

    if args.command == "friends":
        return "GET", "/friends", None
    if args.action == "add":
        from cli.invite_arg import read_invite

        body: dict = {"invite": read_invite(args.invite)}
        if args.custody_bytes is not None:
            body["custody_bytes"] = args.custody_bytes
        if args.shares:
            body["shares"] = sorted(set(args.shares))
        return "POST", "/friends", body
    if args.action == "rm":
        return "DELETE", f"/friends/{quote(args.fleet, safe='')}", None
    return "POST", f"/friends/{quote(args.fleet, safe='')}/offer", {"custody_bytes": args.custody_bytes}


def render(args: argparse.Namespace, result: Any) -> None:
    if args.command != "friends":
        print(result.get("message") or result)
        return
    rows = []
    for r in result:
        age = r.get("view_age_ms")
        rows.append({**r, "fleet": short_id(r.get("fleet_id")),
                     "since": time.strftime("%Y-%m-%d %H:%M", time.gmtime((r.get("since_ms") or 0) / 1000)),
                     "view": "-" if age is None else f"{age // 1000} s ago",
                     "we_offer": human_bytes(r.get("custody_bytes_offered")),
                     "they_offer": human_bytes(r.get("custody_bytes_offered_to_us")),
                     "shares": ",".join(r.get("shares") or [])})
    table(rows, [("name", "fleet"), ("fleet", "id"), ("state", "state"), ("since", "since"), ("shares", "we share"),
                 ("shared_with_us", "they share"), ("we_offer", "we offer"), ("they_offer", "they offer"),
                 ("view", "their view")], empty="(no friend fleets)")

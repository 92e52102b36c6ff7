"""`tva-agent torrent add|list`: the CLI side of the daemon's torrent engine (agent.torrents).

Both need the running daemon (it owns the engine). ``add`` takes a magnet link, a ``.torrent``
file (read here, with the size limit, and sent as bytes: the daemon may not be able to read the
caller's files) or a path under the media root (made into a torrent and seeded by the daemon).
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from typing import Any

from cli.output import human_bytes, table
from media.torrent_input import read_torrent_file
from tva.errors import DaemonUnavailable, InvalidInput


def add_parser(sub: Any) -> None:
    """Add the ``torrent`` command to the top-level subparsers."""
    t = sub.add_parser("torrent", help="add or list this host's torrents (needs the daemon)")
    ts = t.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = ts.add_parser("add", help="seed a path under the media root, or download a magnet / .torrent into it")
    c.add_argument("item", metavar="PATH|MAGNET|FILE.torrent")
    c.add_argument("--policy", choices=["public", "f2f_only", "search_only"],
                   help="the holding's policy (default public; search_only for a private torrent)")
    c.add_argument("--json", action="store_true")
    c = ts.add_parser("list", help="this host's torrents: state, progress, peers, rates")
    c.add_argument("--json", action="store_true")




def request_for(args: argparse.Namespace) -> tuple[str, str, dict | None]:
    """The HTTP request for a ``torrent`` command."""
    if args.action == "list":
        return "GET", "/torrents", None
    item = args.item
    if not item or "\x00" in item:
        raise InvalidInput("torrent add needs PATH, MAGNET or FILE.torrent")
    body: dict[str, Any] = {"policy": args.policy}
    if item.lower().startswith("magnet:"):
        body["source"] = item
    elif item.lower().endswith(".torrent") and os.path.isfile(item):
        body["torrent_b64"] = base64.b64encode(read_torrent_file(item)).decode()
    else:
        # A path that exists from here is sent absolute; anything else is taken relative to the
        # daemon's media root (and refused there if it leaves it).
        body["source"] = os.path.abspath(item) if os.path.exists(item) else item
        size = _tree_bytes(body["source"])
        if size > PROGRESS_NOTE_BYTES_MIN:
            print(f"tva-agent: the daemon hashes {size / 2**30:.1f} GiB before seeding; this takes a while…",
                  file=sys.stderr, flush=True)
    return "POST", "/torrents", body


PROGRESS_NOTE_BYTES_MIN = 256 * 1024**2


def _tree_bytes(path: str) -> int:
    """Bytes under ``path`` (a file or a directory); 0 when it is not here."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                continue
    return total


def offline_refusal() -> DaemonUnavailable:
    return DaemonUnavailable("torrent commands need the running daemon (it owns the torrent engine)",
                             hint="start it with: tva-agent run")


def render(args: argparse.Namespace, result: Any) -> None:
    if args.action == "add":
        print(result.get("message", ""))
        print(f"content {result.get('content')}  infohash {result.get('infohash')}  policy {result.get('policy')}",
              file=sys.stdout)
        return
    rows = [{**r, "pct": f"{100 * float(r.get('progress') or 0):.1f}%", "size": human_bytes(r.get("size_bytes")),
             "down": human_bytes(r.get("rate_down_bps")) + "/s", "up": human_bytes(r.get("rate_up_bps")) + "/s"}
            for r in result]
    table(rows, [("content", "content"), ("infohash", "infohash"), ("state", "state"), ("pct", "done"),
                 ("size", "size"), ("peers", "peers"), ("down", "down"), ("up", "up"), ("error", "error")],
          empty="(no torrents)")

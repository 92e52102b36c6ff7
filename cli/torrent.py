"""`tva-agent torrent add|list`: the CLI side of the daemon's torrent engine (agent.torrents).

Both need the running daemon (it owns the engine). ``add`` takes a magnet link, a ``.torrent``
file (read here, with the size limit, and sent as bytes: the daemon may not be able to read the
caller's files) or a path under the media root (made into a torrent and seeded by the daemon).
The daemon answers ``add`` at once with a job (agent.jobs); this side follows it, showing how
much is hashed, until it ends; ``--json`` prints the finished job.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
from typing import Any

from cli.output import human_bytes, table
from media.torrent_input import read_torrent_file
from tva.errors import InvalidInput


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
    return "POST", "/torrents", body


JOB_POLL_S = 0.25
PROGRESS_LINE_EVERY_S = 10.0  # when stderr is not a terminal: a line now and then, not a spinner


def follow(cfg, job: dict, *, quiet: bool = False) -> dict:
    """Poll the daemon's job until it ends; progress on stderr (unless ``quiet``). Returns the
    finished job (``--json`` prints it); a failed job raises its error (same exit code as if the
    request itself had failed)."""
    from cli.client import error_for
    from cli.main import execute

    tty = sys.stderr.isatty()
    shown_at = 0.0
    while job.get("state") == "running":
        now = time.monotonic()
        if not quiet and (tty or now - shown_at >= PROGRESS_LINE_EVERY_S):
            shown_at = now
            line = f"tva-agent: {job.get('kind', 'job')}: {_progress_text(job.get('progress') or {})}"
            print(("\r" + line.ljust(70)) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)
        time.sleep(JOB_POLL_S)
        job = execute(cfg, "GET", f"/jobs/{job['id']}", None)
    if not quiet and tty and shown_at:
        print(file=sys.stderr)
    if job.get("state") == "failed":
        err = job.get("error") or {}
        raise error_for(int(err.get("status", 500)))(str(err.get("error", "the job failed")),
                                                      hint=str(err.get("hint", "")))
    return job


def _progress_text(p: dict) -> str:
    done, total = int(p.get("bytes_done") or 0), int(p.get("bytes_total") or 0)
    if not total:
        return "working…"
    return f"hashed {human_bytes(done)} of {human_bytes(total)} ({100 * done // total}%)"


def render(args: argparse.Namespace, result: Any) -> None:
    if args.action == "add":
        result = result.get("result") or {}  # the finished job
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

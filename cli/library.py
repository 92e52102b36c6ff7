"""`tva-agent library scan | list | show | publish | status`: the media library from the command line.

With a daemon running, every command goes through its HTTP API (``agent.library_api``) and
``scan`` follows the daemon's scan by polling its progress. Without one, ``scan``, ``list``,
``show`` and ``status`` work on the state dir directly (``agent.library_service.open_offline``);
``publish`` needs the daemon (it owns the torrent engine). A scan draws a progress bar on
stderr when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from cli.output import emit_json, human_bytes, key_values, table
from media.library_model import duration_label, episode_label
from tva.errors import DaemonUnavailable

POLL_INTERVAL_S = 0.2
BAR_CELLS = 30


def add_parser(sub: Any) -> None:
    """Add the ``library`` command to the top-level subparsers."""
    lib = sub.add_parser("library", help="the media library: what this host and the fleet hold")
    ls = lib.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = ls.add_parser("scan", help="walk the media roots; title, probe and grab artwork of what changed")
    c.add_argument("--full", action="store_true", help="probe every file again, changed or not")
    c.add_argument("--json", action="store_true")
    c = ls.add_parser("list", help="items: title, year, S/E, duration, where")
    c.add_argument("--query", help="only items whose title, episode title or path contains TEXT")
    c.add_argument("--kind", choices=["movie", "episode", "other"])
    where = c.add_mutually_exclusive_group()
    where.add_argument("--local", dest="where", action="store_const", const="local", help="only files held here")
    where.add_argument("--fleet", dest="where", action="store_const", const="fleet",
                       help="only items held as holdings somewhere in the fleet, with their holders")
    c.add_argument("--limit", type=int, help="at most N items")
    c.add_argument("--json", action="store_true")
    c = ls.add_parser("show", help="one item in full")
    c.add_argument("item", help="an item id, a content id, or a path")
    c.add_argument("--json", action="store_true")
    c = ls.add_parser("publish", help="make a local item a holding (a torrent seeded here, as `torrent add`)")
    c.add_argument("item", help="an item id or a path")
    c.add_argument("--policy", choices=["public", "f2f_only", "search_only"],
                   help="the holding's policy (default public)")
    c.add_argument("--json", action="store_true")
    ls.add_parser("status", help="counts, roots, the last scan, the title refiner").add_argument(
        "--json", action="store_true")


def run(args: argparse.Namespace, config: Callable[[], Any], daemon: dict | None) -> int:
    """Carry out a ``library`` command (``daemon``: the running daemon's info, or None)."""
    result = _via_daemon(args, daemon) if daemon is not None else _offline(args, config())
    if args.json:
        emit_json(result)
    else:
        render(args, result)
    return 0


# --- through the daemon ---------------------------------------------------------------------------


def _via_daemon(args: argparse.Namespace, info: dict) -> Any:
    from cli.client import call

    action = args.action
    if action == "scan":
        progress = call(info, "POST", "/library/scan", {"full": args.full})
        bar = ProgressBar()
        while progress.get("running"):
            bar.draw(progress)
            time.sleep(POLL_INTERVAL_S)
            progress = call(info, "GET", "/library/scan")
        bar.close()
        return progress
    if action == "list":
        params = {k: v for k, v in (("query", args.query), ("kind", args.kind), ("where", args.where),
                                    ("limit", args.limit)) if v is not None}
        return call(info, "GET", "/library/items" + ("?" + urlencode(params) if params else ""))
    if action == "show":
        return call(info, "GET", "/library/items/" + quote(args.item, safe=""))
    if action == "publish":
        return call(info, "POST", "/library/publish", {"item": args.item, "policy": args.policy})
    return call(info, "GET", "/library")


# --- on the state dir -------------------------------------------------------------------------------


def _offline(args: argparse.Namespace, cfg) -> Any:
    from agent.library_service import open_offline

    if args.action == "publish":
        raise DaemonUnavailable("publishing needs the running daemon (it owns the torrent engine)",
                                hint="start it with: tva-agent run")
    with open_offline(cfg) as library:
        if args.action == "scan":
            return _scan_offline(library, args.full)
        if args.action == "list":
            import trio

            trio.run(library.title_fleet)  # holdings synced from the state dir get their titles first
            return library.items(query=args.query, kind=args.kind, where=args.where or "all", limit=args.limit)
        if args.action == "show":
            return library.item(args.item)
        return library.status()


def _scan_offline(library, full: bool) -> dict:
    import trio

    async def main() -> dict:
        bar = ProgressBar()
        async with trio.open_nursery() as nursery:
            async def draw() -> None:
                while True:
                    bar.draw(library.progress.to_json())
                    await trio.sleep(POLL_INTERVAL_S)

            nursery.start_soon(draw)
            try:
                return await library.scan_now(full=full)
            finally:
                nursery.cancel_scope.cancel()
                bar.close()
                await library.refiner.aclose()

    return trio.run(main)


class ProgressBar:
    """One self-rewriting line on stderr when it is a terminal; silent otherwise."""

    def __init__(self, out=None) -> None:
        self.out = out or sys.stderr
        self.live = self.out.isatty()
        self.drawn = False

    def draw(self, p: dict) -> None:
        if not self.live:
            return
        if p.get("phase") in ("walking", "starting"):
            line = f"scanning: {p.get('files_seen', 0)} files seen"
        else:
            total, done = p.get("to_probe", 0), p.get("probed", 0)
            filled = BAR_CELLS * done // total if total else BAR_CELLS
            line = (f"[{'#' * filled}{'.' * (BAR_CELLS - filled)}] {done}/{total} probed"
                    f" · {p.get('files_seen', 0)} files seen, {p.get('unchanged', 0)} unchanged")
        self.out.write("\r" + line[:120].ljust(80))
        self.out.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.out.write("\r" + " " * 80 + "\r")
            self.out.flush()


# --- human output ---------------------------------------------------------------------------------


def _where(item: dict) -> str:
    hosts = [h.get("host") or (h.get("peer_id") or "?")[:12] for h in item.get("holders") or []]
    parts = (["here"] if item.get("local") else []) + [h for h in hosts if h]
    return ", ".join(dict.fromkeys(parts)) or "-"


def _watched(w: dict | None) -> str | None:
    """[media] "▶ 42% (tv)" for continue watching, "✓" once watched."""
    if not w:
        return None
    if w.get("watched"):
        return "✓"
    if not w.get("resumable"):
        return None
    shown = f"{round(100 * w['progress'])}%" if w.get("progress") is not None else duration_label(w.get("position_s"))
    return f"▶ {shown}" + (f" ({w['host']})" if w.get("host") else "")


def render(args: argparse.Namespace, result: Any) -> None:
    action = args.action
    if action == "list":
        rows = [{**i, "se": episode_label(i), "dur": duration_label(i.get("duration_s")), "where": _where(i),
                 "seen": _watched(i.get("watch"))} for i in result]
        table(rows, [("title", "title"), ("year", "year"), ("se", "s/e"), ("dur", "duration"),
                     ("resolution", "video"), ("where", "where"), ("seen", "watched"), ("id", "id"), ("note", "note")],
              out=sys.stdout, empty="(no items: run `tva-agent library scan`)")
    elif action == "show":
        key_values([("title", result.get("title")), ("kind", result.get("kind")), ("year", result.get("year")),
                    ("episode", episode_label(result)), ("episode title", result.get("episode_title")),
                    ("part", result.get("part")), ("duration", duration_label(result.get("duration_s"))),
                    ("container", result.get("container")), ("video", result.get("video_codec")),
                    ("resolution", result.get("resolution")), ("audio", result.get("audio_codecs")),
                    ("subtitles", result.get("subtitle_codecs")), ("size", human_bytes(result.get("size_bytes"))),
                    ("path", result.get("path")), ("content", result.get("content")),
                    ("infohash", result.get("infohash")), ("where", _where(result)),
                    ("artwork", result.get("artwork")), ("title from", result.get("title_source")),
                    ("id", result.get("id")), ("note", result.get("note"))])
    elif action == "scan":
        print(f"{result['files_seen']} files: {result['probed']} probed, {result['unchanged']} unchanged,"
              f" {result['removed']} removed ({result['elapsed_s']:.1f} s)")
        refiner = result.get("refiner") or {}
        if refiner.get("calls") or refiner.get("state") == "disabled":
            print(f"title refiner: {refiner.get('state')}, {refiner.get('calls', 0)} calls"
                  + (f" — {refiner['reason']}" if refiner.get("reason") else ""))
        for n in result.get("notes", []):
            print(f"  note: {n['path']}: {n['note']}")
        if result.get("notes_total", 0) > len(result.get("notes", [])):
            print(f"  … {result['notes_total'] - len(result['notes'])} more notes")
        if result.get("error"):
            print(f"scan failed: {result['error']}", file=sys.stderr)
    elif action == "publish":
        print(result.get("message", ""))
    else:
        scan = result.get("scan") or {}
        refiner = result.get("refiner") or {}
        key_values([("local items", result.get("local_items")), ("fleet items", result.get("fleet_items")),
                    ("with notes", result.get("notes")), ("roots", result.get("roots")),
                    ("last scan", f"{scan.get('phase')} ({scan.get('files_seen', 0)} files)"),
                    ("title refiner", refiner.get("state", "off")
                     + (f" — {refiner['reason']}" if refiner.get("reason") else ""))])

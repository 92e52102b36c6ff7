"""The library as the agent serves it: scan, list, show, publish — for the daemon and the CLI alike.

``LibraryService`` ties the media shells (index, scanner, prober, refiner) to the agent: the
fleet's holdings come from ``agent.service.Service`` (synced into the index by difference when
the replicated state changed), ``publish`` goes through the daemon's ``TorrentManager`` exactly
as ``torrent add`` does, and the daemon's loop (``run``) scans at start, every
``library_scan_interval_ms`` and on request. Offline, the CLI builds one with ``open_offline``
and runs a scan in its own trio loop.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import trio

from media.ffmedia import FfmpegLimits, MediaProber
from media.library_index import HoldingKey, HoldingRow, LibraryIndex
from media.library_model import (
    LIMIT_MAX,
    Holder,
    Item,
    TorrentLink,
    link_for,
    name_of_content,
)
from media.library_scan import Scanner, ScanProgress
from media.refiner import Refiner
from media.title_parse import FROM_FILE_NAME, FROM_GUESSIT, KINDS, ParsedTitle, title_from_file_name
from media.titles import guess_content_title
from tva.errors import Conflict, DaemonUnavailable, InvalidInput, NotFound, TvaError

log = logging.getLogger("tva.library")

WHERE = ("all", "local", "fleet")
FLEET_TITLES_BATCH = 200
FLEET_TITLES_INLINE_MAX = 50  # a read parses this many new holdings itself (~10 ms each); the loop the rest
SYNC_CHECK_S = 1.0
LINKS_EVERY_ROUNDS = 5  # which payloads are torrents: asked of the engine every 5 s (publish refreshes at once)


class LibraryService:
    def __init__(self, cfg, service=None, *, torrents=None, links: Callable[[], list[TorrentLink]] | None = None,
                 refiner: Refiner | None = None) -> None:
        self.cfg = cfg
        self.service = service  # agent.service.Service: the fleet's holdings and liveness (None: none)
        self.torrents = torrents  # the daemon's TorrentManager (None offline)
        self._links = links
        base = Path(cfg.state_dir) / "library"
        self.index = LibraryIndex(base / "index.sqlite")
        self.prober = MediaProber(base / "artwork", FfmpegLimits(concurrency_max=cfg.ffmpeg_concurrency_max))
        self.refiner = refiner if refiner is not None else Refiner(
            cfg.title_model_dir, base / "refined-titles.sqlite", call_timeout_s=cfg.refiner_timeout_ms / 1000)
        self.scanner = Scanner(self.index, self.prober, self.refiner, self.roots())
        self.progress = ScanProgress()
        self._scan_wanted = trio.Event()
        self._scan_full = False
        self._synced_snapshot: object = None
        self._torrent_links: list[TorrentLink] = []

    def roots(self) -> list[str]:
        roots = [str(r) for r in self.cfg.media_roots] or [str(self.cfg.media_dir())]
        return list(dict.fromkeys(os.path.abspath(os.path.expanduser(r)) for r in roots))

    async def aclose(self) -> None:
        await self.refiner.aclose()
        self.index.close()

    # --- scanning -----------------------------------------------------------------------------------

    async def scan_now(self, *, full: bool = False, on_planned=None) -> dict:
        """Scan in the caller's trio loop and return the report (the CLI offline, tests, the daemon loop)."""
        if self.progress.running:
            raise Conflict("a scan is already running", hint="`tva-agent library scan` shows its progress")
        self.progress = ScanProgress()
        await self.scanner.scan(self.progress, full=full, on_planned=on_planned)
        return self.progress.to_json()

    def request_scan(self, full: bool = False) -> dict:
        """The daemon: start a scan now (or join the one running); answer with its progress."""
        if not self.progress.running:
            self._scan_full = self._scan_full or full
            self._scan_wanted.set()
            self.progress = ScanProgress(running=True, phase="starting", full=full)
        return self.progress.to_json()

    def scan_status(self) -> dict:
        return self.progress.to_json()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The daemon's library loop: scans (at start, periodically, on request) and fleet titles.
        A supervised component: it may be restarted, so the index and refiner stay open across runs
        (the daemon calls ``aclose`` when it stops)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._fleet_loop)
            task_status.started()
            self.request_scan()
            interval_s = self.cfg.library_scan_interval_ms / 1000
            while True:
                with trio.move_on_after(interval_s if interval_s > 0 else float("inf")):
                    await self._scan_wanted.wait()
                self._scan_wanted = trio.Event()
                full, self._scan_full = self._scan_full, False
                self.progress.running = False  # the placeholder of request_scan
                try:
                    report = await self.scan_now(full=full)
                    log.info("library scan: %d files, %d probed, %d unchanged, %d removed, %d notes",
                             report["files_seen"], report["probed"], report["unchanged"], report["removed"],
                             report["notes_total"])
                except (OSError, RuntimeError, ValueError, sqlite3.Error) as exc:  # disk or index: retry later
                    log.exception("library scan failed: %s", exc)

    # --- the fleet's holdings -------------------------------------------------------------------------

    def sync_fleet(self) -> None:
        """Bring the index's holdings up to the replicated state (cheap when nothing changed)."""
        if self.service is None:
            return
        snap = self.service.snapshot()
        if snap is self._synced_snapshot:
            return
        rows: dict[HoldingKey, HoldingRow] = {
            (h["peer_id"], h["content"]): (h["infohash"], h["host"], h["size_bytes"], h["state"], h["policy"])
            for h in self.service.holdings()}
        self.index.sync_holdings(rows)
        self._synced_snapshot = snap

    def _title_new_holdings(self) -> None:
        """A few holdings not parsed yet are parsed before a read answers, so a fresh holding shows
        its real title at once; a flood of them keeps provisional titles until the loop gets there."""
        todo = self.index.untitled_contents(FLEET_TITLES_INLINE_MAX + 1)
        if 0 < len(todo) <= FLEET_TITLES_INLINE_MAX:
            self.index.put_fleet_titles([(c, guess_content_title(c, ih)) for c, ih in todo])

    async def title_fleet(self, *, batches_max: int | None = None) -> int:
        """Parse the titles of holdings not parsed yet (guessit in a thread, in batches)."""
        done = batches = 0
        while batches_max is None or batches < batches_max:
            todo = self.index.untitled_contents(FLEET_TITLES_BATCH)
            if not todo:
                break
            parsed = await trio.to_thread.run_sync(lambda todo=todo: [(c, guess_content_title(c, ih)) for c, ih in todo])
            self.index.put_fleet_titles(parsed)
            done += len(parsed)
            batches += 1
        return done

    async def _fleet_loop(self) -> None:
        rounds = 0
        while True:
            try:
                self.sync_fleet()
                await self.title_fleet(batches_max=1)
                if rounds % LINKS_EVERY_ROUNDS == 0:
                    await self.refresh_links()
            except (OSError, RuntimeError, ValueError, sqlite3.Error, TvaError):
                log.exception("library: syncing the fleet's holdings failed; retrying")
            rounds += 1
            await trio.sleep(SYNC_CHECK_S)

    async def refresh_links(self) -> None:
        """Which local payloads are torrents this host seeds (their holdings), from the engine."""
        engine = getattr(self.torrents, "engine", None)
        entries = getattr(self.torrents, "entries", {}) or {}
        if engine is None:
            return
        links = []
        for s in await engine.samples():
            e = entries.get(s.infohash)
            if e is not None and s.save_path and s.name:
                links.append(TorrentLink(os.path.join(s.save_path, s.name), e.content_id, s.infohash))
        self._torrent_links = links

    def links(self) -> list[TorrentLink]:
        return self._links() if self._links is not None else self._torrent_links

    # --- reads -------------------------------------------------------------------------------------

    def items(self, *, query: str | None = None, kind: str | None = None, where: str = "all",
              limit: int | None = None) -> list[dict]:
        if kind is not None and kind not in KINDS:
            raise InvalidInput(f"kind {kind!r:.40} is unknown", hint="movie, episode or other")
        if where not in WHERE:
            raise InvalidInput(f"where {where!r:.40} is unknown", hint="all, local or fleet")
        if limit is not None and not 0 < limit <= LIMIT_MAX:
            raise InvalidInput(f"limit must be 1..{LIMIT_MAX}")
        self.sync_fleet()
        self._title_new_holdings()
        holders = self._holders()
        links = self.links()
        out: list[Item] = []
        shown: set[str] = set()
        for item in self.index.local_items(query, kind):
            item = self._with_holding(item, links, holders)
            if where == "fleet" and not item.holders:
                continue
            if item.content:
                shown.add(item.content)  # one row per content: the local file, with its holders
            out.append(item)
        if where in ("all", "fleet"):
            out.extend(self._fleet_items(holders, shown, query, kind))
        out.sort(key=_sort_key)
        rows = self._with_watch([i.to_json() for i in out])
        # [media] "Continue watching" first: items stopped part-way, the most recently watched first.
        rows.sort(key=lambda r: -r["watch"]["updated_ms"] if r["watch"] and r["watch"]["resumable"] else 1)
        return rows[:limit]

    def item(self, key: str) -> dict:
        if not isinstance(key, str) or not key or len(key) > 4096 or "\x00" in key:
            raise InvalidInput("an item is an id, a content id or a path")
        self.sync_fleet()
        self._title_new_holdings()
        holders = self._holders()
        found = self.index.local_item(key) or self.index.local_item(os.path.abspath(key))
        if found is None:
            for root in self.roots():
                found = found or self.index.local_item(os.path.join(root, key))
        if found is not None:
            return self._with_watch([self._with_holding(found, self.links(), holders).to_json()])[0]
        for item in self._fleet_items(holders, set(), None, None, only=key):
            return self._with_watch([item.to_json()])[0]
        raise NotFound(f"no library item {key[:80]!r}", hint="`tva-agent library list` shows ids and content ids")

    def _with_watch(self, rows: list[dict]) -> list[dict]:
        """[media] Each item's watch state (crdt.watch: the latest of any host's), under ``watch``."""
        states = {}
        if self.service is not None:
            from crdt.watch import latest_watch_states

            states = latest_watch_states(self.service.state.feeds)
        for row in rows:
            found = states.get(row.get("content") or row["id"]) or states.get(row["id"])
            row["watch"] = found[1].to_json(self.service._name(found[0])) if found else None
        return rows

    def local_file_for(self, key: str) -> tuple[str, Item] | None:
        """[media] The file this host serves for ``key`` — an item id, or a content id whose payload is
        here (a directory payload: its largest video file) — with its item; None when not held here."""
        found = self.index.local_item(key)
        if found is not None and found.path:
            return found.path, found
        link = next((ln for ln in self.links() if ln.content_id == key), None)
        if link is None:
            return None
        found = self.index.local_item(link.path)
        if found is not None and found.path:
            return found.path, found
        inside = [i for i in self.index.local_items() if i.path and link_for(i.path, [link]) is not None]
        videos = [i for i in inside if i.media_type == "video"] or inside
        best = max(videos, key=lambda i: (i.size_bytes or 0, i.path or ""), default=None)
        return (best.path, best) if best is not None and best.path else None

    def _holders(self) -> dict[str, list[tuple[str, Holder, str, int | None]]]:
        holders = self.index.holders()
        liveness = self.service.snapshot().liveness if self.service is not None else {}
        return {c: [(ih, replace(h, liveness=liveness.get(h.peer_id)), p, s) for ih, h, p, s in rows]
                for c, rows in holders.items()}

    def _with_holding(self, item: Item, links: list[TorrentLink], holders: dict) -> Item:
        link = link_for(item.path or "", links)
        if link is None:
            return item
        return replace(item, content=link.content_id, infohash=link.infohash,
                       holders=tuple(h for _ih, h, _p, _s in holders.get(link.content_id, ())))

    def _fleet_items(self, holders: dict, shown: set[str], query: str | None, kind: str | None,
                     only: str | None = None) -> Iterator[Item]:
        titles = self.index.fleet_titles()
        q = query.casefold() if query else None
        for content, rows in holders.items():
            if content in shown or (only is not None and content != only):
                continue
            infohash = rows[0][0]
            parsed = titles.get(content) or ParsedTitle(
                kind="other", title=title_from_file_name(name_of_content(content, infohash) + ".x"),
                title_source=FROM_FILE_NAME)
            if kind is not None and parsed.kind != kind:
                continue
            if q is not None and not any(q in (t or "").casefold() for t in (parsed.title, parsed.episode_title,
                                                                                  content)):
                continue
            yield Item(id=content, kind=parsed.kind, title=parsed.title,
                       title_source=FROM_GUESSIT if content in titles else FROM_FILE_NAME, year=parsed.year,
                       season=parsed.season, episode=parsed.episode, episode_last=parsed.episode_last,
                       part=parsed.part, episode_title=parsed.episode_title,
                       size_bytes=max((s or 0) for *_x, s in rows) or None, content=content, infohash=infohash,
                       holders=tuple(h for _ih, h, _p, _s in rows))

    def status(self) -> dict:
        self.sync_fleet()
        return {**self.index.counts(), "roots": self.roots(), "scan": self.progress.to_json(),
                "refiner": self.refiner.status()}

    # --- publish ----------------------------------------------------------------------------------

    async def publish(self, key: str, policy: str | None) -> dict:
        """A local item becomes a holding: a torrent of it, seeded by the engine (as `torrent add`)."""
        if self.torrents is None:
            raise DaemonUnavailable("publishing needs the running daemon (it owns the torrent engine)",
                                    hint="start it with: tva-agent run")
        item = self.item(key)
        if not item["local"]:
            raise Conflict(f"{key[:80]!r} is not held here", hint="only a local item can be published")
        if item.get("content"):
            return {"message": f"{item['title']} is already published as {item['content']}", "item": item["id"],
                    "content": item["content"], "infohash": item["infohash"], "kind": "seed", "policy": None,
                    "already": True}
        if item.get("note") and item.get("duration_s") is None:
            log.info("publishing %s although ffprobe could not read it (%s)", item["path"], item["note"])
        result = await self.torrents.add(source=item["path"], policy=policy)
        await self.refresh_links()
        return {**result, "item": item["id"], "already": False}


def _sort_key(item: Item) -> tuple:
    return ((item.title or "").casefold(), item.year or 0, item.season or 0, item.episode or 0, item.part or 0,
            item.path or item.content or "")


@contextmanager
def open_offline(cfg) -> Iterator[LibraryService]:
    """The library without a daemon: the state dir's holdings (if a fleet exists) and the index."""
    from agent.service import Service
    from agent.state import NodeState
    from agent.store import StateStore

    store = StateStore(cfg.state_dir)
    service = Service(NodeState.load(store), media_dir=cfg.media_dir()) if NodeState.exists(store) else None
    links = _offline_links(store, cfg) if service is not None else []
    library = LibraryService(cfg, service, links=lambda: links)
    try:
        yield library
    finally:
        library.index.close()


def _offline_links(store, cfg) -> list[TorrentLink]:
    """Torrents this host added, from the torrent manager's state file (no engine offline)."""
    from agent.torrent_index import INDEX_FILE, decode_index
    from media.torrent_input import parse_torrent

    try:
        raw = store.read(INDEX_FILE)
        entries = decode_index(raw) if raw is not None else {}
    except Exception as exc:  # a damaged torrent index must not break `library list`
        log.info("library: torrent index unreadable offline (%s)", exc)
        return []
    links = []
    for e in entries.values():
        if e.torrent is None:
            continue
        base = cfg.media_dir() if e.save_dir is None else Path(cfg.media_dir()) / e.save_dir
        links.append(TorrentLink(os.path.join(base, parse_torrent(e.torrent).name), e.content_id, e.infohash))
    return links


def items_query(params: dict[str, Any]) -> dict[str, Any]:
    """CLI/API parameters → ``items`` keyword arguments (one place for both)."""
    return {"query": params.get("query") or None, "kind": params.get("kind") or None,
            "where": params.get("where") or "all", "limit": params.get("limit")}

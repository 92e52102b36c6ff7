"""The library scan (trio shell): walk the media roots, then title, probe and grab only what changed.

1. **Walk** (a worker thread): ``os.scandir`` over every root, following directory symlinks but
   never into a directory already visited (a symlink loop gets a note, not a hang); an
   unreadable directory, a broken or looping link, a file gone between listing and ``stat`` —
   each a note, and the walk goes on. Nothing but directory entries and ``stat`` is read.
2. **Plan** (pure, ``media.library_model.plan_scan``): compare size + mtime with the index.
3. **Process** the new and changed files with a few tasks at once (the prober's limiter bounds
   the ffmpeg processes): guessit in a thread, ffprobe, the frame grab, the refiner for
   degenerate names; rows are written in batches. A file ffmpeg cannot read keeps its item,
   with a note; a file that vanished meanwhile is dropped, with a note in the report.
"""

from __future__ import annotations

import errno
import logging
import os
import stat as stat_mod
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import trio

from media.ffmedia import MediaProber, MediaUnreadable
from media.library_index import LibraryIndex
from media.library_model import (
    AUDIO,
    SUBTITLE,
    FileStat,
    container_of,
    item_id_for,
    media_type_of,
    plan_scan,
)
from media.refiner import Refiner
from media.title_parse import OTHER
from media.titles import guess_title, resolve_title

log = logging.getLogger("tva.library")

NOTES_MAX = 1000  # per scan report; the count says how many there were
BATCH_ROWS = 200
DIRS_MAX = 1_000_000


@dataclass
class ScanProgress:
    """Live counters of the running (or last) scan: ``library scan`` draws its bar from these."""

    running: bool = False
    phase: str = "idle"  # walking | probing | done | failed
    full: bool = False
    files_seen: int = 0
    to_probe: int = 0
    probed: int = 0
    unchanged: int = 0
    removed: int = 0
    retitled: int = 0
    notes_total: int = 0
    notes: list[dict] = field(default_factory=list)
    started_ms: int = 0
    finished_ms: int | None = None
    error: str | None = None
    refiner: dict = field(default_factory=dict)

    def note(self, path: str, text: str) -> None:
        self.notes_total += 1
        if len(self.notes) < NOTES_MAX:
            self.notes.append({"path": path, "note": text})

    def to_json(self) -> dict:
        end = self.finished_ms if self.finished_ms is not None else _now_ms()
        return {"running": self.running, "phase": self.phase, "full": self.full, "files_seen": self.files_seen,
                "to_probe": self.to_probe, "probed": self.probed, "unchanged": self.unchanged,
                "removed": self.removed, "retitled": self.retitled, "notes_total": self.notes_total,
                "notes": list(self.notes), "elapsed_s": round(max(0, end - self.started_ms) / 1000, 3)
                if self.started_ms else 0.0, "error": self.error, "refiner": dict(self.refiner)}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def walk_roots(roots: list[str], progress: ScanProgress) -> list[FileStat]:
    """Every media file under the roots (blocking; run it in a thread). Problems become notes."""
    found: list[FileStat] = []
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    for root in roots:
        root = os.path.abspath(root)
        try:
            st = os.stat(root)
        except OSError as exc:
            progress.note(root, f"media root unreadable: {exc.strerror}")
            continue
        if not stat_mod.S_ISDIR(st.st_mode):
            progress.note(root, "media root is not a directory")
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        stack = [root]
        while stack and len(seen_dirs) < DIRS_MAX:
            directory = stack.pop()
            try:
                with os.scandir(directory) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                progress.note(directory, f"directory unreadable: {exc.strerror}")
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue  # hidden: our own temporaries, clients' partials, .DS_Store…
                try:
                    st = entry.stat(follow_symlinks=True)
                except OSError as exc:
                    why = {errno.ELOOP: "symlink loop", errno.ENOENT: "broken symlink or vanished"}.get(
                        exc.errno or 0, exc.strerror)
                    progress.note(entry.path, f"skipped: {why}")
                    continue
                if stat_mod.S_ISDIR(st.st_mode):
                    key = (st.st_dev, st.st_ino)
                    if key in seen_dirs:
                        if entry.is_symlink():
                            progress.note(entry.path, "skipped: symlink loop (a directory already walked)")
                        continue
                    seen_dirs.add(key)
                    stack.append(entry.path)
                elif stat_mod.S_ISREG(st.st_mode):
                    media_type = media_type_of(entry.name)
                    if media_type is None or (st.st_dev, st.st_ino) in seen_files:
                        continue  # not media, or the same file reached through another link
                    seen_files.add((st.st_dev, st.st_ino))
                    rel = os.path.relpath(entry.path, root).replace(os.sep, "/")
                    found.append(FileStat(entry.path, rel, root, st.st_size, st.st_mtime_ns, media_type))
                    progress.files_seen += 1
    return found


class Scanner:
    def __init__(self, index: LibraryIndex, prober: MediaProber, refiner: Refiner | None, roots: list[str],
                 *, clock_ms: Callable[[], int] = _now_ms) -> None:
        self.index = index
        self.prober = prober
        self.refiner = refiner
        self.roots = roots
        self.clock_ms = clock_ms
        self._guess_limiter = trio.CapacityLimiter(1)  # guessit holds the GIL: one thread is enough

    async def scan(self, progress: ScanProgress, *, full: bool = False,
                   on_planned: Callable[[list[FileStat]], None] | None = None) -> ScanProgress:
        """One scan, filling ``progress`` as it goes (``on_planned`` sees the files about to be probed)."""
        progress.running, progress.phase, progress.full = True, "walking", full
        progress.started_ms = self.clock_ms()
        try:
            seen = await trio.to_thread.run_sync(walk_roots, self.roots, progress)
            refiner_on = self.refiner is not None and self.refiner.enabled
            plan = plan_scan(self.index.file_stats(), seen, full=full, refiner_on=refiner_on,
                             fallback_titled=self.index.fallback_titled() if refiner_on else frozenset())
            progress.unchanged, progress.to_probe = plan.unchanged, len(plan.to_probe)
            for item_id in self.index.remove_files(plan.removed):
                self.prober.forget_artwork(item_id)
            progress.removed = len(plan.removed)
            progress.phase = "probing"
            if on_planned is not None:
                on_planned(list(plan.to_probe))
            await self._process_all(plan.to_probe, progress)
            await self._retitle(plan.retitle, progress)
            progress.phase = "done"
        except BaseException as exc:
            progress.phase = "failed"
            progress.error = f"{type(exc).__name__}: {exc}"[:300] if not isinstance(exc, trio.Cancelled) else "cancelled"
            raise
        finally:
            progress.running = False
            progress.finished_ms = self.clock_ms()
            progress.refiner = self.refiner.status() if self.refiner is not None else {"state": "off"}
        return progress

    async def _process_all(self, files: tuple[FileStat, ...], progress: ScanProgress) -> None:
        send, receive = trio.open_memory_channel[FileStat](0)
        rows: list[dict] = []
        vanished: list[str] = []

        def flush() -> None:
            if rows:
                self.index.put_files(rows)
                rows.clear()
            if vanished:
                for item_id in self.index.remove_files(vanished):
                    self.prober.forget_artwork(item_id)
                vanished.clear()

        async def worker(receive: trio.MemoryReceiveChannel[FileStat]) -> None:
            async with receive:
                async for f in receive:
                    row = await self._process(f, progress)
                    if row is None:
                        vanished.append(f.path)
                    else:
                        rows.append(row)
                    progress.probed += 1
                    if len(rows) >= BATCH_ROWS:
                        flush()

        try:
            async with trio.open_nursery() as nursery:
                # One more task than ffmpeg slots: guessit (CPU) overlaps the probes (processes).
                for _ in range(self.prober.limits.concurrency_max + 1):
                    nursery.start_soon(worker, receive.clone())
                await receive.aclose()
                async with send:
                    for f in files:
                        await send.send(f)
        finally:
            flush()  # what was done stays done, even when the scan is cancelled

    async def _process(self, f: FileStat, progress: ScanProgress) -> dict | None:
        item_id = item_id_for(f.path)
        parsed = await trio.to_thread.run_sync(guess_title, f.rel_path, limiter=self._guess_limiter)
        notes: list[str] = []
        info = None
        try:
            info = await self.prober.probe(f.path)
        except MediaUnreadable as exc:
            notes.append(exc.note)
        artwork = None
        if info is not None and info.has_picture and f.media_type != SUBTITLE:
            try:
                artwork = await self.prober.artwork(f.path, info, item_id)
            except MediaUnreadable as exc:
                notes.append(exc.note)
        if not os.path.lexists(f.path):
            progress.note(f.path, "vanished during the scan")
            return None
        if notes:
            progress.note(f.path, notes[0])
        embedded = info.embedded_title if info is not None else None
        title, source = await resolve_title(parsed, f.rel_path, f.media_type, embedded, self.refiner)
        kind = OTHER if f.media_type in (AUDIO, SUBTITLE) else parsed.kind
        if f.media_type == AUDIO:  # "01 - Time.flac": a track number, not an episode
            parsed = replace(parsed, season=None, episode=None, episode_last=None)
        return {
            "path": f.path, "id": item_id, "root": f.root, "rel_path": f.rel_path, "size_bytes": f.size_bytes,
            "mtime_ns": f.mtime_ns, "media_type": f.media_type, "kind": kind, "title": title,
            "title_source": source, "year": parsed.year, "season": parsed.season, "episode": parsed.episode,
            "episode_last": parsed.episode_last, "part": parsed.part, "episode_title": parsed.episode_title,
            "duration_s": info.duration_s if info else None, "container": container_of(f.path),
            "video_codec": info.video_codec if info else None,
            "audio_codecs": info.audio_codecs if info else (), "subtitle_codecs": info.subtitle_codecs if info else (),
            "width": info.width if info else None, "height": info.height if info else None,
            "artwork": artwork, "note": "; ".join(notes) or None, "scanned_ms": self.clock_ms()}

    async def _retitle(self, files: tuple[FileStat, ...], progress: ScanProgress) -> None:
        """Unchanged files that only got a fallback title: the refiner (now on) may name them."""
        for f in files:
            if self.refiner is None or not self.refiner.enabled:
                return
            parsed = await trio.to_thread.run_sync(guess_title, f.rel_path, limiter=self._guess_limiter)
            item = self.index.local_item(f.path)
            title, source = await resolve_title(parsed, f.rel_path, f.media_type, None, self.refiner)
            if item is not None and source != item.title_source:
                self.index.retitle(f.path, title, source)
                progress.retitled += 1

"""The library's values and decisions (pure): what a file is, what a rescan must redo, what an item
looks like to the CLI and the API.

The shells (``media.library_scan``, ``media.library_index``) walk, probe and store; this module
decides. ``plan_scan`` is the heart of the incremental rescan: a file whose size and mtime match
the index is left alone — its contents are not touched — and only new or changed files are
probed again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

VIDEO, AUDIO, SUBTITLE = "video", "audio", "subtitle"
VIDEO_EXTENSIONS = frozenset({
    "mkv", "mp4", "m4v", "avi", "mov", "wmv", "mpg", "mpeg", "ts", "m2ts", "mts", "vob", "webm", "flv", "ogv",
    "3gp", "divx", "iso"})
AUDIO_EXTENSIONS = frozenset({"flac", "mp3", "m4a", "aac", "ogg", "opus", "wav", "wma", "alac", "ape", "mka", "dts",
                              "ac3"})
SUBTITLE_EXTENSIONS = frozenset({"srt", "ass", "ssa", "vtt", "sub", "idx", "sup"})
# Partial downloads of torrent clients: payloads become items once complete.
PARTIAL_SUFFIXES = (".part", ".!qb", ".!ut", ".crdownload", ".tmp")
ITEM_ID_PREFIX = "i"
ITEM_ID_HEX = 12
LIMIT_MAX = 100_000


def media_type_of(name: str) -> str | None:
    """video | audio | subtitle for a media file name; None for anything else (or a partial)."""
    lower = name.lower()
    if lower.startswith(".") or lower.endswith(PARTIAL_SUFFIXES) or "." not in lower:
        return None
    ext = lower.rsplit(".", 1)[1]
    if ext in VIDEO_EXTENSIONS:
        return VIDEO
    if ext in AUDIO_EXTENSIONS:
        return AUDIO
    if ext in SUBTITLE_EXTENSIONS:
        return SUBTITLE
    return None


def container_of(name: str) -> str | None:
    return name.rsplit(".", 1)[1].lower() if "." in name else None


def item_id_for(path: str) -> str:
    """A short stable id for a local file (its absolute path), e.g. ``i3f9a0c21b7de``."""
    return ITEM_ID_PREFIX + hashlib.sha1(path.encode("utf-8", "surrogateescape")).hexdigest()[:ITEM_ID_HEX]


def looks_like_item_id(text: str) -> bool:
    return bool(re.fullmatch(f"{ITEM_ID_PREFIX}[0-9a-f]{{{ITEM_ID_HEX}}}", text))


# --- the incremental scan -------------------------------------------------------------------------


@dataclass(frozen=True)
class FileStat:
    """One media file as the walk saw it (no byte of its contents read)."""

    path: str  # absolute, as walked
    rel_path: str  # relative to its media root, "/"-separated: what titles are parsed from
    root: str
    size_bytes: int
    mtime_ns: int
    media_type: str


@dataclass(frozen=True)
class ScanPlan:
    to_probe: tuple[FileStat, ...]  # new or changed: titles, probe and artwork again
    unchanged: int
    removed: tuple[str, ...]  # in the index, gone from disk
    retitle: tuple[FileStat, ...] = ()  # unchanged, but only a fallback title so far (refiner now on)


def plan_scan(previous: Mapping[str, tuple[int, int]], seen: Iterable[FileStat], *, full: bool = False,
              fallback_titled: frozenset[str] = frozenset(), refiner_on: bool = False) -> ScanPlan:
    """What a scan must do, from the index (path → (size, mtime_ns)) and what the walk saw."""
    to_probe: list[FileStat] = []
    retitle: list[FileStat] = []
    unchanged = 0
    seen_paths: set[str] = set()
    for f in seen:
        seen_paths.add(f.path)
        if full or previous.get(f.path) != (f.size_bytes, f.mtime_ns):
            to_probe.append(f)
        else:
            unchanged += 1
            if refiner_on and f.path in fallback_titled:
                retitle.append(f)
    removed = tuple(sorted(p for p in previous if p not in seen_paths))
    return ScanPlan(tuple(to_probe), unchanged, removed, tuple(retitle))


# --- fleet items -------------------------------------------------------------------------------------


def name_of_content(content_id: str, infohash: str | None) -> str:
    """The release name inside a content id (``Heat.1995.1080p-c0ffee12`` → ``Heat.1995.1080p``).

    Content ids made by ``media.torrent_input.content_id_for`` end in ``-`` and the infohash's
    first 8 hex digits; ids chosen by hand are used whole.
    """
    if infohash and content_id.endswith("-" + infohash[:8].lower()) and len(content_id) > 9:
        return content_id[:-9]
    return content_id


@dataclass(frozen=True)
class Holder:
    peer_id: str
    host: str | None
    state: str  # complete | partial
    liveness: str | None = None

    def to_json(self) -> dict:
        return {"peer_id": self.peer_id, "host": self.host, "state": self.state, "liveness": self.liveness}


@dataclass(frozen=True)
class TorrentLink:
    """A torrent this host added: the file or directory (absolute) it covers, and its holding."""

    path: str
    content_id: str
    infohash: str


def link_for(path: str, links: Iterable[TorrentLink]) -> TorrentLink | None:
    """The torrent whose payload contains ``path`` (the file itself, or a directory above it)."""
    for link in links:
        if path == link.path or path.startswith(link.path.rstrip("/") + "/"):
            return link
    return None


# --- what the CLI and the API show (the README's --json contract) -------------------------------------

JSON_FIELDS = ("id", "kind", "media_type", "title", "title_source", "year", "season", "episode", "episode_last",
               "part", "episode_title", "duration_s", "container", "video_codec", "audio_codecs",
               "subtitle_codecs", "resolution", "width", "height", "size_bytes", "artwork", "local", "path",
               "content", "infohash", "holders", "note")


@dataclass(frozen=True)
class Item:
    id: str
    kind: str
    title: str | None
    media_type: str | None = None
    title_source: str | None = None
    year: int | None = None
    season: int | None = None
    episode: int | None = None
    episode_last: int | None = None
    part: int | None = None
    episode_title: str | None = None
    duration_s: float | None = None
    container: str | None = None
    video_codec: str | None = None
    audio_codecs: tuple[str, ...] = ()
    subtitle_codecs: tuple[str, ...] = ()
    width: int | None = None
    height: int | None = None
    size_bytes: int | None = None
    artwork: str | None = None
    path: str | None = None
    content: str | None = None
    infohash: str | None = None
    holders: tuple[Holder, ...] = field(default=())
    note: str | None = None

    @property
    def local(self) -> bool:
        return self.path is not None

    def to_json(self) -> dict:
        out = {}
        for name in JSON_FIELDS:
            if name == "local":
                out[name] = self.local
            elif name == "resolution":
                out[name] = f"{self.width}x{self.height}" if self.width and self.height else None
            elif name == "holders":
                out[name] = [h.to_json() for h in self.holders]
            else:
                value = getattr(self, name)
                out[name] = list(value) if isinstance(value, tuple) else value
        return out


def episode_label(item: Mapping) -> str | None:
    """``S01E02``, ``S01E01-E02``, ``E245`` (absolute) for tables; None for a film."""
    season, episode, last = item.get("season"), item.get("episode"), item.get("episode_last")
    if episode is None and season is None:
        return None
    text = f"S{season:02d}" if season is not None else ""
    if episode is not None:
        text += f"E{episode:02d}" + (f"-E{last:02d}" if last is not None else "")
    return text


def duration_label(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"

"""The library's embedded index: one SQLite file in the state dir (standard library only).

A local cache, never replicated: rebuilt from disk (the scan) and from the fleet's holdings (the
replicated state). So a damaged or foreign-version file is simply set aside and built anew, with
a log line. Three tables: ``files`` (local media, one row per file, with the size and mtime
that make rescans incremental), ``holdings`` (every host's holdings, synced by difference) and
``fleet_titles`` (a holding's content id parsed once, kept while anyone holds it).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from media.library_model import Holder, Item
from media.title_parse import ParsedTitle

log = logging.getLogger("tva.library")

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE, root TEXT NOT NULL, rel_path TEXT NOT NULL,
    size_bytes INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, media_type TEXT NOT NULL,
    kind TEXT NOT NULL, title TEXT, title_source TEXT, year INTEGER, season INTEGER, episode INTEGER,
    episode_last INTEGER, part INTEGER, episode_title TEXT, duration_s REAL, container TEXT,
    video_codec TEXT, audio_codecs TEXT, subtitle_codecs TEXT, width INTEGER, height INTEGER,
    artwork TEXT, note TEXT, scanned_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS holdings (
    peer_id TEXT NOT NULL, content TEXT NOT NULL, infohash TEXT NOT NULL, host TEXT, size_bytes INTEGER,
    state TEXT NOT NULL, policy TEXT, PRIMARY KEY (peer_id, content));
CREATE INDEX IF NOT EXISTS holdings_by_content ON holdings (content);
CREATE TABLE IF NOT EXISTS fleet_titles (
    content TEXT PRIMARY KEY, kind TEXT NOT NULL, title TEXT, year INTEGER, season INTEGER, episode INTEGER,
    episode_last INTEGER, part INTEGER, episode_title TEXT);
"""
FILE_COLUMNS = ("path", "id", "root", "rel_path", "size_bytes", "mtime_ns", "media_type", "kind", "title",
                "title_source", "year", "season", "episode", "episode_last", "part", "episode_title",
                "duration_s", "container", "video_codec", "audio_codecs", "subtitle_codecs", "width", "height",
                "artwork", "note", "scanned_ms")
TITLE_COLUMNS = ("kind", "title", "year", "season", "episode", "episode_last", "part", "episode_title")
HoldingKey = tuple[str, str]  # (peer_id, content)
HoldingRow = tuple[str, str | None, int, str, str]  # (infohash, host, size_bytes, state, policy)


def _matches(query: str, *fields: object) -> int:
    # Case-insensitive for every script (SQLite's LIKE folds ASCII only: "amélie" ≠ "AMÉLIE").
    return int(any(isinstance(f, str) and query in f.casefold() for f in fields))


class LibraryIndex:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = self._open()
        except sqlite3.DatabaseError as exc:
            log.warning("library index %s unusable (%s): rebuilding it from disk and holdings", path, exc)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            self.db = self._open()
        self._holdings: dict[HoldingKey, HoldingRow] = {
            (r[0], r[1]): tuple(r[2:]) for r in self.db.execute(  # type: ignore[misc]
                "SELECT peer_id, content, infohash, host, size_bytes, state, policy FROM holdings")}

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                log.info("library index has format %s, this build %s: rebuilding", version, SCHEMA_VERSION)
                db.executescript("DROP TABLE IF EXISTS files; DROP TABLE IF EXISTS holdings;"
                                 " DROP TABLE IF EXISTS fleet_titles;")
            db.executescript(SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("SELECT count(*) FROM files").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        db.create_function("matches", -1, _matches, deterministic=True)
        return db

    def close(self) -> None:
        self.db.close()

    # --- local files ----------------------------------------------------------------------------

    def file_stats(self) -> dict[str, tuple[int, int]]:
        """path → (size, mtime_ns): what the incremental scan compares the walk against."""
        return {p: (s, m) for p, s, m in self.db.execute("SELECT path, size_bytes, mtime_ns FROM files")}

    def fallback_titled(self) -> frozenset[str]:
        return frozenset(r[0] for r in self.db.execute("SELECT path FROM files WHERE title_source = 'file name'"))

    def put_files(self, rows: Iterable[Mapping[str, object]]) -> None:
        marks = ", ".join("?" for _ in FILE_COLUMNS)
        data = [tuple(_sql_value(row.get(c)) for c in FILE_COLUMNS) for row in rows]
        with self.db:
            # A re-created file may reuse an id (same path): replace by path.
            self.db.executemany(f"INSERT OR REPLACE INTO files ({', '.join(FILE_COLUMNS)}) VALUES ({marks})", data)

    def retitle(self, path: str, title: str, source: str) -> None:
        with self.db:
            self.db.execute("UPDATE files SET title = ?, title_source = ? WHERE path = ?", (title, source, path))

    def remove_files(self, paths: Iterable[str]) -> list[str]:
        """Drop rows; returns the ids that went (their artwork goes with them)."""
        gone = []
        with self.db:
            for p in paths:
                row = self.db.execute("SELECT id FROM files WHERE path = ?", (p,)).fetchone()
                if row:
                    gone.append(row[0])
                    self.db.execute("DELETE FROM files WHERE path = ?", (p,))
        return gone

    def local_items(self, query: str | None = None, kind: str | None = None) -> Iterator[Item]:
        sql, args = "SELECT * FROM files WHERE 1", []
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        if query:
            sql += " AND matches(?, title, episode_title, rel_path)"
            args.append(query.casefold())
        cur = self.db.execute(sql + " ORDER BY title, year, season, episode, part, rel_path", args)
        names = [d[0] for d in cur.description]
        for row in cur:
            yield _file_item(dict(zip(names, row, strict=True)))

    def local_item(self, key: str) -> Item | None:
        row = self.db.execute("SELECT * FROM files WHERE id = ? OR path = ? LIMIT 1", (key, key))
        names = [d[0] for d in row.description]
        found = row.fetchone()
        return _file_item(dict(zip(names, found, strict=True))) if found else None

    def counts(self) -> dict[str, int]:
        files = self.db.execute("SELECT count(*), count(note) FROM files").fetchone()
        fleet = self.db.execute("SELECT count(DISTINCT content) FROM holdings").fetchone()
        return {"local_items": files[0], "notes": files[1], "fleet_items": fleet[0]}

    # --- fleet holdings ---------------------------------------------------------------------------

    def sync_holdings(self, current: Mapping[HoldingKey, HoldingRow]) -> int:
        """Make the holdings table equal ``current`` by difference; returns how many rows changed."""
        gone = [k for k in self._holdings if k not in current]
        changed = [(k, v) for k, v in current.items() if self._holdings.get(k) != v]
        if not gone and not changed:
            return 0
        with self.db:
            self.db.executemany("DELETE FROM holdings WHERE peer_id = ? AND content = ?", gone)
            self.db.executemany("INSERT OR REPLACE INTO holdings VALUES (?, ?, ?, ?, ?, ?, ?)",
                                [(k[0], k[1], *v) for k, v in changed])
            self.db.execute("DELETE FROM fleet_titles WHERE content NOT IN (SELECT content FROM holdings)")
        self._holdings = dict(current)
        return len(gone) + len(changed)

    def untitled_contents(self, limit: int) -> list[tuple[str, str]]:
        """(content, infohash) of holdings whose title is not parsed yet."""
        return list(self.db.execute(
            "SELECT content, min(infohash) FROM holdings WHERE content NOT IN (SELECT content FROM fleet_titles)"
            " GROUP BY content LIMIT ?", (limit,)))

    def put_fleet_titles(self, parsed: Iterable[tuple[str, ParsedTitle]]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO fleet_titles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                [(c, p.kind, p.title, p.year, p.season, p.episode, p.episode_last, p.part,
                                  p.episode_title) for c, p in parsed])

    def holders(self) -> dict[str, list[tuple[str, Holder, str, int | None]]]:
        """content → [(infohash, holder, policy, size)] for every holding in the fleet."""
        out: dict[str, list[tuple[str, Holder, str, int | None]]] = {}
        for peer, content, ih, host, size, state, policy in self.db.execute(
                "SELECT peer_id, content, infohash, host, size_bytes, state, policy FROM holdings"
                " ORDER BY content, host, peer_id"):
            out.setdefault(content, []).append((ih, Holder(peer, host, state), policy, size))
        return out

    def fleet_titles(self, query: str | None = None, kind: str | None = None) -> dict[str, ParsedTitle]:
        sql, args = "SELECT content, " + ", ".join(TITLE_COLUMNS) + " FROM fleet_titles WHERE 1", []
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        if query:
            sql += " AND matches(?, title, episode_title, content)"
            args.append(query.casefold())
        return {r[0]: ParsedTitle(*r[1:]) for r in self.db.execute(sql, args)}


def _sql_value(value: object) -> object:
    if isinstance(value, list | tuple):
        return json.dumps(list(value))
    return value


def _codecs(text: object) -> tuple[str, ...]:
    if not isinstance(text, str) or not text:
        return ()
    try:
        value = json.loads(text)
    except ValueError:
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _file_item(row: dict) -> Item:
    return Item(
        id=row["id"], kind=row["kind"], title=row["title"], media_type=row["media_type"],
        title_source=row["title_source"], year=row["year"], season=row["season"], episode=row["episode"],
        episode_last=row["episode_last"], part=row["part"], episode_title=row["episode_title"],
        duration_s=row["duration_s"], container=row["container"], video_codec=row["video_codec"],
        audio_codecs=_codecs(row["audio_codecs"]), subtitle_codecs=_codecs(row["subtitle_codecs"]),
        width=row["width"], height=row["height"], size_bytes=row["size_bytes"], artwork=row["artwork"],
        path=row["path"], note=row["note"])

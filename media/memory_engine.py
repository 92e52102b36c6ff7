"""An in-memory ``TorrentEngine`` for tests of the layers above (agent runtime, CLI, reaper wiring).

It validates inputs exactly like the real engines (same parsers, same media-root rule) but moves
no bytes: a test drives progress, peers and errors with ``set_state``/``set_dht_peers``. The
clock is passed in (``now_ms`` callable) so simulations can use their own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace

import trio

from media.engine import PublicChoice, TorrentSample, decide_public, now_ms
from media.torrent_input import (
    parse_magnet,
    parse_torrent,
    path_under_root,
    validate_infohash,
    validate_peers,
)
from media.torrent_make import HashProgress, make_torrent_v1
from tva.errors import InvalidInput


@dataclass(frozen=True)
class _Item:
    sample: TorrentSample
    data: bytes | None
    dialled: tuple[tuple[str, int], ...] = ()


class MemoryEngine:
    def __init__(self, media_root: str, *, listen_port: int = 6881, clock_ms: Callable[[], int] = now_ms) -> None:
        self._root = os.path.realpath(media_root)
        self._port = listen_port
        self._clock = clock_ms
        self._items: dict[str, _Item] = {}
        self._dht: dict[str, list[tuple[str, int]]] = {}
        self.announces: list[str] = []
        self.verifies: list[str] = []
        self.held: set[str] = set()  # added with hold=True and not yet released
        self.on_metadata: Callable[[str], None] | None = None  # as media.lt_engine's: a magnet's metadata arrived
        self.public: set[str] = set()  # open to the public swarm (everything else is closed)
        self.dht_announces: list[str] = []  # reannounces that reached the (modelled) DHT

    def _new(self, ih: str, name: str, size: int, save: str, data: bytes | None, done: bool) -> None:
        if ih in self._items:
            return
        sample = TorrentSample(
            infohash=ih, name=name, at_ms=self._clock(), progress=1.0 if done else 0.0,
            bytes_done=size if done else 0, size_bytes=size, peers=0, seeds=0, rate_down_bps=0,
            rate_up_bps=0, state="seeding" if done else ("downloading" if data else "downloading_metadata"),
            error=None, tracker_ok=None, tracker_message=None, save_path=save,
        )
        self._items[ih] = _Item(sample, data)

    def _save_dir(self, save_dir: str | None) -> str:
        return self._root if save_dir is None else path_under_root(self._root, save_dir)

    def _get(self, infohash: str) -> _Item:
        ih = validate_infohash(infohash)
        if ih not in self._items:
            raise InvalidInput(f"no torrent {ih} in this engine")
        return self._items[ih]

    async def add_torrent(
        self, torrent_bytes: bytes, save_dir: str | None = None, peers: tuple[tuple[str, int], ...] = (),
        *, public: bool = False,
    ) -> str:
        meta = parse_torrent(torrent_bytes)
        validate_peers(peers)
        self._new(meta.infohash, meta.name, meta.size_bytes, self._save_dir(save_dir), bytes(torrent_bytes), False)
        self._open(meta.infohash, decide_public(public, meta.infohash, meta.private))
        await self.connect_peers(meta.infohash, peers)
        return meta.infohash

    async def add_magnet(self, magnet: str, save_dir: str | None = None, *, hold: bool = False,
                         public: bool = False) -> str:
        m = parse_magnet(magnet)
        self._new(m.infohash, m.name or m.infohash, 0, self._save_dir(save_dir), None, False)
        self._open(m.infohash, public)
        if hold:
            self.held.add(m.infohash)
        return m.infohash

    def _open(self, ih: str, public: bool) -> None:
        if public:
            self.public.add(ih)
        else:
            self.public.discard(ih)

    async def set_public(self, infohash: str, public: bool) -> None:
        item = self._get(infohash)
        private = item.data is not None and parse_torrent(item.data).private
        self._open(item.sample.infohash, public and not private)

    async def release(self, infohash: str) -> None:
        self.held.discard(self._get(infohash).sample.infohash)

    def deliver_metadata(self, infohash: str, torrent_bytes: bytes) -> None:
        """What a magnet's peers would send: the .torrent (its infohash must match)."""
        meta = parse_torrent(torrent_bytes)
        item = self._get(infohash)
        if meta.infohash != item.sample.infohash:
            raise InvalidInput("metadata of another torrent")
        self._items[meta.infohash] = replace(item, data=bytes(torrent_bytes), sample=replace(
            item.sample, name=meta.name, size_bytes=meta.size_bytes, state="downloading"))
        if self.on_metadata is not None:
            self.on_metadata(meta.infohash)

    async def seed_path(self, path: str, trackers: tuple[str, ...] = (),
                        progress: HashProgress | None = None, *, public: PublicChoice = False) -> tuple[str, bytes]:
        full = path_under_root(self._root, path)
        data = await trio.to_thread.run_sync(make_torrent_v1, full, trackers, progress)
        meta = parse_torrent(data)
        self._new(meta.infohash, meta.name, meta.size_bytes, os.path.dirname(full), data, True)
        self._open(meta.infohash, decide_public(public, meta.infohash, meta.private))
        return meta.infohash, data

    async def connect_peers(self, infohash: str, peers: tuple[tuple[str, int], ...]) -> int:
        item = self._get(infohash)
        checked = validate_peers(peers)
        self._items[item.sample.infohash] = replace(item, dialled=item.dialled + checked)
        return len(checked)

    def dialled(self, infohash: str) -> tuple[tuple[str, int], ...]:
        return self._get(infohash).dialled

    def set_state(self, infohash: str, **fields: object) -> None:
        """Drive a torrent: any ``TorrentSample`` field (progress, peers, state, error…)."""
        item = self._get(infohash)
        self._items[item.sample.infohash] = replace(item, sample=replace(item.sample, **fields))

    def set_dht_peers(self, infohash: str, peers: list[tuple[str, int]]) -> None:
        self._dht[validate_infohash(infohash)] = list(peers)

    async def samples(self) -> list[TorrentSample]:
        at = self._clock()
        return [replace(i.sample, at_ms=at) for i in self._items.values()]

    async def reannounce(self, infohash: str) -> bool:
        ih = self._get(infohash).sample.infohash
        self.announces.append(ih)
        if ih in self.public:
            self.dht_announces.append(ih)
        return True

    async def verify(self, infohash: str) -> None:
        self.verifies.append(self._get(infohash).sample.infohash)

    async def remove(self, infohash: str, delete_files: bool = False) -> None:
        ih = self._get(infohash).sample.infohash
        del self._items[ih]
        self.held.discard(ih)
        self.public.discard(ih)

    async def torrent_file(self, infohash: str) -> bytes | None:
        ih = validate_infohash(infohash)
        return self._items[ih].data if ih in self._items else None

    async def dht_peers(self, infohash: str, timeout_ms: int) -> list[tuple[str, int]]:
        return list(self._dht.get(validate_infohash(infohash), []))

    def listen_port(self) -> int:
        return self._port

    async def close(self) -> None:
        self._items.clear()

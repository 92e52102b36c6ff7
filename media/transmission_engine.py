"""The Transmission adapter: a ``TorrentEngine`` over an existing transmission-daemon's RPC.

For hosts that already run Transmission. transmission-rpc is a blocking HTTP client, so every
call runs in a worker thread that trio waits for. Two things Transmission 3 cannot do, and the
adapter says so instead of pretending: it has no RPC to dial a peer (``connect_peers`` returns
0 — peers must dial *it*, which is what peers_for arranges), and it exposes no DHT lookup.

BEP 27 (closed items: ``f2f_only``, ``search_only``, private trackers'): Transmission 3's RPC has
no per-torrent DHT/PEX/LPD switch — only the .torrent's private flag turns them off for one torrent
(libtransmission honours it: "dht-enabled … in public torrents"). So the adapter reads the daemon's
``dht-enabled``, ``pex-enabled`` and ``lpd-enabled`` before every closed add and **refuses** a closed
item unless its .torrent carries the private flag or all three are off (a magnet is never private
before its metadata, so a closed magnet needs all three off). A torrent that closes later while
they are on is stopped, not left announcing.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import transmission_rpc
import trio

from media.engine import PublicChoice, TorrentSample, decide_public, now_ms
from media.torrent_input import (
    TORRENT_BYTES_MAX,
    parse_magnet,
    parse_torrent,
    path_under_root,
    save_dir_under,
    validate_infohash,
    validate_peers,
)
from media.torrent_make import HashProgress, make_torrent_v1
from tva.errors import (
    ConfigError,
    Conflict,
    DaemonUnavailable,
    InvalidInput,
    RemoteDataError,
    TvaError,
)

RPC_TIMEOUT_S = 10.0
REANNOUNCE_CONFIRM_MS = 1500
_ANNOUNCING = (2, 3)  # tr_tracker_state: 0 inactive, 1 waiting, 2 queued, 3 active
_FIELDS = (
    "id", "hashString", "name", "percentDone", "haveValid", "sizeWhenDone", "status", "error",
    "errorString", "peersConnected", "peers", "rateDownload", "rateUpload", "trackerStats",
    "downloadDir", "torrentFile", "metadataPercentComplete",
)
# tr_torrent_activity: 0 stopped, 1 check wait, 2 check, 3 download wait, 4 download,
# 5 seed wait, 6 seed.
_STATES = {0: "paused", 1: "checking", 2: "checking", 3: "queued", 4: "downloading", 5: "queued", 6: "seeding"}
_LOCAL_ERROR = 3  # tr_stat_errtype: 1 tracker warning, 2 tracker error, 3 local error


@dataclass(frozen=True)
class TransmissionConfig:
    url: str  # e.g. http://127.0.0.1:9091/transmission/rpc
    media_root: str
    username: str | None = None
    password: str | None = None
    timeout_s: float = RPC_TIMEOUT_S


def _client_kwargs(cfg: TransmissionConfig) -> dict[str, Any]:
    try:
        u = urllib.parse.urlsplit(cfg.url)
        port = u.port
    except ValueError:
        raise ConfigError(f"transmission URL {cfg.url!r} is malformed") from None
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ConfigError(
            f"transmission URL {cfg.url!r} is not http(s)://host:port/path",
            hint="e.g. http://127.0.0.1:9091/transmission/rpc",
        )
    return dict(
        protocol=u.scheme, host=u.hostname, port=port or 9091, path=u.path or "/transmission/rpc",
        username=cfg.username, password=cfg.password, timeout=cfg.timeout_s,
    )


def _translate(e: transmission_rpc.TransmissionError, what: str) -> TvaError:
    if isinstance(e, transmission_rpc.TransmissionAuthError):
        return ConfigError(f"transmission-daemon refused our credentials ({what})",
                           hint="check the transmission username/password in the config")
    if isinstance(e, (transmission_rpc.TransmissionConnectError, transmission_rpc.TransmissionTimeoutError)):
        return DaemonUnavailable(f"transmission-daemon unreachable ({what}): {e}",
                                 hint="is transmission-daemon running at the configured URL?")
    return RemoteDataError(f"transmission-daemon refused {what}: {e}")


def _tracker_result(stats: list[dict[str, Any]], error: int, error_string: str) -> tuple[bool | None, str | None]:
    """An unreachable tracker leaves ``error`` at 0 in Transmission 3: the truth is in trackerStats."""
    announced = [s for s in stats if s.get("hasAnnounced")]
    ok = [s for s in announced if s.get("lastAnnounceSucceeded")]
    if error in (1, 2):  # tracker warning / error reported by the torrent itself
        return error == 1, error_string or None
    if ok:
        return True, None
    if announced:
        return False, str(announced[0].get("lastAnnounceResult") or "announce failed")
    return None, None


class TransmissionEngine:
    """Implements ``media.engine.TorrentEngine``. Create it with ``open_transmission_engine``."""

    def __init__(self, client: transmission_rpc.Client, media_root: str, peer_port: int) -> None:
        self._client = client
        self._media_root = os.path.realpath(media_root)
        self._peer_port = peer_port
        self._torrent_bytes: dict[str, bytes] = {}

    async def _rpc(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def call() -> Any:
            try:
                return fn(*args, **kwargs)
            except transmission_rpc.TransmissionError as e:
                raise _translate(e, what) from None

        return await trio.to_thread.run_sync(call)

    def _save_dir(self, save_dir: str | None) -> str:
        return save_dir_under(self._media_root, save_dir)

    async def _require(self, infohash: str) -> str:
        ih = validate_infohash(infohash)
        found = await self._rpc("torrent-get", self._client.get_torrents, [ih], ["hashString"])
        if not found:
            raise InvalidInput(f"no torrent {ih} in transmission-daemon", hint="tva-agent torrent list")
        return ih

    async def swarm_leaks(self) -> list[str]:
        """The daemon's discovery features that would reach the public swarm for a non-private
        torrent (empty: a closed item is safe here)."""
        session = await self._rpc("session-get", self._client.get_session)
        fields = getattr(session, "fields", {}) or {}
        return [name for name in ("dht-enabled", "pex-enabled", "lpd-enabled") if fields.get(name, True)]

    async def _require_closable(self, private: bool, what: str) -> None:
        if private:
            return  # libtransmission keeps DHT/PEX/LPD off for a private torrent by itself
        leaks = await self.swarm_leaks()
        if leaks:
            raise Conflict(f"transmission-daemon has {', '.join(leaks)} on: it would announce {what} to the public "
                           "swarm, which this item's policy forbids",
                           hint="set dht-enabled, pex-enabled and lpd-enabled to false in transmission's "
                                "settings.json (daemon stopped), or use torrent_engine = \"libtorrent\"")

    async def add_torrent(
        self, torrent_bytes: bytes, save_dir: str | None = None, peers: tuple[tuple[str, int], ...] = (),
        *, public: bool = False,
    ) -> str:
        meta = parse_torrent(torrent_bytes)
        validate_peers(peers)  # Transmission cannot dial them, but bad ones are still refused
        if not decide_public(public, meta.infohash, meta.private):
            await self._require_closable(meta.private, f"the closed item {meta.infohash}")
        save = self._save_dir(save_dir)
        await self._rpc("torrent-add", self._client.add_torrent, bytes(torrent_bytes), download_dir=save)
        self._torrent_bytes[meta.infohash] = bytes(torrent_bytes)
        return meta.infohash

    async def add_magnet(self, magnet: str, save_dir: str | None = None, *, hold: bool = False,
                         public: bool = False) -> str:
        m = parse_magnet(magnet)
        if not public:
            await self._require_closable(False, f"the closed magnet {m.infohash}")
        await self._rpc("torrent-add", self._client.add_torrent, magnet, download_dir=self._save_dir(save_dir))
        if hold:
            # Transmission has no metadata-only mode. A per-torrent download limit of 0 holds
            # piece data back (libtransmission clamps piece data, not protocol messages such as
            # ut_metadata); the agent also checks the size once the metadata is in and removes
            # the torrent with its files if it lied, so this is a first guard, not the only one.
            await self._rpc("torrent-set", self._client.change_torrent, [m.infohash],
                            download_limited=True, download_limit=0)
        return m.infohash

    async def release(self, infohash: str) -> None:
        ih = await self._require(infohash)
        await self._rpc("torrent-set", self._client.change_torrent, [ih], download_limited=False)

    async def seed_path(self, path: str, trackers: tuple[str, ...] = (),
                        progress: HashProgress | None = None, *, public: PublicChoice = False) -> tuple[str, bytes]:
        full = path_under_root(self._media_root, path)
        data = await trio.to_thread.run_sync(make_torrent_v1, full, trackers, progress)
        meta = parse_torrent(data)
        infohash = meta.infohash
        if not decide_public(public, infohash, meta.private):
            await self._require_closable(meta.private, f"the closed item {infohash}")
        # Transmission checks the existing data on add, then seeds it.
        await self._rpc("torrent-add", self._client.add_torrent, data, download_dir=os.path.dirname(full))
        self._torrent_bytes[infohash] = data
        return infohash, data

    async def set_public(self, infohash: str, public: bool) -> None:
        """Opening needs nothing (the daemon's own settings apply); closing a non-private torrent
        while the daemon's DHT/PEX/LPD are on stops it instead (it would keep announcing)."""
        ih = await self._require(infohash)
        if public:
            return
        data = await self.torrent_file(ih)
        private = data is not None and parse_torrent(data).private
        try:
            await self._require_closable(private, f"{ih}, whose policy closed")
        except Conflict:
            await self._rpc("torrent-stop", self._client.stop_torrent, [ih])
            raise

    async def connect_peers(self, infohash: str, peers: tuple[tuple[str, int], ...]) -> int:
        validate_peers(peers)
        await self._require(infohash)
        return 0  # Transmission's RPC cannot dial a peer; only inbound connections reach it

    def _sample(self, f: dict[str, Any], at_ms: int) -> TorrentSample:
        error = int(f.get("error") or 0)
        error_string = str(f.get("errorString") or "")
        ok, msg = _tracker_result(list(f.get("trackerStats") or []), error, error_string)
        peers = list(f.get("peers") or [])
        connected = int(f.get("peersConnected") or 0)
        # Transmission's rates decay for seconds after the last peer left (seen: 900 kB/s with no
        # peer); with no connection nothing moves, and the reaper must not read a ghost rate.
        down, up = (int(f.get("rateDownload") or 0), int(f.get("rateUpload") or 0)) if connected else (0, 0)
        size = int(f.get("sizeWhenDone") or 0) if f.get("metadataPercentComplete", 1) >= 1 else 0
        if error == _LOCAL_ERROR:
            state = "error"
        elif f.get("metadataPercentComplete", 1) < 1 and f.get("status") == 4:
            state = "downloading_metadata"
        else:
            state = _STATES.get(int(f.get("status") or 0), "paused")
        sample = TorrentSample(
            infohash=validate_infohash(str(f["hashString"])),
            name=str(f.get("name") or ""),
            at_ms=at_ms,
            progress=float(f.get("percentDone") or 0.0) if size else 0.0,
            bytes_done=int(f.get("haveValid") or 0),
            size_bytes=size,
            peers=connected,
            seeds=sum(1 for p in peers if float(p.get("progress") or 0) >= 1.0),
            rate_down_bps=down,
            rate_up_bps=up,
            state=state,
            error=(error_string or "local error") if error == _LOCAL_ERROR else None,
            tracker_ok=ok,
            tracker_message=msg,
            save_path=str(f.get("downloadDir") or ""),
        )
        counts = (sample.bytes_done, sample.size_bytes, sample.peers, sample.seeds, down, up)
        if not 0.0 <= sample.progress <= 1.0 or min(counts) < 0:
            raise ValueError(f"out-of-range numbers for {sample.infohash}")
        return sample

    async def samples(self) -> list[TorrentSample]:
        torrents = await self._rpc("torrent-get", self._client.get_torrents, None, list(_FIELDS))
        at = now_ms()
        out = []
        for t in torrents:
            try:
                out.append(self._sample(t.fields, at))
            except (KeyError, TypeError, ValueError, AttributeError) as e:  # InvalidInput is a ValueError
                raise RemoteDataError(f"transmission-daemon sent a malformed torrent entry: {e}") from None
        return out

    async def reannounce(self, infohash: str) -> bool:
        """Ask for an announce now; True once the daemon is seen starting one.

        Transmission drops a manual announce silently for the tracker's ``min interval`` after
        each announce (2 minutes by default), and its ``manualAnnounceTime`` field reads -1 in
        3.00, so the only honest answer is to watch trackerStats for the announce to start.
        """
        ih = await self._require(infohash)
        before = await self._announce_marks(ih)
        if not before:
            return False  # no trackers to announce to
        await self._rpc("torrent-reannounce", self._client.reannounce_torrent, [ih])
        with trio.move_on_after(REANNOUNCE_CONFIRM_MS / 1000):
            while True:
                for tracker_id, (state, last_s) in (await self._announce_marks(ih)).items():
                    if state in _ANNOUNCING or last_s > before.get(tracker_id, (0, 0))[1]:
                        return True
                await trio.sleep(0.1)
        return False

    async def _announce_marks(self, ih: str) -> dict[int, tuple[int, int]]:
        """tracker id → (announceState, lastAnnounceTime)."""
        found = await self._rpc("torrent-get", self._client.get_torrents, [ih], ["hashString", "trackerStats"])
        stats = (found[0].fields.get("trackerStats") or []) if found else []
        return {int(t.get("id", i)): (int(t.get("announceState") or 0), int(t.get("lastAnnounceTime") or 0))
                for i, t in enumerate(stats)}

    async def verify(self, infohash: str) -> None:
        ih = await self._require(infohash)
        await self._rpc("torrent-verify", self._client.verify_torrent, [ih])

    async def remove(self, infohash: str, delete_files: bool = False) -> None:
        ih = await self._require(infohash)
        await self._rpc("torrent-remove", self._client.remove_torrent, [ih], delete_data=delete_files)
        self._torrent_bytes.pop(ih, None)

    async def torrent_file(self, infohash: str) -> bytes | None:
        ih = validate_infohash(infohash)
        if ih in self._torrent_bytes:
            return self._torrent_bytes[ih]
        # Added by someone else: Transmission keeps a copy; readable when it runs on this host.
        found = await self._rpc("torrent-get", self._client.get_torrents, [ih], ["hashString", "torrentFile"])
        path = str(found[0].fields.get("torrentFile") or "") if found else ""
        try:
            data = await trio.to_thread.run_sync(_read_small, path)
        except OSError:
            return None
        if parse_torrent(data).infohash != ih:
            raise RemoteDataError(f"transmission's torrent file {path!r} does not match {ih}")
        self._torrent_bytes[ih] = data
        return data

    async def dht_peers(self, infohash: str, timeout_ms: int) -> list[tuple[str, int]]:
        validate_infohash(infohash)
        return []  # transmission-rpc exposes no DHT lookup

    def listen_port(self) -> int:
        return self._peer_port

    async def close(self) -> None:
        pass  # the daemon is not ours to stop; the HTTP client holds no lasting state


def _read_small(path: str) -> bytes:
    if not path:
        raise FileNotFoundError("no torrent file path")
    with open(path, "rb") as f:
        return f.read(TORRENT_BYTES_MAX + 1)


@asynccontextmanager
async def open_transmission_engine(cfg: TransmissionConfig) -> AsyncIterator[TransmissionEngine]:
    """Connect (the client checks the RPC version and session at once) and yield the engine."""
    if not os.path.isdir(cfg.media_root):
        raise ConfigError(f"media root {cfg.media_root!r} is not a directory", hint="create it or fix the config")
    kwargs = _client_kwargs(cfg)

    def connect() -> tuple[transmission_rpc.Client, int]:
        try:
            client = transmission_rpc.Client(**kwargs)
            return client, int(client.get_session().peer_port)
        except transmission_rpc.TransmissionError as e:
            raise _translate(e, "connect") from None

    client, peer_port = await trio.to_thread.run_sync(connect)
    engine = TransmissionEngine(client, cfg.media_root, peer_port)
    try:
        yield engine
    finally:
        await engine.close()

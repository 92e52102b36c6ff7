"""The embedded libtorrent engine: one session owned by the agent, inside the agent's nursery.

libtorrent is blocking C++ with its own network threads. We keep calls on the trio thread tiny
(popping alerts, dialling a peer) and push the ones that can take long (hashing a file, a status
sweep over many torrents, tearing the session down) to ``trio.to_thread.run_sync``, which waits
for its thread — so no thread outlives the engine. Alerts are polled by one task in the engine's
own nursery; nothing runs after ``open_lt_engine`` exits.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace

import libtorrent as lt
import trio

from media.engine import PublicChoice, TorrentSample, decide_public, now_ms
from media.lt_settings import SwarmFlags, build_settings
from media.torrent_input import (
    parse_magnet,
    parse_torrent,
    path_under_root,
    save_dir_under,
    validate_infohash,
    validate_peers,
)
from media.torrent_make import HashProgress, make_torrent_v1
from tva.errors import ConfigError, DecodeError, InvalidInput

log = logging.getLogger(__name__)

ALERT_POLL_INTERVAL_MS = 100
LISTEN_WAIT_MS = 5000
DHT_PEERS_MAX = 500
DHT_TIMEOUT_MS_MAX = 60_000
_ALERT_MASK = (
    lt.alert_category.error
    | lt.alert_category.status
    | lt.alert_category.storage
    | lt.alert_category.tracker
    | lt.alert_category.dht_operation
)
_STATES = {
    lt.torrent_status.checking_files: "checking",
    lt.torrent_status.checking_resume_data: "checking",
    lt.torrent_status.downloading_metadata: "downloading_metadata",
    lt.torrent_status.downloading: "downloading",
    lt.torrent_status.finished: "seeding",
    lt.torrent_status.seeding: "seeding",
}


def _ih(handle_or_hash: object) -> str:
    return str(handle_or_hash)


def _torrent_info(data: bytes) -> lt.torrent_info:
    try:
        return lt.torrent_info(data)
    except RuntimeError as e:  # our parser accepted it, libtorrent did not: still remote data
        raise DecodeError(f"torrent: libtorrent refused it: {e}") from None


class LibtorrentEngine:
    """Implements ``media.engine.TorrentEngine``. Create it with ``open_lt_engine``."""

    def __init__(self, session: lt.session, media_root: str) -> None:
        self._ses = session
        self._media_root = os.path.realpath(media_root)
        self._torrent_bytes: dict[str, bytes] = {}
        self._tracker: dict[str, tuple[bool, str | None]] = {}
        self._dht_waiters: dict[str, list[trio.MemorySendChannel[list[tuple[str, int]]]]] = {}
        self.on_metadata: Callable[[str], None] | None = None  # called with the infohash when a magnet's metadata arrives

    # --- alerts -------------------------------------------------------------------------------

    async def _pump_alerts(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            for alert in self._ses.pop_alerts():
                try:
                    self._on_alert(alert)
                except Exception:  # one odd alert must not stop the engine
                    log.exception("libtorrent alert %s", type(alert).__name__)
            await trio.sleep(ALERT_POLL_INTERVAL_MS / 1000)

    def _on_alert(self, a: lt.alert) -> None:
        if isinstance(a, lt.tracker_reply_alert):
            self._tracker[_ih(a.handle.info_hash())] = (True, None)
        elif isinstance(a, lt.tracker_error_alert):
            why = a.failure_reason() or a.error.message() or a.message()
            self._tracker[_ih(a.handle.info_hash())] = (False, why)
        elif isinstance(a, lt.tracker_warning_alert):
            self._tracker[_ih(a.handle.info_hash())] = (True, a.message())
        elif isinstance(a, lt.dht_get_peers_reply_alert):
            for send in self._dht_waiters.get(_ih(a.info_hash), []):
                try:
                    send.send_nowait([(str(ip), int(port)) for ip, port in a.peers()])
                except trio.WouldBlock:  # the asker is saturated; later replies repeat peers
                    pass
        elif isinstance(a, lt.metadata_received_alert):
            self._remember_metadata(a.handle)
            if self.on_metadata is not None:
                self.on_metadata(_ih(a.handle.info_hash()))
        elif isinstance(a, (lt.torrent_error_alert, lt.file_error_alert, lt.listen_failed_alert)):
            log.warning("libtorrent: %s", a.message())

    def _remember_metadata(self, handle: lt.torrent_handle) -> None:
        ti = handle.torrent_file()
        if ti is None:
            return
        data = lt.bencode(lt.create_torrent(ti).generate())
        meta = parse_torrent(data)
        if meta.infohash == _ih(handle.info_hash()):
            self._torrent_bytes[meta.infohash] = data

    # --- adding -------------------------------------------------------------------------------

    def _save_dir(self, save_dir: str | None) -> str:
        return save_dir_under(self._media_root, save_dir)

    def _params(self, save_path: str, public: bool) -> lt.add_torrent_params:
        atp = lt.add_torrent_params()
        atp.save_path = save_path
        # Not auto-managed: the agent decides what runs; libtorrent's queue would silently
        # hold torrents back and make the reaper's samples lie.
        atp.flags &= ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
        _set_swarm_flags(atp, public)
        return atp

    def _find(self, infohash: str) -> lt.torrent_handle:
        ih = validate_infohash(infohash)
        h = self._ses.find_torrent(lt.sha1_hash(bytes.fromhex(ih)))
        if not h.is_valid():
            raise InvalidInput(f"no torrent {ih} in this session", hint="tva-agent torrent list")
        return h

    async def add_torrent(
        self, torrent_bytes: bytes, save_dir: str | None = None, peers: tuple[tuple[str, int], ...] = (),
        *, public: bool = False,
    ) -> str:
        meta = parse_torrent(torrent_bytes)
        validate_peers(peers)  # refuse before adding anything
        # BEP 27: a private torrent never meets the public swarm, whatever the caller asked.
        atp = self._params(self._save_dir(save_dir), public and not meta.private)
        atp.ti = _torrent_info(bytes(torrent_bytes))
        await trio.to_thread.run_sync(self._ses.add_torrent, atp)
        self._torrent_bytes[meta.infohash] = bytes(torrent_bytes)
        await self.connect_peers(meta.infohash, peers)
        return meta.infohash

    async def add_magnet(self, magnet: str, save_dir: str | None = None, *, hold: bool = False,
                         public: bool = False) -> str:
        m = parse_magnet(magnet)
        atp = lt.parse_magnet_uri(magnet)
        atp.save_path = self._save_dir(save_dir)
        atp.flags &= ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
        # Closed from the first instant: a magnet of a closed item must not look its metadata up
        # on the DHT (or announce itself there) while the metadata comes from dialled peers.
        _set_swarm_flags(atp, public)
        if hold:
            # Upload mode requests no pieces, but ut_metadata still runs: the metadata arrives,
            # no file is created (measured: libtorrent 2.1, a 4 MiB torrent, nothing on disk).
            atp.flags |= lt.torrent_flags.upload_mode
        await trio.to_thread.run_sync(self._ses.add_torrent, atp)
        return m.infohash

    async def release(self, infohash: str) -> None:
        self._find(infohash).unset_flags(lt.torrent_flags.upload_mode)

    async def seed_path(self, path: str, trackers: tuple[str, ...] = (),
                        progress: HashProgress | None = None, *, public: PublicChoice = False) -> tuple[str, bytes]:
        full = path_under_root(self._media_root, path)
        data = await trio.to_thread.run_sync(make_torrent_v1, full, trackers, progress)
        meta = parse_torrent(data)
        atp = self._params(os.path.dirname(full), decide_public(public, meta.infohash, meta.private))
        atp.ti = _torrent_info(data)
        # We hashed the data a moment ago; seed mode checks pieces lazily as peers ask for them.
        atp.flags |= lt.torrent_flags.seed_mode
        await trio.to_thread.run_sync(self._ses.add_torrent, atp)
        self._torrent_bytes[meta.infohash] = data
        return meta.infohash, data

    async def connect_peers(self, infohash: str, peers: tuple[tuple[str, int], ...]) -> int:
        h = self._find(infohash)
        checked = validate_peers(peers)  # all or nothing: a bad entry dials no one
        for endpoint in checked:
            h.connect_peer(endpoint)
        return len(checked)

    def add_dht_nodes(self, nodes: tuple[tuple[str, int], ...]) -> None:
        """Known DHT nodes (fleet members on a private overlay DHT); no public bootstrap."""
        for host, port in nodes:
            self._ses.add_dht_node((host, port))

    def apply_flags(self, flags: SwarmFlags) -> None:
        """Re-apply the swarm flags, e.g. when the public_swarm_face duty moves to or from us."""
        self._ses.apply_settings(session_settings(flags))
        apply_peer_classes(self._ses, flags)

    # --- reading ------------------------------------------------------------------------------

    def _sample(self, st: lt.torrent_status, at_ms: int) -> TorrentSample:
        ih = _ih(st.info_hash)
        err = st.errc.message() if st.errc.value() else None
        if err:
            state = "error"
        elif st.flags & lt.torrent_flags.paused:
            state = "paused"
        else:
            state = _STATES.get(st.state, "downloading")
        ok, msg = self._tracker.get(ih, (None, None))
        peers = int(st.num_peers)
        # libtorrent's rates are averages that decay over seconds after the last peer left;
        # with no connection nothing is moving, and the reaper must not read a ghost rate.
        down, up = (int(st.download_payload_rate), int(st.upload_payload_rate)) if peers else (0, 0)
        return TorrentSample(
            infohash=ih,
            name=st.name,
            at_ms=at_ms,
            progress=float(st.progress) if st.has_metadata else 0.0,
            bytes_done=int(st.total_wanted_done),
            size_bytes=int(st.total_wanted) if st.has_metadata else 0,
            peers=peers,
            seeds=int(st.num_seeds),
            rate_down_bps=down,
            rate_up_bps=up,
            state=state,
            error=err,
            tracker_ok=ok,
            tracker_message=msg,
            save_path=st.save_path,
            availability=float(st.distributed_copies) if st.distributed_copies >= 0 else None,
        )

    async def samples(self) -> list[TorrentSample]:
        statuses = await trio.to_thread.run_sync(lambda: [h.status() for h in self._ses.get_torrents()])
        at = now_ms()
        return [self._sample(st, at) for st in statuses]

    async def reannounce(self, infohash: str) -> bool:
        h = self._find(infohash)
        h.force_reannounce(0, -1, lt.reannounce_flags_t.ignore_min_interval)
        if self._ses.is_dht_running() and _is_public(h):
            h.force_dht_announce()  # never for a closed or private torrent, face host or not
        return True

    async def set_public(self, infohash: str, public: bool) -> None:
        """Open a torrent to the public swarm's discovery (DHT, PEX, LSD), or close it."""
        h = self._find(infohash)
        ti = h.torrent_file()
        if public and ti is not None and ti.priv():
            public = False  # BEP 27
        if public:
            h.unset_flags(_CLOSED_FLAGS)
        else:
            h.set_flags(_CLOSED_FLAGS)

    def is_public(self, infohash: str) -> bool:
        return _is_public(self._find(infohash))

    async def verify(self, infohash: str) -> None:
        self._find(infohash).force_recheck()

    async def remove(self, infohash: str, delete_files: bool = False) -> None:
        h = self._find(infohash)
        ih = _ih(h.info_hash())
        self._ses.remove_torrent(h, lt.options_t.delete_files if delete_files else 0)
        self._torrent_bytes.pop(ih, None)
        self._tracker.pop(ih, None)

    async def torrent_file(self, infohash: str) -> bytes | None:
        return self._torrent_bytes.get(validate_infohash(infohash))

    async def dht_peers(self, infohash: str, timeout_ms: int) -> list[tuple[str, int]]:
        ih = validate_infohash(infohash)
        if not isinstance(timeout_ms, int) or not 0 <= timeout_ms <= DHT_TIMEOUT_MS_MAX:
            raise InvalidInput(f"DHT timeout {timeout_ms!r} ms is outside 0..{DHT_TIMEOUT_MS_MAX}")
        if not self._ses.is_dht_running():
            return []
        send, recv = trio.open_memory_channel[list[tuple[str, int]]](64)
        self._dht_waiters.setdefault(ih, []).append(send)
        found: dict[tuple[str, int], None] = {}
        try:
            self._ses.dht_get_peers(lt.sha1_hash(bytes.fromhex(ih)))
            with trio.move_on_after(timeout_ms / 1000):
                async for batch in recv:
                    found.update(dict.fromkeys(batch))
                    if len(found) >= DHT_PEERS_MAX:
                        break
        finally:
            self._dht_waiters[ih].remove(send)
            if not self._dht_waiters[ih]:
                del self._dht_waiters[ih]
            send.close()
        return list(found)[:DHT_PEERS_MAX]

    def listen_port(self) -> int:
        # Live, not cached: re-applied listen settings (apply_flags) may re-bind the socket.
        return self._ses.listen_port() if self._ses is not None else 0

    async def close(self) -> None:
        """Stop the session (blocking teardown in a thread we wait for)."""
        box, self._ses = [self._ses], None
        if box[0] is not None:
            await trio.to_thread.run_sync(_shutdown, box)


_CLOSED_FLAGS = lt.torrent_flags.disable_dht | lt.torrent_flags.disable_pex | lt.torrent_flags.disable_lsd


def _set_swarm_flags(atp: lt.add_torrent_params, public: bool) -> None:
    if public:
        atp.flags &= ~_CLOSED_FLAGS
    else:
        atp.flags |= _CLOSED_FLAGS


def _is_public(h: lt.torrent_handle) -> bool:
    if int(h.flags()) & int(_CLOSED_FLAGS):
        return False
    ti = h.torrent_file()
    return not (ti is not None and ti.priv())


def _shutdown(box: list[lt.session]) -> None:
    # The last reference is dropped here, in the worker thread: the C++ destructor waits for
    # libtorrent's own threads (and the tracker stop announces) and must not block trio.
    ses = box.pop()
    ses.pause()
    del ses


async def _wait_listening(ses: lt.session, flags: SwarmFlags) -> None:
    if not flags.listen_addresses:
        return
    failures: list[str] = []
    with trio.move_on_after(LISTEN_WAIT_MS / 1000):
        # Any failed address is a configuration error: the host asked to be reachable there.
        while not failures and not (ses.is_listening() and ses.listen_port() > 0):
            for a in ses.pop_alerts():
                if isinstance(a, lt.listen_failed_alert):
                    failures.append(a.message())
            await trio.sleep(0.02)
        if not failures:
            return
    raise ConfigError(
        f"libtorrent could not listen on {flags.listen_addresses}: {failures or 'timed out'}",
        hint="listen addresses must be this host's own overlay/LAN addresses",
    )


def session_settings(flags: SwarmFlags) -> dict[str, object]:
    """Everything the engine's session is created with (bench_repair gives its bare-libtorrent
    baseline exactly these)."""
    return {**build_settings(flags), "alert_mask": int(_ALERT_MASK)}


def apply_peer_classes(ses: lt.session, flags: SwarmFlags) -> None:
    """Make configured rate limits apply to LAN/loopback peers too.

    libtorrent puts local-network peers in its "local" peer class, which no rate limit touches;
    the fleet's fabric counts as local, so without this a configured limit would never apply to
    fleet copies. With no limit configured, libtorrent's default classes stay."""
    if not (flags.upload_rate_limit_bps or flags.download_rate_limit_bps):
        return
    f = lt.ip_filter()
    f.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
    f.add_rule("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1 << lt.session.global_peer_class_id)
    ses.set_peer_class_filter(f)


@asynccontextmanager
async def open_lt_engine(media_root: str, flags: SwarmFlags = SwarmFlags()) -> AsyncIterator[LibtorrentEngine]:
    """An engine whose alert task lives in its own nursery; the session is gone on exit."""
    if not os.path.isdir(media_root):
        raise ConfigError(f"media root {media_root!r} is not a directory", hint="create it or fix the config")
    ses = await trio.to_thread.run_sync(lt.session, session_settings(flags))
    apply_peer_classes(ses, flags)
    engine = None
    try:
        await _wait_listening(ses, flags)
        if flags.listen_port == 0 and len(flags.listen_addresses) > 1:
            # Port 0 on several addresses gives each its own port; peers know one (the card's).
            port = ses.listen_port()
            ses.apply_settings({"listen_interfaces": build_settings(replace(flags, listen_port=port))[
                "listen_interfaces"]})
        engine = LibtorrentEngine(ses, media_root)
        ses = None  # the engine owns it now
        async with trio.open_nursery() as nursery:
            await nursery.start(engine._pump_alerts)
            try:
                yield engine
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if engine is not None:
                await engine.close()
            elif ses is not None:
                box, ses = [ses], None
                await trio.to_thread.run_sync(_shutdown, box)

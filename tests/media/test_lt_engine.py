"""The embedded libtorrent engine against real libtorrent sessions on loopback (nothing else)."""

from __future__ import annotations

import hashlib
import os

import pytest
import trio

from media.engine import CompletionTracker, completed_items, watch_completed
from media.lt_engine import open_lt_engine
from media.lt_settings import SwarmFlags
from media.torrent_input import parse_torrent
from media.torrent_make import make_torrent_v1
from tva.errors import ConfigError, DecodeError, InvalidInput

LOOPBACK = SwarmFlags(listen_addresses=("127.0.0.1",), utp=False)


def _file(path, size_bytes: int) -> str:
    # Deterministic content (sha256 counter stream), so a failure is reproducible.
    with open(path, "wb") as f:
        block, n = b"", 0
        while f.tell() < size_bytes:
            block = hashlib.sha256(block + n.to_bytes(8, "big")).digest() * 2048
            f.write(block[: size_bytes - f.tell()])
            n += 1
    return str(path)


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


async def _until(pred, timeout_s: float, what: str, interval_s: float = 0.1):
    with trio.move_on_after(timeout_s):
        while True:
            value = await pred()
            if value:
                return value
            await trio.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}")


def _roots(tmp_path):
    a, b = tmp_path / "seeder", tmp_path / "leecher"
    a.mkdir()
    b.mkdir()
    return a, b


async def test_two_sessions_copy_a_file_given_metadata_and_a_peer(tmp_path):
    a_root, b_root = _roots(tmp_path)
    src = _file(a_root / "movie.mkv", 3 * 1024 * 1024 + 12345)
    async with open_lt_engine(str(a_root), LOOPBACK) as seeder, open_lt_engine(
        str(b_root), LOOPBACK
    ) as leecher:
        assert seeder.listen_port() > 0 and seeder.listen_port() != leecher.listen_port()
        infohash, data = await seeder.seed_path("movie.mkv")
        assert parse_torrent(data).infohash == infohash
        assert await seeder.torrent_file(infohash) == data
        added = await leecher.add_torrent(data, peers=(("127.0.0.1", seeder.listen_port()),))
        assert added == infohash

        async def done():
            s = [x for x in await leecher.samples() if x.infohash == infohash]
            return s and s[0].state == "seeding" and s[0].progress >= 1.0 and s[0]

        sample = await _until(done, 30, "the download to complete")
        assert sample.size_bytes == os.path.getsize(src) == sample.bytes_done
        assert sample.error is None and sample.name == "movie.mkv"
        assert _sha256(b_root / "movie.mkv") == _sha256(src)
        # The completed listing names it as a holding, content id derived from name + infohash.
        items = await completed_items(leecher)
        assert [(i.infohash, i.content_id) for i in items] == [(infohash, f"movie.mkv-{infohash[:8]}")]


async def test_completion_events_fire_once_per_completion(tmp_path):
    a_root, _ = _roots(tmp_path)
    _file(a_root / "a.bin", 100_000)
    async with open_lt_engine(str(a_root), LOOPBACK) as engine:
        send, recv = trio.open_memory_channel(8)
        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: watch_completed(engine, send, interval_ms=50, task_status=task_status))
            ih, _ = await engine.seed_path("a.bin")
            with trio.fail_after(10):
                item = await recv.receive()
            assert item.infohash == ih and item.name == "a.bin"
            await trio.sleep(0.3)
            with pytest.raises(trio.WouldBlock):
                recv.receive_nowait()  # no repeat while it stays complete
            nursery.cancel_scope.cancel()
    tracker = CompletionTracker()
    assert tracker.update([]) == []


async def test_a_torrent_whose_only_source_disappears_reports_no_peers_and_no_progress(tmp_path):
    a_root, b_root = _roots(tmp_path)
    _file(a_root / "slow.bin", 4 * 1024 * 1024)
    # Loopback is "local network" for libtorrent's limits: disable that so the rate limit holds.
    slow = SwarmFlags(listen_addresses=("127.0.0.1",), utp=False, upload_rate_limit_bps=256 * 1024)
    async with open_lt_engine(str(b_root), LOOPBACK) as leecher:
        async with open_lt_engine(str(a_root), slow) as seeder:
            seeder._ses.apply_settings({"ignore_limits_on_local_network": False})
            _, data = await seeder.seed_path("slow.bin")
            await leecher.add_torrent(data, peers=(("127.0.0.1", seeder.listen_port()),))

            async def started():
                s = (await leecher.samples())[0]
                return s.bytes_done > 0 and s.peers >= 1 and s

            first = await _until(started, 20, "some progress from the only seeder")
            assert first.progress < 1.0
        # The seeder is gone (session closed). The samples must say so, honestly.

        async def no_peers():
            s = (await leecher.samples())[0]
            return s.peers == 0 and s

        gone = await _until(no_peers, 20, "the peer count to drop to zero")
        await trio.sleep(1.5)
        later = (await leecher.samples())[0]
        assert later.peers == 0 and later.seeds == 0
        assert later.bytes_done == gone.bytes_done and later.progress < 1.0
        assert later.rate_down_bps == 0 and later.state == "downloading"
        assert later.at_ms > gone.at_ms
        assert later.availability is not None and later.availability < 1.0  # no full copy reachable
        assert first.availability is not None and first.availability >= 1.0  # while the seed was there


async def test_verify_finds_a_corrupted_piece_and_tracker_errors_are_surfaced(tmp_path):
    a_root, _ = _roots(tmp_path)
    path = _file(a_root / "v.bin", 1024 * 1024)
    # A tracker on a loopback port nobody listens on: the announce fails with a message.
    with trio.socket.socket() as s:
        await s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    async with open_lt_engine(str(a_root), LOOPBACK) as engine:
        ih, _ = await engine.seed_path("v.bin", trackers=(f"http://127.0.0.1:{dead_port}/announce",))

        async def tracker_failed():
            s = (await engine.samples())[0]
            return s.tracker_ok is False and s

        s = await _until(tracker_failed, 20, "the tracker error")
        assert s.tracker_message and s.error is None
        await engine.reannounce(ih)
        with open(path, "r+b") as f:
            f.seek(300_000)
            f.write(b"\xff" * 64)
        await engine.verify(ih)

        async def rechecked():
            s = (await engine.samples())[0]
            return s.state != "checking" and s.progress < 1.0 and s

        s = await _until(rechecked, 20, "the recheck to notice the bad piece")
        assert 0.5 < s.progress < 1.0 and s.state == "downloading"
        await engine.remove(ih)
        assert await engine.samples() == []
        assert await engine.torrent_file(ih) is None


async def test_bad_inputs_are_refused_cleanly(tmp_path):
    a_root, _ = _roots(tmp_path)
    (tmp_path / "outside.bin").write_bytes(b"x" * 100)
    (a_root / "a.bin").write_bytes(b"a" * 40_000)
    async with open_lt_engine(str(a_root), LOOPBACK) as engine:
        with pytest.raises(DecodeError):
            await engine.add_torrent(b"d4:infoi3ee")
        with pytest.raises(InvalidInput):
            await engine.seed_path("../outside.bin")
        with pytest.raises(InvalidInput):
            await engine.seed_path(str(tmp_path / "outside.bin"))
        with pytest.raises(InvalidInput):
            await engine.add_magnet("magnet:?xt=urn:btih:nothex")
        with pytest.raises(InvalidInput):
            await engine.verify("0" * 40)  # not in the session
        with pytest.raises(InvalidInput):
            await engine.verify("../../etc")
        data = make_torrent_v1(str(a_root / "a.bin"))
        with pytest.raises(InvalidInput):
            await engine.add_torrent(data, peers=(("peer.example", 6881),))  # names are not dialled
        assert await engine.samples() == []  # nothing half-added by any refusal above
        ih = await engine.add_torrent(data)
        with pytest.raises(InvalidInput):
            await engine.connect_peers(ih, (("127.0.0.1", 6881), ("127.0.0.1", 0)))
        with pytest.raises(InvalidInput):
            await engine.dht_peers(ih, timeout_ms=-1)
        await engine.remove(ih)
        # DHT is off by default: no lookup, no traffic, an empty answer.
        assert await engine.dht_peers("ab" * 20, timeout_ms=100) == []
        assert not engine._ses.is_dht_running()


async def test_magnet_add_gets_metadata_from_a_peer(tmp_path):
    a_root, b_root = _roots(tmp_path)
    src = _file(a_root / "m.bin", 500_000)
    async with open_lt_engine(str(a_root), LOOPBACK) as seeder, open_lt_engine(
        str(b_root), LOOPBACK
    ) as leecher:
        ih, _ = await seeder.seed_path("m.bin")
        magnet = f"magnet:?xt=urn:btih:{ih}&dn=m.bin&x.pe=127.0.0.1:{seeder.listen_port()}"
        assert await leecher.add_magnet(magnet) == ih

        async def done():
            s = (await leecher.samples())[0]
            return s.progress >= 1.0 and s.state == "seeding"

        await _until(done, 30, "the magnet download")
        assert _sha256(b_root / "m.bin") == _sha256(src)
        # The metadata learnt from the peer is kept to share with the fleet, same infohash.
        got = await _until(lambda: leecher.torrent_file(ih), 5, "metadata bytes")
        assert parse_torrent(got).infohash == ih


async def test_an_address_this_host_does_not_have_is_a_config_error(tmp_path):
    # 198.51.100.0/24 is a documentation range no interface here carries: bind fails, nothing is sent.
    with pytest.raises(ConfigError):
        async with open_lt_engine(str(tmp_path), SwarmFlags(listen_addresses=("198.51.100.7",))):
            pass
    with pytest.raises(ConfigError):
        async with open_lt_engine(str(tmp_path / "missing"), LOOPBACK):
            pass

"""The Transmission adapter against a real transmission-daemon the test starts (loopback only).

Transmission 3 ignores 127.x peers it hears of from trackers/PEX/DHT, so the swarm is made the
only way loopback allows: a libtorrent peer dials the daemon's peer port.
"""

from __future__ import annotations

import hashlib

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from media.bencode import encode
from media.engine import STATES, completed_items
from media.lt_engine import open_lt_engine
from media.lt_settings import SwarmFlags
from media.torrent_input import parse_torrent
from media.transmission_engine import TransmissionConfig, open_transmission_engine
from tests.media.tr_daemon import file_with, free_port, transmission_daemon
from tva.errors import ConfigError, DaemonUnavailable, DecodeError, InvalidInput, RemoteDataError

LOOPBACK = SwarmFlags(listen_addresses=("127.0.0.1",), utp=False)


def _sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


async def _until(pred, timeout_s: float, what: str, interval_s: float = 0.2):
    with trio.move_on_after(timeout_s):
        while True:
            value = await pred()
            if value:
                return value
            await trio.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}")


async def _one(engine, infohash):
    return next(s for s in await engine.samples() if s.infohash == infohash)


async def test_transmission_downloads_from_a_libtorrent_peer_that_dials_it(tmp_path):
    lt_root, tr_root = tmp_path / "lt", tmp_path / "tr"
    lt_root.mkdir()
    tr_root.mkdir()
    src = file_with(lt_root / "show.mkv", 2 * 1024 * 1024 + 777)
    async with transmission_daemon(tmp_path, str(tr_root)) as daemon, open_transmission_engine(
        daemon.cfg
    ) as tr, open_lt_engine(str(lt_root), LOOPBACK) as lt_seed:
        assert tr.listen_port() == daemon.peer_port
        ih, data = await lt_seed.seed_path("show.mkv")
        assert await tr.add_torrent(data) == ih
        assert await tr.connect_peers(ih, (("127.0.0.1", lt_seed.listen_port()),)) == 0  # cannot dial

        async def ready():
            s = await _one(tr, ih)
            return s.state == "downloading" and s

        s = await _until(ready, 10, "transmission to start the torrent")
        assert s.peers == 0 and s.progress == 0.0 and s.size_bytes == 2 * 1024 * 1024 + 777
        assert await lt_seed.connect_peers(ih, (("127.0.0.1", tr.listen_port()),)) == 1
        seen_peers, seen_seeds = 0, 0

        async def complete():
            nonlocal seen_peers, seen_seeds
            s = await _one(tr, ih)
            seen_peers, seen_seeds = max(seen_peers, s.peers), max(seen_seeds, s.seeds)
            return s.progress >= 1.0 and s.state == "seeding" and s

        s = await _until(complete, 40, "transmission to finish the download", interval_s=0.05)
        assert seen_peers >= 1 and seen_seeds >= 1  # the libtorrent seeder, while it mattered
        assert s.size_bytes == s.bytes_done == 2 * 1024 * 1024 + 777
        assert s.name == "show.mkv" and s.error is None and s.save_path == str(tr_root)
        assert s.tracker_ok is None  # no tracker in this torrent
        assert _sha256(tr_root / "show.mkv") == _sha256(src)
        assert [i.infohash for i in await completed_items(tr)] == [ih]
        assert await tr.torrent_file(ih) == data


# What the tracker answers, announce by announce: a short first interval so a second announce
# comes soon and lowers Transmission's manual-announce hold-off (2 min by default) to 1 s, then a
# one-hour interval, so only a manual re-announce can bring a third; that one is refused.
_OK_SOON = {b"interval": 1, b"min interval": 1, b"peers": b""}
_OK_LATER = {b"interval": 3600, b"min interval": 1, b"peers": b""}
_REFUSE = {b"failure reason": b"tva test refusal"}


async def _tracker(announces: list[int], task_status=trio.TASK_STATUS_IGNORED):
    """A real HTTP tracker on loopback, scripted by the responses above."""

    async def handle(stream):
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                request += chunk
            if b"/announce" not in request.split(b"\r\n", 1)[0]:
                body = encode({b"failure reason": b"no scrape here"})
            else:
                announces.append(1)
                body = encode([_OK_SOON, _OK_LATER][len(announces) - 1] if len(announces) <= 2 else _REFUSE)
            head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)
            await stream.send_all(head + body)
        except trio.BrokenResourceError:
            pass
        finally:
            await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


async def test_seed_reannounce_verify_and_errors_surface(tmp_path):
    tr_root = tmp_path / "tr"
    tr_root.mkdir()
    path = file_with(tr_root / "doc.bin", 1024 * 1024, seed=7)
    announces: list[int] = []
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_tracker, announces)
        async with transmission_daemon(tmp_path, str(tr_root)) as daemon, open_transmission_engine(
            daemon.cfg
        ) as tr:
            ih, data = await tr.seed_path("doc.bin", trackers=(f"http://127.0.0.1:{port}/announce",))
            assert await tr.torrent_file(ih) == data

            async def announced_twice():
                s = await _one(tr, ih)
                return len(announces) >= 2 and s.tracker_ok is True and s.state == "seeding" and s

            s = await _until(announced_twice, 30, "two successful announces")
            assert s.progress == 1.0 and s.error is None and s.tracker_message is None
            # Right after an announce Transmission would silently drop a manual one: we say so.
            await _until(lambda: tr.reannounce(ih), 10, "Transmission to accept a manual announce")
            await _until(lambda: _more(announces, 2), 10, "the manual announce to reach the tracker")

            async def refused():
                s = await _one(tr, ih)
                return s.tracker_ok is False and s

            s = await _until(refused, 10, "the tracker refusal to surface")
            assert s.tracker_message == "tva test refusal" and s.error is None

            # Corrupt a piece on disk: verify must find it and progress must drop.
            with open(path, "r+b") as f:
                f.seek(500_000)
                f.write(b"\x00" * 32)
            await tr.verify(ih)

            async def rechecked():
                s = await _one(tr, ih)
                return s.state not in ("checking",) and s.progress < 1.0 and s

            s = await _until(rechecked, 30, "verify to notice the bad piece")
            assert 0.5 < s.progress < 1.0 and s.bytes_done < 1024 * 1024
            assert await completed_items(tr) == []

            # The data vanishes entirely: verify turns it into the daemon's local error.
            (tr_root / "doc.bin").unlink()
            await tr.verify(ih)

            async def errored():
                s = await _one(tr, ih)
                return s.state == "error" and s

            s = await _until(errored, 30, "verify to notice the missing file")
            assert "No data found" in (s.error or "")
            assert await completed_items(tr) == []

            await tr.remove(ih)
            assert await tr.samples() == []
            with pytest.raises(InvalidInput):
                await tr.verify(ih)
        nursery.cancel_scope.cancel()


async def _more(announces, before):
    return len(announces) > before


async def test_bad_inputs_and_unreachable_or_misconfigured_daemons(tmp_path):
    tr_root = tmp_path / "tr"
    tr_root.mkdir()
    (tmp_path / "outside.bin").write_bytes(b"x")
    async with transmission_daemon(tmp_path, str(tr_root)) as daemon:
        async with open_transmission_engine(daemon.cfg) as tr:
            with pytest.raises(DecodeError):
                await tr.add_torrent(b"not bencode at all")
            with pytest.raises(InvalidInput):
                await tr.seed_path("../outside.bin")
            with pytest.raises(InvalidInput):
                await tr.add_magnet("magnet:?xt=urn:sha1:abc")
            with pytest.raises(InvalidInput):
                await tr.reannounce("f" * 40)  # unknown to the daemon
            assert await tr.dht_peers("f" * 40, timeout_ms=10) == []
            assert await tr.samples() == []
            (tr_root / "s.bin").write_bytes(b"s" * 40_000)
            ih, _ = await tr.seed_path("s.bin")
            with pytest.raises(InvalidInput):
                await tr.connect_peers(ih, (("peer.example", 1),))
        # Another adapter (a restarted agent) finds the metadata in the daemon's own copy.
        async with open_transmission_engine(daemon.cfg) as tr2:
            assert [s.infohash for s in await tr2.samples()] == [ih]
            assert parse_torrent(await tr2.torrent_file(ih)).infohash == ih
            assert await tr2.torrent_file("e" * 40) is None
        wrong = TransmissionConfig(daemon.cfg.url, str(tr_root), daemon.cfg.username, "wrong-password")
        with pytest.raises(ConfigError):
            async with open_transmission_engine(wrong):
                pass
    nobody = TransmissionConfig(f"http://127.0.0.1:{free_port()}/transmission/rpc", str(tr_root), timeout_s=2)
    with pytest.raises(DaemonUnavailable):
        async with open_transmission_engine(nobody):
            pass
    with pytest.raises(ConfigError):
        async with open_transmission_engine(TransmissionConfig("ftp://x", str(tr_root))):
            pass


class _Reply:
    def __init__(self, fields):
        self.fields = fields


class _GarbageDaemon:
    """A daemon answering with malformed torrent entries — the real one never does, so a stub."""

    def __init__(self, entries):
        self.entries = entries

    def get_torrents(self, ids=None, arguments=None, timeout=None):
        return [_Reply(e) for e in self.entries]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)
field_names = st.sampled_from(
    ["hashString", "name", "percentDone", "haveValid", "sizeWhenDone", "status", "error", "errorString",
     "peersConnected", "peers", "rateDownload", "rateUpload", "trackerStats", "downloadDir",
     "metadataPercentComplete"]
)


GOOD_ENTRY = {"hashString": "ab" * 20, "name": "x", "percentDone": 0.5, "sizeWhenDone": 10, "status": 4}


@settings(max_examples=40)
@given(st.lists(st.dictionaries(field_names, json_values, max_size=15).map(lambda d: {**GOOD_ENTRY, **d})
                | st.dictionaries(field_names, json_values, max_size=15), min_size=1, max_size=3))
async def test_malformed_daemon_replies_give_remote_data_errors(tmp_path_factory, entries):
    from media.transmission_engine import TransmissionEngine

    engine = TransmissionEngine(_GarbageDaemon(entries), str(tmp_path_factory.getbasetemp()), 51413)
    try:
        samples = await engine.samples()
    except RemoteDataError:
        return
    for s in samples:
        assert len(s.infohash) == 40 and s.state in STATES and 0.0 <= s.progress <= 1.0
        assert min(s.peers, s.seeds, s.bytes_done, s.size_bytes, s.rate_down_bps, s.rate_up_bps) >= 0

"""TorrentManager's edges without moving bytes: input validation, the index file, endpoints, CLI.

The engine here is ``media.memory_engine.MemoryEngine`` (the seam's in-memory implementation,
same parsers and media-root rule as the real ones); transfers are tested in test_torrents_lt.py
and test_repair_e2e.py.
"""

from __future__ import annotations

import argparse
import base64
import os
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from agent.config import Config, load_config
from agent.probes import disk_free_bytes
from agent.service import Service
from agent.state import NodeState
from agent.store import StateStore
from agent.torrent_index import (
    INDEX_FILE,
    Entry,
    TorrentTuning,
    decode_index,
    encode_index,
    tuning_from_config,
)
from agent.torrents import TorrentManager
from cli import torrent as torrent_cli
from crdt import records
from media.bencode import encode
from media.engine import now_ms
from media.memory_engine import MemoryEngine
from media.torrent_input import TORRENT_BYTES_MAX
from media.torrent_make import make_torrent_v1
from tva.errors import ConfigError, DecodeError, InvalidInput, RemoteDataError, TvaError

IH = "ab" * 20


def node(tmp_path) -> tuple[Config, NodeState, Service]:
    cfg = Config(state_dir=tmp_path / "state", media_root=tmp_path / "media", host_name="n", host_class="server",
                 listen=("/ip4/127.0.0.1/tcp/0",))
    (tmp_path / "media").mkdir(exist_ok=True)
    state = NodeState.found(StateStore(cfg.state_dir), fleet_name="f",
                            card=records.HostCard(name="n", host_class="server"), now_ms=now_ms())
    return cfg, state, Service(state, media_dir=cfg.media_dir())


def memory_manager(tmp_path) -> tuple[TorrentManager, MemoryEngine, NodeState]:
    cfg, state, service = node(tmp_path)
    engine = MemoryEngine(str(cfg.media_dir()))

    @asynccontextmanager
    async def opener(_media, _flags):
        yield engine

    m = TorrentManager(cfg, state, service, clock_ms=now_ms, engine_factory=opener,
                       tuning=TorrentTuning(sample_interval_ms=50, auto_reaper=False))
    return m, engine, state


@asynccontextmanager
async def running(m: TorrentManager):
    async with trio.open_nursery() as nursery:
        await nursery.start(m.run)
        yield m
        nursery.cancel_scope.cancel()


def torrent_of(tmp_path, name: str, data: bytes, private: bool = False) -> bytes:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / name).write_bytes(data)
    raw = make_torrent_v1(str(src / name), ())
    if not private:
        return raw
    from media.bencode import decode

    top = decode(raw, bytes_max=1 << 20)
    top[b"info"][b"private"] = 1
    return encode(top)


# --- the index file ------------------------------------------------------------------------------

def test_index_round_trip_and_bad_rows_are_skipped(tmp_path):
    data = torrent_of(tmp_path, "a.bin", os.urandom(40000))
    from media.torrent_input import parse_torrent

    ih = parse_torrent(data).infohash
    good = Entry(ih, "a.bin-" + ih[:8], "public", "local", "seed", data, None, 40000)
    magnet = Entry(IH, "m-abababab", "f2f_only", "public", "repair", None, "sub", 10, 123)
    assert decode_index(encode_index({ih: good, IH: magnet})) == {ih: good, IH: magnet}
    # A row whose bytes are another torrent's, or whose policy is unknown, is dropped alone.
    lying = replace(magnet, infohash="cd" * 20, torrent=data)
    bad_policy = replace(magnet, infohash="ef" * 20, policy="open")
    assert decode_index(encode_index({"x": lying, "y": bad_policy, ih: good})) == {ih: good}


@given(st.binary(max_size=300))
def test_index_garbage_is_a_clear_error_or_skipped(raw):
    try:
        entries = decode_index(raw)
    except RemoteDataError:
        return
    assert all(isinstance(e, Entry) for e in entries.values())


def test_tuning_comes_from_the_validated_config(tmp_path):
    def cfg(**env):
        return load_config(file=None, env={"XDG_CONFIG_HOME": str(tmp_path), **env}, flags={})

    t = tuning_from_config(cfg(TVA_REAPER_STALLED_AFTER_MS="1000", TVA_REAPER_DEAD_AFTER_MS="2000",
                               TVA_TORRENT_UPLOAD_RATE_BPS="4096", TVA_DHT_BOOTSTRAP_NODES="10.0.0.5:6881"))
    assert t.reaper.stalled_after_ms == 1000 and t.swarm.upload_rate_limit_bps == 4096
    assert t.swarm.dht_bootstrap_nodes == (("10.0.0.5", 6881),) and t.swarm.utp is False
    with pytest.raises(ConfigError):
        cfg(TVA_TORRENT_UPLOAD_RATE_BPS="-1")
    with pytest.raises(ConfigError):  # dead before stalled
        cfg(TVA_REAPER_STALLED_AFTER_MS="5000", TVA_REAPER_DEAD_AFTER_MS="10")
    with pytest.raises(ConfigError):
        cfg(TVA_DHT_BOOTSTRAP_NODES="router-without-port")


# --- add: validation, policy, publication, restart -----------------------------------------------

async def test_add_refuses_bad_input_and_changes_nothing(tmp_path):
    m, _engine, state = memory_manager(tmp_path)
    (tmp_path / "outside.bin").write_bytes(b"x" * 20000)
    async with running(m):
        cases = [
            (dict(source=str(tmp_path / "outside.bin")), InvalidInput),
            (dict(source="magnet:?xt=urn:btih:nothex"), InvalidInput),
            (dict(torrent_b64="***"), InvalidInput),
            (dict(torrent_b64=base64.b64encode(b"d4:infoi1ee").decode()), DecodeError),
            (dict(source="x.bin", torrent_b64="AAAA"), InvalidInput),
            (dict(), InvalidInput),
            (dict(source="magnet:?xt=urn:btih:" + IH, policy="open"), InvalidInput),
        ]
        for kwargs, error in cases:
            with pytest.raises(error):
                await m.add(**kwargs)
        assert await m.listing() == [] and m.entries == {}
        assert state.store.read(INDEX_FILE) is None


async def test_add_garbage_torrent_bytes_never_crash(tmp_path):
    m, _engine, _state = memory_manager(tmp_path)
    blobs = [b"", b"d", b"de", encode({b"info": {b"name": b"../x", b"piece length": 16384, b"pieces": b"x" * 20,
                                                 b"length": 1}}), os.urandom(64), b"l" * 100 + b"e" * 100]
    async with running(m):
        for blob in blobs:
            with pytest.raises(TvaError):
                await m.add(torrent_b64=base64.b64encode(blob).decode() or "AA==")
        assert m.entries == {}


async def test_seed_publishes_a_holding_and_survives_a_restart(tmp_path):
    m, _engine, state = memory_manager(tmp_path)
    media = tmp_path / "media"
    (media / "film.bin").write_bytes(os.urandom(50000))
    async with running(m):
        added = await m.add(source=str(media / "film.bin"), policy="f2f_only")
        assert added["kind"] == "seed" and added["policy"] == "f2f_only"
        with trio.fail_after(5):
            while records.holding_key(added["content"]) not in dict(state.feeds.feed(state.key.public).live_items()):
                await trio.sleep(0.05)
    h = records.holdings_of(state.feeds.feed(state.key.public))[added["content"]]
    assert (h.state, h.policy, h.source, h.bytes_done, h.infohash) == ("complete", "f2f_only", "local", 50000,
                                                                      added["infohash"])
    # A new manager on the same state dir re-adds what was there.
    cfg = m.cfg
    fresh = MemoryEngine(str(cfg.media_dir()))

    @asynccontextmanager
    async def opener(_media, _flags):
        yield fresh

    again = TorrentManager(cfg, state, m.service, clock_ms=now_ms, engine_factory=opener,
                           tuning=TorrentTuning(sample_interval_ms=50, auto_reaper=False))
    async with running(again):
        assert [s.infohash for s in await fresh.samples()] == [added["infohash"]]
        assert again.entries[added["infohash"]].policy == "f2f_only"


async def test_private_torrent_is_closed_by_default_and_never_public(tmp_path):
    m, _engine, _state = memory_manager(tmp_path)
    data = torrent_of(tmp_path, "p.bin", os.urandom(30000), private=True)
    async with running(m):
        a = await m.add(torrent_b64=base64.b64encode(data).decode())
        assert a["policy"] == "search_only"
        await m.engine.remove(a["infohash"])
        b = await m.add(torrent_b64=base64.b64encode(data).decode(), policy="public")
        assert b["policy"] == "f2f_only" and "f2f_only" in b["note"]
        assert m.entries[b["infohash"]].source == "private-tracker"


# --- the CLI side -----------------------------------------------------------------------------------

def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(command="torrent", json=True, policy=None, **kw)


def test_cli_request_shapes(tmp_path):
    assert torrent_cli.request_for(_args(action="list")) == ("GET", "/torrents", None)
    magnet = "magnet:?xt=urn:btih:" + IH
    assert torrent_cli.request_for(_args(action="add", item=magnet))[2]["source"] == magnet
    tfile = tmp_path / "x.torrent"
    tfile.write_bytes(b"d4:infodee")
    method, path, body = torrent_cli.request_for(_args(action="add", item=str(tfile)))
    assert (method, path) == ("POST", "/torrents") and base64.b64decode(body["torrent_b64"]) == b"d4:infodee"
    (tmp_path / "film.bin").write_bytes(b"x")
    assert torrent_cli.request_for(_args(action="add", item=str(tmp_path / "film.bin")))[2]["source"] == \
        str(tmp_path / "film.bin")
    assert torrent_cli.request_for(_args(action="add", item="rel/inside.bin"))[2]["source"] == "rel/inside.bin"
    with pytest.raises(InvalidInput):
        torrent_cli.request_for(_args(action="add", item=""))
    big = tmp_path / "big.torrent"
    with open(big, "wb") as f:
        f.truncate(TORRENT_BYTES_MAX + 1)
    with pytest.raises(InvalidInput, match="larger"):
        torrent_cli.request_for(_args(action="add", item=str(big)))


async def test_a_repair_whose_lease_ended_unfinished_is_dropped(tmp_path):
    m, engine, state = memory_manager(tmp_path)
    data = torrent_of(tmp_path, "r.bin", os.urandom(40000))
    async with running(m):
        ih = await engine.add_torrent(data)
        cid = "r.bin-" + ih[:8]
        m._remember(Entry(ih, cid, "public", "local", "repair", data, None, 40000, lease_until_ms=now_ms() + 400))
        state.own.put(records.holding_key(cid), records.encode_holding(
            records.Holding(cid, ih, 40000, "partial", "public", "local", 1000)))
        await trio.sleep(0.2)
        assert ih in m.entries  # the lease still runs: kept, even with no FetchCopy (holder away)
        with trio.fail_after(5):
            while ih in m.entries:
                await trio.sleep(0.05)
        assert await engine.samples() == [] and state.own.get(records.holding_key(cid)) is None
        assert ih not in decode_index(state.store.read(INDEX_FILE))


async def test_a_repair_target_refuses_a_copy_its_disk_cannot_hold(tmp_path):
    m, engine, _state = memory_manager(tmp_path)
    free = disk_free_bytes(m.cfg.media_dir())
    assert m.room_for(1)
    assert not m.room_for(free + 1)  # more than the disk has
    data = torrent_of(tmp_path, "big.bin", os.urandom(1000))
    async with running(m):
        ih = await engine.add_torrent(data)
        # A copy already in flight counts against the room for the next one.
        m._remember(Entry(ih, "big", "public", "local", "repair", data, None, free))
        assert not m.room_for(10 * 1024**2)


@given(st.binary(max_size=400), st.sampled_from([None, "public", "f2f_only", "search_only"]))
def test_add_hypothesis_garbage_is_a_clear_error(tmp_path_factory, blob, policy):
    m, engine, _state = memory_manager(tmp_path_factory.mktemp("g"))
    m.engine = engine  # add() needs only the engine; no loops are running here
    try:
        trio.run(lambda: m.add(torrent_b64=base64.b64encode(blob).decode() or "AA==", policy=policy))
    except TvaError:
        assert m.entries == {} and trio.run(engine.samples) == []
    else:  # hypothesis found a valid torrent: then it was added under a valid content id
        assert len(m.entries) == 1


async def test_the_reaper_duty_nudges_dead_torrents_by_itself(tmp_path):
    from agent.policy.reaper import ReaperThresholds

    cfg, state, service = node(tmp_path)
    engine = MemoryEngine(str(cfg.media_dir()))

    @asynccontextmanager
    async def opener(_media, _flags):
        yield engine

    tuning = TorrentTuning(sample_interval_ms=50, auto_reaper=True, nudge_interval_ms=60_000,
                           reaper=ReaperThresholds(stalled_after_ms=200, dead_after_ms=400))
    m = TorrentManager(cfg, state, service, clock_ms=now_ms, engine_factory=opener, tuning=tuning)
    async with running(m):
        added = await m.add(source="magnet:?xt=urn:btih:" + IH + "&dn=lost")
        with trio.fail_after(5):
            while IH not in engine.announces:
                await trio.sleep(0.05)
        await trio.sleep(0.5)
        # One nudge per nudge interval, not one per tick; nothing removed.
        assert engine.announces.count(IH) == 1 and [s.infohash for s in await engine.samples()] == [IH]
        assert added["content"] == "lost-abababab"

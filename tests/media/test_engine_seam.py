"""The engine seam: every implementation has the Protocol's shape; completion events; `torrent add`."""

from __future__ import annotations

import inspect

import pytest
import trio

from media.commands import add_from_argument
from media.engine import CompletionTracker, TorrentEngine, watch_completed
from media.lt_engine import LibtorrentEngine, open_lt_engine
from media.lt_settings import SwarmFlags
from media.memory_engine import MemoryEngine
from media.torrent_make import make_torrent_v1
from media.transmission_engine import TransmissionEngine
from tva.errors import DecodeError, InvalidInput

PROTOCOL_METHODS = [
    n for n, v in vars(TorrentEngine).items() if callable(v) and not n.startswith("_")
]


@pytest.mark.parametrize("impl", [LibtorrentEngine, TransmissionEngine, MemoryEngine])
def test_implementations_have_the_protocols_methods_and_parameters(impl):
    assert len(PROTOCOL_METHODS) >= 12
    for name in PROTOCOL_METHODS:
        want = inspect.signature(getattr(TorrentEngine, name))
        have = inspect.signature(getattr(impl, name))
        assert inspect.iscoroutinefunction(getattr(impl, name)) == inspect.iscoroutinefunction(
            getattr(TorrentEngine, name)
        ), name
        # Every parameter the seam names is accepted (extra keyword-only extras are allowed).
        assert list(want.parameters)[: len(want.parameters)] == list(have.parameters)[: len(want.parameters)], name


async def test_completion_fires_again_after_an_item_is_lost_and_regained(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"a" * 50_000)
    (tmp_path / "b.bin").write_bytes(b"b" * 50_000)
    engine = MemoryEngine(str(tmp_path), clock_ms=lambda: 1000)
    tracker = CompletionTracker()
    assert tracker.update(await engine.samples()) == []
    ih, _ = await engine.seed_path("a.bin")
    b_data = make_torrent_v1(str(tmp_path / "b.bin"))
    ih_b = await engine.add_torrent(b_data, peers=(("10.0.0.2", 6881),))
    assert engine.dialled(ih_b) == (("10.0.0.2", 6881),)
    [item] = tracker.update(await engine.samples())
    assert (item.infohash, item.name, item.content_id) == (ih, "a.bin", f"a.bin-{ih[:8]}")
    assert tracker.update(await engine.samples()) == []  # no repeat
    engine.set_state(ih, progress=0.9, state="downloading")  # a failed verify
    assert tracker.update(await engine.samples()) == []
    engine.set_state(ih_b, progress=1.0, state="seeding", bytes_done=50_000)
    engine.set_state(ih, progress=1.0, state="seeding")
    assert sorted(i.infohash for i in tracker.update(await engine.samples())) == sorted([ih, ih_b])
    engine.set_state(ih, error="disk gone", state="error")
    assert tracker.update(await engine.samples()) == [] and tracker.complete_infohashes() == {ih_b}


async def test_watch_completed_streams_items_from_any_engine(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"a" * 20_000)
    engine = MemoryEngine(str(tmp_path))
    send, recv = trio.open_memory_channel(4)
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: watch_completed(engine, send, interval_ms=10, task_status=task_status))
        ih, _ = await engine.seed_path("a.bin")
        with trio.fail_after(5):
            assert (await recv.receive()).infohash == ih
        nursery.cancel_scope.cancel()


async def test_torrent_add_dispatches_on_the_argument(tmp_path):
    media, elsewhere = tmp_path / "media", tmp_path / "elsewhere"
    media.mkdir()
    elsewhere.mkdir()
    (media / "Home Video.mp4").write_bytes(b"v" * 100_000)
    (elsewhere / "x.bin").write_bytes(b"x" * 30_000)
    (elsewhere / "x.torrent").write_bytes(make_torrent_v1(str(elsewhere / "x.bin")))
    (elsewhere / "bad.torrent").write_bytes(b"d4:info")
    async with open_lt_engine(str(media), SwarmFlags(utp=False)) as engine:
        seeded = await add_from_argument(engine, "Home Video.mp4")
        assert seeded.kind == "seed" and seeded.name == "Home Video.mp4"
        assert seeded.content_id == f"Home-Video.mp4-{seeded.infohash[:8]}"
        from_file = await add_from_argument(engine, str(elsewhere / "x.torrent"))
        assert from_file.kind == "torrent_file" and from_file.name == "x.bin"
        ih = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a"
        mag = await add_from_argument(engine, f"magnet:?xt=urn:btih:{ih}&dn=Film")
        assert (mag.kind, mag.infohash, mag.content_id) == ("magnet", ih, "Film-c12fe1c0")
        listed = {s.infohash: s for s in await engine.samples()}
        assert set(listed) == {seeded.infohash, from_file.infohash, ih}
        assert listed[from_file.infohash].save_path == str(media.resolve())
        with pytest.raises(DecodeError):
            await add_from_argument(engine, str(elsewhere / "bad.torrent"))
        with pytest.raises(InvalidInput):
            await add_from_argument(engine, str(elsewhere / "x.bin"))  # outside the media root
        with pytest.raises(InvalidInput):
            await add_from_argument(engine, "magnet:?xt=urn:btih:zz")
        with pytest.raises(InvalidInput):
            await add_from_argument(engine, "")
        assert len(await engine.samples()) == 3  # nothing half-added by the refusals

"""A rogue member cannot make a victim download: real libtorrent sessions on loopback.

The rogue is built from the project's own modules: its own key and signed feed (``OwnFeed``),
delivered to the victim the way the mesh delivers deltas, and a real libtorrent session of its
own serving a hand-made .torrent of a 2 TiB item it does not have — the metadata is all it can
give. It claims (in its holding) the item is 1 MiB, pins it and writes repair intents naming the
victim. The victim runs a real ``TorrentManager`` with a real libtorrent engine.

* As the pin's baton (it is the only holder), its intent is honoured: the victim adds the magnet
  *on hold*, gets the metadata, sees 2 TiB against a 1 MiB claim and refuses — no data byte
  arrives, nothing is written under the media root, the refusal is counted.
* Intents from a member that is not the baton, or for an item nobody pinned, are refused
  without even adding a torrent.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import AsyncExitStack
from dataclasses import replace

import trio

from agent.config import Config
from agent.service import Service
from agent.state import NodeState
from agent.store import StateStore
from agent.torrent_index import TorrentTuning
from agent.torrents import TorrentManager
from agent.views import LiveInfo, Presence
from crdt import records
from crdt.feedset import FeedSet, OwnFeed
from crdt.identity import NodeKey
from media.bencode import encode
from media.engine import now_ms
from media.lt_engine import open_lt_engine
from media.lt_settings import SwarmFlags
from media.torrent_input import parse_torrent

LOOPBACK = SwarmFlags(listen_addresses=("127.0.0.1",), upnp=False, natpmp=False, lsd=False, dht=False, utp=False)
TIB = 1 << 40
CLAIM = 1 << 20
LEASE_MS = 30 * 60 * 1000


def huge_torrent(size: int = 2 * TIB, piece: int = 1 << 26) -> bytes:
    """A valid .torrent for an item of ``size`` bytes (made-up piece hashes: only its metadata
    ever travels, which is exactly what a liar can serve)."""
    pieces = b"".join(hashlib.sha1(i.to_bytes(4, "big")).digest() for i in range(-(-size // piece)))
    return encode({b"info": {b"name": b"huge.bin", b"length": size, b"piece length": piece, b"pieces": pieces}})


class Rogue:
    """An admitted member writing whatever it likes into its own, validly signed feed."""

    def __init__(self, victim: NodeState, seed: int, torrent_port: int) -> None:
        self.key = NodeKey(bytes([seed]) * 32)
        self.victim = victim
        self.own = OwnFeed(self.key, FeedSet())
        victim.doc.admit(self.key.peer_id, f"rogue{seed}", "member", None, now_ms())
        victim.refresh_membership()
        self.own.put(records.CARD_KEY, records.encode_card(records.HostCard(
            name=f"rogue{seed}", host_class="server", listen_addrs=("/ip4/127.0.0.1/tcp/1",),
            torrent_port=torrent_port)))

    def hold(self, content: str, infohash: str, claimed: int) -> None:
        self.own.put(records.holding_key(content), records.encode_holding(
            records.Holding(content, infohash, claimed, "complete", "public", "local", claimed)))

    def intend(self, content: str, target: str) -> None:
        self.own.put(records.intent_key(content, target), records.encode_intent(
            records.RepairIntent(content, target, now_ms() + LEASE_MS)))

    def push(self) -> None:
        self.victim.feeds.apply_delta(self.own.commit(now_ms()))


def tree(root) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def victim_node(tmp_path):
    cfg = Config(state_dir=tmp_path / "state", media_root=tmp_path / "media", host_name="victim",
                 host_class="server", listen=("/ip4/127.0.0.1/tcp/0",), torrent_engine="libtorrent",
                 disk_reserve_bytes=1 << 20)
    (tmp_path / "media").mkdir(parents=True)
    state = NodeState.found(StateStore(cfg.state_dir), fleet_name="home",
                            card=records.HostCard(name="victim", host_class="server"), now_ms=now_ms())
    live = {}

    def live_info() -> LiveInfo:  # what the mesh would say: every member alive, disks known
        return LiveInfo(liveness=dict.fromkeys(live, "alive"), presence=dict(live), daemon=True)

    service = Service(state, media_dir=cfg.media_dir(), live=live_info)
    seen: dict[str, int] = {}

    def engine_factory(media, _flags):
        return Recording(open_lt_engine(media, replace(LOOPBACK, listen_port=0)), seen)

    manager = TorrentManager(cfg, state, service, clock_ms=now_ms, engine_factory=engine_factory,
                             tuning=TorrentTuning(sample_interval_ms=100, auto_reaper=False, swarm=LOOPBACK))
    return cfg, state, service, manager, live, seen


class Recording:
    """Wraps the victim's engine to remember the most bytes any torrent ever had done."""

    def __init__(self, cm, seen: dict[str, int]) -> None:
        self.cm, self.seen = cm, seen

    async def __aenter__(self):
        engine = await self.cm.__aenter__()
        samples = engine.samples

        async def watched():
            out = await samples()
            for s in out:
                self.seen[s.infohash] = max(self.seen.get(s.infohash, 0), s.bytes_done)
            return out

        engine.samples = watched
        return engine

    async def __aexit__(self, *exc):
        return await self.cm.__aexit__(*exc)


async def wait_for(check, timeout_s: float, what: str):
    with trio.move_on_after(timeout_s):
        while not (result := check()):
            await trio.sleep(0.1)
        return result
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_rogue_baton_lying_about_size_gets_nothing_onto_the_victims_disk(tmp_path):
    cfg, state, service, manager, live, seen = victim_node(tmp_path / "victim")
    data = huge_torrent()
    ih = parse_torrent(data).infohash
    (tmp_path / "rogue").mkdir()
    async with AsyncExitStack() as stack:
        rogue_engine = await stack.enter_async_context(open_lt_engine(str(tmp_path / "rogue"), LOOPBACK))
        await rogue_engine.add_torrent(data)  # it has the metadata, none of the data
        rogue = Rogue(state, 9, rogue_engine.listen_port())
        live[rogue.key.peer_id] = Presence(1 << 45, 0.9)
        rogue.hold("huge", ih, CLAIM)  # "1 MiB": fits any disk
        rogue.push()
        state.doc.pin("huge", 2, None, now_ms())  # members may pin
        rogue.intend("huge", state.peer_id)
        rogue.push()
        service.invalidate()
        plan = next(p for p in service.custody_plans() if p.content == "huge")
        assert plan.baton == rogue.key.peer_id and plan.pending == (state.peer_id,)  # honoured as a baton's
        before = tree(cfg.media_dir())
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            await wait_for(lambda: manager.counters["repairs_refused_size"], 60, "the victim to refuse")
            await trio.sleep(1)  # a few more ticks: the same intent does not bring it back
            assert await manager.engine.samples() == [] and manager.entries == {}
            nursery.cancel_scope.cancel()
    assert seen.get(ih, 0) == 0  # not one byte of data
    assert tree(cfg.media_dir()) == before == {}
    assert manager.counters["repairs_refused_size"] == 1
    assert records.holdings_of(state.feeds.feed(state.key.public)) == {}  # no partial holding left


async def test_intents_of_a_non_baton_or_for_unpinned_items_add_nothing(tmp_path):
    cfg, state, service, manager, live, seen = victim_node(tmp_path / "victim")
    honest = Rogue(state, 3, 7003)  # an ordinary holder: the pin's baton
    honest.hold("film", "cd" * 20, CLAIM)
    honest.push()
    rogue = Rogue(state, 9, 7009)
    for peer in (honest, rogue):
        live[peer.key.peer_id] = Presence(1 << 45, 0.9)
    state.doc.pin("film", 2, None, now_ms())
    rogue.intend("film", state.peer_id)  # not its to write: it holds nothing, it is not the baton
    rogue.hold("bait", "ef" * 20, 2 * TIB)  # and an unpinned item it would love the victim to fetch
    rogue.intend("bait", state.peer_id)
    rogue.push()
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        await wait_for(lambda: manager.counters["intents_refused"] >= 2, 30, "both intents refused")
        await trio.sleep(0.5)
        assert await manager.engine.samples() == [] and manager.entries == {}
        nursery.cancel_scope.cancel()
    assert manager.counters["intents_refused"] == 2 and seen == {}
    assert tree(cfg.media_dir()) == {}
    # The honest baton's plan still wants its copy made: the rogue's intent did not count as one.
    service.invalidate()
    plan = next(p for p in service.custody_plans() if p.content == "film")
    assert plan.baton == honest.key.peer_id and plan.pending == () and len(plan.repairs) == 1
    assert os.path.isdir(cfg.media_dir())

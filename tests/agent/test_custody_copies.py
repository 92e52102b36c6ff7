"""A custody copy's whole life through the production path, on the in-memory engine.

Another member's signed feed arrives the way the mesh delivers it (``apply_delta``); the fleet
document holds the pin; ``TorrentManager.tick`` does the rest, as in the daemon: an intent of the
baton makes this host fetch the item on hold, the metadata's real size is checked before any data
is let in, the finished copy stays marked as custody's, and when the pin's max drops the trim
removes exactly that copy — files, index entry and holding — while a user's own copy stays.
The byte-moving version with real libtorrent sessions is tests/agent/test_repair_e2e.py.
"""

from __future__ import annotations

import base64
import os
from contextlib import asynccontextmanager

import trio
import trio.testing

from agent.config import Config
from agent.service import Service
from agent.state import NodeState
from agent.store import StateStore
from agent.torrent_index import INDEX_FILE, TorrentTuning, decode_index
from agent.torrents import TorrentManager
from agent.views import LiveInfo, Presence
from crdt import records
from crdt.feedset import FeedSet, OwnFeed
from crdt.identity import NodeKey
from media.memory_engine import MemoryEngine
from media.torrent_input import parse_torrent
from media.torrent_make import make_torrent_v1
from tests.agent.test_torrents import running

NOW = 1_900_000_000_000
LEASE_MS = 30 * 60 * 1000


class Clock:
    def __init__(self) -> None:
        self.ms = NOW

    def __call__(self) -> int:
        return self.ms


class Live:
    """What the mesh would report: members alive, with their disk free (targets need one)."""

    def __init__(self) -> None:
        self.presence: dict[str, Presence] = {}

    def __call__(self) -> LiveInfo:
        return LiveInfo(liveness=dict.fromkeys(self.presence, "alive"), presence=dict(self.presence), daemon=True)


LIVE = Live()


class Member:
    """Another admitted host, writing its own signed feed like its agent would."""

    def __init__(self, state: NodeState, name: str, seed: int) -> None:
        self.key = NodeKey(bytes([seed]) * 32)
        self.own = OwnFeed(self.key, FeedSet())
        self.state = state
        LIVE.presence[self.key.peer_id] = Presence(disk_free_bytes=1 << 40, uptime_score=0.9)
        state.doc.admit(self.key.peer_id, name, "member", None, NOW)
        state.refresh_membership()
        self.own.put(records.CARD_KEY, records.encode_card(records.HostCard(
            name=name, host_class="server", listen_addrs=("/ip4/127.0.0.1/tcp/1",), torrent_port=7000 + seed)))
        self.push()

    @property
    def peer_id(self) -> str:
        return self.key.peer_id

    def hold(self, content: str, infohash: str, size: int, *, custody: bool = False) -> None:
        self.own.put(records.holding_key(content), records.encode_holding(
            records.Holding(content, infohash, size, "complete", "public", "local", size, custody=custody)))

    def intend(self, content: str, target: str, lease_until_ms: int) -> None:
        self.own.put(records.intent_key(content, target),
                     records.encode_intent(records.RepairIntent(content, target, lease_until_ms)))

    def push(self) -> None:
        delta = self.own.commit(NOW)
        if delta is not None:
            self.state.feeds.apply_delta(delta)  # the path a delta from the mesh takes


def make_node(tmp_path, clock: Clock) -> tuple[TorrentManager, MemoryEngine, NodeState, Service]:
    cfg = Config(state_dir=tmp_path / "state", media_root=tmp_path / "media", host_name="me", host_class="server",
                 listen=("/ip4/127.0.0.1/tcp/0",), disk_reserve_bytes=1024)
    (tmp_path / "media").mkdir(exist_ok=True)
    state = NodeState.found(StateStore(cfg.state_dir), fleet_name="f", card=records.HostCard(name="me",
                            host_class="server"), now_ms=NOW)
    service = Service(state, media_dir=cfg.media_dir(), clock_ms=clock, live=LIVE)
    engine = MemoryEngine(str(cfg.media_dir()), clock_ms=clock)

    @asynccontextmanager
    async def opener(_media, _flags):
        yield engine

    m = TorrentManager(cfg, state, service, clock_ms=clock, engine_factory=opener,
                       tuning=TorrentTuning(sample_interval_ms=3_600_000, auto_reaper=False))
    return m, engine, state, service


def torrent_bytes(tmp_path, name: str, size: int) -> bytes:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / name).write_bytes(os.urandom(size))
    return make_torrent_v1(str(src / name), ())


def my_holding(state: NodeState, content: str) -> records.Holding | None:
    return records.holdings_of(state.feeds.feed(state.key.public)).get(content)


def plan(service: Service, content: str):
    service.invalidate()
    return next(p for p in service.custody_plans() if p.content == content)


async def tick(m: TorrentManager, service: Service) -> None:
    service.invalidate()
    await m.tick()


async def own_seed(m: TorrentManager, engine: MemoryEngine, service: Service, tmp_path, size: int) -> dict:
    """A file the user added on this host, complete and published."""
    added = await m.add(torrent_b64=base64.b64encode(torrent_bytes(tmp_path, "mine.bin", size)).decode())
    engine.set_state(added["infohash"], progress=1.0, bytes_done=size, state="seeding")
    await tick(m, service)
    return added


async def test_a_repair_copy_completes_stays_custodys_and_is_the_one_trimmed(tmp_path):
    clock = Clock()
    m, engine, state, service = make_node(tmp_path, clock)
    data = torrent_bytes(tmp_path, "film.bin", 50_000)
    ih = parse_torrent(data).infohash
    alpha = Member(state, "alpha", 1)  # the user's own copy lives there
    alpha.hold("film", ih, 50_000)
    alpha.push()
    state.doc.pin("film", 2, None, NOW)
    async with running(m):
        p = plan(service, "film")
        assert p.status == "under" and p.baton == alpha.peer_id and [r.target for r in p.repairs] == [state.peer_id]
        # The baton records its intent; this host fetches — metadata only, on hold.
        alpha.intend("film", state.peer_id, NOW + LEASE_MS)
        alpha.push()
        await tick(m, service)
        assert engine.held == {ih} and m.entries[ih].kind == "repair"
        assert plan(service, "film").pending == (state.peer_id,)
        engine.deliver_metadata(ih, data)
        await tick(m, service)
        assert engine.held == set() and m.entries[ih].torrent == data  # checked: the data may flow
        engine.set_state(ih, progress=1.0, bytes_done=50_000, state="seeding")
        await tick(m, service)
        mine = my_holding(state, "film")
        assert mine is not None and mine.state == "complete" and mine.custody
        assert m.entries[ih].kind == "custody"
        assert decode_index(state.store.read(INDEX_FILE))[ih].kind == "custody"  # survives a restart
        # The baton sees the copy done and removes its intent from its feed (alpha's agent would
        # do this; here the plan shows the copy counted and nothing pending).
        p = plan(service, "film")
        assert p.status == "ok" and p.copies == 2 and p.pending == ()

        # The pin's max drops to 1: the plan chooses custody's copy (this host), never alpha's.
        state.doc.pin("film", 1, 1, NOW)
        p = plan(service, "film")
        assert p.status == "over" and p.trims == (state.peer_id,)
        assert service.custody()[0]["trimming"] == [{"target": state.peer_id, "host": "me"}]
        await tick(m, service)
        assert ih not in m.entries and await engine.samples() == []
        assert my_holding(state, "film") is None and m.counters["trims_done"] == 1
        assert ih not in decode_index(state.store.read(INDEX_FILE))
        p = plan(service, "film")
        assert p.status == "ok" and p.holders == (alpha.peer_id,)


async def test_a_pin_over_its_max_with_only_users_copies_trims_nothing(tmp_path):
    clock = Clock()
    m, engine, state, service = make_node(tmp_path, clock)
    async with running(m):
        added = await own_seed(m, engine, service, tmp_path, 30_000)
        alpha = Member(state, "alpha", 1)
        alpha.hold(added["content"], added["infohash"], 30_000)
        alpha.push()
        state.doc.pin(added["content"], 1, 1, NOW)
        p = plan(service, added["content"])
        assert p.status == "over" and p.trims == () and "users' own" in p.notes[0]
        await tick(m, service)
        assert added["infohash"] in m.entries and my_holding(state, added["content"]) is not None


async def test_metadata_larger_than_the_claim_is_refused_before_any_data(tmp_path):
    clock = Clock()
    m, engine, state, service = make_node(tmp_path, clock)
    data = torrent_bytes(tmp_path, "big.bin", 80_000)
    ih = parse_torrent(data).infohash
    liar = Member(state, "liar", 2)
    liar.hold("big", ih, 1_000)  # claims 1 kB; the torrent is 80 kB
    state.doc.pin("big", 2, None, NOW)
    liar.intend("big", state.peer_id, NOW + LEASE_MS)  # it is the pin's baton: honoured
    liar.push()
    async with running(m):
        await tick(m, service)
        assert engine.held == {ih}
        engine.deliver_metadata(ih, data)
        await tick(m, service)
        assert ih not in m.entries and await engine.samples() == [] and engine.held == set()
        assert m.counters["repairs_refused_size"] == 1 and my_holding(state, "big") is None
        await tick(m, service)  # the same intent does not bring it back
        assert await engine.samples() == [] and m.counters["repairs_refused_size"] == 1


async def test_a_claim_the_disk_cannot_hold_is_refused_without_adding_anything(tmp_path):
    clock = Clock()
    m, engine, state, service = make_node(tmp_path, clock)
    huge = 1 << 49
    liar = Member(state, "liar", 2)
    liar.hold("huge", "ab" * 20, huge)
    state.doc.pin("huge", 2, None, NOW)
    liar.intend("huge", state.peer_id, NOW + LEASE_MS)
    liar.push()
    async with running(m):
        await tick(m, service)
        assert await engine.samples() == [] and m.counters["repairs_refused_disk"] == 1


async def test_intents_from_anyone_but_the_baton_are_refused_and_counted(tmp_path):
    clock = Clock()
    m, engine, state, service = make_node(tmp_path, clock)
    holder = Member(state, "holder", 1)
    holder.hold("film", "cd" * 20, 10_000)
    holder.push()
    rogue = Member(state, "rogue", 2)  # holds nothing: never the baton
    state.doc.pin("film", 2, None, NOW)
    rogue.intend("film", state.peer_id, NOW + LEASE_MS)
    rogue.intend("unpinned", state.peer_id, NOW + LEASE_MS)
    rogue.push()
    # The real baton with a lease far past the maximum: refused too.
    holder.intend("film", state.peer_id, NOW + m.cfg.repair_lease_ms_max + 1)
    holder.push()
    async with running(m):
        await tick(m, service)
        await tick(m, service)
        assert await engine.samples() == [] and m.entries == {}
        assert m.counters["intents_refused"] == 3  # each counted once, not once per tick
        assert plan(service, "film").pending == ()


async def test_the_baton_removes_intents_once_done_or_lapsed(tmp_path):
    clock = Clock()
    m, engine, state, service = make_node(tmp_path, clock)
    async with running(m):
        added = await own_seed(m, engine, service, tmp_path, 20_000)
        content = added["content"]
        a, b = Member(state, "a", 1), Member(state, "b", 2)
        state.doc.pin(content, 3, None, NOW)
        await tick(m, service)  # this host is the only holder, so the baton: two intents
        intents = records.intents_of(state.feeds.feed(state.key.public))
        assert {i.target_peer_id for i in intents.values()} == {a.peer_id, b.peer_id}
        a.hold(content, added["infohash"], 20_000, custody=True)  # a finished its copy
        a.push()
        await tick(m, service)
        left = records.intents_of(state.feeds.feed(state.key.public))
        assert {i.target_peer_id for i in left.values()} == {b.peer_id}
        clock.ms = NOW + LEASE_MS + 1  # b never finished: its lease lapses
        await tick(m, service)
        # The lapsed intent is gone; the re-planned repair may name b again, under a new lease.
        left = records.intents_of(state.feeds.feed(state.key.public))
        assert all(i.lease_until_ms > clock.ms for i in left.values())
        assert m.counters["intents_removed"] == 2
        state.doc.unpin(content, NOW)
        await tick(m, service)
        assert records.intents_of(state.feeds.feed(state.key.public)) == {}


async def test_the_metadata_releases_a_repair_at_once_not_a_sample_interval_later(tmp_path):
    """The daemon's own tick loop (sample interval: an hour here) runs the metadata check as soon
    as the engine says a repair's metadata arrived, so the data follows without waiting."""
    clock = Clock()
    m, engine, state, service = make_node(tmp_path, clock)
    data = torrent_bytes(tmp_path, "film.bin", 50_000)
    ih = parse_torrent(data).infohash
    alpha = Member(state, "alpha", 1)
    alpha.hold("film", ih, 50_000)
    alpha.push()
    state.doc.pin("film", 2, None, NOW)
    async with running(m):
        await trio.testing.wait_all_tasks_blocked()  # the loop's first tick is over: it waits now
        alpha.intend("film", state.peer_id, NOW + LEASE_MS)
        alpha.push()
        await tick(m, service)
        assert engine.held == {ih}
        await trio.testing.wait_all_tasks_blocked()
        service.invalidate()
        engine.deliver_metadata(ih, data)
        with trio.fail_after(5):  # an hour's sample interval otherwise
            while engine.held:
                await trio.sleep(0.01)
        assert m.entries[ih].torrent == data

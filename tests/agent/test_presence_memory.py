"""Peers' presence remembered across a restart (agent.presence_memory + Agent wiring).

Real agents (mesh core, driver, store, service, HTTP API on loopback) run in one trio process on
the in-memory transport under the mock clock, so simulated minutes cost milliseconds. A restarted
agent is put on a fresh, empty network: whatever it knows about its peers then came from the
file, since no frame can reach it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgpack
import pytest
import trio
from hypothesis import event, given
from hypothesis import strategies as st
from trio.testing import MockClock

from agent.config import Config
from agent.presence_memory import (
    PRESENCE_FILE,
    PRESENCE_FORMAT_VERSION,
    PresenceMemory,
    Remembered,
    decode_presence,
    encode_presence,
    fresh_records,
)
from agent.runtime import Agent
from agent.state import NodeState
from agent.store import HEADER, StateStore, load_or_create_identity
from crdt import records
from crdt.feedset import FeedSet, OwnFeed
from crdt.identity import NodeKey
from mesh.core.config import MeshConfig
from mesh.core.presence import as_presence
from mesh.core.signing import issue_presence, presence_message
from mesh.core.types import Presence
from mesh.memory_transport import MemoryNetwork
from tva.errors import DecodeError, UnsupportedVersion

WALL_BASE_MS = 1_900_000_000_000
TTL_MS = MeshConfig().presence_ttl_for(3)  # the default config, three members
LOGGER = "tva.agent.presence"
KEYS: dict[str, NodeKey] = {}  # every fleet member's key, so tests can write records its owner signed


def wall_ms() -> int:
    # Wall time follows the mock clock, so a restart "later" is later for the staleness check too.
    return WALL_BASE_MS + int(trio.current_time() * 1000)


def _cfg(state_dir: Path, name: str) -> Config:
    return Config(state_dir=state_dir, host_name=name, host_class="server", api="127.0.0.1:0",
                  wg_backend="off", torrent_engine="off", overlay_api=False,
                  join_listen=("/ip4/127.0.0.1/tcp/0",))


def make_fleet(root: Path, names: tuple[str, ...] = ("a", "b", "c")) -> list[Path]:
    """State dirs of a fleet: the first founds it, the others are admitted (as `_admit` does)."""
    dirs = [root / n for n in names]
    founder = NodeState.found(StateStore(dirs[0]), fleet_name="home",
                              card=records.HostCard(name=names[0], host_class="server"), now_ms=WALL_BASE_MS)
    KEYS[founder.peer_id] = founder.key
    joiners = []
    for name, d in zip(names[1:], dirs[1:], strict=True):
        store = StateStore(d)
        key = load_or_create_identity(store)
        KEYS[key.peer_id] = key
        feeds = FeedSet()
        own = OwnFeed(key, feeds)
        own.put(records.CARD_KEY, records.encode_card(records.HostCard(name=name, host_class="server")))
        delta = own.commit(WALL_BASE_MS)
        founder.doc.admit(key.peer_id, name, "member", None, WALL_BASE_MS)
        founder.refresh_membership()
        founder.feeds.apply_delta(delta)
        joiners.append((store, key, feeds))
    founder.save()
    for store, key, feeds in joiners:
        NodeState.joined(store, key, founder.fleet, founder.doc.save(),
                         founder.feeds.deltas_since({}, 1 << 20), feeds)
    return dirs


@contextmanager
def frozen(clock: MockClock) -> Iterator[None]:
    """Virtual time stands still. Start-up waits on worker threads (the fabric manager's set-up),
    and meanwhile an autojumping mock clock races ahead — far enough, on a loaded machine, for an
    agent alone on its network to declare its peers dead and drop their presence."""
    old = clock.autojump_threshold
    clock.autojump_threshold = math.inf
    try:
        yield
    finally:
        clock.autojump_threshold = old


async def wait_real(clock: MockClock, done: Callable[[], bool], timeout_s: float = 10) -> None:
    """Wait (real time, virtual time frozen) for work a worker thread does: the periodic save."""
    deadline = time.monotonic() + timeout_s
    with frozen(clock):
        while not done():
            assert time.monotonic() < deadline, "timed out"
            await trio.to_thread.run_sync(time.sleep, 0.005)


def start_agent(d: Path, net: MemoryNetwork) -> Agent:
    state = NodeState.load(StateStore(d))
    transport = net.transport(state.peer_id)
    for peer in state.members():  # the bootstrap addresses an invite would carry
        transport.add_peer_addrs(peer, [f"/memory/{peer}"])
    return Agent(_cfg(d, d.name), state, transport, clock_ms=wall_ms)


def peer_view(agent: Agent) -> dict[str, tuple]:
    """What this agent holds about its peers' presence (expiry aside: it is on a per-run clock)."""
    return {peer: (p.pseq, p.disk_free_bytes, p.uptime_score, p.endpoints, p.host_class, p.asleep)
            for peer, p in agent.node.presence().items() if peer != agent.state.peer_id}


def disk_in_hosts(agent: Agent) -> dict[str, int | None]:
    """Peers' disk free as `tva-agent hosts` shows it (the service, as the API and planning see it)."""
    return {row["peer_id"]: row["disk_free_bytes"] for row in agent.service.hosts() if not row["self"]}


async def run_fleet_and_stop_b(tmp_path: Path, clock: MockClock
                               ) -> tuple[list[Path], dict[str, tuple], dict[str, int | None]]:
    """Three agents gossip until b holds a and c's presence; then b stops gracefully. Returns the
    state dirs and b's view of its peers just before it stopped."""
    dirs = make_fleet(tmp_path)
    net = MemoryNetwork()
    agents = [start_agent(d, net) for d in dirs]
    async with trio.open_nursery() as nursery:
        with frozen(clock):
            for a in agents:
                await nursery.start(a.run)
        b = agents[1]
        with trio.fail_after(60):
            # its hosts view as well: the service rebuilds it from presence at the next policy tick
            while len(peer_view(b)) < 2 or None in disk_in_hosts(b).values():
                await trio.sleep(0.5)
        before, hosts_before = peer_view(b), disk_in_hosts(b)
        b.stop()
        # Leave + shutdown save. The shutdown also waits for the state's save in a worker thread,
        # which virtual time does not wait for: let both kinds of time pass until it is done.
        deadline = time.monotonic() + 30
        while b.presence_memory.saves < 1:
            assert time.monotonic() < deadline, "b did not save its presence on the way out"
            await trio.sleep(1)
            await trio.to_thread.run_sync(time.sleep, 0.01)
        for a in agents:
            a.stop()
    return dirs, before, hosts_before


async def start_alone(nursery: trio.Nursery, d: Path, clock: MockClock) -> Agent:
    """Restart the agent of ``d`` on an empty network: no frame can reach it. No virtual time
    passes during the start, so the caller sees the agent as it is the moment it runs."""
    agent = start_agent(d, MemoryNetwork())
    with frozen(clock):
        await nursery.start(agent.run)
    return agent


# --- (a) a restarted agent knows its peers' presence at once ----------------------------------


async def test_restarted_agent_knows_peers_presence_before_any_frame(tmp_path, autojump_clock, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    dirs, before, hosts_before = await run_fleet_and_stop_b(tmp_path, autojump_clock)
    assert (dirs[1] / PRESENCE_FILE).exists()
    assert all(v is not None for v in hosts_before.values()) and len(hosts_before) == 2
    async with trio.open_nursery() as nursery:
        b = await start_alone(nursery, dirs[1], autojump_clock)
        assert b.transport.stats().get("frames_in", 0) == 0
        assert peer_view(b) == before
        assert disk_in_hosts(b) == hosts_before
        b.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == LOGGER]


async def test_without_the_file_a_restarted_agent_knows_nothing(tmp_path, autojump_clock):
    # The control for the test above: the knowledge really comes from the file.
    dirs, before, _ = await run_fleet_and_stop_b(tmp_path, autojump_clock)
    assert before
    (dirs[1] / PRESENCE_FILE).unlink()
    (dirs[1] / f"{PRESENCE_FILE}.prev").unlink(missing_ok=True)
    async with trio.open_nursery() as nursery:
        b = await start_alone(nursery, dirs[1], autojump_clock)
        assert peer_view(b) == {}
        assert set(disk_in_hosts(b).values()) == {None}
        b.stop()


async def test_presence_is_saved_while_running_when_it_changes(tmp_path, autojump_clock):
    # A crash (no graceful stop) loses at most one save interval: the file is written while running.
    dirs = make_fleet(tmp_path)
    net = MemoryNetwork()
    agents = [start_agent(d, net) for d in dirs]
    async with trio.open_nursery() as nursery:
        with frozen(autojump_clock):
            for a in agents:
                await nursery.start(a.run)
        b = agents[1]
        assert not (dirs[1] / PRESENCE_FILE).exists()
        await trio.sleep(b.presence_memory.save_interval_ms / 1000 + 0.5)
        await wait_real(autojump_clock, lambda: b.presence_memory.saves > 0)
        assert b.presence_memory.saves == 1
        saved = decode_presence(StateStore(dirs[1]).read(PRESENCE_FILE))
        in_file = {p.peer: (p.pseq, p.disk_free_bytes, p.uptime_score, p.endpoints, p.host_class, p.asleep)
                   for p, _ in saved.records}
        assert in_file == peer_view(b) and len(in_file) == 2
        assert b.state.peer_id not in in_file  # its own presence is re-issued at start, never restored
        assert abs(saved.saved_wall_ms - wall_ms()) <= 2_000
        for a in agents:
            a.stop()


async def test_the_periodic_save_writes_only_when_presence_changed(tmp_path, autojump_clock):
    current = {"me": presence_of("me"), "p": presence_of("p")}
    p_key = KEYS["p"]
    memory = PresenceMemory(StateStore(tmp_path), self_id="me", presence=lambda: dict(current),
                            wall_ms=wall_ms, mono_ms=lambda: -1)
    interval_s = memory.save_interval_ms / 1000

    async def after_next_interval() -> int:
        await trio.sleep(interval_s)
        with frozen(autojump_clock):
            await trio.to_thread.run_sync(time.sleep, 0.05)  # a write, if one started, has ended
        return memory.saves

    async with trio.open_nursery() as nursery:
        await trio.sleep(0.5)
        nursery.start_soon(memory.run)
        assert await after_next_interval() == 0  # not armed: restore has not run yet
        assert memory.load(ttl_ms=TTL_MS) == ()
        assert await after_next_interval() == 1
        assert await after_next_interval() == 1  # nothing changed
        current["me"] = presence_of("me", disk=1)
        assert await after_next_interval() == 1  # only its own presence changed
        current["p"] = as_presence(issue_presence(p_key, 0, current["p"].pseq + 1, 1, 0.75, (), "nas", False), 0)
        assert await after_next_interval() == 2  # a peer's new presence
        del current["p"]
        assert await after_next_interval() == 3  # a peer gone
        assert decode_presence(StateStore(tmp_path).read(PRESENCE_FILE)).records == ()
        nursery.cancel_scope.cancel()


# --- crafted files: the restart path for every kind of content ---------------------------------


def member_ids(d: Path) -> tuple[str, list[str]]:
    state = NodeState.load(StateStore(d))
    return state.peer_id, sorted(state.members() - {state.peer_id})


def key_of(peer: str) -> NodeKey:
    """The member's own key; a stand-in key for names that are not members."""
    if peer not in KEYS:
        KEYS[peer] = NodeKey(bytes(31) + bytes([len(KEYS) % 256]))
    return KEYS[peer]


def presence_of(peer: str, *, disk: int = 123_456_789, score: float = 0.75) -> Presence:
    rec = issue_presence(key_of(peer), 5, 7, disk, score, (f"/memory/{peer}",), "nas", False)
    return as_presence(rec, 0)


def write_payload(d: Path, *, saved_wall_ms: int, rows: list) -> None:
    StateStore(d).write(PRESENCE_FILE, msgpack.packb([PRESENCE_FORMAT_VERSION, saved_wall_ms, rows]))


def signed_row(fields: list, remaining_ms: int) -> list:
    """A file row from presence-body fields [peer, incarnation, pseq, disk, score, endpoints, class,
    asleep], signed by the peer's key (or a stranger's, for names that are not members)."""
    body = msgpack.packb(fields, use_bin_type=True)
    key = KEYS.get(fields[0]) if isinstance(fields[0], str) else None
    sig = key.sign(presence_message(body)) if key is not None else b"\x01" * 64
    return [body, sig, remaining_ms]


def valid_rows(peers: list[str], remaining_ms: int = 10 * TTL_MS) -> list:
    return [[p.body, p.sig, remaining_ms] for p in map(presence_of, peers)]


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name == LOGGER]


@pytest.mark.parametrize("age_ms, restored", [(0, True), (TTL_MS - 5_000, True), (TTL_MS + 1, False),
                                              (10 * TTL_MS, False), (-5_000, True)])
async def test_a_file_older_than_the_ttl_is_not_restored(tmp_path, autojump_clock, caplog, age_ms, restored):
    # (c) Records that would still be valid by themselves (remaining 10 TTLs): only the file's age decides.
    caplog.set_level(logging.INFO, logger=LOGGER)
    dirs = make_fleet(tmp_path)
    _, peers = member_ids(dirs[1])
    write_payload(dirs[1], saved_wall_ms=wall_ms() - age_ms, rows=valid_rows(peers))
    async with trio.open_nursery() as nursery:
        b = await start_alone(nursery, dirs[1], autojump_clock)
        view = peer_view(b)
        b.stop()
    if restored:
        assert view == {p: (7, 123_456_789, 0.75, (f"/memory/{p}",), "nas", False) for p in peers}
    else:
        assert view == {}
        assert any("expired" in r.getMessage() for r in caplog.records if r.name == LOGGER)
    assert warnings_of(caplog) == []


async def test_a_stale_file_after_a_long_stop_is_not_restored(tmp_path, autojump_clock, caplog):
    # (c) end to end: a genuine file, and the agent stays down longer than the presence TTL.
    caplog.set_level(logging.INFO, logger=LOGGER)
    dirs, before, _ = await run_fleet_and_stop_b(tmp_path, autojump_clock)
    assert before
    await trio.sleep(TTL_MS / 1000 + 1)
    async with trio.open_nursery() as nursery:
        b = await start_alone(nursery, dirs[1], autojump_clock)
        assert peer_view(b) == {}
        assert set(disk_in_hosts(b).values()) == {None}
        b.stop()
    assert warnings_of(caplog) == []


async def test_a_restored_record_keeps_its_age_across_another_restart(tmp_path, autojump_clock):
    # Restored records count as fresh in the core; the file must not: a host restarting every few
    # seconds while its peers are down would otherwise keep their presence alive for ever.
    dirs = make_fleet(tmp_path)
    _, peers = member_ids(dirs[1])
    write_payload(dirs[1], saved_wall_ms=wall_ms(), rows=valid_rows(peers, remaining_ms=100_000))
    async with trio.open_nursery() as nursery:
        b = await start_alone(nursery, dirs[1], autojump_clock)
        assert len(peer_view(b)) == 2
        await trio.sleep(10)
        b.stop()
    saved = decode_presence(StateStore(dirs[1]).read(PRESENCE_FILE))
    assert {p.peer for p, _ in saved.records} == set(peers)
    assert all(80_000 <= left <= 90_000 for _, left in saved.records), saved.records
    await trio.sleep(91)
    async with trio.open_nursery() as nursery:
        b = await start_alone(nursery, dirs[1], autojump_clock)
        assert peer_view(b) == {}
        b.stop()


# --- (b) bad files: one warning, the agent starts, nothing else is lost -----------------------


def _raw(d: Path, data: bytes) -> None:
    (d / PRESENCE_FILE).write_bytes(data)


BAD_FILES = {
    "random bytes": lambda d, peers: _raw(d, b"\x93\x01garbage" * 40),
    "empty": lambda d, peers: _raw(d, b""),
    "truncated": lambda d, peers: (write_payload(d, saved_wall_ms=wall_ms(), rows=valid_rows(peers)),
                                   _raw(d, (d / PRESENCE_FILE).read_bytes()[: HEADER.size + 20])),
    "bit flip": lambda d, peers: (write_payload(d, saved_wall_ms=wall_ms(), rows=valid_rows(peers)),
                                  _raw(d, (lambda b: b[:-3] + bytes([b[-3] ^ 1]) + b[-2:])(
                                      (d / PRESENCE_FILE).read_bytes()))),
    "not msgpack": lambda d, peers: StateStore(d).write(PRESENCE_FILE, b"\xc1\xc1 not msgpack"),
    "wrong version": lambda d, peers: StateStore(d).write(
        PRESENCE_FILE, msgpack.packb([3, wall_ms(), valid_rows(peers)])),
    "an unsigned version 1 file": lambda d, peers: StateStore(d).write(
        PRESENCE_FILE, msgpack.packb([1, wall_ms(), [[p, 7, 1, 0.5, [], "", False, 9_000] for p in peers]])),
    "wrong shape": lambda d, peers: StateStore(d).write(PRESENCE_FILE, msgpack.packb({"v": 1})),
    "a field of the wrong type": lambda d, peers: write_payload(
        d, saved_wall_ms=wall_ms(), rows=[*valid_rows(peers)[:1], [valid_rows(peers)[1][0], "sig", 9]]),
    "uptime out of range": lambda d, peers: write_payload(
        d, saved_wall_ms=wall_ms(), rows=[*valid_rows(peers)[:1], signed_row([peers[1], 0, 7, 1, 5.0, [], "", False],
                                                                             9_000)]),
    "peer id too long": lambda d, peers: write_payload(
        d, saved_wall_ms=wall_ms(), rows=[*valid_rows(peers)[:1], signed_row(["x" * 65, 0, 7, 1, 0.5, [], "", False],
                                                                             9_000)]),
    "saved in the future": lambda d, peers: write_payload(
        d, saved_wall_ms=wall_ms() + 10 * TTL_MS, rows=valid_rows(peers)),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
async def test_a_bad_file_is_ignored_with_one_warning_and_the_agent_starts(tmp_path, autojump_clock, caplog,
                                                                           kind):
    caplog.set_level(logging.INFO, logger=LOGGER)
    dirs = make_fleet(tmp_path)
    before = {n: (dirs[1] / n).read_bytes() for n in ("identity", "fleet", "feeds", "fleetdoc", "local")}
    me, peers = member_ids(dirs[1])
    BAD_FILES[kind](dirs[1], peers)
    async with trio.open_nursery() as nursery:
        b = await start_alone(nursery, dirs[1], autojump_clock)
        assert peer_view(b) == {}  # all or nothing: the one good record in some files is not taken
        assert b.state.peer_id == me and sorted(b.state.members() - {me}) == peers
        await trio.sleep(3)
        assert me in b.node.presence()  # it runs as usual: its own presence is issued
        b.stop()
    assert len(warnings_of(caplog)) == 1, warnings_of(caplog)
    assert b.driver.counters.get("core_errors", 0) == 0  # refused as bad data, not as a core failure
    # Nothing else was touched: every other state file loads, and the identity file is byte-identical.
    assert (dirs[1] / "identity").read_bytes() == before["identity"]
    assert NodeState.load(StateStore(dirs[1])).members() == b.state.members()
    # The shutdown save replaced the bad file with a good one.
    assert decode_presence(StateStore(dirs[1]).read(PRESENCE_FILE, fallback=False)).records == ()


# --- hypothesis: whatever the file holds, the restore is all-or-nothing and never fatal -------


@pytest.fixture(scope="module")
def fleet_dirs(tmp_path_factory):
    return make_fleet(tmp_path_factory.mktemp("fleet"))


def _clear(d: Path) -> None:
    for f in d.glob(f"{PRESENCE_FILE}*"):
        f.unlink()


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _in_range_row(peer: st.SearchStrategy[str], remaining: st.SearchStrategy[int]) -> st.SearchStrategy[list]:
    """Presence-body fields and the remaining validity: [peer, incarnation, pseq, …, asleep, remaining]."""
    return st.tuples(peer, st.integers(0, 2**62), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
                     st.floats(0, 1), st.lists(st.text(min_size=1, max_size=256), max_size=16),
                     st.text(max_size=32), st.booleans(), remaining).map(list)


_valid_row = _in_range_row(st.one_of(st.sampled_from(["MEMBER0", "MEMBER1"]), st.text(min_size=1, max_size=64)),
                           st.integers(1, 10 * TTL_MS))
_wild_row = st.tuples(
    st.one_of(st.sampled_from(["MEMBER0", "MEMBER1"]), st.text(max_size=70)), st.integers(-2, 2**63),
    st.integers(-2, 2**63), st.integers(-1, 2**64 - 1), st.floats(allow_nan=True),
    st.lists(st.text(max_size=300), max_size=18), st.text(max_size=40), st.booleans(),
    st.integers(-1, 2**49)).map(list)
_junk_row = st.lists(st.one_of(st.none(), st.integers(-2**63, 2**64 - 1), st.text(max_size=5),
                               st.binary(max_size=5)), max_size=9)
_rows = st.one_of(st.lists(_valid_row, max_size=6),
                  st.lists(st.one_of(_valid_row, _wild_row, _junk_row), max_size=6))
_records_file = st.tuples(
    st.sampled_from([PRESENCE_FORMAT_VERSION] * 4 + [0, 2, "1"]),
    st.one_of(st.integers(-70_000, TTL_MS).map(lambda age: ("age", age)),
              st.integers(-2 * TTL_MS, 2 * TTL_MS).map(lambda age: ("age", age)), st.integers(-5, 2**64 - 1)),
    _rows)
# Files that should restore: members only, in range, fresh (kept apart so they are not rare).
_fresh_file = st.tuples(
    st.just(PRESENCE_FORMAT_VERSION), st.integers(-60_000, TTL_MS // 2).map(lambda age: ("age", age)),
    # remaining time at least a minute past the age: the file is read on the wall clock, which moves
    # on while the state loads (a boundary of a few ms made this flaky)
    st.lists(_in_range_row(st.sampled_from(["MEMBER0", "MEMBER1"]), st.integers(TTL_MS // 2 + 60_000, 10 * TTL_MS)),
             min_size=1, max_size=4))
_payload = st.one_of(st.tuples(st.just("raw"), st.binary(max_size=300)),
                     st.tuples(st.just("fresh"), _fresh_file),
                     st.tuples(st.just("payload"), st.binary(max_size=300)),
                     st.tuples(st.just("records"), _records_file),
                     st.tuples(st.just("records"), _records_file))


@given(content=_payload)
async def test_any_file_content_restores_all_or_nothing(fleet_dirs, content):
    d = fleet_dirs[1]
    me, peers = member_ids(d)
    _clear(d)
    kind, value = content
    if kind == "raw":
        _raw(d, value)
    elif kind == "payload":
        StateStore(d).write(PRESENCE_FILE, value)
    else:  # "records", "fresh"
        version, saved, rows = value
        saved = wall_ms() - saved[1] if isinstance(saved, tuple) else saved
        alias = {"MEMBER0": peers[0], "MEMBER1": peers[1]}  # placeholders for this fleet's peer ids
        rows = [signed_row([alias.get(r[0], r[0]), *r[1:8]], r[8]) if len(r) == 9 and isinstance(r[0], str) else r
                for r in rows]
        StateStore(d).write(PRESENCE_FILE, msgpack.packb([version, saved, rows]))
    in_file = (d / PRESENCE_FILE).read_bytes()
    state = NodeState.load(StateStore(d))
    vv_before = state.feeds.version_vector()
    agent = Agent(_cfg(d, d.name), state, MemoryNetwork().transport(me), clock_ms=wall_ms)
    handler = _Collect()
    logging.getLogger(LOGGER).addHandler(handler)
    try:
        agent._members_changed()
        agent._restore_presence()
    finally:
        logging.getLogger(LOGGER).removeHandler(handler)
    warned = [r for r in handler.records if r.levelno >= logging.WARNING]
    view = peer_view(agent)
    event(f"{kind}: {'warned' if warned else 'restored' if view else 'nothing to restore'}")
    assert len(warned) <= 1
    if kind == "raw":
        assert len(warned) == 1 and view == {}
    if kind == "fresh":
        assert not warned and view
    if warned:
        assert view == {}
    if view:  # every restored record is about a member and is exactly one of the file's records
        rows = decode_presence(StateStore(d).read(PRESENCE_FILE)).records
        file_views = {(p.peer, p.pseq, p.disk_free_bytes, float(p.uptime_score), p.endpoints, p.host_class,
                       p.asleep) for p, _ in rows}
        assert set(view) <= set(peers)
        assert {(peer, *v[:2], float(v[2]), *v[3:]) for peer, v in view.items()} <= file_views
    assert agent.driver.counters.get("core_errors", 0) == 0
    assert state.members() - {me} == set(peers) and state.feeds.version_vector() == vv_before
    # Reading a bad file changed nothing on disk but (at most) moving it aside for inspection.
    if (d / PRESENCE_FILE).exists():
        assert (d / PRESENCE_FILE).read_bytes() == in_file


# --- the codec and the age rule, directly -----------------------------------------------------


_presence = st.builds(
    lambda seed, inc, pseq, disk, score, eps, cls, asleep, expires: as_presence(
        issue_presence(NodeKey(seed), inc, pseq, disk, score, eps, cls, asleep), expires),
    st.binary(min_size=32, max_size=32), st.integers(0, 2**62), st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1), st.floats(0, 1), st.lists(st.text(min_size=1, max_size=256), max_size=16).map(tuple),
    st.text(max_size=32), st.booleans(), st.integers(1, 10**7))


@given(records=st.lists(_presence, max_size=20, unique_by=lambda p: p.peer), now=st.integers(0, 10**7),
       saved=st.integers(0, 2**62))
def test_encode_decode_round_trip(records, now, saved):
    data = encode_presence({p.peer: p for p in records}, self_id="self-not-a-peer", saved_wall_ms=saved,
                           now_mono_ms=now)
    out = decode_presence(data)
    assert out.saved_wall_ms == saved
    expect = sorted(((p.peer, p.incarnation, p.pseq, p.disk_free_bytes, p.uptime_score, p.endpoints, p.host_class,
                      p.asleep, p.sig), p.expires_ms - now) for p in records if p.expires_ms > now)
    got = sorted(((p.peer, p.incarnation, p.pseq, p.disk_free_bytes, p.uptime_score, p.endpoints, p.host_class,
                   p.asleep, p.sig), left) for p, left in out.records)
    assert got == expect


def test_the_age_rule():
    rec = presence_of("p")
    mem = Remembered(saved_wall_ms=1_000_000, records=((rec, 50_000),))
    assert fresh_records(mem, now_wall_ms=1_000_000, ttl_ms=TTL_MS) == ((rec, 50_000),)
    assert fresh_records(mem, now_wall_ms=1_040_000, ttl_ms=TTL_MS) == ((rec, 10_000),)
    assert fresh_records(mem, now_wall_ms=1_050_000, ttl_ms=TTL_MS) == ()  # the record ran out
    long = Remembered(saved_wall_ms=1_000_000, records=((rec, 10 * TTL_MS),))
    assert fresh_records(long, now_wall_ms=1_000_000 + TTL_MS, ttl_ms=TTL_MS) != ()
    assert fresh_records(long, now_wall_ms=1_000_001 + TTL_MS, ttl_ms=TTL_MS) == ()  # the file ran out
    assert fresh_records(long, now_wall_ms=1_000_000 - 30_000, ttl_ms=TTL_MS) != ()  # small clock step
    with pytest.raises(DecodeError, match="future"):
        fresh_records(long, now_wall_ms=1_000_000 - 120_000, ttl_ms=TTL_MS)


def test_versions_and_shapes_are_checked():
    for old_or_new in (1, 3):
        with pytest.raises(UnsupportedVersion):
            decode_presence(msgpack.packb([old_or_new, 0, []]))
    good = valid_rows(["p"])[0]
    for bad in (b"", b"\xc1", msgpack.packb([2, -1, []]), msgpack.packb([2, 0, [[1, 2]]]),
                msgpack.packb([2, 0, []]) + b"x", msgpack.packb([2, 0, [], 4]),
                msgpack.packb([2, 0, [[good[0], good[1][:63], 5]]]), msgpack.packb([2, 0, [[b"\xc1", good[1], 5]]]),
                msgpack.packb([2, 0, [[good[0], good[1], -1]]])):
        with pytest.raises(DecodeError):
            decode_presence(bad)


def test_saving_waits_for_the_restore(tmp_path):
    # An agent that fails during start-up (before restore) must not overwrite a good memory with
    # the empty view of a core that has not heard anyone yet.
    store = StateStore(tmp_path)
    store.write(PRESENCE_FILE, b"good memory")
    memory = PresenceMemory(store, self_id="me", presence=dict, wall_ms=lambda: 0, mono_ms=lambda: 0)
    assert memory.save() is False
    assert store.read(PRESENCE_FILE) == b"good memory"
    memory = PresenceMemory(StateStore(tmp_path / "other"), self_id="me", presence=dict, wall_ms=lambda: 0,
                            mono_ms=lambda: 0)
    assert memory.load(ttl_ms=TTL_MS) == () and memory.save() is True  # no file: armed all the same

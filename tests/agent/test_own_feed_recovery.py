"""A node that crashes after pushing a commit but before saving it does not split its own feed.

Real agents (mesh core, driver, store, service, the peer request path) run in one trio process on
the in-memory transport under the mock clock. The crash is the state dir rolled back to the last
save while a peer keeps the newer head. Two ways back: (1) at start the node pulls its own feed
from the peers it reaches and adopts the newer head; (2) when the peer holding it is away, the
node's first head after the start carries a GC horizon at its own version, so the peer takes a
full snapshot when it returns. Either way the peer's copy equals the owner's feed afterwards and
later deltas apply. The control: without either, the peer refuses every later delta.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import trio

from agent.runtime import Agent
from crdt import records
from mesh.memory_transport import MemoryNetwork
from tests.agent.test_presence_memory import frozen, make_fleet, start_agent

IH = "ab" * 20


def holds(agent: Agent, owner: Agent) -> dict[str, records.Holding]:
    feed = agent.state.feeds.feed(owner.state.key.public)
    return records.holdings_of(feed) if feed is not None else {}


def same_feed(a: Agent, b: Agent, owner: Agent) -> bool:
    fa, fb = a.state.feeds.feed(owner.state.key.public), b.state.feeds.feed(owner.state.key.public)
    return fa is not None and fb is not None and fa.head == fb.head and fa.entries_since(0) == fb.entries_since(0)


async def run(nursery, agents: list[Agent], clock) -> None:
    with frozen(clock):
        for a in agents:
            await nursery.start(a.run)


async def until(check, what: str, timeout_s: float = 120) -> None:
    with trio.fail_after(timeout_s):
        while not check():
            await trio.sleep(0.5)


async def crash_after_push(tmp_path: Path, clock) -> tuple[list[Path], Path]:
    """a founds, b and c join; a's later commit reaches b only, then a dies unsaved. Returns the
    state dirs (a's rolled back to its last save) and the copy of that save."""
    dirs = make_fleet(tmp_path)
    net = MemoryNetwork()
    agents = [start_agent(d, net) for d in dirs]
    async with trio.open_nursery() as nursery:
        await run(nursery, agents, clock)
        a, b, c = agents
        await until(lambda: same_feed(a, b, a) and same_feed(a, c, a), "b and c to hold a's feed")
        for x in agents:
            x.stop()
    saved = tmp_path / "a-saved"
    shutil.copytree(dirs[0], saved)
    net = MemoryNetwork()
    agents = [start_agent(d, net) for d in dirs]
    async with trio.open_nursery() as nursery:
        await run(nursery, agents, clock)
        a, b, c = agents
        net.partition([a.state.peer_id, b.state.peer_id], [c.state.peer_id])
        a.service.add_holding("lost", IH, 1000, "public", "local")  # pushed at once…
        await until(lambda: "lost" in holds(b, a), "b to get a's commit")
        assert "lost" not in holds(c, a)
        for x in agents:
            x.stop()
    shutil.rmtree(dirs[0])  # …and never saved: a comes back as it was at its last save
    shutil.copytree(saved, dirs[0])
    return dirs, saved


async def test_a_restarted_node_pulls_its_newer_head_from_a_peer(tmp_path, autojump_clock, caplog):
    caplog.set_level(logging.WARNING, logger="tva.feeds")
    dirs, _ = await crash_after_push(tmp_path, autojump_clock)
    net = MemoryNetwork()
    a, b = start_agent(dirs[0], net), start_agent(dirs[1], net)
    assert "lost" not in holds(a, a)
    async with trio.open_nursery() as nursery:
        await run(nursery, [b, a], autojump_clock)
        assert "lost" in holds(a, a)  # recovered before a wrote anything
        assert any("recovered this host's feed" in r.getMessage() for r in caplog.records)
        a.service.add_holding("after", IH, 2000, "public", "local")
        await until(lambda: "after" in holds(b, a) and same_feed(a, b, a), "b to take a's next commit")
        for x in (a, b):
            x.stop()


async def test_without_the_holder_the_rebase_makes_it_take_a_snapshot_when_it_returns(tmp_path, autojump_clock):
    dirs, _ = await crash_after_push(tmp_path, autojump_clock)
    net = MemoryNetwork()
    a, b, c = (start_agent(d, net) for d in dirs)
    net.kill(b.state.peer_id)  # the only peer with the lost head is away
    async with trio.open_nursery() as nursery:
        await run(nursery, [c, a], autojump_clock)
        assert "lost" not in holds(a, a)
        assert a.state.own.feed.gc_version > 0  # the rebase: no GC ran (nothing was ever deleted)
        a.service.add_holding("after", IH, 2000, "public", "local")
        await until(lambda: same_feed(a, c, a), "c to follow a")
        net.revive(b.state.peer_id)
        await run(nursery, [b], autojump_clock)
        await until(lambda: same_feed(a, b, a), "b to replace its divergent copy of a's feed")
        assert set(holds(b, a)) == {"after"}  # the lost commit is gone everywhere, consistently
        a.service.add_holding("later", IH, 3000, "public", "local")
        await until(lambda: "later" in holds(b, a) and same_feed(a, b, a), "b to apply a's deltas again")
        for x in (a, b, c):
            x.stop()


async def test_control_without_recovery_the_peer_refuses_the_owner_for_good(tmp_path, autojump_clock, monkeypatch):
    dirs, _ = await crash_after_push(tmp_path, autojump_clock)

    async def no_recovery(self) -> None:
        self._learn_peer_addrs()

    monkeypatch.setattr(Agent, "_recover_own_feed", no_recovery)
    net = MemoryNetwork()
    a, b = start_agent(dirs[0], net), start_agent(dirs[1], net)
    async with trio.open_nursery() as nursery:
        await run(nursery, [b, a], autojump_clock)
        a.service.add_holding("after", IH, 2000, "public", "local")
        await trio.sleep(30)
        assert "after" not in holds(b, a) and not same_feed(a, b, a)
        assert any(k.startswith("deltas_refused") for k in b.driver.counters)
        for x in (a, b):
            x.stop()


async def test_the_running_agent_collects_tombstones_on_its_horizon(tmp_path, autojump_clock):
    from agent import feed_upkeep

    dirs = make_fleet(tmp_path, ("a", "b"))
    net = MemoryNetwork()
    a, b = (start_agent(d, net) for d in dirs)
    async with trio.open_nursery() as nursery:
        await run(nursery, [a, b], autojump_clock)
        churn = 2 * feed_upkeep.TOMBSTONES_FLOOR
        for i in range(churn):  # holdings come and go, as torrents do
            a.service.add_holding(f"item-{i}", IH, 1000, "public", "local")
            a.service.remove_holding(f"item-{i}")
        assert len(a.state.own.feed.tombstone_keys()) == churn
        await trio.sleep(feed_upkeep.GC_INTERVAL_MS / 1000 * 2)
        # Bounded by the live entries or the floor; b follows the new horizon.
        assert len(a.state.own.feed.tombstone_keys()) <= feed_upkeep.TOMBSTONES_FLOOR
        await until(lambda: same_feed(a, b, a), "b to follow a's collected feed")
        for x in (a, b):
            x.stop()

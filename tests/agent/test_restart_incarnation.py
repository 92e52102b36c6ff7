"""Agents restarted with a clock that did not move forward are taken again (issue 14, item 4).

The agent seeds its mesh incarnation from the wall clock. Three real agents (mesh core, driver,
store, service) on the in-memory transport; one stops gracefully (its peers then hold it *left*,
a statement it signed) and restarts from its state dir with its clock an hour behind, or within
the same second: a lower or equal incarnation than its peers hold. It must be alive everywhere
again, with its new presence, at an incarnation just above the one its peers held.
"""

from __future__ import annotations

import pytest
import trio

from agent.runtime import INCARNATION_EPOCH_S, Agent
from agent.state import NodeState
from agent.store import StateStore
from mesh.memory_transport import MemoryNetwork
from tests.agent.test_presence_memory import _cfg, frozen, make_fleet, start_agent, wall_ms


def _held(agent: Agent, peer: str) -> tuple[str, int, int | None]:
    m = agent.node.swim.members[peer]
    p = agent.node.presence().get(peer)
    return m.state.value, m.incarnation, None if p is None else p.incarnation


@pytest.mark.parametrize("clock", ["an hour back", "the second of its first start"])
async def test_an_agent_restarted_at_a_lower_or_equal_incarnation_is_alive_again_everywhere(
        tmp_path, autojump_clock, clock):
    dirs = make_fleet(tmp_path)
    net = MemoryNetwork()
    agents = [start_agent(d, net) for d in dirs]
    async with trio.open_nursery() as nursery:
        with frozen(autojump_clock):
            for a in agents:
                await nursery.start(a.run)
        with trio.fail_after(120):
            while not all(len(a.node.presence()) == 3 for a in agents):
                await trio.sleep(0.5)
        b = agents[1]
        first = b.node.incarnation()
        b.stop()
        with trio.fail_after(120):
            while not all(a.node.liveness()[b.state.peer_id].value == "left" for a in (agents[0], agents[2])):
                await trio.sleep(0.2)
        held = agents[0].node.swim.members[b.state.peer_id].incarnation  # its signed "left"
        assert held == first + 1

        state = NodeState.load(StateStore(dirs[1]))
        transport = net.transport(state.peer_id)
        for peer in state.members():
            transport.add_peer_addrs(peer, [f"/memory/{peer}"])
        if clock == "an hour back":
            def clock_ms() -> int:
                return wall_ms() - 3_600_000
        else:  # a board without a real-time clock, say, that booted to the same time again
            def clock_ms() -> int:
                return (first + INCARNATION_EPOCH_S) * 1000 + 500
        b2 = Agent(_cfg(dirs[1], "b"), state, transport, clock_ms=clock_ms)
        assert b2.node.incarnation() <= first < held
        with frozen(autojump_clock):
            await nursery.start(b2.run)
        peer = b2.state.peer_id
        with trio.fail_after(120):
            while not all(_held(a, peer) == ("alive", held + 1, held + 1) for a in (agents[0], agents[2])):
                await trio.sleep(0.2)
        assert b2.node.incarnation() == held + 1
        assert len(b2.node.presence()) == 3
        for a in (agents[0], agents[2], b2):
            a.stop()

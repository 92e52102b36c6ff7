"""``MeshDriver.wait_first_contact``: a node that just started learns when what it sent is out —
a frame delivered to a peer and none left queued (a joiner's card, before its API is built).
Real mesh core and driver over the in-memory transport, under trio's MockClock."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from agent.mesh_driver import MeshDriver
from mesh.core import LocalChanged, MembersChanged, MeshConfig
from mesh.memory_transport import MemoryNetwork
from tests.mesh.harness import MemDoc, MemFeeds, make_node

CONFIG = MeshConfig(gossip_interval_ms=200, sync_interval_ms=1000, probe_interval_ms=1000, probe_timeout_ms=500)
NAMES = ("node0000", "node0001")


@pytest.fixture
def clock():
    return trio.testing.MockClock(autojump_threshold=0)


def _driver(net: MemoryNetwork, name: str) -> tuple[MeshDriver, MemFeeds]:
    feeds = MemFeeds(name.encode())
    node = make_node(name, CONFIG, feeds, MemDoc(), random.Random(name))
    return MeshDriver(node, net.transport(name)), feeds


async def _start(nursery: trio.Nursery, net: MemoryNetwork, name: str) -> tuple[MeshDriver, MemFeeds]:
    driver, feeds = _driver(net, name)
    for other in NAMES:
        if other != name:
            driver.transport.add_peer_addrs(other, [f"/memory/{other}"])
    await nursery.start(driver.transport.run)
    await nursery.start(driver.run)
    driver.submit(MembersChanged(members=frozenset(NAMES), classes={}))
    return driver, feeds


async def test_first_contact_once_the_first_change_reached_a_peer(clock):
    net = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        await _start(nursery, net, NAMES[1])
        joiner, feeds = await _start(nursery, net, NAMES[0])
        joiner.submit(LocalChanged(delta=feeds.commit(b"card")))
        with trio.fail_after(1):
            await joiner.wait_first_contact()
        assert joiner.transport.stats()["frames_out"] >= 1
        nursery.cancel_scope.cancel()


async def test_no_first_contact_while_no_peer_can_be_reached(clock):
    net = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        await _start(nursery, net, NAMES[1])
        net.kill(NAMES[1])
        joiner, feeds = await _start(nursery, net, NAMES[0])
        joiner.submit(LocalChanged(delta=feeds.commit(b"card")))
        with trio.move_on_after(5) as waited:
            await joiner.wait_first_contact()
        assert waited.cancelled_caught, "first contact reported with the only peer unreachable"
        net.revive(NAMES[1])
        with trio.fail_after(5):  # the next gossip or probe gets through
            await joiner.wait_first_contact()
        nursery.cancel_scope.cancel()


async def test_first_contact_does_not_wait_for_frames_queued_after_the_call(clock):
    # A joiner syncing thousands of holdings always has some frame queued: what counts is what was
    # queued when it asked (its card), not an empty lane (which held a joiner's API back 1 s).
    net = MemoryNetwork(latency_ms=50)
    async with trio.open_nursery() as nursery:
        await _start(nursery, net, NAMES[1])
        joiner, feeds = await _start(nursery, net, NAMES[0])
        joiner.submit(LocalChanged(delta=feeds.commit(b"card")))

        async def keep_changing() -> None:
            for i in range(10_000):
                joiner.submit(LocalChanged(delta=feeds.commit(b"change %d" % i)))
                await trio.sleep(0.01)

        nursery.start_soon(keep_changing)
        await trio.sleep(0.02)
        start = trio.current_time()
        with trio.fail_after(2):
            await joiner.wait_first_contact()
        assert trio.current_time() - start < 0.5
        assert joiner.transport.stats()["frames_out"] >= 1
        nursery.cancel_scope.cancel()

"""MemoryNetwork's fault injection and timing, under trio's MockClock (simulated minutes in ms)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from crdt.identity import NodeKey
from mesh.memory_transport import MemoryNetwork
from mesh.transport import TransportLimits
from tva.errors import InvalidInput, PeerUnavailable

LIMITS = TransportLimits(backoff_initial_ms=1_000, backoff_max_ms=8_000)


def pid(i: int) -> str:
    return NodeKey(bytes([i]) * 32).peer_id


@pytest.fixture
def clock():
    return trio.testing.MockClock(autojump_threshold=0)


async def start(net: MemoryNetwork, nursery: trio.Nursery, n: int):
    nodes = [net.transport(pid(i + 1)) for i in range(n)]
    for node in nodes:
        await nursery.start(node.run)
    for a in nodes:
        for b in nodes:
            if a is not b:
                a.add_peer_addrs(b.local_peer, b.listen_addrs())
    return nodes


async def test_kill_is_detected_then_backoff_then_revive(clock):
    net = MemoryNetwork(LIMITS)
    async with trio.open_nursery() as nursery:
        a, b = await start(net, nursery, 2)
        assert await a.send(b.local_peer, b"1")
        net.kill(b.local_peer)
        assert not await a.send(b.local_peer, b"2")
        assert not a.is_connected(b.local_peer)
        net.revive(b.local_peer)
        # Still backing off: fails fast without a dial.
        dials = a.stats()["dials"]
        assert not await a.send(b.local_peer, b"3")
        assert a.stats()["dials"] == dials
        await trio.sleep(LIMITS.backoff_initial_ms / 1000)
        assert await a.send(b.local_peer, b"4")
        assert [(await b.incoming().receive())[1] for _ in range(2)] == [b"1", b"4"]
        nursery.cancel_scope.cancel()


async def test_backoff_doubles_up_to_its_cap(clock):
    net = MemoryNetwork(LIMITS)
    async with trio.open_nursery() as nursery:
        a, b = await start(net, nursery, 2)
        net.kill(b.local_peer)
        waits = []
        for _ in range(6):
            assert not await a.send(b.local_peer, b"x")
            t0 = trio.current_time()
            while not await _try(a, b.local_peer):
                await trio.sleep(0.01)
            waits.append(round((trio.current_time() - t0) * 1000, -2))
        assert waits == [1000, 2000, 4000, 8000, 8000, 8000]
        nursery.cancel_scope.cancel()


async def _try(a, peer) -> bool:
    before = a.stats()["dials"]
    await a.send(peer, b"probe")
    return a.stats()["dials"] > before


async def test_restart_with_new_address_skips_backoff(clock):
    net = MemoryNetwork(LIMITS)
    async with trio.open_nursery() as nursery:
        a, b = await start(net, nursery, 2)
        net.kill(b.local_peer)
        assert not await a.send(b.local_peer, b"x")
        b2 = net.transport(b.local_peer)  # a restarted process: same identity, new transport
        await nursery.start(b2.run)
        a.add_peer_addrs(b.local_peer, ["/memory/restarted"])
        assert await a.send(b.local_peer, b"y")
        assert await b2.incoming().receive() == (a.local_peer, b"y")
        nursery.cancel_scope.cancel()


async def test_partition_and_heal(clock):
    net = MemoryNetwork(LIMITS)
    async with trio.open_nursery() as nursery:
        a, b, c = await start(net, nursery, 3)
        net.partition([a.local_peer], [b.local_peer, c.local_peer])
        assert not await a.send(b.local_peer, b"x")
        assert not await c.send(a.local_peer, b"x")
        assert await b.send(c.local_peer, b"inside")
        with pytest.raises(PeerUnavailable):
            await b.request(a.local_peer, b"q", timeout_ms=1_000)
        net.heal()
        await trio.sleep(LIMITS.backoff_max_ms / 1000)
        assert await a.send(b.local_peer, b"healed")
        nursery.cancel_scope.cancel()


async def test_latency_and_request_timeouts_in_simulated_time(clock):
    net = MemoryNetwork(LIMITS, latency_ms=40)
    async with trio.open_nursery() as nursery:
        a, b = await start(net, nursery, 2)

        async def handler(peer, payload):
            await trio.sleep(int(payload) / 1000)
            return b"ok"

        b.set_request_handler(handler)
        t0 = trio.current_time()
        assert await a.request(b.local_peer, b"100", timeout_ms=500) == b"ok"
        assert trio.current_time() - t0 == pytest.approx(0.18)
        with pytest.raises(PeerUnavailable):
            await a.request(b.local_peer, b"1000", timeout_ms=500)
        t0 = trio.current_time()
        assert await a.send(b.local_peer, b"f")
        assert trio.current_time() - t0 == pytest.approx(0.04)
        nursery.cancel_scope.cancel()


async def test_send_queue_cap_drops_excess_senders(clock):
    net = MemoryNetwork(TransportLimits(send_queue_frames_max=3), latency_ms=10)
    async with trio.open_nursery() as nursery:
        a, b = await start(net, nursery, 2)
        results = []

        async def one():
            results.append(await a.send(b.local_peer, b"x"))

        async with trio.open_nursery() as senders:
            for _ in range(5):
                senders.start_soon(one)
        assert sorted(results) == [False, False, True, True, True]
        assert a.stats()["send_queue_drops"] == 2
        nursery.cancel_scope.cancel()


async def test_a_stopped_transport_is_unreachable(clock):
    net = MemoryNetwork(LIMITS)
    async with trio.open_nursery() as nursery:
        a, _b = await start(net, nursery, 2)
        nursery.cancel_scope.cancel()
    # Both stopped now; a fresh node cannot reach either.
    async with trio.open_nursery() as nursery:
        c = net.transport(pid(9))
        await nursery.start(c.run)
        c.add_peer_addrs(a.local_peer, a.listen_addrs())
        assert not await c.send(a.local_peer, b"x")
        nursery.cancel_scope.cancel()


def test_network_refuses_nonsense():
    with pytest.raises(InvalidInput):
        MemoryNetwork(latency_ms=-1)

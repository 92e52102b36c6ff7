"""The mesh driver's send queues are bounded in bytes per peer and for the whole node.

Peers that read slowly (here: a one-minute link, under trio's MockClock) must not make a node hold
a delta per peer without end: 30 peers × 8 MiB would be 240 MiB. The driver drops what does not fit
(counted; the sync protocol re-sends by digest) and its accounting returns to zero once they drain.
"""

from __future__ import annotations

import os
import random

import pytest
import trio
import trio.testing

from agent.mesh_driver import NODE_BULK_QUEUE_BYTES_MAX, PEER_BULK_QUEUE_BYTES_MAX, MeshDriver
from crdt.feedset import FeedSet
from crdt.fleetdoc import FleetDoc
from crdt.identity import NodeKey
from mesh.core import MeshNode
from mesh.core import types as t
from mesh.core.config import MeshConfig
from mesh.memory_transport import MemoryNetwork

LINK_LATENCY_MS = 60_000
PEERS = 30
FRAME_BYTES = 3 * 1024 * 1024


@pytest.fixture
def clock():
    return trio.testing.MockClock()  # time moves only when the test jumps it


async def test_bulk_frames_for_many_slow_peers_stay_within_the_nodes_byte_bound(clock):
    key = NodeKey(os.urandom(32))
    doc = FleetDoc.genesis("bounds", key, "me", 1_800_000_000_000, os.urandom(16))
    node = MeshNode(key.peer_id, MeshConfig(), FeedSet(), doc, random.Random(1), signer=key)
    net = MemoryNetwork(latency_ms=LINK_LATENCY_MS)
    me = net.transport(key.peer_id)
    peers = [net.transport(NodeKey(os.urandom(32)).peer_id) for _ in range(PEERS)]
    driver = MeshDriver(node, me)
    delta = b"d" * FRAME_BYTES
    async with trio.open_nursery() as nursery:
        for p in (me, *peers):
            await nursery.start(p.run)
        for p in peers:
            me.add_peer_addrs(p.local_peer, p.listen_addrs())
        await nursery.start(driver.run)
        for _ in range(4):  # four deltas for one peer: two fit its own bound (the first in flight)
            driver._carry_out(t.Send(peers[0].local_peer, delta, bulk=True))
        for p in peers[1:]:  # and one for each other peer: 29 × 3 MiB, more than the node's bound
            driver._carry_out(t.Send(p.local_peer, delta, bulk=True))
        driver._carry_out(t.Send(peers[0].local_peer, b"ping", bulk=False))  # its own lane: not dropped
        await trio.testing.wait_all_tasks_blocked()

        held = driver.bulk_bytes_queued
        assert NODE_BULK_QUEUE_BYTES_MAX - FRAME_BYTES < held <= NODE_BULK_QUEUE_BYTES_MAX  # filled, not beyond
        assert driver.counters["send_queue_drops"] == 4 - PEER_BULK_QUEUE_BYTES_MAX // FRAME_BYTES
        assert driver.counters["send_queue_drops_node_bound"] == PEERS - 1 - (held // FRAME_BYTES - 2)

        for _ in range(3):  # the links deliver, one frame per peer and minute
            clock.jump(LINK_LATENCY_MS / 1000 + 1)
            await trio.testing.wait_all_tasks_blocked()
        assert driver.bulk_bytes_queued == 0  # the accounting follows the frames out
        assert me.stats()["bulk_frames_out"] == held // FRAME_BYTES
        assert me.stats()["frames_out"] == held // FRAME_BYTES + 1  # and the ping
        nursery.cancel_scope.cancel()

"""The real protocol over real libp2p: ten nodes in one trio process.

Each node is the production stack minus the HTTP API: signed feeds + the automerge fleet
document, the pure mesh core, the driver shell, and a Noise+PSK libp2p transport on loopback.
Peers are learned the production way: node 0's address as the bootstrap, everyone else's from
the listen addresses in their host cards as the cards arrive.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import trio

from agent.mesh_driver import MeshDriver
from crdt import records
from crdt.feedset import FeedSet, OwnFeed
from crdt.fleetdoc import FleetDoc
from crdt.identity import NodeKey
from mesh.core import types as t
from mesh.core.config import MeshConfig
from mesh.core.node import MeshNode
from mesh.libp2p_transport import Libp2pTransport
from mesh.transport import TransportLimits

PSK = bytes(range(32))
N = 10
NOW = 1_800_000_000_000
CONFIG = MeshConfig(gossip_interval_ms=200, sync_interval_ms=500, probe_interval_ms=1000, probe_timeout_ms=500,
                    frame_bytes_max=4 * 1024 * 1024)
LIMITS = TransportLimits(dial_timeout_ms=20_000)  # ten handshakes at once on two loaded cores


@dataclass
class Peer:
    key: NodeKey
    feeds: FeedSet
    doc: FleetDoc
    own: OwnFeed = field(init=False)
    transport: Libp2pTransport | None = None
    driver: MeshDriver | None = None
    scope: trio.CancelScope | None = None
    liveness: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.own = OwnFeed(self.key, self.feeds)

    def holdings(self) -> set[tuple[str, str]]:
        return {(p, c) for p, items in records.holdings(self.feeds).items() for c in items}


def _fleet() -> list[Peer]:
    keys = [NodeKey(bytes([i + 1]) * 32) for i in range(N)]
    founder_doc = FleetDoc.genesis("meshtest", keys[0], "n0", NOW, b"\x05" * 16)
    for i, k in enumerate(keys[1:], 1):
        founder_doc.admit(k.peer_id, f"n{i}", "member", None, NOW + i)
    saved = founder_doc.save()
    peers = []
    for i, k in enumerate(keys):
        doc = founder_doc if i == 0 else FleetDoc.load(saved, k, expected_fleet_id=founder_doc.fleet_id)
        peers.append(Peer(k, FeedSet(), doc))
    return peers


async def _run_peer(p: Peer, bootstrap: list[str], *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    def learn(_feeds: bool, _doc: bool) -> None:
        for peer, card in records.cards(p.feeds).items():
            if peer != p.key.peer_id and card.listen_addrs:
                p.transport.add_peer_addrs(peer, list(card.listen_addrs))

    with trio.CancelScope() as scope:
        p.scope = scope
        p.transport = Libp2pTransport(p.key.seed, PSK, limits=LIMITS)
        node = MeshNode(p.key.peer_id, CONFIG, p.feeds, p.doc, random.Random(p.key.peer_id), signer=p.key)
        p.driver = MeshDriver(node, p.transport, on_state=learn,
                              on_liveness=lambda peer, state: p.liveness.__setitem__(peer, state))
        async with trio.open_nursery() as nursery:
            await nursery.start(p.transport.run)
            card = records.HostCard(name=p.key.peer_id[-6:], host_class="server",
                                    listen_addrs=tuple(p.transport.listen_addrs()))
            p.own.put(records.CARD_KEY, records.encode_card(card))
            delta = p.own.commit(NOW)
            for addr in bootstrap:
                peer = addr.rsplit("/p2p/", 1)[1]
                if peer != p.key.peer_id:
                    p.transport.add_peer_addrs(peer, [addr])
            learn(True, False)  # cards already held (a restart) name where the others listen
            await nursery.start(p.driver.run)
            p.driver.submit(t.MembersChanged(p.doc.members(), {m: "server" for m in p.doc.members()}))
            p.driver.submit(t.LocalChanged(delta=delta))
            task_status.started()


async def _wait(check, timeout_s: float, what: str) -> None:
    with trio.move_on_after(timeout_s):
        while not check():
            await trio.sleep(0.1)
        return
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


async def test_ten_nodes_converge_detect_a_dead_node_and_a_restart_catches_up():
    peers = _fleet()
    async with trio.open_nursery() as nursery:
        await nursery.start(_run_peer, peers[0], [])
        bootstrap = peers[0].transport.listen_addrs()
        for p in peers[1:]:
            await nursery.start(_run_peer, p, bootstrap)

        # Every node learns every card (and so every address) through the mesh alone.
        await _wait(lambda: all(len(records.cards(p.feeds)) == N for p in peers), 60, "all cards everywhere")

        # Changes on several nodes: three holdings and a pin.
        for i in (3, 5, 7):
            h = records.Holding(f"item-{i}", f"{i:040x}", 100, "complete", "public", "local", 100)
            peers[i].own.put(records.holding_key(h.content_id), records.encode_holding(h))
            peers[i].driver.submit(t.LocalChanged(delta=peers[i].own.commit(NOW + 10)))
        peers[2].doc.pin("item-5", 2, None, NOW + 11)
        peers[2].driver.submit(t.LocalChanged(doc_changed=True))
        want = {(peers[i].key.peer_id, f"item-{i}") for i in (3, 5, 7)}
        await _wait(lambda: all(want <= p.holdings() and "item-5" in p.doc.pins() for p in peers), 30,
                    "three holdings and the pin on all ten nodes")
        assert len({p.feeds.state_key() for p in peers}) == 1
        assert len({tuple(p.doc.heads()) for p in peers}) == 1

        # Kill node 9 (its transport goes away without a goodbye): the others declare it dead.
        victim = peers[9]
        saved_feeds, saved_doc = victim.feeds.to_bytes(), victim.doc.save()
        victim.scope.cancel()
        dead_id = victim.key.peer_id
        await _wait(lambda: all(p.liveness.get(dead_id) == "dead" for p in peers[:9]), 60, "node 9 declared dead")

        # While it is down, node 4 changes something; node 9 restarts from its saved state and catches up.
        h = records.Holding("late", "f" * 40, 1, "complete", "public", "local", 1)
        peers[4].own.put(records.holding_key("late"), records.encode_holding(h))
        peers[4].driver.submit(t.LocalChanged(delta=peers[4].own.commit(NOW + 20)))
        reborn = Peer(victim.key, FeedSet.from_bytes(saved_feeds),
                      FleetDoc.load(saved_doc, victim.key, expected_fleet_id=victim.doc.fleet_id))
        peers[9] = reborn
        await nursery.start(_run_peer, reborn, bootstrap)
        await _wait(lambda: (peers[4].key.peer_id, "late") in reborn.holdings(), 30, "the restarted node to catch up")
        await _wait(lambda: all(p.liveness.get(dead_id) == "alive" for p in peers[:9]), 60,
                    "the restarted node alive again everywhere")
        nursery.cancel_scope.cancel()

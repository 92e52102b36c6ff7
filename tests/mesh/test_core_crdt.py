"""The mesh core driving the real replicas (crdt.feedset.FeedSet, crdt.fleetdoc.FleetDoc) through
its Protocols, over a lossy, duplicating, reordering harness network."""

from __future__ import annotations

import random

from crdt.feedset import FeedSet, OwnFeed
from crdt.fleetdoc import FleetDoc
from crdt.identity import NodeKey
from mesh.core import LocalChanged, MembersChanged, MeshConfig
from tests.mesh.harness import Harness, Net, make_node


def test_real_feeds_and_fleet_document_converge_through_the_mesh():
    keys = [NodeKey(bytes([i + 1]) * 32) for i in range(6)]
    ids = [k.peer_id for k in keys]
    h = Harness(6, seed=3, names=ids, net=Net(loss=0.1, dup=0.1, delay_ms_max=100))
    feeds = {k.peer_id: FeedSet(frozenset(k2.public for k2 in keys)) for k in keys}
    own = {k.peer_id: OwnFeed(k, feeds[k.peer_id]) for k in keys}
    docs = {ids[0]: FleetDoc.genesis("home", keys[0], "h0", 0, b"\x03" * 16)}
    for i, k in enumerate(keys[1:], 1):
        docs[ids[0]].admit(k.peer_id, f"h{i}", "member", None, 0)
    for k in keys[1:]:
        docs[k.peer_id] = FleetDoc.empty_replica(k)  # joiners get the genesis by sync
    for i, p in enumerate(ids):
        h.nodes[p] = make_node(p, MeshConfig(), feeds[p], docs[p], random.Random(i))
        h.handle(p, MembersChanged(frozenset(ids)))
    h.run_until(2000)
    for i, p in enumerate(ids):
        own[p].put("card", b"host %d" % i)
        h.handle(p, LocalChanged(delta=own[p].commit(h.now)))
    h.run_until(20_000)
    assert all(d.has_genesis for d in docs.values())
    assert all(feeds[p].version_vector() == feeds[ids[0]].version_vector() for p in ids)
    assert len(feeds[ids[0]].version_vector()) == 6
    docs[ids[4]].pin("movie-1", 2, None, h.now)
    h.handle(ids[4], LocalChanged(doc_changed=True))
    h.run_until(40_000)
    assert all(sorted(d.pins()) == ["movie-1"] for d in docs.values())
    assert len({tuple(sorted(d.heads())) for d in docs.values()}) == 1

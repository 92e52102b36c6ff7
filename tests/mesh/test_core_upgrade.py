"""A rolling upgrade: half the fleet runs a build one *minor* wire version ahead (issue 14, item 6).

The newer build is built here, from this build's own encoder, with everything a minor version
may add: a trailing field on every frame, item, presence body and vector entry, a new item kind
in every item list (pings and acks included, where dropping the frame would drop the ack), a new
frame kind now and then, and feed records with trailing fields (``crdt.records``). Its presence
bodies carry a new field under its own signature. The fleet must converge both ways — changes
made on either build reach every node, records included — and nobody may be suspected.
"""

from __future__ import annotations

import random
from dataclasses import replace

import msgpack

from crdt import records
from crdt.feedset import FeedSet, OwnFeed
from crdt.identity import NodeKey
from mesh.core import FRAME_VERSION, Liveness, LocalChanged, MembersChanged, SetSoftState
from simulations.upgrade import NEW_FRAME, newer_encoding, newer_holding, newer_presence
from tests.mesh.harness import Harness, Net, make_node, named_key


def _holding(i: int, *, newer: bool) -> tuple[str, bytes]:
    h = records.Holding(f"item-{i}", f"{i:040x}", 1000 + i, "complete", "public", "local", 1000 + i)
    raw = records.encode_holding(h)
    if newer:
        raw = newer_holding(raw)
    return records.holding_key(h.content_id), raw


def test_a_fleet_half_on_a_newer_minor_version_converges_both_ways_without_suspicion():
    n = 12
    h = Harness(n, seed=31, net=Net(loss=0.05, delay_ms_min=1, delay_ms_max=25))
    newer = set(h.ids[::2])
    keys = {p: NodeKey(bytes([i + 1]) * 32) for i, p in enumerate(h.ids)}
    owns = {}
    for i, p in enumerate(h.ids):
        feeds = FeedSet()
        owns[p] = OwnFeed(keys[p], feeds)
        h.feeds[p] = feeds
        h.nodes[p] = make_node(p, h.config, feeds, h.docs[p], random.Random(i))
        if p in newer:
            h.nodes[p].book.issue = newer_presence(h.nodes[p].book, named_key(p))
        h.handle(p, MembersChanged(frozenset(h.ids), {}))
        h.handle(p, SetSoftState(10**9 + i, 0.5, (), "desktop"))

    deliver = h._deliver
    sent = {"n": 0}

    def as_built(src, send):
        if src in newer:
            sent["n"] += 1
            send = replace(send, data=newer_encoding(send.data))
            if sent["n"] % 25 == 0:  # and now and then a kind this build never heard of
                deliver(src, replace(send, data=bytes([FRAME_VERSION]) + msgpack.packb(NEW_FRAME)))
        deliver(src, send)
    h._deliver = as_built

    h.run_until(5_000)
    for i, p in enumerate(h.ids):  # every node writes holdings, in its build's record format
        for j in range(3):
            owns[p].put(*_holding(i * 10 + j, newer=p in newer))
        h.handle(p, LocalChanged(delta=owns[p].commit(1_800_000_000_000 + i)))
    for p in (h.ids[0], h.ids[1]):  # a document change from each build
        h.doc_add(p, f"pin-from-{p}".encode())

    def converged() -> bool:
        return (len({h.feeds[p].state_key() for p in h.ids}) == 1 and len(h.feeds[h.ids[0]].owners()) == n
                and len({frozenset(h.docs[p].elems) for p in h.ids}) == 1 and len(h.docs[h.ids[0]].elems) == 2
                and all(len(h.nodes[p].presence()) == n for p in h.ids))
    assert h.run_until_true(converged, 60_000, 50) is not None
    h.run_until(h.now + 30_000)  # and it stays that way, probing all along

    for p in h.ids:  # records from both builds read back on both builds
        held = records.holdings(h.feeds[p])
        assert sum(len(v) for v in held.values()) == 3 * n
        assert held[keys[h.ids[0]].peer_id]["item-0"].size_bytes == 1000
    for p in h.ids:  # both builds' presence taken (the newer one's extra field under its signature)
        assert all(v.disk_free_bytes == 10**9 + h.ids.index(q) for q, v in h.nodes[p].presence().items())
    assert not any(s in (Liveness.SUSPECT, Liveness.DEAD) for _, _, _, s, _ in h.liveness_log)
    older = [p for p in h.ids if p not in newer]
    assert all(h.nodes[p].stats["items_unknown_kind"] > 0 and h.nodes[p].stats["frames_unknown_kind"] > 0
               for p in older)
    assert not any(k.startswith(("frames_refused", "presence_forged", "member_records_forged"))
                   for p in h.ids for k in h.nodes[p].stats)

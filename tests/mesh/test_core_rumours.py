"""Rumour accounting in the mesh core: every broadcast is sent at most ``retransmit_limit(n)``
times by one node, whatever loss and duplication do, and the per-item-kind counters add up to
what went on the wire. Hypothesis chooses the network and the workload."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.core import LocalChanged, MembersChanged, MeshConfig, MeshNode, Send, SetSoftState, Tick
from mesh.core.frames import Ack, DocMessage, Gossip, Ping, PingReq, decode_frame, encode_frame, item_wire
from mesh.core.outbox import ITEM_KINDS, wire_item_size
from tests.mesh.harness import Harness, MemDoc, MemFeeds, Net


def _watch_rumours(h: Harness) -> Counter:
    """Count, per (node, item), the frames that carried the item *as a rumour* — an item object
    handed out by one of the node's broadcast queues — at the node's real send path."""
    sent: Counter = Counter()
    for peer, node in h.nodes.items():
        taken: dict[int, object] = {}  # id -> the item, kept alive so an id is never reused

        def wrap_take(queue, taken=taken):
            real = queue.take

            def take(*args, **kwargs):
                items = real(*args, **kwargs)
                for item in items:
                    taken[id(item)] = item
                return items
            queue.take = take

        wrap_take(node.queue)
        wrap_take(node.dqueue)
        real_send = node.out.send

        def send(to, frame, real_send=real_send, taken=taken, peer=peer):
            for item in getattr(frame, "items", ()):
                if id(item) in taken:
                    sent[(peer, repr(item_wire(item)))] += 1
            return real_send(to, frame)
        node.out.send = send
    return sent


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1), n=st.integers(3, 9), loss=st.floats(0.0, 0.5), dup=st.floats(0.0, 0.5),
    delay_ms_max=st.integers(1, 600),
    work=st.lists(st.tuples(st.integers(0, 8), st.integers(0, 12_000), st.sampled_from(["delta", "soft", "doc"])),
                  min_size=1, max_size=12),
)
def test_no_rumour_is_sent_by_one_node_more_than_its_retransmit_limit(seed, n, loss, dup, delay_ms_max, work):
    h = Harness(n, seed=seed, net=Net(loss=loss, dup=dup, delay_ms_max=delay_ms_max))
    sent = _watch_rumours(h)
    for i, (who, t, kind) in enumerate(sorted(work, key=lambda w: w[1])):
        h.run_until(t)
        node = h.ids[who % n]
        if kind == "delta":
            h.change(node, b"state-%d" % i)
        elif kind == "soft":
            h.handle(node, SetSoftState(10**9 + i, 0.5, (), "desktop"))
        else:
            h.doc_add(node, b"pin-%d" % i)
    h.run_until(30_000)  # loss this high raises suspicions and refutations: membership rumours too
    limit = h.config.retransmit_limit(n)
    assert sent, "no rumour was ever sent"
    worst = max(sent.values())
    assert worst <= limit, f"a rumour was sent {worst} times by one node (limit {limit})"


def test_item_kind_counters_add_up_to_the_items_on_the_wire():
    h = Harness(6, seed=3, net=Net(loss=0.1, dup=0.05, delay_ms_max=80))
    wire: Counter = Counter()
    for node in h.nodes.values():
        real_send = node.out.send

        def send(to, frame, real_send=real_send):
            ok = real_send(to, frame)
            if ok and isinstance(frame, Ping | Ack) and frame.presence is not None:
                wire["presence"] += wire_item_size(frame.presence)
            if ok and isinstance(frame, Gossip | Ping | Ack | PingReq):
                for item in frame.items:
                    wire[type(item).__name__] += wire_item_size(item)
            if ok and isinstance(frame, DocMessage):
                wire["doc"] += len(encode_frame(frame))  # a document change travels as a whole frame
            return ok
        node.out.send = send
    for i, p in enumerate(h.ids):
        h.handle(p, SetSoftState(10**9 + i, 0.5, (), "desktop"))
    for t in range(1000, 9000, 700):
        h.run_until(t)
        h.change(h.ids[t % 6], b"x" * (t % 300))
    h.doc_add(h.ids[0], b"pin")
    h.run_until(20_000)
    total = Counter()
    for node in h.nodes.values():
        total.update(node.gossip_stats()["item_bytes_sent"])
    assert set(total) == set(ITEM_KINDS)
    assert total["delta"] == wire["DeltaItem"] > 0
    assert total["membership"] == wire["MemberRecord"] > 0  # the start-up self-announcements
    assert total["presence"] == wire["presence"] + wire["PresenceRecord"] > 0
    assert total["doc"] == wire["doc"] > 0
    # a delta's counted size is its encoded size (computed without encoding it)
    from mesh.core.frames import DeltaItem, item_size
    for n in (0, 1, 255, 256, 65535, 65536, 70000):
        assert wire_item_size(DeltaItem(b"\0" * n)) == item_size(DeltaItem(b"\0" * n))
    # queue accounting: every broadcast that left a queue left at or under the limit
    for node in h.nodes.values():
        for q in node.gossip_stats()["queues"].values():
            assert max(q["transmits_at_exit"], default=0) <= node.gossip_stats()["retransmit_limit"]


def test_a_rumour_too_big_for_any_frame_is_dropped_and_counted_not_kept_forever():
    cfg = MeshConfig(frame_bytes_max=4096, gossip_bytes_max=1024, piggyback_bytes_max=512)
    node = MeshNode("me", cfg, MemFeeds(b"me"), MemDoc(), random.Random(1))
    node.handle(MembersChanged(frozenset({"me", "p1", "p2"}), {}), 0)
    node.handle(Tick(), 0)
    sent = node.handle(LocalChanged(delta=b"d" * 5000), 10) + node.handle(LocalChanged(delta=b"s" * 100), 20)
    for t in range(100, 3000, 100):
        sent += node.handle(Tick(), t)
    items = [i for e in sent if isinstance(e, Send)
             for i in getattr(decode_frame(e.data, cfg.frame_bytes_max), "items", ())]
    deltas = [i.data for i in items if hasattr(i, "data")]
    assert b"s" * 100 in deltas and not any(len(d) == 5000 for d in deltas)
    q = node.gossip_stats()["queues"]["deltas"]
    assert q["dropped_for_size"] == 1 and q["depth"] == 0 and q["put"] == 2

"""Rumour accounting in the mesh core: every broadcast is sent at most ``retransmit_limit(n)``
times by one node, whatever loss and duplication do, and the per-item-kind counters add up to
what went on the wire. Hypothesis chooses the network and the workload."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import example, given, settings
from hypothesis import strategies as st

from mesh.core import LocalChanged, MembersChanged, MeshConfig, Send, SetSoftState, Tick
from mesh.core.frames import (
    Ack,
    DeltaItem,
    DocMessage,
    Gossip,
    MemberRecord,
    Ping,
    PingReq,
    PresenceRecord,
    Records,
    decode_frame,
    encode_frame,
    item_size,
    item_wire,
)
from mesh.core.outbox import ITEM_KINDS, BroadcastQueue, wire_item_size
from mesh.core.types import Liveness
from tests.mesh.harness import Harness, MemDoc, MemFeeds, Net, make_node


def _watch_rumours(h: Harness) -> tuple[Counter, Counter]:
    """Per (node, item): how often the node's broadcast queues handed the item out, and how
    often a frame the node sent carried such a handout (each handout pays for one frame; the same
    record sent again as a direct reply — a correction, an answer to a restart — is not a rumour)."""
    handed: Counter = Counter()
    carried: Counter = Counter()
    for peer, node in h.nodes.items():
        unsent: dict[int, list] = {}  # id -> [the item, handouts not yet carried by a frame]

        def wrap_take(queue, unsent=unsent, peer=peer):
            real = queue.take

            def take(*args, **kwargs):
                items = real(*args, **kwargs)
                for item in items:
                    handed[(peer, repr(item_wire(item)))] += 1
                    unsent.setdefault(id(item), [item, 0])[1] += 1
                return items
            queue.take = take

        wrap_take(node.queue)
        wrap_take(node.dqueue)
        real_send = node.out.send

        def send(to, frame, real_send=real_send, unsent=unsent, peer=peer):
            for item in getattr(frame, "items", ()):
                pending = unsent.get(id(item))
                if pending is not None and pending[1] > 0:
                    pending[1] -= 1
                    carried[(peer, repr(item_wire(item)))] += 1
            return real_send(to, frame)
        node.out.send = send
    return handed, carried


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1), n=st.integers(3, 9), loss=st.floats(0.0, 0.5), dup=st.floats(0.0, 0.5),
    delay_ms_max=st.integers(1, 600),
    work=st.lists(st.tuples(st.integers(0, 8), st.integers(0, 12_000), st.sampled_from(["delta", "soft", "doc"])),
                  min_size=1, max_size=12),
)
def test_no_rumour_is_sent_by_one_node_more_than_its_retransmit_limit(seed, n, loss, dup, delay_ms_max, work):
    h = Harness(n, seed=seed, net=Net(loss=loss, dup=dup, delay_ms_max=delay_ms_max))
    handed, sent = _watch_rumours(h)
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
    # a rumour is handed out at most limit times over the node's life, not per stay in its queue
    assert max(handed.values()) <= limit


def test_item_kind_counters_add_up_to_the_items_on_the_wire():
    h = Harness(6, seed=3, net=Net(loss=0.1, dup=0.05, delay_ms_max=80))
    wire: Counter = Counter()
    for node in h.nodes.values():
        real_send = node.out.send

        def send(to, frame, real_send=real_send):
            ok = real_send(to, frame)
            if ok and isinstance(frame, Ping | Ack) and frame.presence is not None:
                wire["presence"] += wire_item_size(frame.presence)
            if ok and isinstance(frame, Gossip | Ping | Ack | PingReq | Records):
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
    for n in (0, 1, 255, 256, 65535, 65536, 70000):
        assert wire_item_size(DeltaItem(b"\0" * n)) == item_size(DeltaItem(b"\0" * n))
    # queue accounting: every broadcast that left a queue left at or under the limit
    for node in h.nodes.values():
        for q in node.gossip_stats()["queues"].values():
            assert max(q["transmits_at_exit"], default=0) <= node.gossip_stats()["retransmit_limit"]


def test_a_rumour_too_big_for_any_frame_is_dropped_and_counted_not_kept_forever():
    cfg = MeshConfig(frame_bytes_max=4096, gossip_bytes_max=1024, piggyback_bytes_max=512)
    node = make_node("me", cfg, MemFeeds(b"me"), MemDoc(), random.Random(1))
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


def test_indirect_probes_take_a_piggyback_per_helper_each_counted_as_a_transmit():
    # one take shared by k ping-reqs was k transmissions counted as one
    node, _, _ = _probe_node()
    t, pinged = 0, False
    while not pinged:  # tick until the first probe goes out (nobody will answer it)
        t += 50
        pinged = any(isinstance(decode_frame(e.data, 10**6), Ping) for e in node.handle(Tick(), t)
                     if isinstance(e, Send))
    record = node.swim.members["p4"].record()
    node.queue.put(("m", "p4"), record)
    before = node.queue.counts["transmits"]
    frames = [decode_frame(e.data, 10**6) for e in node.handle(Tick(), t + node.cfg.probe_timeout_ms)
              if isinstance(e, Send)]
    reqs = [f for f in frames if isinstance(f, PingReq)]
    assert len(reqs) == node.cfg.indirect_probes_k and any(record in f.items for f in reqs)
    carried = sum(1 for f in frames for i in getattr(f, "items", ()) if i == record)
    assert carried == node.queue.counts["transmits"] - before


def _probe_node():
    # a node whose probes are never answered, with enough members for k helpers
    feeds, doc = MemFeeds(b"me"), MemDoc()
    node = make_node("me", MeshConfig(), feeds, doc, random.Random(3))
    node.handle(MembersChanged(frozenset({"me", "p1", "p2", "p3", "p4"})), 0)
    node.handle(Tick(), 0)
    return node, feeds, doc


# msgpack's size classes change at these lengths and values: both sides of each
_EDGES = (0, 1, 31, 32, 127, 128, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32)
_ints = st.one_of(st.sampled_from(_EDGES), st.integers(0, 2**62))
_texts = st.one_of(st.sampled_from([n for n in _EDGES if n <= 65_536]).map(lambda n: "é" * (n // 2) + "x" * (n % 2)),
                   st.text(max_size=40))
_bins = st.one_of(st.sampled_from([n for n in _EDGES if n <= 65_536]).map(lambda n: b"x" * n), st.binary(max_size=80))
items_st = st.one_of(
    st.builds(MemberRecord, st.sampled_from(list(Liveness)), _texts, _ints, _texts,
              st.none() | st.sampled_from(list(Liveness)), _bins),
    st.builds(PresenceRecord, _texts, _ints, _ints, _ints, st.floats(0, 1), st.lists(_texts, max_size=3).map(tuple),
              _texts, st.booleans(), _bins, _bins, st.integers(-5, 2**50)),
    st.builds(DeltaItem, _bins),
)


@settings(max_examples=200)
@given(items_st)
def test_an_items_counted_size_is_its_encoded_size(item):
    assert wire_item_size(item) == item_size(item)


# one queue operation: put (key, payload bytes) or take (budget, retransmit limit, alone max, items
# max); records of a kind are of about one size (the shortcut needs a floor above the 16-byte rest),
# and puts outnumber takes, so queues grow past the miss limit
_put = st.tuples(st.just("put"), st.integers(0, 99), st.integers(40, 60) | st.integers(20, 300))
_take = st.tuples(st.just("take"), st.integers(0, 1200), st.integers(1, 4), st.sampled_from([0, 100, 400, 10_000]),
                  st.integers(1, 40))
_queue_ops = st.lists(st.one_of(_put, _put, _put, _take), min_size=50, max_size=300)


@settings(max_examples=200)
@given(_queue_ops)
# 60 equal entries, 20 fit, 20 bytes left: the rest are skipped up to the miss limit
@example([("put", k, 46) for k in range(60)] + [("take", 1020, 4, 0, 40)])
def test_a_take_that_stops_early_when_nothing_fits_returns_and_counts_what_the_full_walk_would(ops):
    # The reference walks every entry up to the miss limit (its size floor kept at 0, so the
    # "nothing further fits" shortcut never fires); both must hand out the same items, count the
    # same misses and end in the same state.
    fast, ref = BroadcastQueue(80), BroadcastQueue(80)  # room for more entries than the miss limit
    for op in ops:
        ref._size_floor = 0
        if op[0] == "put":
            item = DeltaItem(bytes(op[2]))
            fast.put(op[1], item)
            ref.put(op[1], item)
        else:
            _, budget, limit, alone, items_max = op
            got = fast.take(budget, limit, alone_bytes_max=alone, items_max=items_max)
            want = ref.take(budget, limit, alone_bytes_max=alone, items_max=items_max)
            assert got == want and fast.taken_bytes == ref.taken_bytes
        assert fast.counts == ref.counts and fast.transmits_at_exit == ref.transmits_at_exit
        assert [fast.get(k) for k in range(100)] == [ref.get(k) for k in range(100)]

"""Tombstone collection and the full-resync path for a replica behind the GC horizon."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdt.feed import decode_delta
from crdt.feedset import FeedSet
from tests.crdt.test_feed_support import KEYS, T0_MS, live, sync, writer
from tva.errors import GapError

A = KEYS[0]


def test_tombstones_are_collected_once_every_member_has_them_and_a_lagging_peer_resyncs():
    fs_a, own = writer(0)
    member, lagging = FeedSet(), FeedSet()
    for i in range(5):
        own.put(f"k{i}", b"v%d" % i)
    first = own.commit(T0_MS)
    member.apply_delta(first)
    lagging.apply_delta(first)
    own.delete("k1")
    own.delete("k2")
    d2 = own.commit(T0_MS + 1)
    member.apply_delta(d2)  # the lagging replica misses this one
    assert own.feed.tombstone_keys() == {"k1", "k2"}

    # Horizon = what every known member has seen (the lagging host is not known yet, or left).
    horizon = member.version_vector()[A.public]
    gc_delta = own.collect_tombstones(horizon)
    assert gc_delta is not None
    assert own.feed.tombstone_keys() == frozenset() and own.feed.entry_count == 3
    member.apply_delta(gc_delta)
    assert member.state_key() == fs_a.state_key()
    assert member.feed(A.public).entry_count == 3

    # The delete it missed can no longer be sent as a delta: the old push is a gap…
    with pytest.raises(GapError):
        lagging.apply_delta(gc_delta)
    # …so a pull by version vector yields a full snapshot, and one exchange converges.
    (snapshot,) = member.deltas_since(lagging.version_vector())
    assert decode_delta(snapshot).full
    applied = lagging.apply_delta(snapshot)
    assert applied.full and applied.changed_keys == ("k1", "k2")
    assert lagging.state_key() == fs_a.state_key()
    assert live(lagging, A.public) == {"k0": b"v0", "k3": b"v3", "k4": b"v4"}
    # After the snapshot, ordinary deltas flow again.
    own.put("k9", b"nine")
    lagging.apply_delta(own.commit(T0_MS + 2))
    assert lagging.state_key() == fs_a.state_key()


def test_collection_needs_a_horizon_covering_the_tombstone():
    _, own = writer(0)
    own.put("a", b"1")
    own.commit(T0_MS)
    before_delete = own.version
    own.delete("a")
    own.commit(T0_MS + 1)
    assert own.collect_tombstones(before_delete) is None  # a member has not seen the delete yet
    assert own.collect_tombstones(0) is None
    assert own.feed.tombstone_keys() == {"a"}
    assert own.collect_tombstones(own.version + 10**9) is not None  # clipped to the head
    assert own.feed.gc_version <= own.version
    assert own.collect_tombstones(own.version) is None  # nothing left


def test_a_brand_new_peer_gets_a_snapshot_without_tombstones():
    fs_a, own = writer(0)
    own.put("a", b"1")
    own.put("b", b"2")
    own.commit(T0_MS)
    own.delete("a")
    own.commit(T0_MS + 1)
    own.collect_tombstones(own.version)
    newcomer = FeedSet()
    (data,) = fs_a.deltas_since(newcomer.version_vector())
    delta = decode_delta(data)
    assert delta.full and [e[0] for e in delta.entries] == ["b"]
    newcomer.apply_delta(data)
    assert newcomer.state_key() == fs_a.state_key()


@given(st.lists(st.tuples(st.sampled_from("abcde"), st.booleans()), min_size=1, max_size=25),
       st.lists(st.integers(0, 30), min_size=1, max_size=5))
def test_any_history_with_gc_reaches_a_lagging_replica(ops, lag_points):
    """A replica frozen at any earlier version converges in one pull, GC or not."""
    fs_a, own = writer(0)
    member = FeedSet()
    frozen = {}
    for step, (key, put) in enumerate(ops):
        if put:
            own.put(key, b"%d" % step)
        else:
            own.delete(key)
        data = own.commit(T0_MS + step)
        if data is not None:
            member.apply_delta(data)
        if step in lag_points:
            frozen[step] = member.copy()
        if step % 3 == 2:
            gc = own.collect_tombstones(member.version_vector().get(A.public, 0))
            if gc is not None:
                member.apply_delta(gc)
    frozen["empty"] = FeedSet()
    for lagging in frozen.values():
        sync(member, lagging)
        assert lagging.state_key() == fs_a.state_key()

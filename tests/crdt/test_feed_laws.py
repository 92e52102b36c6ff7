"""Merge laws of the feed set: commutative, associative, idempotent (through the verified path)."""

from __future__ import annotations

from functools import cache

from hypothesis import given
from hypothesis import strategies as st

from crdt.feedset import FeedSet, OwnFeed
from tests.crdt.test_feed_support import KEYS, T0_MS

OWNERS = 3
KEYNAMES = ("a", "b", "c", "d")

# One owner's history: batches of (key, value-or-None for delete); "gc" collects tombstones.
op = st.tuples(st.sampled_from(KEYNAMES), st.none() | st.binary(max_size=3))
batch = st.lists(op, min_size=1, max_size=4) | st.just("gc")
history = st.lists(batch, min_size=1, max_size=6)


def owner_snapshots(owner: int, batches: list) -> list[FeedSet]:
    """The owner's own FeedSet after each commit (copies), oldest first."""
    fs = FeedSet()
    own = OwnFeed(KEYS[owner], fs)
    out = []
    for n, b in enumerate(batches):
        if b == "gc":
            if own.collect_tombstones(own.version) is None:
                continue
        else:
            for k, v in b:
                if v is None:
                    own.delete(k)
                else:
                    own.put(k, v)
            if own.commit(T0_MS + n) is None:
                continue
        out.append(fs.copy())
    return out


@cache
def _frozen(owner: int, batches: tuple) -> tuple:
    return tuple(s.to_bytes() for s in owner_snapshots(owner, list(batches)))


@st.composite
def worlds(draw):
    """Per-owner histories, fixed for the example; replicas pick a point in each."""
    hist = []
    for o in range(OWNERS):
        h = draw(history)
        hist.append(_frozen(o, tuple(x if x == "gc" else tuple(x) for x in h)))
    return hist


@st.composite
def replica_in(draw, world):
    fs = FeedSet()
    for snaps in world:
        if snaps:
            pick = draw(st.integers(-1, len(snaps) - 1))
            if pick >= 0:
                fs.merge_from(FeedSet.from_bytes(snaps[pick]))
    return fs


def join(x: FeedSet, y: FeedSet) -> FeedSet:
    out = x.copy()
    out.merge_from(y)
    return out


@given(st.data())
def test_merge_is_commutative_associative_idempotent(data):
    world = data.draw(worlds())
    a, b, c = (data.draw(replica_in(world)) for _ in range(3))
    assert join(a, b).state_key() == join(b, a).state_key()
    assert join(join(a, b), c).state_key() == join(a, join(b, c)).state_key()
    assert join(a, a).state_key() == a.state_key()
    # And the join is the per-owner newest: it dominates both sides' version vectors.
    ab = join(a, b).version_vector()
    for side in (a, b):
        for owner, v in side.version_vector().items():
            assert ab[owner] >= v


@given(st.data())
def test_merge_order_does_not_matter_and_latest_wins(data):
    world = data.draw(worlds())
    replicas = [data.draw(replica_in(world)) for _ in range(4)]
    results = []
    for _ in range(2):
        acc = FeedSet()
        for i in data.draw(st.permutations(range(4))):
            acc.merge_from(replicas[i])
        results.append(acc)
    assert results[0].state_key() == results[1].state_key()
    latest = FeedSet()
    for snaps in world:
        if snaps:
            latest.merge_from(FeedSet.from_bytes(snaps[-1]))
    results[0].merge_from(latest)
    assert results[0].state_key() == latest.state_key()

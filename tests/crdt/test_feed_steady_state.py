"""Feeds under churn for years: tombstones collected on the owner's horizon, no write refused,
replicas (lagging ones too) converging, and the crash-after-push split healed by a rebase."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.feed import FEED_ENTRIES_MAX, tombstone_horizon
from crdt.feedset import FeedSet, OwnFeed
from tests.crdt.test_feed_support import KEYS, T0_MS, live, sync, writer
from tva.errors import SignatureError

A = KEYS[0]
HOUR_MS = 3600 * 1000


def tombstones(own: OwnFeed) -> int:
    return len(own.feed.tombstone_keys())


def gc(own: OwnFeed, now_ms: int, floor: int = 8, ttl_ms: int = 24 * HOUR_MS) -> bytes | None:
    if own.feed is None:
        return None
    return own.collect_tombstones(tombstone_horizon(own.feed, now_ms, ttl_ms=ttl_ms, tombstones_floor=floor))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["put", "delete", "commit", "gc", "sync", "lag"]),
                          st.integers(0, 40)), min_size=1, max_size=120))
def test_churn_with_gc_stays_bounded_and_every_replica_converges(ops):
    fs, own = writer(0)
    peer, lagging = FeedSet(), FeedSet()
    now = T0_MS
    for op, n in ops:
        now += 1000 * n
        if op == "put":
            own.put(f"k{n}", b"v%d" % now)
        elif op == "delete":
            own.delete(f"k{n}")
        elif op == "commit":
            own.commit(now)
        elif op == "gc":
            own.commit(now)
            gc(own, now)
            if own.feed is not None:
                f = own.feed
                # Bounded by the live entries (or the floor) after every collection.
                assert tombstones(own) <= max(8, f.entry_count - tombstones(own))
        elif op == "sync":
            sync(fs, peer)
        elif op == "lag" and n % 3 == 0:
            sync(fs, lagging)  # rarely: it falls behind the horizon and needs full snapshots
    own.commit(now + 1)
    sync(fs, peer)
    sync(fs, lagging)
    if own.feed is not None:
        assert peer.state_key() == fs.state_key() == lagging.state_key()
        assert live(peer, A.public) == live(fs, A.public)


def test_churn_past_the_entry_limit_never_refuses_a_write():
    # The churn that refused every put at 25,000 entries before: distinct content ids coming and
    # going. Without any periodic GC the commit collects old tombstones when the limit is near.
    fs, own = writer(0)
    peer = FeedSet()
    now = T0_MS
    for batch in range(30):  # past 25,000 entries at batch 24
        for i in range(1000):
            key = f"h/item-{batch}-{i}"
            own.put(key, b"x" * 40)
            own.delete(f"h/item-{batch - 1}-{i}")
        now += 1000
        own.commit(now)
        assert own.feed.entry_count <= FEED_ENTRIES_MAX
        if batch % 7 == 0:
            sync(fs, peer)
    sync(fs, peer)
    assert peer.state_key() == fs.state_key()
    assert len(dict(own.feed.live_items())) == 1000
    # With the agent's periodic collection the tombstones shrink to the live count.
    gc(own, now, floor=0)
    assert tombstones(own) <= 1000


def test_the_horizon_takes_old_tombstones_and_the_oldest_beyond_the_live_count():
    _fs, own = writer(0)
    for i in range(10):
        own.put(f"k{i}", b"v")
    own.commit(T0_MS)
    for i in range(6):
        own.delete(f"k{i}")
        own.commit(T0_MS + 1000 * (i + 1))
    f = own.feed
    # Nothing is old enough; 6 tombstones against 4 live entries: the 2 oldest go.
    horizon = tombstone_horizon(f, T0_MS + 10_000, ttl_ms=HOUR_MS, tombstones_floor=0)
    own.collect_tombstones(horizon)
    assert own.feed.tombstone_keys() == {"k2", "k3", "k4", "k5"}
    # A floor keeps small feeds from re-snapshotting their peers for every delete.
    assert tombstone_horizon(own.feed, T0_MS + 10_000, ttl_ms=HOUR_MS, tombstones_floor=8) == own.feed.gc_version
    # After the TTL every tombstone is collectable.
    own.collect_tombstones(tombstone_horizon(own.feed, T0_MS + 2 * HOUR_MS, ttl_ms=HOUR_MS, tombstones_floor=8))
    assert own.feed.tombstone_keys() == frozenset() and own.feed.entry_count == 4


def test_a_commit_pushed_but_not_saved_splits_the_feed_and_a_rebase_heals_it():
    fs, own = writer(0)
    own.put("card", b"c")
    peer = FeedSet()
    peer.apply_delta(own.commit(T0_MS))
    saved = fs.to_bytes()  # the last save before the crash
    own.put("h/a", b"1")
    peer.apply_delta(own.commit(T0_MS + 1000))  # pushed… then the process dies before saving

    def restart() -> tuple[FeedSet, OwnFeed]:
        fs2 = FeedSet.from_bytes(saved)
        return fs2, OwnFeed(A, fs2)

    # Without the rebase: the next commit's delta never applies at the peer again.
    fs2, own2 = restart()
    own2.put("h/b", b"2")
    try:
        peer.apply_delta(own2.commit(T0_MS + 2000))
    except SignatureError:
        pass
    else:
        raise AssertionError("the divergent delta should have been refused")
    for data in fs2.deltas_since(peer.version_vector()):
        try:
            peer.apply_delta(data)
        except SignatureError:
            continue
    assert peer.state_key() != fs2.state_key()  # split for good

    # With it: the first head after the restart makes every older replica take a snapshot.
    fs3, own3 = restart()
    full = own3.rebase(T0_MS + 3000)
    peer.apply_delta(full)
    assert peer.state_key() == fs3.state_key()
    own3.put("h/c", b"3")
    peer.apply_delta(own3.commit(T0_MS + 4000))
    assert peer.state_key() == fs3.state_key() and live(peer, A.public) == {"card": b"c", "h/c": b"3"}
    # A replica that had only the saved state catches up by the ordinary sync path too.
    behind = FeedSet.from_bytes(saved)
    behind._local.clear()
    sync(fs3, behind)
    assert behind.state_key() == fs3.state_key()

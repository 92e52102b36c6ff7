"""Watch state records (crdt.watch): encoding, tolerance of newer fields and garbage, and the pick."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdt import records, watch
from crdt.codec import pack
from crdt.feedset import FeedSet, OwnFeed
from crdt.identity import NodeKey
from tva.errors import InvalidInput, RemoteDataError


def test_round_trip_thresholds_and_newer_minor_fields():
    w = watch.WatchState.at(630.4, 7200.0, 1_000)
    assert watch.decode_watch(watch.encode_watch(w)) == w
    assert (w.position_ms, w.duration_ms, w.watched, w.resumable) == (630_400, 7_200_000, False, True)
    assert watch.WatchState.at(6480, 7200, 1).watched  # 90 %
    assert not watch.WatchState.at(6479, 7200, 1).watched
    assert watch.WatchState.at(3, None, 1, ended=True).watched
    assert not watch.WatchState.at(10, 7200, 1).resumable  # too early to resume
    assert watch.WatchState.at(3, 24, 1).resumable  # a short clip: 2 % of it is enough
    newer = pack([records.RECORD_FORMAT, 5_000, 60_000, False, 9, "a field of a newer build", [1, 2]])
    assert watch.decode_watch(newer) == watch.WatchState(5_000, 60_000, False, 9)
    with pytest.raises(InvalidInput):
        watch.watch_key("../etc")


@given(st.binary(max_size=80))
def test_garbage_values_are_decode_errors(data):
    try:
        watch.decode_watch(data)
    except RemoteDataError:
        pass


def _feed_of(seed: int, entries: dict[str, watch.WatchState], fs: FeedSet, now: int) -> None:
    own = OwnFeed(NodeKey(bytes([seed]) * 32), fs)
    own.put(records.CARD_KEY, records.encode_card(records.HostCard(name=f"h{seed}", host_class="desktop")))
    for item, w in entries.items():
        own.put(watch.watch_key(item), watch.encode_watch(w))
    own.put("w/bad", b"\x93\x01\x02")  # malformed: skipped, not fatal
    own.commit(now)


@given(st.lists(st.tuples(st.integers(1, 4), st.integers(0, 10_000), st.sampled_from(["a", "b"])), max_size=12),
       st.permutations([1, 2, 3, 4]))
def test_latest_record_wins_whatever_order_the_feeds_arrive_in(writes, order):
    per_host: dict[int, dict[str, watch.WatchState]] = {}
    for host, updated, item in writes:
        per_host.setdefault(host, {})[item] = watch.WatchState(updated, 20_000, False, updated)
    fs = FeedSet()
    for host in order:
        _feed_of(host, per_host.get(host, {}), fs, 1_000)
    best = watch.latest_watch_states(fs)
    for item in ("a", "b"):
        candidates = [(w.updated_ms, NodeKey(bytes([h]) * 32).peer_id) for h, ws in per_host.items()
                      for i, w in ws.items() if i == item]
        if not candidates:
            assert item not in best
        else:
            assert (best[item][1].updated_ms, best[item][0]) == max(candidates)
    # Readers of other records never see watch entries.
    assert all(not hs for hs in records.holdings(fs).values())

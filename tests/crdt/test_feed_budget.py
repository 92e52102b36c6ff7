"""A SYNC answer is built within its byte budget: the work done, not only the bytes sent.

Found in review: a 10-byte SYNC (an empty version vector) made the sender encode every lagging
feed — up to a thousand feeds of up to 4 MiB — before checking its budget, and throw most away.
"""

from __future__ import annotations

import crdt.feedset
from crdt.feedset import FeedSet, OwnFeed
from crdt.identity import NodeKey

FEEDS = 40
ENTRY_BYTES = 2000
ENTRIES = 20  # ~40 KB per feed, ~1.6 MB in all


def _fleet() -> FeedSet:
    fs = FeedSet()
    for i in range(FEEDS):
        own = OwnFeed(NodeKey(bytes([i + 1]) * 32), fs)
        for j in range(ENTRIES):
            own.put(f"k{j}", bytes([j]) * ENTRY_BYTES)
        own.commit(1_800_000_000_000)
    return fs


def test_an_empty_vector_costs_the_budget_not_every_feed(monkeypatch):
    fs = _fleet()
    encoded: list[int] = []
    real = crdt.feedset.encode_delta

    def counting(delta):
        data = real(delta)
        encoded.append(len(data))
        return data

    monkeypatch.setattr(crdt.feedset, "encode_delta", counting)
    budget = 100_000
    out = fs.deltas_since({}, bytes_max=budget)
    assert 0 < sum(map(len, out)) <= budget and len(out) == 2  # two whole feeds fit, a third does not
    # what was encoded and then thrown away stays within one more budget (here: nothing at all,
    # since whole feeds are measured before they are encoded)
    assert sum(encoded) - sum(map(len, out)) <= budget
    assert len(encoded) == 2


def test_small_incremental_deltas_still_fill_the_budget_after_a_big_one_is_skipped():
    fs = _fleet()
    vv = fs.version_vector()
    behind = {o: v for o, v in vv.items()}
    owners = sorted(vv)
    small = owners[1:6]
    for o in small:  # these are one small commit behind; owners[0] is missing entirely
        del behind[o]
    for i, o in enumerate(owners):
        if o in small:
            key = NodeKey(bytes([i + 1]) * 32)
            own = OwnFeed(key, fs)
            own.put("fresh", b"y")
            own.commit(1_800_000_000_001)
            behind[o] = vv[o]
    del behind[owners[0]]
    out = fs.deltas_since(behind, bytes_max=3_000)
    # the first delta always goes (the whole of owners[0]); after it, only what fits
    assert len(out) == 1 and len(out[0]) > 3_000
    out = fs.deltas_since({**behind, owners[0]: fs.version_vector()[owners[0]]}, bytes_max=3_000)
    assert len(out) == len(small) and sum(map(len, out)) <= 3_000

"""Bucketed anti-entropy: a mismatch costs the differing buckets, not the whole version vector."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from mesh.core import FrameReceived, MembersChanged, MeshConfig, Send, decode_frame, encode_frame
from mesh.core.antientropy import (
    BUCKET_BITS_MAX,
    bucket_bits_for,
    bucket_hashes,
    bucket_of,
    differing_buckets,
    restrict,
    scoped_vector,
)
from mesh.core.frames import Deltas, Digest, DocMessage, Summary, Sync
from tests.mesh.harness import Harness, MemDoc, MemFeeds, Net, make_node

OWNERS = 300


def _pair(owners: int = OWNERS, seed: int = 3):
    rng = random.Random(seed)
    keys = [rng.randbytes(32) for _ in range(owners)]
    nodes = {}
    for name in ("a", "b"):
        feeds, doc = MemFeeds(name.encode()), MemDoc()
        for i, k in enumerate(keys):
            feeds.heads[k] = (1 + i % 5, b"payload-%d" % i)
        node = make_node(name, MeshConfig(), feeds, doc, random.Random(1))
        node.handle(MembersChanged(frozenset({"a", "b"})), 0)
        nodes[name] = (node, feeds, doc)
    return nodes, keys


def _exchange(nodes, src: str, dst: str, frame, now: int = 10, limit: int = 50):
    """Deliver ``frame`` from src to dst, then every frame they answer with, until quiet."""
    log = []
    queue = [(src, dst, encode_frame(frame))]
    while queue and len(log) < limit:
        s, d, data = queue.pop(0)
        log.append((s, d, decode_frame(data, 10**7), len(data)))
        for e in nodes[d][0].handle(FrameReceived(s, data), now):
            if isinstance(e, Send):
                queue.append((d, e.peer, e.data))
    assert not queue, "the exchange did not go quiet"
    return log


def test_one_changed_owner_costs_one_bucket_not_the_whole_vector():
    nodes, keys = _pair()
    (a, fa, _), (b, fb, _) = nodes["a"], nodes["b"]
    changed = keys[17]
    fb.heads[changed] = (fb.heads[changed][0] + 1, b"newer")
    b.sync.invalidate()
    log = _exchange(nodes, "a", "b", Digest(a.sync.digest()))
    kinds = [type(f).__name__ for _, _, f, _ in log]
    assert kinds[:2] == ["Digest", "Summary"]
    syncs = [f for _, _, f, _ in log if isinstance(f, Sync)]
    bits = bucket_bits_for(OWNERS)
    assert syncs and all(f.scope == (bits, (bucket_of(changed, bits),)) for f in syncs)
    assert all(len(f.vv) < OWNERS // 10 for f in syncs)
    shipped = [d for _, _, f, _ in log if isinstance(f, Deltas) for d in f.deltas]
    assert len(shipped) == 1 and fa.heads[changed] == (fb.heads[changed][0], b"newer")
    assert a.sync.digest() == b.sync.digest()
    full_vector_bytes = len(encode_frame(Sync(fa.version_vector(), (), True)))
    assert sum(n for *_, n in log) < full_vector_bytes // 4


def test_owners_missing_on_one_side_are_sent_whole_both_ways():
    nodes, _ = _pair(owners=120)
    (a, fa, _), (b, fb, _) = nodes["a"], nodes["b"]
    only_a, only_b = b"\x10" * 32, b"\xf0" * 32
    fa.heads[only_a] = (4, b"from-a")
    fb.heads[only_b] = (2, b"from-b")
    a.sync.invalidate()
    b.sync.invalidate()
    _exchange(nodes, "b", "a", Digest(b.sync.digest()))
    assert fa.heads[only_b] == (2, b"from-b") and fb.heads[only_a] == (4, b"from-a")
    assert fa.version_vector() == fb.version_vector()


def test_a_difference_only_in_the_document_starts_a_document_sync():
    nodes, _ = _pair(owners=40)
    (a, _, da), (b, _, db) = nodes["a"], nodes["b"]
    db.add(b"pin-x")
    b.sync.invalidate()
    log = _exchange(nodes, "a", "b", Digest(a.sync.digest()))
    syncs = [f for _, _, f, _ in log if isinstance(f, Sync)]
    assert syncs and syncs[0].scope is not None and syncs[0].scope[1] == () and syncs[0].vv == {}
    assert any(isinstance(f, DocMessage) for _, _, f, _ in log)
    assert da.elems == db.elems == {b"pin-x"}


def test_equal_bucket_hashes_with_different_digests_fall_back_to_the_full_vector():
    nodes, _ = _pair(owners=40)
    a = nodes["a"][0]
    bits = 2
    forged = Summary(b"\x01" * 16, bits, bucket_hashes(nodes["a"][1].version_vector(), bits), ())
    sent = [decode_frame(e.data, 10**7) for e in a.handle(FrameReceived("b", encode_frame(forged)), 5)
            if isinstance(e, Send)]
    assert [type(f) for f in sent] == [Sync] and sent[0].scope is None and len(sent[0].vv) == 40
    assert a.stats["summary_collisions"] == 1


def test_a_matching_digest_or_summary_digest_is_answered_with_nothing():
    nodes, _ = _pair(owners=40)
    a = nodes["a"][0]
    same = a.sync.digest_frame()
    assert not [e for e in a.handle(FrameReceived("b", encode_frame(same)), 5) if isinstance(e, Send)]
    caught_up = Summary(same.digest, 0, (b"\0" * 8,), (), same.soft, 0, ())
    assert not [e for e in a.handle(FrameReceived("b", encode_frame(caught_up)), 6) if isinstance(e, Send)]


def test_a_lossy_fleet_converges_through_scoped_syncs():
    # 20% loss: rumours miss nodes, so anti-entropy must repair them, bucket by bucket
    h = Harness(80, seed=11, net=Net(loss=0.2, delay_ms_max=30))
    h.run_until(10_000)
    for i in range(0, 80, 3):
        h.change(h.ids[i], b"v-%d" % i)
    assert h.run_until_true(h.converged, 60_000, 20) is not None
    summaries = sum(h.nodes[p].stats.get("sent_summary", 0) for p in h.ids)
    differing = sum(h.nodes[p].stats.get("summary_buckets_differing", 0) for p in h.ids)
    full = sum(h.nodes[p].stats.get("summary_collisions", 0) for p in h.ids)
    assert summaries > 0 and full == 0
    assert differing / summaries < (1 << bucket_bits_for(80)) / 4  # a few buckets each, not all


# --- the pure helpers ---------------------------------------------------------------------------

owners = st.binary(min_size=1, max_size=64)
vectors = st.dictionaries(owners, st.integers(0, 50), max_size=40)


@given(st.integers(0, 5000))
def test_bucket_bits_keep_buckets_near_eight_owners_within_the_wire_limit(n):
    bits = bucket_bits_for(n)
    assert 0 <= bits <= BUCKET_BITS_MAX
    assert bits == BUCKET_BITS_MAX or (8 << bits) >= n
    assert bits == 0 or (8 << (bits - 1)) < n


@given(owners, st.integers(0, BUCKET_BITS_MAX))
def test_every_owner_lands_in_a_bucket_in_range(owner, bits):
    assert 0 <= bucket_of(owner, bits) < 1 << bits


@given(vectors, vectors, st.integers(0, 4))
def test_buckets_differ_exactly_where_the_vectors_differ(mine, theirs, bits):
    differ = set(differing_buckets(bucket_hashes(mine, bits), bucket_hashes(theirs, bits)))
    truly = {bucket_of(o, bits) for o in set(mine) | set(theirs) if mine.get(o) != theirs.get(o)}
    assert differ == truly  # (a 2^-64 collision would break this; hypothesis will not find one)


@given(vectors, vectors, st.integers(0, 4), st.data())
def test_a_scoped_vector_asks_nothing_outside_its_scope(mine, theirs, bits, data):
    scope = data.draw(st.sets(st.integers(0, (1 << bits) - 1)))
    eff = scoped_vector(mine, restrict(theirs, bits, scope), bits, scope)
    for owner, version in mine.items():
        if bucket_of(owner, bits) not in scope:
            assert eff[owner] >= version  # nothing outside the scope looks missing
        else:
            assert eff.get(owner, 0) == theirs.get(owner, 0)  # inside: exactly their claim

"""What simulated nodes share (simulations.sharing) changes cost only: runs with the sharing on
and off give byte-identical traces, a shared feed is never changed under another node, and a
shared version vector is only ever handed to a node whose own vector equals it entry for entry
and in order."""

from __future__ import annotations

import functools
import json

import pytest

from crdt import records
from crdt.feedset import FeedSet, OwnFeed
from crdt.identity import NodeKey
from simulations import run
from simulations.nodes import CoreConfig, real_core_missing
from simulations.run import deterministic_part, run_scenario
from simulations.scenarios import params_for
from simulations.sharing import (
    FeedPool,
    SharedFeedSet,
    SharedState,
    VectorPool,
    install_antientropy_memo,
    install_decode_memo,
)
from tva.errors import GapError

pytestmark = pytest.mark.skipif(real_core_missing() is not None, reason=str(real_core_missing()))


@pytest.mark.parametrize("scenario", ["churn", "lossy-wan", "mass-join"])
def test_trace_is_byte_identical_with_the_sharing_on_and_off(monkeypatch, scenario):
    from mesh.core import antientropy, node
    results = []
    for on in (True, False):
        monkeypatch.setattr(run, "CoreConfig", functools.partial(CoreConfig, share_state=on, policy_memo=on))
        if not on:  # the memos the sharing installed for the process: the real functions again
            for module, name in ((node, "decode_frame"), (node, "from_presence"), (node, "check_remembered"),
                                 (antientropy, "soft_entry_hash")):
                fn = getattr(module, name)
                monkeypatch.setattr(module, name, getattr(fn, "real", fn))
        results.append(run_scenario(params_for(scenario, nodes=24, seed=6, duration_s=10.0, core="real")))
    on, off = results
    assert on["core"] == "real" and on["metrics"]["changes_converged"] > 0
    assert json.dumps(deterministic_part(on), sort_keys=True) == json.dumps(deterministic_part(off), sort_keys=True)


def _writer(i: int) -> tuple[NodeKey, FeedSet, OwnFeed]:
    key = NodeKey(bytes([i + 40]) * 32)
    feeds = FeedSet()
    own = OwnFeed(key, feeds)
    own.put(records.CARD_KEY, records.encode_card(records.HostCard(f"h{i}", "server")))
    return key, feeds, own


def test_a_shared_feed_is_copied_on_write_and_equal_results_are_shared_again():
    writer_key, _, writer = _writer(0)
    first = writer.commit(1000)
    pool, vectors = FeedPool(), VectorPool()
    a_key, b_key = NodeKey(b"\x51" * 32), NodeKey(b"\x52" * 32)
    a = SharedFeedSet(pool, vectors, None, a_key.public)
    a.apply_delta(first)
    start = a.shared_state()
    b = SharedFeedSet(pool, vectors, start, b_key.public)
    shared = a.feed(writer_key.public)
    v0 = shared.version
    assert b.feed(writer_key.public) is shared
    writer.put("x", b"1")
    second = writer.commit(2000)
    a.apply_delta(second)
    assert shared.version == v0 and a.feed(writer_key.public).version == writer.version  # a copy moved on
    assert b.feed(writer_key.public) is shared and b.feed(writer_key.public).get("x") is None
    assert a.feed(writer_key.public).get("x") == b"1"
    b.apply_delta(second)  # b reaches the same state: it gets a's feed object, not a third copy
    assert b.feed(writer_key.public) is a.feed(writer_key.public)


def test_a_failed_apply_leaves_the_shared_feed_in_place():
    writer_key, _, writer = _writer(1)
    first = writer.commit(1000)
    writer.put("y", b"2")
    writer.commit(2000)
    writer.put("z", b"3")
    third = writer.commit(3000)
    pool, vectors = FeedPool(), VectorPool()
    a = SharedFeedSet(pool, vectors, None, NodeKey(b"\x53" * 32).public)
    a.apply_delta(first)
    shared = a.feed(writer_key.public)
    with pytest.raises(GapError):
        a.apply_delta(third)  # skips the second: a gap, nothing changes
    assert a.feed(writer_key.public) is shared and shared.get("z") is None


def test_own_feed_is_private_even_when_started_from_a_shared_state():
    key, feeds, own = _writer(2)
    own.commit(1000)
    pool, vectors = FeedPool(), VectorPool()
    template = SharedState({key.public: pool.intern(feeds.feed(key.public))}, None, ())
    mine = SharedFeedSet(pool, vectors, template, key.public)
    other = SharedFeedSet(pool, vectors, template, NodeKey(b"\x54" * 32).public)
    assert mine.feed(key.public) is not other.feed(key.public)
    again = OwnFeed(key, mine)
    again.put("new", b"v")
    again.commit(5000)
    assert other.feed(key.public).get("new") is None and mine.feed(key.public).get("new") == b"v"


def test_version_vectors_follow_every_change_and_are_shared_only_when_equal_in_order():
    keys = [_writer(i) for i in range(3, 6)]
    deltas = [own.commit(1000 + i) for i, (_, _, own) in enumerate(keys)]
    pool, vectors = FeedPool(), VectorPool()
    a = SharedFeedSet(pool, vectors, None, NodeKey(b"\x55" * 32).public)
    b = SharedFeedSet(pool, vectors, None, NodeKey(b"\x56" * 32).public)
    for d in deltas:
        a.apply_delta(d)
    for d in reversed(deltas):
        b.apply_delta(d)
    for fs in (a, b):
        assert fs.version_vector() == FeedSet.version_vector(fs)
        assert list(fs.version_vector()) == list(FeedSet.version_vector(fs))  # FeedSet's order
    # equal entries, different order (it reaches the wire): two vectors, not one
    assert a.version_vector() == b.version_vector() and a.version_vector() is not b.version_vector()
    c = SharedFeedSet(pool, vectors, a.shared_state(), NodeKey(b"\x57" * 32).public)
    assert c.version_vector() is a.version_vector()
    keys[0][2].put("k", b"v")
    c.apply_delta(keys[0][2].commit(9000))
    assert c.version_vector() == FeedSet.version_vector(c) != a.version_vector()
    own = OwnFeed(NodeKey(b"\x57" * 32), c)  # our own feed appears: the vector follows
    own.put(records.CARD_KEY, records.encode_card(records.HostCard("c", "nas")))
    own.commit(9500)
    assert list(c.version_vector().items()) == list(FeedSet.version_vector(c).items())
    assert c.revoke(keys[1][0].public)
    assert list(c.version_vector().items()) == list(FeedSet.version_vector(c).items())


def _shared_feedset(writers: range, seed: bytes) -> tuple[list, SharedFeedSet]:
    """A shared feed set holding one committed feed of each of ``writers``."""
    keys = [_writer(i) for i in writers]
    fs = SharedFeedSet(FeedPool(), VectorPool(), None, NodeKey(seed * 32).public)
    for _, _, own in keys:
        fs.apply_delta(own.commit(1000))
    return keys, fs


def test_memoised_anti_entropy_functions_equal_the_real_ones():
    from mesh.core import antientropy as ae
    install_antientropy_memo()
    _, fs = _shared_feedset(range(6, 40), b"\x58")
    shared = fs.version_vector()
    plain = dict(shared)
    for bits in (0, 1, 3):
        assert ae.bucket_hashes(shared, bits) == ae.bucket_hashes(plain, bits)
        buckets = tuple(range(0, 1 << bits, 2))
        assert ae.restrict(shared, bits, buckets) == ae.restrict(plain, bits, buckets)
        theirs = {o: v - 1 for o, v in list(plain.items())[::3]}
        assert ae.scoped_vector(shared, theirs, bits, buckets) == ae.scoped_vector(plain, theirs, bits, buckets)


def test_memoised_frame_decoding_equals_the_real_one_and_refuses_alike():
    from mesh.core import frames as fr
    from mesh.core import node
    from mesh.core.signing import issue_presence, own_member_record
    from mesh.core.types import Liveness
    install_decode_memo()
    key = NodeKey(b"\x59" * 32)
    member = own_member_record(key, Liveness.ALIVE, 3)
    presence = issue_presence(key, 3, 2, 10**9, 1.0, (), "nas", False)
    frames = [fr.Gossip((member, presence)), fr.Ping(7, presence, (member,)), fr.Digest(b"\1" * 16, b"\2" * 16),
              fr.Records((member,)), fr.Sync({key.public: 4}, (), True)]
    for frame in frames:
        data = fr.encode_frame(frame)
        first, again = node.decode_frame(data, 1 << 20), node.decode_frame(bytes(data), 1 << 20)
        assert first == again == fr.decode_frame(data, 1 << 20) == frame
        # shared between receivers, except a SYNC (it holds dicts a receiver could change)
        assert (first is again) is (type(frame) is not fr.Sync)
    bad = fr.encode_frame(frames[0])[:-3]
    for _ in range(2):  # a refusal is never remembered as a frame
        with pytest.raises(fr.DecodeError):
            node.decode_frame(bad, 1 << 20)


def test_scoped_deltas_equal_the_full_scan():
    """A SYNC scoped to some buckets: the shared feed set looks only inside them, and sends exactly
    what the real scan of every feed sends — for its current vector; any other vector is scanned."""
    from mesh.core import antientropy as ae
    install_antientropy_memo()
    keys, fs = _shared_feedset(range(60, 110), b"\x5a")
    for _, _, own in keys[::4]:
        own.put("k", b"v2")
        fs.apply_delta(own.commit(2000))
    mine = fs.version_vector()
    theirs = {o: 1 for o in list(mine)[::2]}  # behind on some feeds, lacking others
    for bits in (0, 2, 3):
        for wanted in ((0,), tuple(range(0, 1 << bits, 2)), tuple(range(1 << bits))):
            scoped = ae.scoped_vector(mine, theirs, bits, wanted)
            assert type(scoped).__name__ == "ScopedVector"
            assert fs.deltas_since(scoped, 1 << 20) == FeedSet.deltas_since(fs, dict(scoped), 1 << 20)
            assert fs.deltas_since(scoped, 300) == FeedSet.deltas_since(fs, dict(scoped), 300)
    stale = ae.scoped_vector(mine, theirs, 2, (1,))
    keys[1][2].put("k", b"v3")
    fs.apply_delta(keys[1][2].commit(3000))  # our vector moved on: the old scope's outside is stale
    assert fs.deltas_since(stale, 1 << 20) == FeedSet.deltas_since(fs, dict(stale), 1 << 20)

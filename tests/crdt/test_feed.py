"""Host feeds: wire size, and every way a delta can be wrong (forged, tampered, replayed, oversized)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdt.codec import pack
from crdt.feed import (
    DELTA_BYTES_MAX,
    FEED_BYTES_MAX,
    FEED_ENTRIES_MAX,
    KEY_BYTES_MAX,
    VALUE_BYTES_MAX,
    Delta,
    SignedHead,
    decode_delta,
    digest_of,
    encode_delta,
    entry_hash,
)
from crdt.feedset import FeedSet, OwnFeed, decode_version_vector, encode_version_vector
from crdt.records import Holding, encode_holding, holding_key
from tests.crdt.test_feed_support import KEYS, T0_MS, live, sync, writer
from tva.errors import (
    DecodeError,
    GapError,
    InvalidInput,
    RemoteDataError,
    RevokedPeer,
    SignatureError,
    StaleData,
    TooLarge,
    UnsupportedVersion,
)

A, B, C = KEYS[0], KEYS[1], KEYS[2]


def holding(i: int, done: int = 0) -> Holding:
    return Holding(f"tmdb:movie:{i:07d}", f"{i:040x}", 4_000_000_000 + i, "partial", "f2f_only", "local", done)


def forge(key, entries: dict, version: int, *, since: int = 0, full: bool = True, gc: int = 0,
          signer=None, listed: dict | None = None) -> bytes:
    """A delta whose head is signed by ``signer`` (default: the owner) over the state ``entries``.

    ``listed`` are the entries actually sent (default: all of them).
    """
    acc = sum(entry_hash(key.public, k, v, val) for k, (v, val) in entries.items())
    head_key = signer or key
    msg = SignedHead.signing_message(key.public, version, gc, len(entries), digest_of(acc))
    head = SignedHead(key.public, version, gc, len(entries), digest_of(acc), head_key.sign(msg))
    send = entries if listed is None else listed
    return encode_delta(Delta(key.public, since, full, tuple(sorted((k, v, val) for k, (v, val) in send.items())),
                              head))


@pytest.fixture
def pair():
    """An owner with three entries and a replica in sync with it."""
    fs_a, own = writer(0)
    for i in range(3):
        own.put(f"k{i}", b"v%d" % i)
    first = own.commit(T0_MS)
    replica = FeedSet()
    replica.apply_delta(first)
    return fs_a, own, replica


# --- size -----------------------------------------------------------------------------------------

def one_change_delta_bytes(others: int) -> int:
    """Wire size of the delta for one changed holding between an owner and a synced replica."""
    fs, own = writer(0)
    for i in range(others):
        own.put(holding_key(holding(i).content_id), encode_holding(holding(i)))
    own.put("card", b"x" * 120)
    replica = FeedSet()
    replica.apply_delta(own.commit(T0_MS))
    changed = holding(7, done=1_234_567)
    own.put(holding_key(changed.content_id), encode_holding(changed))
    pushed = own.commit(T0_MS + 1)
    pulled = fs.deltas_since(replica.version_vector())
    assert pulled == [pushed]  # the eager push and a pull by version vector are the same bytes
    replica.apply_delta(pushed)
    assert replica.state_key() == fs.state_key()
    return len(pushed)


def test_one_changed_holding_costs_under_300_bytes_whatever_the_total():
    small, large = one_change_delta_bytes(10), one_change_delta_bytes(5000)
    assert small <= 300 and large <= 300
    # Only the changed entry and a fixed-size head travel; the head's entry count is the one field
    # whose msgpack width (1–5 bytes) depends on the total.
    assert abs(large - small) <= 4


# --- the honest path ----------------------------------------------------------------------------

def test_commit_batches_and_reports_changes(pair):
    fs_a, own, replica = pair
    own.put("k0", b"new")
    own.delete("k1")
    own.put("k9", b"nine")
    applied = replica.apply_delta(own.commit(T0_MS + 5))
    assert applied.changed_keys == ("k0", "k1", "k9") and not applied.full
    assert live(replica, A.public) == {"k0": b"new", "k2": b"v2", "k9": b"nine"}
    assert replica.feed(A.public).entry("k1").value is None  # tombstone kept until GC
    assert replica.state_key() == fs_a.state_key()


def test_no_op_changes_produce_no_delta(pair):
    _, own, _ = pair
    own.put("k0", b"v0")  # same value
    own.delete("absent")
    assert own.commit(T0_MS + 1) is None
    own.put("tmp", b"x")
    own.delete("tmp")  # put then delete of a key never committed
    assert own.commit(T0_MS + 2) is None


def test_versions_follow_the_clock_and_stay_monotonic(pair):
    _, own, _ = pair
    v0 = own.version
    own.put("k0", b"a")
    own.commit(T0_MS - 10_000)  # clock stepped back
    assert own.version == v0 + 1
    own.put("k0", b"b")
    own.commit(T0_MS + 60_000)
    assert own.version == (T0_MS + 60_000) << 16


def test_a_node_that_lost_its_state_gets_its_feed_back_and_continues(pair):
    fs_a, _, replica = pair
    fresh = FeedSet()
    reborn = OwnFeed(A, fresh)
    sync(replica, fresh)  # peers hand our own signed feed back
    assert fresh.state_key() == fs_a.state_key()
    reborn.put("k3", b"after")
    delta = reborn.commit(T0_MS - 1)  # even with a clock behind the old versions
    replica.apply_delta(delta)
    assert live(replica, A.public)["k3"] == b"after"


def test_owner_side_limits_are_local_errors(pair):
    _, own, _ = pair
    with pytest.raises(InvalidInput):
        own.put("k" * (KEY_BYTES_MAX + 1), b"")
    with pytest.raises(InvalidInput):
        own.put("", b"")
    with pytest.raises(InvalidInput):
        own.put("k", b"x" * (VALUE_BYTES_MAX + 1))
    with pytest.raises(InvalidInput):
        own.put("k", "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        own.put("\ud800", b"")  # not encodable as UTF-8


def test_owner_cannot_overflow_the_entry_or_byte_limit():
    _, own = writer(0)
    for i in range(FEED_ENTRIES_MAX):
        own.put(f"e{i}", b"")
    with pytest.raises(InvalidInput, match="full"):
        own.put("one-more", b"")
    own.put("e5", b"replacing is fine")
    _, big = writer(1)
    with pytest.raises(InvalidInput, match="exceed"):
        for i in range(FEED_BYTES_MAX // VALUE_BYTES_MAX + 1):
            big.put(f"b{i}", b"x" * VALUE_BYTES_MAX)


# --- refused deltas -----------------------------------------------------------------------------

def test_forged_head_is_refused_and_changes_nothing(pair):
    _, _, replica = pair
    before = replica.state_key()
    entries = {"k0": (1 << 60, b"evil")}
    with pytest.raises(SignatureError):
        replica.apply_delta(forge(A, entries, 1 << 60, signer=B))
    with pytest.raises(SignatureError):  # a brand-new owner forged by someone else
        replica.apply_delta(forge(C, entries, 1 << 60, signer=B))
    assert replica.state_key() == before
    assert replica.feed(C.public) is None


def test_relay_cannot_alter_drop_or_add_entries(pair):
    fs_a, own, replica = pair
    own.put("k0", b"changed")
    own.put("k5", b"five")
    genuine = decode_delta(own.commit(T0_MS + 1))
    before = replica.state_key()
    entries = list(genuine.entries)
    variants = [
        entries[:1],  # dropped one
        [*entries, ("zz", entries[0][1], b"added")],  # added one
        [(entries[0][0], entries[0][1], b"altered"), *entries[1:]],  # altered a value
        [(entries[0][0], entries[0][1] - 1, entries[0][2]), *entries[1:]],  # altered a version
        [(entries[0][0], entries[0][1], None), *entries[1:]],  # turned into a tombstone
    ]
    for variant in variants:
        bad = dataclasses.replace(genuine, entries=tuple(sorted(variant)))
        with pytest.raises(SignatureError):
            replica.apply_delta(encode_delta(bad))
        assert replica.state_key() == before
    replica.apply_delta(encode_delta(genuine))
    assert replica.state_key() == fs_a.state_key()


@given(st.data())
def test_flipping_any_byte_never_yields_a_state_the_owner_did_not_sign(data):
    fs_a, own = writer(0)
    for i in range(4):
        own.put(f"k{i}", b"v%d" % i)
    replica = FeedSet()
    replica.apply_delta(own.commit(T0_MS))
    own.put("k1", b"changed")
    own.delete("k2")
    genuine = own.commit(T0_MS + 1)
    expected = fs_a.state_key()
    before = replica.state_key()
    i = data.draw(st.integers(0, len(genuine) - 1), label="index")
    mask = data.draw(st.integers(1, 255), label="xor")
    tampered = bytearray(genuine)
    tampered[i] ^= mask
    try:
        replica.apply_delta(bytes(tampered))
    except RemoteDataError:
        assert replica.state_key() == before
    else:
        # Only the unsigned routing fields (since, full) can change without refusal, and then the
        # signed digest guarantees the result is exactly the owner's state anyway.
        assert replica.state_key() == expected
        assert decode_delta(bytes(tampered)).entries == decode_delta(genuine).entries


def test_replayed_and_out_of_order_deltas(pair):
    _, own, replica = pair
    d = []
    for n in range(3):
        own.put("k0", b"round %d" % n)
        d.append(own.commit(T0_MS + 1 + n))
    before = replica.state_key()
    with pytest.raises(GapError):
        replica.apply_delta(d[2])  # skips d[1]
    assert replica.state_key() == before
    replica.apply_delta(d[0])
    after_first = replica.state_key()
    for old in (d[0], d[0]):
        with pytest.raises(StaleData):
            replica.apply_delta(old)
        assert replica.state_key() == after_first
    replica.apply_delta(d[1])
    replica.apply_delta(d[2])
    assert live(replica, A.public)["k0"] == b"round 2"
    with pytest.raises(StaleData):
        replica.apply_delta(d[1])


def test_overlapping_delta_from_an_older_vector_still_applies(pair):
    fs_a, own, replica = pair
    since = replica.version_vector()[A.public]
    own.put("k0", b"1")
    replica.apply_delta(own.commit(T0_MS + 1))
    own.put("k1", b"2")
    own.commit(T0_MS + 2)
    stale_view = fs_a.deltas_since({A.public: since})  # covers both commits
    replica.apply_delta(stale_view[0])
    assert replica.state_key() == fs_a.state_key()


def test_revoked_and_non_member_owners_are_refused(pair):
    fs_a, own, _ = pair
    replica = FeedSet(allowed=frozenset({B.public}))
    data = fs_a.deltas_since({})[0]
    with pytest.raises(RevokedPeer, match="not a member"):
        replica.apply_delta(data)
    replica.set_allowed(frozenset({A.public, B.public}))
    replica.apply_delta(data)
    assert replica.revoke(A.public)
    assert replica.feed(A.public) is None
    own.put("k0", b"after revocation")
    with pytest.raises(RevokedPeer, match="revoked"):
        replica.apply_delta(fs_a.deltas_since({})[0])
    assert replica.owners() == ()
    # Leaving the membership drops the feed too.
    other = FeedSet()
    other.apply_delta(data)
    assert other.set_allowed(frozenset({B.public})) == (A.public,)
    assert other.feed(A.public) is None
    with pytest.raises(InvalidInput):
        fs_a.revoke(A.public)  # our own key


def test_oversized_deltas_are_refused(pair):
    _, _, replica = pair
    before = replica.state_key()
    with pytest.raises(TooLarge):
        replica.apply_delta(b"\x01" + b"\x00" * DELTA_BYTES_MAX)
    v = 1 << 60
    with pytest.raises(TooLarge):
        replica.apply_delta(forge(A, {"k": (v, b"x" * (VALUE_BYTES_MAX + 1))}, v))
    with pytest.raises(TooLarge):
        replica.apply_delta(forge(A, {"k" * (KEY_BYTES_MAX + 1): (v, b"")}, v))
    head = [v, 0, FEED_ENTRIES_MAX + 1, b"\0" * 32, b"\0" * 64]
    with pytest.raises(TooLarge):
        replica.apply_delta(b"\x01" + pack([A.public, 0, True, [], head]))
    assert replica.state_key() == before


def test_a_validly_signed_member_cannot_grow_a_feed_past_its_byte_limit():
    replica = FeedSet()
    half = {f"a{i}": (10, b"x" * VALUE_BYTES_MAX) for i in range(FEED_BYTES_MAX // VALUE_BYTES_MAX // 2 + 10)}
    replica.apply_delta(forge(C, half, 10))
    more = {f"b{i}": (20, b"y" * VALUE_BYTES_MAX) for i in range(len(half))}
    before = replica.state_key()
    with pytest.raises(TooLarge):
        replica.apply_delta(forge(C, {**half, **more}, 20, since=10, full=False, listed=more))
    assert replica.state_key() == before


def test_owner_limit_per_feed_set():
    replica = FeedSet(owners_max=2)
    for k in KEYS[:2]:
        replica.apply_delta(forge(k, {"a": (5, b"")}, 5))
    with pytest.raises(TooLarge):
        replica.apply_delta(forge(KEYS[2], {"a": (5, b"")}, 5))


def test_structurally_wrong_deltas(pair):
    _, _, replica = pair
    v = 1 << 60
    cases = [
        (b"", DecodeError),
        (b"\x02" + pack([]), UnsupportedVersion),
        (b"\x01" + pack([A.public, 0, True, []]), DecodeError),  # missing head
        (b"\x01" + pack([A.public[:31], 0, True, [], [v, 0, 0, b"\0" * 32, b"\0" * 64]]), DecodeError),
        (b"\x01" + pack([A.public, 0, 1, [], [v, 0, 0, b"\0" * 32, b"\0" * 64]]), DecodeError),  # full not bool
        (b"\x01" + pack([A.public, 5, True, [], [v, 0, 0, b"\0" * 32, b"\0" * 64]]), DecodeError),
        (b"\x01" + pack([A.public, v, False, [], [v, 0, 0, b"\0" * 32, b"\0" * 64]]), DecodeError),
        (b"\x01" + pack([A.public, 0, True, [], [v, v + 1, 0, b"\0" * 32, b"\0" * 64]]), DecodeError),  # gc > v
        (b"\x01" + pack([A.public, 0, True, [["b", 1, b""], ["a", 1, b""]],
                         [v, 0, 2, b"\0" * 32, b"\0" * 64]]), DecodeError),  # unsorted keys
        (b"\x01" + pack([A.public, 0, True, [["a", 1, b""], ["a", 1, b""]],
                         [v, 0, 2, b"\0" * 32, b"\0" * 64]]), DecodeError),  # duplicate key
        (b"\x01" + pack([A.public, 0, True, [["a", v + 1, b""]], [v, 0, 1, b"\0" * 32, b"\0" * 64]]),
         DecodeError),  # entry newer than its head
        (b"\x01" + pack([A.public, 0, True, [["a", 3, None]], [v, 5, 1, b"\0" * 32, b"\0" * 64]]),
         DecodeError),  # tombstone under the GC horizon
        (b"\x01" + pack({"owner": A.public}), DecodeError),  # maps are not part of the format
    ]
    before = replica.state_key()
    for data, err in cases:
        with pytest.raises(err):
            replica.apply_delta(data)
    assert replica.state_key() == before


@given(st.binary(max_size=400))
def test_garbage_bytes_only_raise_remote_data_errors(data):
    replica = FeedSet()
    for blob in (data, b"\x01" + data):
        with pytest.raises(RemoteDataError):
            replica.apply_delta(blob)
    assert replica.owners() == ()


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=70)
    | st.text(max_size=10) | st.floats(allow_nan=False),
    lambda kids: st.lists(kids, max_size=6),
    max_leaves=30,
)


@given(msgpack_values)
def test_well_formed_msgpack_of_the_wrong_shape_is_refused(obj):
    replica = FeedSet()
    with pytest.raises(RemoteDataError):
        replica.apply_delta(b"\x01" + pack(obj))
    assert replica.owners() == ()


def test_deltas_since_respects_its_byte_budget_and_ignores_nonsense():
    fs = FeedSet()
    for i in range(3):
        own = OwnFeed(KEYS[i], fs)
        own.put("big", b"x" * 3000)
        own.commit(T0_MS)
    assert len(fs.deltas_since({})) == 3
    assert len(fs.deltas_since({}, bytes_max=5000)) == 1  # the first always goes
    assert len(fs.deltas_since({}, bytes_max=7000)) == 2
    # Garbage version claims cost a full resend, never an exception.
    weird = {KEYS[0].public: -5, KEYS[1].public: "x", KEYS[2].public: 2**70}
    assert len(fs.deltas_since(weird)) == 2  # type: ignore[arg-type]


@given(st.dictionaries(st.binary(min_size=32, max_size=32), st.integers(0, 2**63 - 1), max_size=20))
def test_version_vector_round_trip(vv):
    assert decode_version_vector(encode_version_vector(vv)) == vv


@given(st.binary(max_size=200))
def test_version_vector_garbage_is_refused(data):
    try:
        vv = decode_version_vector(data)
    except RemoteDataError:
        return
    assert all(len(o) == 32 and type(v) is int and v >= 0 for o, v in vv.items())


def test_version_vector_shapes():
    for bad in (pack([A.public]), pack([A.public, -1]), pack([A.public, 1, A.public, 2]), pack([b"x", 1]),
                pack([A.public, True])):
        with pytest.raises(DecodeError):
            decode_version_vector(bad)
    with pytest.raises(TooLarge):
        decode_version_vector(pack([A.public, 1] * 1025))


def test_a_diverged_copy_heals_with_a_snapshot():
    """An owner that equivocated (two different heads at one version) splits replicas; incremental
    deltas then fail verification on the wrong side, and a snapshot with a newer head repairs it."""
    fs_a, own = writer(0)
    own.put("k", b"1")
    replica = FeedSet()
    replica.apply_delta(own.commit(T0_MS))
    v = own.version
    # The owner "restores an old backup" and, with its clock behind, signs another state at v + 1 …
    evil_twin = forge(A, {"k": (v, b"1"), "x": (v + 1, b"twin")}, v + 1, since=v, full=False,
                      listed={"x": (v + 1, b"twin")})
    replica.apply_delta(evil_twin)
    own.put("y", b"real")
    own.commit(T0_MS)  # also version v + 1, different content
    assert own.version == v + 1
    own.put("z", b"next")
    own.commit(T0_MS)
    with pytest.raises(SignatureError):
        replica.apply_delta(fs_a.deltas_since(replica.version_vector())[0])
    replica.apply_delta(fs_a.snapshot(A.public))
    assert replica.state_key() == fs_a.state_key()
    assert FeedSet().snapshot(A.public) is None

"""FeedSet persistence: round trip, and corrupt bytes give StateCorrupt, never a crash."""

from __future__ import annotations

import hashlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdt.feedset import FeedSet, OwnFeed
from tests.crdt.test_feed_support import KEYS, T0_MS
from tva.errors import StateCorrupt


def sample() -> FeedSet:
    fs = FeedSet()
    for i in range(3):
        own = OwnFeed(KEYS[i], fs)
        for k in range(5):
            own.put(f"k{k}", b"value %d/%d" % (i, k))
        own.commit(T0_MS)
        own.delete("k1")
        own.commit(T0_MS + 1)
    fs.revoke(KEYS[5].public)
    return fs


def test_round_trip_keeps_feeds_membership_and_revocations():
    fs = sample()
    fs.set_allowed(frozenset(k.public for k in KEYS[:4]))
    for verify in (False, True):
        back = FeedSet.from_bytes(fs.to_bytes(), verify=verify)
        assert back.state_key() == fs.state_key()
        assert back.to_bytes() == fs.to_bytes()
        assert back.allowed == fs.allowed and back.revoked == fs.revoked
        assert back.version_vector() == fs.version_vector()
    # A loaded replica keeps merging: its accumulators were restored, not recomputed.
    back = FeedSet.from_bytes(fs.to_bytes())
    writer_fs = fs.copy()
    own = OwnFeed(KEYS[0], writer_fs)
    own.put("k7", b"new")
    back.apply_delta(own.commit(T0_MS + 5))
    assert back.state_key() == writer_fs.state_key()


def test_empty_feed_set_round_trips():
    assert FeedSet.from_bytes(FeedSet().to_bytes()).owners() == ()


@given(st.binary(max_size=300))
def test_garbage_is_state_corrupt(data):
    for blob in (data, b"\x01" + data):
        with pytest.raises(StateCorrupt):
            FeedSet.from_bytes(blob)


GOOD = sample().to_bytes()


@given(st.integers(0, len(GOOD) - 1), st.integers(1, 255), st.booleans())
def test_any_flipped_byte_is_caught(i, mask, verify):
    bad = bytearray(GOOD)
    bad[i] ^= mask
    with pytest.raises(StateCorrupt):
        FeedSet.from_bytes(bytes(bad), verify=verify)


@given(st.integers(0, len(GOOD) - 1))
def test_truncation_is_state_corrupt(n):
    with pytest.raises(StateCorrupt):
        FeedSet.from_bytes(GOOD[:n])


def rewrite(data: bytes, edit) -> bytes:
    """A crafted (not merely corrupted) file: edit the body and fix up the checksum."""
    body = msgpack.unpackb(data[33:])
    edit(body)
    raw = msgpack.packb(body, use_bin_type=True)
    return data[:1] + hashlib.sha256(raw).digest() + raw


def test_crafted_files_are_caught_by_the_structural_and_verified_checks():
    data = sample().to_bytes()

    def acc(body):
        body[3][0][2] = body[3][0][2][:-1] + bytes([body[3][0][2][-1] ^ 1])

    def value(body):
        body[3][0][3][2] = b"swapped"

    def count(body):
        body[3][0][3] = body[3][0][3][:-3]

    def tombstone_under_gc(body):
        body[3][0][1][1] = body[3][0][1][0]  # gc_version = version: its tombstone is now below it

    with pytest.raises(StateCorrupt, match="accumulator"):
        FeedSet.from_bytes(rewrite(data, acc))
    with pytest.raises(StateCorrupt, match="entries"):
        FeedSet.from_bytes(rewrite(data, count))
    with pytest.raises(StateCorrupt, match="tombstone"):
        FeedSet.from_bytes(rewrite(data, tombstone_under_gc))
    # An altered value passes the fast structural load but not the verified one.
    FeedSet.from_bytes(rewrite(data, value))
    with pytest.raises(StateCorrupt, match="do not match"):
        FeedSet.from_bytes(rewrite(data, value), verify=True)

"""Peer queries are remote input: garbage and ill-shaped queries give DecodeError, nothing else."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import rpc
from tva.errors import DecodeError, RequestRefused

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=50),
                    st.binary(max_size=60))
shapes = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                      max_leaves=12)


@given(st.binary(max_size=500))
def test_garbage_bytes_never_decode_into_a_query(data):
    try:
        q = rpc.decode_query(data)
    except DecodeError:
        return
    assert q.kind in rpc.KINDS


@given(shapes)
def test_ill_shaped_queries_are_refused(obj):
    try:
        q = rpc.decode_query(msgpack.packb(obj))
    except DecodeError:
        return
    assert q.kind in rpc.KINDS and isinstance(q.body, dict)


@given(st.binary(max_size=300))
def test_garbage_replies_are_decode_errors(data):
    with pytest.raises((DecodeError, RequestRefused)):
        rpc.decode_join_reply(data)


def test_well_formed_queries_round_trip_and_bad_fields_are_named():
    q = rpc.decode_query(rpc.encode_query("peers_for", {"infohash": "ab" * 20}))
    assert (q.kind, q.body) == ("peers_for", {"infohash": "ab" * 20})
    with pytest.raises(DecodeError, match="40-hex"):
        rpc.decode_query(rpc.encode_query("peers_for", {"infohash": "AB" * 20}))
    with pytest.raises(DecodeError, match="invite"):
        rpc.decode_query(rpc.encode_query("join", {"invite": 5, "card_delta": b""}))
    with pytest.raises(RequestRefused, match="no"):
        rpc.decode_join_reply(rpc.encode_refusal("no", "because"))

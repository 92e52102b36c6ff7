"""Typed feed records: round trips, validation on both sides, garbage, and the FeedSet views."""

from __future__ import annotations

import base64

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdt.codec import pack
from crdt.feedset import FeedSet, OwnFeed
from crdt.records import (
    CARD_KEY,
    CLAIM_IPV4_KEY,
    POLICIES,
    SIZE_BYTES_MAX,
    SOURCES,
    STATES,
    AddressClaim,
    Holding,
    HostCard,
    RepairIntent,
    cards,
    claims,
    decode_card,
    decode_claim,
    decode_holding,
    decode_intent,
    encode_card,
    encode_claim,
    encode_holding,
    encode_intent,
    holding_key,
    holdings,
    intent_key,
    intents,
)
from tests.crdt.test_feed_support import KEYS, T0_MS
from tva.errors import DecodeError, InvalidInput, RemoteDataError, UnsupportedVersion

content_ids = st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True)
tokens = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,31}", fullmatch=True)
printable = st.from_regex(r"[\x20-\x7e]{1,64}", fullmatch=True)


@st.composite
def holdings_st(draw):
    size = draw(st.integers(0, SIZE_BYTES_MAX))
    source = draw(st.sampled_from(SOURCES))
    policy = draw(st.sampled_from([p for p in POLICIES if not (source == "private-tracker" and p == "public")]))
    return Holding(draw(content_ids), draw(st.from_regex(r"[0-9a-f]{40}", fullmatch=True)), size,
                   draw(st.sampled_from(STATES)), policy, source, draw(st.integers(0, size)), draw(st.booleans()))


@st.composite
def cards_st(draw):
    wg = draw(st.none() | st.binary(min_size=32, max_size=32))
    return HostCard(
        draw(printable), draw(tokens), tuple(draw(st.lists(tokens, max_size=5, unique=True))),
        base64.b64encode(wg).decode() if wg else "",
        draw(st.just("") | st.ip_addresses(v=4).map(str)), draw(st.just("") | st.ip_addresses(v=6).map(str)),
        tuple(draw(st.lists(st.from_regex(r"/ip4/[0-9.]{7,15}/tcp/[0-9]{1,5}", fullmatch=True), max_size=4))),
        draw(st.integers(0, 65535)), draw(st.integers(0, 65535)),
    )


@given(holdings_st())
def test_holding_round_trip(h):
    assert decode_holding(h.content_id, encode_holding(h)) == h


@given(cards_st())
def test_card_round_trip(c):
    assert decode_card(encode_card(c)) == c


@given(content_ids, st.integers(0, 2**62), st.sampled_from(KEYS))
def test_intent_and_claim_round_trip(cid, lease, key):
    i = RepairIntent(cid, key.peer_id, lease)
    assert decode_intent(cid, encode_intent(i)) == i
    c = AddressClaim("10.77.0.9")
    assert decode_claim(encode_claim(c)) == c


def test_holding_is_compact():
    h = Holding("tmdb:movie:0000001", "ab" * 20, 4_000_000_000, "complete", "public", "public", 4_000_000_000)
    assert len(encode_holding(h)) <= 45


@pytest.mark.parametrize("kwargs", [
    dict(content_id="bad id"), dict(content_id=""), dict(content_id="x" * 129),
    dict(infohash="AB" * 20), dict(infohash="ab" * 19), dict(size_bytes=-1), dict(bytes_done=11),
    dict(state="seeding"), dict(policy="open"), dict(source="dht"),
    dict(source="private-tracker", policy="public"),  # private content never goes public
])
def test_invalid_holdings_are_refused_locally(kwargs):
    base = dict(content_id="c1", infohash="ab" * 20, size_bytes=10, state="partial", policy="public",
                source="local", bytes_done=5)
    with pytest.raises(InvalidInput):
        Holding(**{**base, **kwargs})


@pytest.mark.parametrize("kwargs", [
    dict(name=""), dict(name="x" * 65), dict(name="tab\there"), dict(host_class="Server"),
    dict(services=("a", "a")), dict(services=["list"]), dict(wg_public_key="not base64"),
    dict(wg_public_key=base64.b64encode(b"x" * 31).decode()), dict(overlay_ipv4="10.0.0.300"),
    dict(overlay_ipv4="fd00::1"), dict(overlay_ipv6="10.0.0.1"), dict(overlay_ipv6="FD00::1"),
    dict(listen_addrs=("",)), dict(api_port=70000), dict(torrent_port=True),
])
def test_invalid_cards_are_refused_locally(kwargs):
    base = dict(name="nas", host_class="server")
    with pytest.raises(InvalidInput):
        HostCard(**{**base, **kwargs})


def test_remote_values_are_checked_with_the_same_rules():
    ih = b"\xab" * 20
    cases = [
        pack([1, ih, 10, 0, 9, 0, 0]),  # unknown policy
        pack([1, ih, 10, 5, 0, 0, 0]),  # unknown state
        pack([1, ih[:19], 10, 0, 0, 0, 0]),  # short infohash
        pack([1, ih, 10, 0, 0, 2, 0]),  # private-tracker + public
        pack([1, ih, 10, 0, 0, 0, 11]),  # more done than its size
        pack([1, ih, -1, 0, 0, 0, 0]),
        pack([1, ih, True, 0, 0, 0, 0]),
        pack([1, ih, 10, 0, 0, 0]),  # missing a field
        pack({"infohash": ih}),
        pack([]),
    ]
    for raw in cases:
        with pytest.raises(DecodeError):
            decode_holding("c1", raw)
    with pytest.raises(UnsupportedVersion):  # a new major: refused, never half-read
        decode_holding("c1", pack([2, ih, 10, 0, 0, 0, 0]))
    with pytest.raises(DecodeError):
        decode_holding("bad id", pack([1, ih, 10, 0, 0, 0, 0]))
    with pytest.raises(DecodeError):
        decode_card(pack([1, "nas", "server", [], b"x" * 31, "", "", [], 0, 0]))
    with pytest.raises(DecodeError):
        decode_intent("c1", pack([1, b"x" * 31, 5]))
    with pytest.raises(DecodeError):
        decode_claim(pack([1, ""]))


@given(st.binary(max_size=200))
def test_garbage_only_raises_remote_data_errors(data):
    for decode in (decode_card, decode_claim, lambda d: decode_holding("c1", d), lambda d: decode_intent("c1", d)):
        try:
            decode(data)
        except RemoteDataError:
            pass


values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=40)
    | st.text(max_size=20) | st.floats(),
    lambda kids: st.lists(kids, max_size=11), max_leaves=25,
)


@given(st.lists(values, max_size=11))
def test_well_formed_msgpack_of_the_wrong_shape_only_raises_remote_data_errors(fields):
    data = pack([1, *fields])
    for decode in (decode_card, decode_claim, lambda d: decode_holding("c1", d), lambda d: decode_intent("c1", d)):
        try:
            decode(data)
        except RemoteDataError:
            pass


def test_views_read_typed_records_and_skip_invalid_ones():
    fs = FeedSet()
    a, b = OwnFeed(KEYS[0], fs), OwnFeed(KEYS[1], fs)
    card = HostCard("nas", "server", ("media",), "", "10.77.0.2", "", ("/ip4/10.0.0.2/tcp/4001",), 8080, 6881)
    h = Holding("tmdb:1", "ab" * 20, 100, "complete", "f2f_only", "private-tracker", 100)
    a.put(CARD_KEY, encode_card(card))
    a.put(holding_key("tmdb:1"), encode_holding(h))
    a.put(holding_key("tmdb:2"), b"\xc1garbage")  # a buggy host: skipped, not fatal
    a.put(intent_key("tmdb:1"), encode_intent(RepairIntent("tmdb:1", KEYS[1].peer_id, T0_MS + 60_000)))
    a.put(CLAIM_IPV4_KEY, encode_claim(AddressClaim("10.77.0.2")))
    b.put(CARD_KEY, b"not a card")
    a.commit(T0_MS)
    b.commit(T0_MS)
    assert cards(fs) == {KEYS[0].peer_id: card}
    assert holdings(fs) == {KEYS[0].peer_id: {"tmdb:1": h}, KEYS[1].peer_id: {}}
    assert intents(fs)[KEYS[0].peer_id]["tmdb:1"].target_peer_id == KEYS[1].peer_id
    assert claims(fs) == {KEYS[0].peer_id: AddressClaim("10.77.0.2")}
    with pytest.raises(InvalidInput):
        holding_key("no spaces allowed")


def test_several_intents_per_content_are_keyed_by_target():
    fs = FeedSet()
    a = OwnFeed(KEYS[0], fs)
    for target in (KEYS[1], KEYS[2]):
        a.put(intent_key("tmdb:2", target.peer_id),
              encode_intent(RepairIntent("tmdb:2", target.peer_id, T0_MS + 60_000)))
    # A record whose key names another target than its value is refused when read.
    a.put(intent_key("tmdb:3", KEYS[1].peer_id), encode_intent(RepairIntent("tmdb:3", KEYS[2].peer_id, 1)))
    a.commit(T0_MS)
    got = intents(fs)[KEYS[0].peer_id]
    assert sorted(i.target_peer_id for i in got.values() if i.content_id == "tmdb:2") == sorted(
        [KEYS[1].peer_id, KEYS[2].peer_id])
    assert not any(i.content_id == "tmdb:3" for i in got.values())
    with pytest.raises(InvalidInput):
        intent_key("tmdb:2", "not-a-peer")


def test_the_custody_mark_is_a_trailing_field_written_only_when_set():
    user = Holding("film", "ab" * 20, 10, "complete", "public", "local", 10)
    made = Holding("film", "ab" * 20, 10, "complete", "public", "local", 10, custody=True)
    # A user's holding keeps the seven-field form (older readers still read it); the mark adds one.
    assert len(msgpack.unpackb(encode_holding(user))) == 7 and len(msgpack.unpackb(encode_holding(made))) == 8
    assert decode_holding("film", encode_holding(made)).custody is True
    fields = msgpack.unpackb(encode_holding(user))
    assert decode_holding("film", msgpack.packb([*fields, False])).custody is False  # a newer minor's padding
    with pytest.raises(DecodeError):
        decode_holding("film", msgpack.packb([*fields, 1]))


def test_a_newer_minor_versions_records_are_read_and_their_new_fields_ignored():
    # a build one minor version ahead appends fields (same major): this build reads the rest
    ih = b"\xab" * 20
    plain = decode_holding("c1", pack([1, ih, 10, 0, 0, 0, 10]))
    assert decode_holding("c1", pack([1, ih, 10, 0, 0, 0, 10, True, "codec", [1, 2]])).custody is True
    assert decode_holding("c1", pack([1, ih, 10, 0, 0, 0, 10, True, "codec"])).size_bytes == plain.size_bytes
    card = decode_card(pack([1, "nas", "server", [], b"", "", "", [], 0, 0, [], ["gpu"]]))
    assert card.name == "nas" and card.host_class == "server"
    assert decode_intent("c1", pack([1, b"\x01" * 32, 5, "reason"])).lease_until_ms == 5
    assert decode_claim(pack([1, "10.44.0.7", 1])).ipv4 == "10.44.0.7"

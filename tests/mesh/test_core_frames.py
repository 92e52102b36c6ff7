"""The mesh wire format: round trips, every limit, and fuzzing that can only end in RemoteDataError."""

from __future__ import annotations

import math

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.core import MeshConfig
from mesh.core.frames import (
    DIGEST_BYTES,
    ENDPOINTS_MAX,
    FRAME_VERSION,
    INCARNATION_MAX,
    PEER_CHARS_MAX,
    Ack,
    DeltaItem,
    Deltas,
    Digest,
    DocMessage,
    Gossip,
    MemberRecord,
    Nack,
    Ping,
    PingReq,
    PresenceRecord,
    Summary,
    Sync,
    decode_frame,
    encode_frame,
)
from mesh.core.types import Liveness
from tva.errors import DecodeError, InvalidInput, RemoteDataError, TooLarge, UnsupportedVersion

FRAME_MAX = MeshConfig().frame_bytes_max

# boundaries get their own weight: off-by-one overflows live there
u64 = st.one_of(st.integers(0, 3), st.integers(2**62 - 2, 2**62), st.integers(0, 2**64 - 1))


incarnations = st.one_of(st.integers(0, 3), st.integers(INCARNATION_MAX - 2, INCARNATION_MAX))


bucket_bits = st.integers(0, 4)
scopes = bucket_bits.flatmap(lambda bits: st.tuples(
    st.just(bits), st.lists(st.integers(0, (1 << bits) - 1), unique=True, max_size=1 << bits).map(tuple)))


def frame_strategy(peers: st.SearchStrategy[str]) -> st.SearchStrategy:
    """Any valid frame; ``peers`` chooses the peer ids inside it."""
    members = st.builds(MemberRecord, st.sampled_from(list(Liveness)), peers, incarnations,
                        st.one_of(st.just(""), peers))
    presences = st.builds(
        PresenceRecord, peers, incarnations, u64, st.floats(0.0, 1.0, allow_nan=False),
        st.lists(st.text(min_size=1, max_size=256), max_size=ENDPOINTS_MAX).map(tuple),
        st.text(max_size=32), st.booleans(),
    )
    items = st.lists(st.one_of(members, presences, st.builds(DeltaItem, st.binary(max_size=300))),
                     max_size=20).map(tuple)
    return st.one_of(
        st.builds(Ping, u64, st.one_of(st.none(), presences), items),
        st.builds(Ack, u64, st.one_of(st.none(), presences), items),
        st.builds(PingReq, u64, peers, items),
        st.builds(Gossip, items),
        st.builds(Digest, st.binary(min_size=DIGEST_BYTES, max_size=DIGEST_BYTES)),
        st.builds(Sync, st.dictionaries(st.binary(min_size=0, max_size=64), u64, max_size=30),
                  st.lists(st.binary(max_size=64), max_size=10).map(tuple), st.booleans(),
                  st.one_of(st.none(), scopes)),
        bucket_bits.flatmap(lambda bits: st.builds(
            Summary, st.binary(min_size=DIGEST_BYTES, max_size=DIGEST_BYTES), st.just(bits),
            st.lists(st.binary(min_size=8, max_size=8), min_size=1 << bits, max_size=1 << bits).map(tuple),
            st.lists(st.binary(max_size=64), max_size=10).map(tuple))),
        st.builds(Deltas, st.lists(st.binary(max_size=500), max_size=10).map(tuple)),
        st.builds(DocMessage, st.binary(max_size=1000)),
        st.builds(Nack, u64),
    )


frames = frame_strategy(st.text(min_size=1, max_size=PEER_CHARS_MAX))


@given(frames)
def test_every_frame_round_trips(frame):
    assert decode_frame(encode_frame(frame), FRAME_MAX) == frame


def test_length_limits_count_characters_not_utf8_bytes():
    # found by hypothesis: a 256-character endpoint of 3-byte characters is valid and must decode
    frame = Gossip((PresenceRecord("p", 1, 1, 0.5, ("\u0800" * 256,), "\u0800" * 32, False),))
    assert decode_frame(encode_frame(frame), FRAME_MAX) == frame


def test_routine_frames_are_tiny():
    # the idle traffic budget depends on these staying small
    assert len(encode_frame(Ping(123456))) <= 10
    assert len(encode_frame(Digest(b"\x01" * DIGEST_BYTES))) <= 21


def test_unknown_version_is_refused_clearly():
    data = bytes([FRAME_VERSION + 1]) + encode_frame(Ping(1))[1:]
    with pytest.raises(UnsupportedVersion, match="version 2"):
        decode_frame(data, FRAME_MAX)


def test_oversize_frame_is_refused_before_parsing():
    with pytest.raises(TooLarge):
        decode_frame(encode_frame(DocMessage(b"x" * 5000)), 4096)


@pytest.mark.parametrize("body", [
    [],                                            # no kind
    [99, 1],                                       # unknown kind
    [1, True, None, []],                           # bool is not a seq
    [1, -1, None, []],                             # negative seq
    [1, 1, None],                                  # missing field
    [1, 1, None, [], 5],                           # extra field
    [3, 1, "x" * (PEER_CHARS_MAX + 1), []],        # peer id too long
    [3, 1, "", []],                                # empty peer id
    [5, b"\x00" * (DIGEST_BYTES - 1)],             # short digest
    [6, [], [], True, None],                       # version vector not a map
    [6, {b"o": 1}, [], 1, None],                   # reply not a bool
    [6, {b"o" * 65: 1}, [], True, None],           # owner key too long
    [6, {b"o": 1}, [], True],                      # scope slot missing
    [6, {}, [], True, [9, []]],                    # more than 256 buckets
    [6, {}, [], True, [2, [4]]],                   # bucket index out of range
    [6, {}, [], True, [2, [1, 1]]],                # bucket listed twice
    [6, {}, [], True, [2]],                        # scope without buckets
    [10, b"\0" * 16, 1, [b"\0" * 8], []],          # 1 hash for 2 buckets
    [10, b"\0" * 16, 0, [b"\0" * 7], []],          # short bucket hash
    [10, b"\0" * 15, 0, [b"\0" * 8], []],          # short digest
    [10, b"\0" * 16, 9, [], []],                   # bucket bits over 8
    [4, [[0, 5, "peer", 1, ""]]],                  # member state out of range
    [4, [[0, 2, "peer", 2**62 + 1, ""]]],          # incarnation over INCARNATION_MAX
    [4, [[1, "p", 1, 10, math.nan, [], "", False]]],   # uptime not finite
    [4, [[1, "p", 1, 10, 2.0, [], "", False]]],        # uptime over 1
    [4, [[1, "p", 1, 10, 0.5, ["e"] * (ENDPOINTS_MAX + 1), "", False]]],  # too many endpoints
    [4, [[1, "p", 1, 10, 0.5, [], "c" * 33, False]]],  # host class too long
    [4, [[1, "p", 1, 10, 0.5, [], "", 0]]],            # asleep not a bool
    [4, [[7, b"x"]]],                              # unknown item kind
    [4, [[False, 0, "p", 1, ""]]],                 # bool as item kind
    [7, [1, 2]],                                   # deltas not bytes
])
def test_malformed_bodies_are_refused(body):
    with pytest.raises(DecodeError):
        decode_frame(bytes([FRAME_VERSION]) + msgpack.packb(body, use_bin_type=True), FRAME_MAX)


def test_non_msgpack_and_trailing_bytes_are_refused():
    with pytest.raises(DecodeError):
        decode_frame(bytes([FRAME_VERSION]) + b"\xc1", FRAME_MAX)  # 0xc1 is never valid msgpack
    with pytest.raises(DecodeError):
        decode_frame(encode_frame(Ping(1)) + b"\x00", FRAME_MAX)
    with pytest.raises(DecodeError):
        decode_frame(b"", FRAME_MAX)


# --- fuzzing: whatever the bytes, the decoder answers with a frame or a RemoteDataError ---------


def _decode_or_refuse(data: bytes):
    try:
        return decode_frame(data, FRAME_MAX)
    except RemoteDataError:
        return None


@given(st.binary(max_size=2000))
def test_random_bytes_never_crash_the_decoder(data):
    _decode_or_refuse(data)
    _decode_or_refuse(bytes([FRAME_VERSION]) + data)


msgpack_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(),
              st.text(max_size=80), st.binary(max_size=80)),
    lambda inner: st.one_of(st.lists(inner, max_size=8),
                            st.dictionaries(st.one_of(st.text(max_size=8), st.binary(max_size=8)), inner,
                                            max_size=5)),
    max_leaves=40,
)


@given(st.integers(0, 12), msgpack_values)
def test_structured_garbage_never_crashes_the_decoder(kind, value):
    # well-formed msgpack with a plausible kind reaches the field checks, not just the parser
    for body in ([kind, value], [kind, value, value, value], [kind, *value] if isinstance(value, list) else [value]):
        _decode_or_refuse(bytes([FRAME_VERSION]) + msgpack.packb(body, use_bin_type=True))


@given(frames, st.data())
def test_mutated_valid_frames_never_crash_the_decoder(frame, data):
    raw = bytearray(encode_frame(frame))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        i = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[i] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del raw[i:]
        else:
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    _decode_or_refuse(bytes(raw))


# --- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {"probe_interval_ms": 0}, {"fanout_max": -1}, {"gossip_interval_ms": 1.5},
    {"probe_timeout_ms": 1000, "probe_interval_ms": 1000}, {"frame_bytes_max": 1000},
    {"presence_refresh_ms": 10, "presence_ttl_ms": 10}, {"portable_classes": {"portable"}},
    {"piggyback_bytes_max": 3_000_000}, {"gossip_bytes_max": 3_000_000},
])
def test_bad_config_is_refused(kwargs):
    with pytest.raises(InvalidInput):
        MeshConfig(**kwargs)


@given(st.integers(1, 5000))
def test_suspicion_timeout_shrinks_with_confirmations_within_bounds(n):
    cfg = MeshConfig()
    times = [cfg.suspicion_timeout_ms(n, c) for c in range(cfg.indirect_probes_k + 2)]
    assert times[0] == cfg.suspicion_max_ms(n)
    assert times == sorted(times, reverse=True)
    assert times[-1] == cfg.suspicion_min_ms(n) >= cfg.suspicion_mult * cfg.probe_interval_ms
    assert cfg.retransmit_limit(n) >= cfg.retransmit_mult


presence_fields = st.tuples(
    st.one_of(st.text(max_size=70), st.integers(-1, 3)),
    st.one_of(st.integers(-1, 2**62 + 1), st.booleans(), st.floats()),
    st.one_of(st.integers(-1, 2**64), st.booleans()),
    st.one_of(st.floats(), st.integers(-1, 2), st.booleans()),
    st.one_of(st.lists(st.one_of(st.text(max_size=260), st.integers()), max_size=17), st.text(max_size=3)),
    st.one_of(st.text(max_size=34), st.none()),
    st.one_of(st.booleans(), st.integers(0, 1)),
).map(list)


@given(presence_fields)
def test_the_presence_fast_path_accepts_and_refuses_exactly_what_the_checked_path_does(fields):
    from mesh.core.frames import _presence, _presence_checked

    def outcome(fn):
        try:
            return fn(list(fields))
        except DecodeError:
            return "refused"
    assert outcome(_presence) == outcome(_presence_checked)

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
    FRAME_VERSION_MAX,
    FRAME_VERSION_MIN,
    INCARNATION_MAX,
    PEER_CHARS_MAX,
    REMAINING_MS_MAX,
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
    Records,
    Summary,
    Sync,
    UnknownFrame,
    UnknownItem,
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


signatures = st.one_of(st.just(b""), st.binary(min_size=64, max_size=64))
digests = st.binary(min_size=DIGEST_BYTES, max_size=DIGEST_BYTES)


def _hashes(bits: int):
    n = 1 << bits
    return st.one_of(st.just(()), st.lists(st.binary(min_size=8, max_size=8), min_size=n, max_size=n).map(tuple))


def frame_strategy(peers: st.SearchStrategy[str]) -> st.SearchStrategy:
    """Any valid frame; ``peers`` chooses the peer ids inside it (signatures are arbitrary bytes:
    the wire format checks shapes, the node checks signatures)."""
    members = st.builds(MemberRecord, st.sampled_from(list(Liveness)), peers, incarnations,
                        st.one_of(st.just(""), peers), st.one_of(st.none(), st.sampled_from(list(Liveness))),
                        signatures)
    presences = st.builds(
        PresenceRecord, peers, incarnations, u64, u64, st.floats(0.0, 1.0, allow_nan=False),
        st.lists(st.text(min_size=1, max_size=256), max_size=ENDPOINTS_MAX).map(tuple),
        st.text(max_size=32), st.booleans(), signatures, remaining_ms=st.integers(0, REMAINING_MS_MAX),
    )
    items = st.lists(st.one_of(members, presences, st.builds(DeltaItem, st.binary(max_size=300))),
                     max_size=20).map(tuple)
    soft = st.dictionaries(peers, st.tuples(incarnations, st.integers(0, 4), incarnations, u64), max_size=10)
    return st.one_of(
        st.builds(Ping, u64, st.one_of(st.none(), presences), items),
        st.builds(Ack, u64, st.one_of(st.none(), presences), items),
        st.builds(PingReq, u64, peers, items),
        st.builds(Gossip, items),
        st.builds(Records, items),
        st.builds(Digest, digests, digests),
        st.builds(Sync, st.dictionaries(st.binary(min_size=0, max_size=64), u64, max_size=30),
                  st.lists(st.binary(max_size=64), max_size=10).map(tuple), st.booleans(),
                  st.one_of(st.none(), scopes), st.one_of(st.none(), soft), st.one_of(st.none(), scopes)),
        st.tuples(bucket_bits, bucket_bits).flatmap(lambda bits: st.builds(
            Summary, digests, st.just(bits[0]), _hashes(bits[0]),
            st.lists(st.binary(max_size=64), max_size=10).map(tuple), digests, st.just(bits[1]), _hashes(bits[1]))),
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
    frame = Gossip((PresenceRecord("p", 0, 1, 1, 0.5, ("\u0800" * 256,), "\u0800" * 32, False),))
    assert decode_frame(encode_frame(frame), FRAME_MAX) == frame


def test_routine_frames_are_tiny():
    # the idle traffic budget depends on these staying small
    assert len(encode_frame(Ping(123456))) <= 10
    assert len(encode_frame(Digest(b"\x01" * DIGEST_BYTES, b"\x02" * DIGEST_BYTES))) <= 39


def test_unknown_version_is_refused_clearly():
    for version in (FRAME_VERSION_MIN - 1, FRAME_VERSION_MAX + 1):
        data = bytes([version]) + encode_frame(Ping(1))[1:]
        with pytest.raises(UnsupportedVersion, match=f"version {version}"):
            decode_frame(data, FRAME_MAX)


def _raw(body: list) -> bytes:
    return bytes([FRAME_VERSION]) + msgpack.packb(body, use_bin_type=True)


def test_a_newer_minor_versions_additions_are_skipped_not_refused():
    # an unknown frame kind: decoded as such (the node counts and skips it)
    assert decode_frame(_raw([99, "whatever", 1]), FRAME_MAX) == UnknownFrame(99)
    # trailing fields a newer minor added to a frame, to items, to a presence body: ignored
    p = PresenceRecord("p", 3, 7, 10, 0.5, ("e",), "nas", False, b"s" * 64)
    body = msgpack.packb(["p", 3, 7, 10, 0.5, ["e"], "nas", False, {"load": 0.3}], use_bin_type=True)
    ack = [2, 5, [body, b"s" * 64, 1000, "extra"],
           [[0, 0, "q", 4, "", 0, b"t" * 64, "extra"], [42, "an item kind from the future"], [2, b"delta", 1]],
           "extra frame field"]
    got = decode_frame(_raw(ack), FRAME_MAX)
    assert isinstance(got, Ack) and got.seq == 5 and got.presence == p and got.presence.body == body
    assert got.items == (MemberRecord(Liveness.ALIVE, "q", 4, "", Liveness.ALIVE, b"t" * 64), UnknownItem(42),
                         DeltaItem(b"delta"))


def test_oversize_frame_is_refused_before_parsing():
    with pytest.raises(TooLarge):
        decode_frame(encode_frame(DocMessage(b"x" * 5000)), 4096)


@pytest.mark.parametrize("body", [
    [],                                            # no kind
    ["ping", 1],                                   # kind not an int
    [1, True, None, []],                           # bool is not a seq
    [1, -1, None, []],                             # negative seq
    [1, 1, None],                                  # missing field
    [1, 1, None, [], *range(40)],                  # more fields than any minor may add
    [3, 1, "x" * (PEER_CHARS_MAX + 1), []],        # peer id too long
    [3, 1, "", []],                                # empty peer id
    [5, b"\x00" * (DIGEST_BYTES - 1), b"\x00" * DIGEST_BYTES],  # short digest
    [5, b"\x00" * DIGEST_BYTES],                   # no member digest
    [6, [], [], True, None, None, None],           # version vector not a map
    [6, {b"o": 1}, [], 1, None, None, None],       # reply not a bool
    [6, {b"o" * 65: 1}, [], True, None, None, None],  # owner key too long
    [6, {b"o": 1}, [], True, None, None],          # member scope slot missing
    [6, {}, [], True, [9, []], None, None],        # more than 256 buckets
    [6, {}, [], True, [2, [4]], None, None],       # bucket index out of range
    [6, {}, [], True, [2, [1, 1]], None, None],    # bucket listed twice
    [6, {}, [], True, [2], None, None],            # scope without buckets
    [6, {}, [], True, None, [], None],             # member vector not a map
    [6, {}, [], True, None, {"p": [1, 2, 3]}, None],         # short member vector entry
    [6, {}, [], True, None, {"p": [1, 5, 0, 0]}, None],      # member state out of range
    [6, {}, [], True, None, {"": [1, 0, 0, 0]}, None],       # empty peer id in the vector
    [10, b"\0" * 16, b"\0" * 16, 1, [b"\0" * 8], [], 0, []],   # 1 hash for 2 buckets
    [10, b"\0" * 16, b"\0" * 16, 0, [b"\0" * 7], [], 0, []],   # short bucket hash
    [10, b"\0" * 15, b"\0" * 16, 0, [b"\0" * 8], [], 0, []],   # short digest
    [10, b"\0" * 16, b"\0" * 16, 9, [], [], 0, []],             # bucket bits over 8
    [10, b"\0" * 16, b"\0" * 16, 0, [], [], 2, [b"\0" * 8]],   # 1 member hash for 4 buckets
    [4, [[0, 5, "peer", 1, "", None, b""]]],       # member state out of range
    [4, [[0, 2, "peer", 2**62 + 1, "", 0, b""]]],  # incarnation over INCARNATION_MAX
    [4, [[0, 2, "peer", 1, "", 0, b"s" * 65]]],    # signature too long
    [4, [[0, 2, "peer", 1, ""]]],                  # member without its proof slots
    [4, [[1, b"\xc1", b"", 0]]],                   # presence body not msgpack
    [4, [[1, msgpack.packb(["p", 0, 1, 10, math.nan, [], "", False]), b"", 0]]],   # uptime not finite
    [4, [[1, msgpack.packb(["p", 0, 1, 10, 2.0, [], "", False]), b"", 0]]],        # uptime over 1
    [4, [[1, msgpack.packb(["p", 0, 1, 10, 0.5, ["e"] * 17, "", False]), b"", 0]]],  # too many endpoints
    [4, [[1, msgpack.packb(["p", 0, 1, 10, 0.5, [], "c" * 33, False]), b"", 0]]],  # host class too long
    [4, [[1, msgpack.packb(["p", 0, 1, 10, 0.5, [], "", 0]), b"", 0]]],            # asleep not a bool
    [4, [[1, msgpack.packb(["p", 0, 1, 10, 0.5, [], ""]), b"", 0]]],               # body missing a field
    [4, [[1, msgpack.packb(["p", 2**62 + 1, 1, 10, 0.5, [], "", False]), b"", 0]]],  # incarnation too big
    [4, [[1, msgpack.packb(["p", 0, 1, 10, 0.5, [], "", False]), b"", 2**48 + 1]]],  # remaining too long
    [4, [[False, 0, "p", 1, ""]]],                 # bool as item kind
    [4, [[]]],                                     # empty item
    [7, [1, 2]],                                   # deltas not bytes
])
def test_malformed_bodies_are_refused(body):
    with pytest.raises(DecodeError):
        decode_frame(_raw(body), FRAME_MAX)


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
    st.one_of(st.integers(-1, 2**64), st.booleans(), st.floats()),
    st.one_of(st.integers(-1, 2**64), st.booleans()),
    st.one_of(st.floats(), st.integers(-1, 2), st.booleans()),
    st.one_of(st.lists(st.one_of(st.text(max_size=260), st.integers()), max_size=17), st.text(max_size=3)),
    st.one_of(st.text(max_size=34), st.none()),
    st.one_of(st.booleans(), st.integers(0, 1)),
).map(list)


@given(presence_fields)
def test_the_presence_fast_path_accepts_and_refuses_exactly_what_the_checked_path_does(fields):
    from mesh.core.frames import _presence_checked, _presence_fields

    def outcome(fn):
        try:
            return fn(list(fields))
        except DecodeError:
            return "refused"
    assert outcome(_presence_fields) == outcome(_presence_checked)

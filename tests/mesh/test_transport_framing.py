"""Varint framing: round trips under any chunking, and garbage only ever raises RemoteDataError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.framing import FrameDecoder, encode_frame, encode_uvarint
from tva.errors import DecodeError, InvalidInput, RemoteDataError, TooLarge

CAP = 4096


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in [*points, len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


@given(st.lists(st.binary(max_size=CAP), max_size=20), st.lists(st.integers(0, 10**6), max_size=30))
def test_round_trip_under_any_chunking(payloads, cuts):
    wire = b"".join(encode_frame(p, CAP) for p in payloads)
    dec = FrameDecoder(CAP)
    got = []
    for chunk in chunked(wire, cuts):
        got.extend(dec.feed(chunk))
    assert got == payloads
    assert dec.buffered_bytes == 0


@given(st.binary(max_size=2000), st.lists(st.integers(0, 10**6), max_size=10))
def test_garbage_never_crashes_the_decoder(garbage, cuts):
    dec = FrameDecoder(64)
    try:
        for chunk in chunked(garbage, cuts):
            for frame in dec.feed(chunk):
                assert len(frame) <= 64
    except RemoteDataError:
        # After a failure the stream is dead: further input is refused, not misparsed.
        with pytest.raises(DecodeError):
            dec.feed(b"\x01a")
    assert dec.buffered_bytes <= 64 + 10


def test_oversize_announcement_is_refused_before_its_payload_arrives():
    dec = FrameDecoder(CAP)
    with pytest.raises(TooLarge):
        dec.feed(encode_uvarint(CAP + 1))  # just the prefix: no need to wait for CAP bytes
    huge = FrameDecoder(CAP)
    with pytest.raises(TooLarge):
        huge.feed(b"\xff" * 3)  # refused while the prefix is still being read


def test_overlong_and_non_minimal_prefixes_are_decode_errors():
    with pytest.raises(DecodeError):
        FrameDecoder(2**70).feed(b"\x80" * 11)
    with pytest.raises(DecodeError):
        FrameDecoder(CAP).feed(b"\x81\x00")  # 1 encoded in two bytes


def test_encoder_refuses_local_misuse():
    with pytest.raises(InvalidInput):
        encode_frame(b"x" * (CAP + 1), CAP)
    with pytest.raises(InvalidInput):
        encode_uvarint(-1)
    with pytest.raises(InvalidInput):
        FrameDecoder(0)


@pytest.mark.parametrize(
    ("n", "wire"),
    [(0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"), (16384, "808001")],
)
def test_uvarint_known_values(n, wire):
    assert encode_uvarint(n).hex() == wire
    dec = FrameDecoder(CAP * 8)
    payload = bytes(n)
    assert dec.feed(bytes.fromhex(wire) + payload) == [payload]

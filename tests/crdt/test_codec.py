import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdt.codec import expect_bytes, expect_int, expect_str, pack, unpack_bounded
from tva.errors import DecodeError, RemoteDataError, TooLarge

LIMITS = dict(bytes_max=1024, str_bytes_max=16, bin_bytes_max=16, array_len_max=8)


def test_round_trip_and_canonical():
    obj = [1, "k", b"v", None, [2**40, True]]
    assert unpack_bounded(pack(obj), what="t", **LIMITS) == obj
    assert pack(obj) == pack(list(obj))


@pytest.mark.parametrize("obj", ["x" * 17, b"x" * 17, list(range(9))])
def test_field_limits_are_too_large_before_allocation(obj):
    with pytest.raises(TooLarge):
        unpack_bounded(pack(obj), what="t", **LIMITS)


def test_maps_and_extensions_are_not_part_of_the_format():
    for data in (pack({"a": 1}), b"\xd4\x01\x02", msgpack.packb(msgpack.ExtType(5, b"abc"))):
        with pytest.raises(DecodeError):
            unpack_bounded(data, what="t", **LIMITS)


def test_whole_message_limit():
    with pytest.raises(TooLarge):
        unpack_bounded(b"\x90" * 2000, what="t", **LIMITS)


def test_lying_length_headers_are_refused_without_allocating():
    # array32 claiming 4 billion items: refused by the limit before any list is built.
    with pytest.raises(TooLarge):
        unpack_bounded(b"\xdd\xff\xff\xff\xff", what="t", **LIMITS)
    # bin32 claiming 4 GiB with nothing behind it: refused as truncated.
    with pytest.raises(DecodeError):
        unpack_bounded(b"\xc6\xff\xff\xff\xff", what="t", **LIMITS)


@pytest.mark.parametrize("data", [b"\xc1", b"\x92\x01", b"\x01\x02", b"\xa3\xff\xfe\xfd", b"\xd4\x01\x02",
                                  b"\x91" * 3000 + b"\xc0"])
def test_malformed_is_decode_error(data):
    with pytest.raises(RemoteDataError):
        unpack_bounded(data, what="t", **{**LIMITS, "bytes_max": 4096})


@given(st.binary(max_size=300))
def test_garbage_never_escapes_as_anything_else(data):
    try:
        unpack_bounded(data, what="t", **LIMITS)
    except RemoteDataError:
        pass


def test_expectations():
    assert expect_int(5, "n", 0, 9) == 5
    with pytest.raises(DecodeError):
        expect_int(True, "n", 0, 9)  # msgpack booleans are not integers
    with pytest.raises(DecodeError):
        expect_int(10, "n", 0, 9)
    with pytest.raises(DecodeError):
        expect_bytes("x", "b")
    with pytest.raises(DecodeError):
        expect_bytes(b"xy", "b", 3)
    with pytest.raises(TooLarge):
        expect_str("é" * 5, "s", 9)  # limits count UTF-8 bytes, not characters
    with pytest.raises(DecodeError):
        expect_str("", "s", 9)
    assert msgpack.unpackb(pack(b"")) == b""

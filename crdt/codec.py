"""Bounded msgpack decoding and canonical encoding shared by the feed and its records.

Everything that arrives from a peer or a file goes through :func:`unpack_bounded`: the size is
checked before any parsing, msgpack itself enforces per-field limits (so a 4-byte header cannot
make us allocate gigabytes), and *every* exception the parser can raise is turned into a
``RemoteDataError`` subclass — garbage must never crash the caller.

Encoding is canonical because msgpack-python always picks the smallest representation for ints,
strings and bins: equal values give equal bytes, which the entry hashes rely on.
"""

from __future__ import annotations

from typing import Any

import msgpack

from tva.errors import DecodeError, TooLarge


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack_bounded(
    data: bytes,
    *,
    what: str,
    bytes_max: int,
    str_bytes_max: int,
    bin_bytes_max: int,
    array_len_max: int,
    map_len_max: int = 0,
) -> Any:
    """Decode one msgpack object from ``data`` within the given limits, or raise DecodeError/TooLarge."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"{what}: expected bytes, got {type(data).__name__}")
    if len(data) > bytes_max:
        raise TooLarge(f"{what}: {len(data)} bytes exceeds the limit of {bytes_max}")
    if not data:
        raise DecodeError(f"{what}: empty")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=str_bytes_max,
            max_bin_len=bin_bytes_max,
            max_array_len=array_len_max,
            max_map_len=map_len_max,
            max_ext_len=0,
        )
    except ValueError as exc:
        # msgpack reports its own limits as ValueError("... exceeds max_..._len(N)").
        if "max_map_len(0)" in str(exc) or "max_ext_len(0)" in str(exc):
            raise DecodeError(f"{what}: maps and extension types are not part of this format") from None
        if "exceeds max" in str(exc):
            raise TooLarge(f"{what}: a field exceeds its size limit ({exc})") from None
        raise DecodeError(f"{what}: not valid msgpack ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # the parser's whole zoo: ExtraData, FormatError, StackError, Unicode…
        raise DecodeError(f"{what}: not valid msgpack ({type(exc).__name__})") from None


def expect_list(obj: Any, what: str, length: int | None = None) -> list:
    if type(obj) is not list:
        raise DecodeError(f"{what}: expected an array, got {type(obj).__name__}")
    if length is not None and len(obj) != length:
        raise DecodeError(f"{what}: expected {length} fields, got {len(obj)}")
    return obj


def expect_int(obj: Any, what: str, lo: int, hi: int) -> int:
    # type(...) is int: msgpack booleans are Python bools, which isinstance() would accept as ints.
    if type(obj) is not int:
        raise DecodeError(f"{what}: expected an integer, got {type(obj).__name__}")
    if not lo <= obj <= hi:
        raise DecodeError(f"{what}: {obj} is outside [{lo}, {hi}]")
    return obj


def expect_bytes(obj: Any, what: str, length: int | None = None, bytes_max: int | None = None) -> bytes:
    if type(obj) is not bytes:
        raise DecodeError(f"{what}: expected bytes, got {type(obj).__name__}")
    if length is not None and len(obj) != length:
        raise DecodeError(f"{what}: expected {length} bytes, got {len(obj)}")
    if bytes_max is not None and len(obj) > bytes_max:
        raise TooLarge(f"{what}: {len(obj)} bytes exceeds the limit of {bytes_max}")
    return obj


def expect_str(obj: Any, what: str, bytes_max: int, *, allow_empty: bool = False) -> str:
    if type(obj) is not str:
        raise DecodeError(f"{what}: expected a string, got {type(obj).__name__}")
    if not obj and not allow_empty:
        raise DecodeError(f"{what}: must not be empty")
    if len(obj.encode("utf-8", "surrogatepass")) > bytes_max:
        raise TooLarge(f"{what}: longer than {bytes_max} bytes")
    return obj


def expect_bool(obj: Any, what: str) -> bool:
    if type(obj) is not bool:
        raise DecodeError(f"{what}: expected a boolean, got {type(obj).__name__}")
    return obj

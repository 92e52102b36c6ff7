"""A strict, bounded bencode decoder and encoder (pure).

Why our own: .torrent bytes reach us from other fleet hosts and from files; they are checked
here — sizes, depth, syntax — before libtorrent or Transmission ever sees them, and the v1
infohash is the SHA-1 of the *raw* ``info`` bytes, which a decode-then-re-encode would not
preserve for sloppy (unsorted) inputs.
"""

from __future__ import annotations

from tva.errors import DecodeError, TooLarge

BValue = int | bytes | list["BValue"] | dict[bytes, "BValue"]

DEPTH_MAX = 64
INT_DIGITS_MAX = 64  # bigger than any real length or timestamp, small enough to parse quickly


class _Decoder:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        # (start, end) of the top-level dict's b"info" value, for the v1 infohash.
        self.info_span: tuple[int, int] | None = None

    def fail(self, what: str) -> DecodeError:
        return DecodeError(f"bencode: {what} at byte {self.pos}")

    def peek(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("unexpected end of data")
        return self.data[self.pos]

    def value(self, depth: int) -> BValue:
        if depth > DEPTH_MAX:
            raise self.fail(f"nesting deeper than {DEPTH_MAX}")
        c = self.peek()
        if c == ord("i"):
            self.pos += 1
            return self.integer(ord("e"))
        if c == ord("l"):
            self.pos += 1
            items: list[BValue] = []
            while self.peek() != ord("e"):
                items.append(self.value(depth + 1))
            self.pos += 1
            return items
        if c == ord("d"):
            return self.dictionary(depth)
        if ord("0") <= c <= ord("9"):
            return self.string()
        raise self.fail(f"unexpected byte {c:#04x}")

    def integer(self, end: int) -> int:
        stop = self.data.find(bytes([end]), self.pos, self.pos + INT_DIGITS_MAX + 2)
        if stop < 0:
            raise self.fail("unterminated or oversized integer")
        text = self.data[self.pos : stop]
        ok = text.isdigit() or (text[:1] == b"-" and text[1:].isdigit())
        # Canonical form only: no leading zeros, no "-0", no empty.
        if not ok or (text[:1] == b"0" and len(text) > 1) or text[:2] in (b"-0",):
            raise self.fail(f"malformed integer {text[:20]!r}")
        self.pos = stop + 1
        return int(text)

    def string(self) -> bytes:
        length = self.integer(ord(":"))
        if length < 0 or self.pos + length > len(self.data):
            raise self.fail("string runs past the end of data")
        out = self.data[self.pos : self.pos + length]
        self.pos += length
        return out

    def dictionary(self, depth: int) -> dict[bytes, BValue]:
        self.pos += 1
        out: dict[bytes, BValue] = {}
        while self.peek() != ord("e"):
            if not ord("0") <= self.peek() <= ord("9"):
                raise self.fail("dictionary key is not a string")
            key = self.string()
            if key in out:
                raise self.fail(f"duplicate dictionary key {key[:40]!r}")
            start = self.pos
            out[key] = self.value(depth + 1)
            if depth == 0 and key == b"info":
                self.info_span = (start, self.pos)
        self.pos += 1
        return out


def decode(data: bytes, *, bytes_max: int) -> BValue:
    """Decode one bencoded value that must span all of ``data``."""
    return decode_with_info_span(data, bytes_max=bytes_max)[0]


def decode_with_info_span(data: bytes, *, bytes_max: int) -> tuple[BValue, tuple[int, int] | None]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"bencode: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > bytes_max:
        raise TooLarge(f"bencoded data of {len(data)} bytes exceeds {bytes_max}")
    d = _Decoder(data)
    try:
        value = d.value(0)
    except RecursionError:  # belt and braces: DEPTH_MAX is far below Python's limit
        raise DecodeError("bencode: nesting too deep") from None
    if d.pos != len(data):
        raise d.fail("trailing bytes after the value")
    return value, d.info_span


def encode(value: BValue) -> bytes:
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: BValue, out: list[bytes]) -> None:
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, (bytes, bytearray)):
        out.append(b"%d:%s" % (len(value), bytes(value)))
    elif isinstance(value, str):
        _encode(value.encode(), out)
    elif isinstance(value, list):
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    elif isinstance(value, dict):
        out.append(b"d")
        keys = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        for k, v in keys:
            _encode(k, out)
            _encode(v, out)
        out.append(b"e")
    else:
        raise TypeError(f"cannot bencode {type(value).__name__}")

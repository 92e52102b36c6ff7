"""Varint length-prefixed frames: the byte format of every tva libp2p stream.

A frame is ``uvarint(len) || payload`` (unsigned LEB128, as libp2p and protobuf use). The decoder
is incremental (bytes arrive in arbitrary chunks from a stream) and checks the length *before*
buffering the payload, so a peer cannot make us hold more than ``frame_bytes_max`` bytes for one
frame. Any malformed prefix raises a ``RemoteDataError``; after that the stream cannot be
resynchronised (we do not know where the next frame starts), so the caller drops the stream.

Pure: no I/O, usable by the simulator and fuzzed directly.
"""

from __future__ import annotations

from tva.errors import DecodeError, InvalidInput, TooLarge

# A uvarint for any length we accept fits in 10 bytes (64 bits); longer prefixes are garbage.
VARINT_BYTES_MAX = 10


def encode_uvarint(n: int) -> bytes:
    if n < 0:
        raise InvalidInput(f"uvarint must be non-negative, got {n}")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_frame(payload: bytes, frame_bytes_max: int) -> bytes:
    """Prefix ``payload`` with its length; refuses (local misuse) a payload over the cap."""
    if len(payload) > frame_bytes_max:
        raise InvalidInput(
            f"frame of {len(payload)} bytes exceeds frame_bytes_max={frame_bytes_max}",
            hint="split the payload (the sync protocol takes a bytes_max for this)",
        )
    return encode_uvarint(len(payload)) + payload


class FrameDecoder:
    """Incremental decoder: ``feed(chunk)`` returns the frames completed by that chunk."""

    def __init__(self, frame_bytes_max: int) -> None:
        if frame_bytes_max <= 0:
            raise InvalidInput("frame_bytes_max must be positive")
        self.frame_bytes_max = frame_bytes_max
        self._buf = bytearray()
        self._need: int | None = None  # payload length of the frame being read, once known
        self._failed = False

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._failed:
            raise DecodeError("frame stream already failed; drop it")
        self._buf += chunk
        frames: list[bytes] = []
        try:
            while True:
                if self._need is None:
                    parsed = self._parse_prefix()
                    if parsed is None:
                        return frames
                    self._need = parsed
                if len(self._buf) < self._need:
                    return frames
                frames.append(bytes(self._buf[: self._need]))
                del self._buf[: self._need]
                self._need = None
        except (DecodeError, TooLarge):
            self._failed = True
            self._buf.clear()
            raise

    def _parse_prefix(self) -> int | None:
        value = 0
        for i, byte in enumerate(self._buf):
            if i >= VARINT_BYTES_MAX:
                raise DecodeError("frame length prefix longer than 10 bytes")
            value |= (byte & 0x7F) << (7 * i)
            if value > self.frame_bytes_max:
                # Checked while parsing so a huge prefix never makes us wait for its payload.
                raise TooLarge(f"frame announces more than frame_bytes_max={self.frame_bytes_max} bytes")
            if not byte & 0x80:
                if i > 0 and byte == 0:
                    raise DecodeError("non-minimal frame length prefix")
                del self._buf[: i + 1]
                return value
        if len(self._buf) >= VARINT_BYTES_MAX:
            raise DecodeError("frame length prefix longer than 10 bytes")
        return None

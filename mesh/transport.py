"""The transport seam: move opaque frames between peer ids, and answer small queries.

Two implementations share these semantics (and the tests in ``tests/mesh/test_transport_*``):

* ``mesh.memory_transport`` — trio memory channels, for tests and the simulator shell.
* ``mesh.libp2p_transport`` — py-libp2p: Noise only, the fleet's pre-shared key, two persistent
  varint-framed streams per peer and direction (a priority lane and a bulk lane), a stream per
  request.

Semantics every caller may rely on:

* ``send(peer, frame, bulk=False)`` is best effort and never raises for remote trouble: it returns
  ``True`` once the frame was handed to the peer's stream, ``False`` (and counts why) when the peer
  is unknown, filtered, backing off after failed dials, dead, speaks no frame version we speak, or
  its send queue is full. A frame over ``frame_bytes_max`` is local misuse: ``InvalidInput``.
* Two lanes: ``bulk=True`` frames (feed deltas, document messages) travel apart from the rest, so
  a ping or an ack never waits behind megabytes on the wire, nor in the receiver's queue (a late
  ack is a false suspicion). Order is kept within a lane, not across lanes.
* ``incoming()`` yields ``(peer, frame)``, priority-lane frames first; each lane is bounded in
  bytes (``incoming_priority_bytes_max``, ``incoming_bulk_bytes_max``) and frames; a frame that does
  not fit is dropped and counted (the sync protocol recovers by digest exchange, so drops cost
  time, not state). 1,024 queued 4 MiB frames would have been 4 GiB.
* Every frame connection starts with a hello: each side says the frame versions it speaks
  (``WireVersions``); both pick the highest common one (``negotiate``) and report it through the
  version handler, so the mesh core writes to that peer in it. No common version: the connection
  is refused with one clear log line per peer and counted (``version_refused``) — a rolling upgrade
  never mixes up formats.
* ``request`` raises only ``tva.errors``: ``PeerUnavailable`` (unreachable, time-out, stream
  died), ``RequestRefused`` (the peer's handler failed), ``TooLarge`` (reply over
  ``response_bytes_max``). The handler's exceptions never reach the transport's nursery.
* The peer filter (revoked / non-members) is checked when dialing, when a peer opens a stream,
  and on every inbound frame and request.

Kept free of libp2p imports so importing this module stays cheap.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Protocol

import msgpack
import trio

from mesh.core.frames import FRAME_VERSION_MAX, FRAME_VERSION_MIN, WIRE_MINOR
from tva.errors import DecodeError, InvalidInput, UnsupportedVersion

PeerId = str
RequestHandler = Callable[[PeerId, bytes], Awaitable[bytes]]
PeerFilter = Callable[[PeerId], bool]
VersionHandler = Callable[[PeerId, int], None]

MiB = 1024 * 1024
log = logging.getLogger("mesh.transport")


@dataclass(frozen=True)
class TransportLimits:
    # A whole 4 MiB CRDT delta or sync message plus the mesh frame around it must fit.
    frame_bytes_max: int = 4 * MiB + 64 * 1024
    request_bytes_max: int = 64 * 1024
    response_bytes_max: int = 4 * MiB
    dial_timeout_ms: int = 5_000
    send_timeout_ms: int = 10_000  # a write that stalls this long means the peer is not reading
    backoff_initial_ms: int = 500
    backoff_max_ms: int = 30_000
    send_queue_frames_max: int = 64  # senders waiting on one peer's stream; more are dropped
    incoming_frames_max: int = 1024  # per lane
    # received, not yet taken by the node: pings and acks (≤ ~2 KiB each) get a lane of their own
    # that bulk frames can never fill; the bulk lane holds a few whole deltas
    incoming_priority_bytes_max: int = 2 * MiB
    # a bigger frame on the priority lane is queued as bulk: honest senders put only small frames
    # there (mesh.core.outbox.PRIORITY_FRAME_BYTES_MAX), and big ones must not crowd out acks
    priority_frame_bytes_max: int = 64 * 1024
    incoming_bulk_bytes_max: int = 3 * (4 * MiB + 64 * 1024)
    requests_in_flight_max: int = 32  # inbound requests served at once; more are refused

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise InvalidInput(f"TransportLimits.{f.name} must be positive")
        if self.backoff_initial_ms > self.backoff_max_ms:
            raise InvalidInput("TransportLimits.backoff_initial_ms must not exceed backoff_max_ms")
        if self.incoming_bulk_bytes_max < self.frame_bytes_max:
            raise InvalidInput("TransportLimits.incoming_bulk_bytes_max must hold at least one whole frame")


# --- version hello -------------------------------------------------------------------------------

_HELLO_MAGIC = "tva-hello"
HELLO_BYTES_MAX = 256


@dataclass(frozen=True)
class WireVersions:
    """The frame versions one side reads and writes (``mesh.core.frames``), and its minor level."""

    min: int = FRAME_VERSION_MIN
    max: int = FRAME_VERSION_MAX
    minor: int = WIRE_MINOR

    def __post_init__(self) -> None:
        if not 0 <= self.min <= self.max <= 255 or not 0 <= self.minor <= 2**32:
            raise InvalidInput(f"bad wire versions {self.min}..{self.max} (minor {self.minor})")


def encode_hello(v: WireVersions) -> bytes:
    # a map, so a later hello can add keys an older build ignores
    return msgpack.packb({"hello": _HELLO_MAGIC, "min": v.min, "max": v.max, "minor": v.minor}, use_bin_type=True)


def decode_hello(data: bytes) -> WireVersions:
    """A peer's hello; DecodeError when the first frame of a stream is not one."""
    try:
        obj = msgpack.unpackb(data, raw=False, max_bin_len=0, max_ext_len=0, max_array_len=16, max_map_len=16,
                              max_str_len=64)
    except Exception:  # msgpack raises many types for garbage
        raise DecodeError("the first frame of the stream is not a hello") from None
    if not isinstance(obj, dict) or obj.get("hello") != _HELLO_MAGIC:
        raise DecodeError("the first frame of the stream is not a hello")
    lo, hi, minor = obj.get("min"), obj.get("max"), obj.get("minor", 0)
    if not all(type(x) is int for x in (lo, hi, minor)):
        raise DecodeError("hello: versions must be ints")
    try:
        return WireVersions(lo, hi, minor)
    except InvalidInput as exc:
        raise DecodeError(f"hello: {exc.message}") from None


def negotiate(ours: WireVersions, theirs: WireVersions) -> int:
    """The highest frame version both speak; UnsupportedVersion (with what to do) when none."""
    v = min(ours.max, theirs.max)
    if v < max(ours.min, theirs.min):
        older = "this build" if ours.max < theirs.min else "the peer"
        raise UnsupportedVersion(
            f"no common frame version: the peer speaks {theirs.min}..{theirs.max}, this build "
            f"{ours.min}..{ours.max}; upgrade {older}")
    return v


class Transport(Protocol):
    local_peer: PeerId
    versions: WireVersions

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started()`` once listening."""

    def listen_addrs(self) -> list[str]:
        """Addresses peers can dial (for libp2p: multiaddrs ending in ``/p2p/<id>``)."""

    def add_peer_addrs(self, peer: PeerId, addrs: list[str]) -> None:
        """Learn where ``peer`` listens (host cards, bootstrap invite); newest are tried first."""

    async def send(self, peer: PeerId, frame: bytes, *, bulk: bool = False) -> bool: ...

    def incoming(self) -> IncomingFrames: ...

    async def request(self, peer: PeerId, payload: bytes, timeout_ms: int) -> bytes: ...

    def set_request_handler(self, handler: RequestHandler) -> None: ...

    def set_peer_filter(self, allowed: PeerFilter) -> None: ...

    def set_version_handler(self, handler: VersionHandler) -> None:
        """Called with (peer, version) whenever a connection's hello agrees on a frame version."""

    def wire_version(self, peer: PeerId) -> int | None:
        """The frame version the last hello with ``peer`` agreed on (None: none yet)."""

    def is_connected(self, peer: PeerId) -> bool: ...

    def stats(self) -> dict[str, int]: ...


STAT_NAMES = (
    "frames_out", "bytes_out", "frames_in", "bytes_in", "send_failures", "send_queue_drops",
    "incoming_drops", "filtered", "decode_errors", "dial_failures", "dials", "requests_out",
    "requests_in", "request_failures", "handler_errors", "stream_errors", "bulk_frames_out",
    "bulk_frames_in", "version_refused", "priority_frames_demoted",
)


class Counters:
    """Named integer counters; ``stats()`` returns a copy."""

    def __init__(self) -> None:
        self._c = dict.fromkeys(STAT_NAMES, 0)

    def add(self, name: str, n: int = 1) -> None:
        self._c[name] += n

    def snapshot(self) -> dict[str, int]:
        return dict(self._c)


# --- inbound frames -------------------------------------------------------------------------------


class IncomingFrames:
    """What a transport received, in two lanes bounded in bytes and frames: ``receive()`` returns
    priority frames first. Senders never wait (``put_nowait``); the node is the only reader."""

    def __init__(self, limits: TransportLimits) -> None:
        self._lanes: tuple[deque[tuple[PeerId, bytes]], deque[tuple[PeerId, bytes]]] = (deque(), deque())
        self._bytes = [0, 0]
        self._bytes_max = (limits.incoming_priority_bytes_max, limits.incoming_bulk_bytes_max)
        self._frames_max = limits.incoming_frames_max
        self._closed = False
        self._lot = trio.lowlevel.ParkingLot()

    def put_nowait(self, peer: PeerId, frame: bytes, *, bulk: bool) -> bool:
        """False (the caller counts a drop) when closed or the lane has no room for this frame."""
        lane = int(bulk)
        if (self._closed or len(self._lanes[lane]) >= self._frames_max
                or self._bytes[lane] + len(frame) > self._bytes_max[lane]):
            return False
        self._lanes[lane].append((peer, frame))
        self._bytes[lane] += len(frame)
        self._lot.unpark_all()
        return True

    def queued_bytes(self) -> int:
        return sum(self._bytes)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._lot.unpark_all()

    def receive_nowait(self) -> tuple[PeerId, bytes]:
        for lane, q in enumerate(self._lanes):
            if q:
                peer, frame = q.popleft()
                self._bytes[lane] -= len(frame)
                return peer, frame
        if self._closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def receive(self) -> tuple[PeerId, bytes]:
        while True:
            try:
                item = self.receive_nowait()
            except trio.WouldBlock:
                await self._lot.park()
                continue
            await trio.lowlevel.checkpoint()
            return item

    def __aiter__(self) -> IncomingFrames:
        return self

    async def __anext__(self) -> tuple[PeerId, bytes]:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


# --- reply envelope (shared so both transports report remote errors the same way) -------------

_REPLY_OK = 0
_REPLY_ERROR = 1
REPLY_ERROR_CHARS_MAX = 200


def encode_reply_ok(payload: bytes) -> bytes:
    return bytes([_REPLY_OK]) + payload


def encode_reply_error(message: str) -> bytes:
    return bytes([_REPLY_ERROR]) + message[:REPLY_ERROR_CHARS_MAX].encode("utf-8", "replace")


def decode_reply(data: bytes) -> tuple[bool, bytes]:
    """``(ok, payload)``; for an error the payload is the peer's (untrusted) message."""
    if not data or data[0] not in (_REPLY_OK, _REPLY_ERROR):
        raise DecodeError("reply without a valid status byte")
    return data[0] == _REPLY_OK, data[1:]


class RequestServer:
    """The answering side of ``request``, the same in every transport: the handler runs at most
    ``requests_in_flight_max`` times at once, and its failures and bad replies become refusals —
    they never reach the transport's nursery, nor the asker as anything but a refusal."""

    def __init__(self, counters: Counters) -> None:
        self.handler: RequestHandler | None = None
        self.in_flight = 0
        self._counters = counters

    async def answer(self, peer: PeerId, payload: bytes, limits: TransportLimits) -> bytes:
        """The reply to ``peer``'s request on the wire (``encode_reply_ok`` / ``encode_reply_error``),
        under the transport's limits of the moment."""
        if self.handler is None:
            return encode_reply_error("peer serves no requests")
        if self.in_flight >= limits.requests_in_flight_max:
            return encode_reply_error("peer is busy")
        self._counters.add("requests_in")
        self.in_flight += 1
        try:
            body = await self.handler(peer, payload)
        except Exception as exc:  # the handler's bug must not cross into the transport or the asker
            self._counters.add("handler_errors")
            log.warning("request handler failed for %s: %r", peer[:16], exc)
            return encode_reply_error(f"handler failed: {type(exc).__name__}")
        finally:
            self.in_flight -= 1
        if not isinstance(body, bytes | bytearray) or len(body) > limits.response_bytes_max:
            self._counters.add("handler_errors")
            return encode_reply_error("reply too large or not bytes")
        return encode_reply_ok(bytes(body))


def refusal_text(peer: PeerId, body: bytes) -> str:
    """What ``request`` raises (``RequestRefused``) for a refusal ``body`` from ``peer``."""
    return f"peer {peer[:16]}… refused: {body[:REPLY_ERROR_CHARS_MAX].decode('utf-8', 'replace')}"


def check_frame_size(frame: bytes, limits: TransportLimits) -> None:
    if len(frame) > limits.frame_bytes_max:
        raise InvalidInput(
            f"frame of {len(frame)} bytes exceeds frame_bytes_max={limits.frame_bytes_max}",
            hint="split the payload (the sync protocol takes a bytes_max for this)",
        )


def check_request_size(payload: bytes, limits: TransportLimits) -> None:
    if len(payload) > limits.request_bytes_max:
        raise InvalidInput(
            f"request of {len(payload)} bytes exceeds request_bytes_max={limits.request_bytes_max}"
        )


class Backoff:
    """Per-peer exponential dial back-off, on the transport's clock (trio time, in ms)."""

    def __init__(self, limits: TransportLimits) -> None:
        self._limits = limits
        self._next_ms: dict[PeerId, float] = {}
        self._delay_ms: dict[PeerId, float] = {}

    def blocked(self, peer: PeerId, now_ms: float) -> bool:
        return now_ms < self._next_ms.get(peer, 0.0)

    def failed(self, peer: PeerId, now_ms: float) -> None:
        delay = self._delay_ms.get(peer)
        delay = self._limits.backoff_initial_ms if delay is None else min(
            delay * 2, self._limits.backoff_max_ms
        )
        self._delay_ms[peer] = delay
        self._next_ms[peer] = now_ms + delay

    def succeeded(self, peer: PeerId) -> None:
        self._delay_ms.pop(peer, None)
        self._next_ms.pop(peer, None)

    def reset(self, peer: PeerId) -> None:
        """New addresses for a peer: let the next send try at once."""
        self.succeeded(peer)

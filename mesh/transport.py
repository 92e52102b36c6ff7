"""The transport seam: move opaque frames between peer ids, and answer small queries.

Two implementations share these semantics (and the tests in ``tests/mesh/test_transport_*``):

* ``mesh.memory_transport`` — trio memory channels, for tests and the simulator shell.
* ``mesh.libp2p_transport`` — py-libp2p: Noise only, the fleet's pre-shared key, one persistent
  varint-framed stream per peer and direction, a stream per request.

Semantics every caller may rely on:

* ``send`` is best effort and never raises for remote trouble: it returns ``True`` once the frame
  was handed to the peer's stream, ``False`` (and counts why) when the peer is unknown, filtered,
  backing off after failed dials, dead, or its send queue is full. A frame over
  ``frame_bytes_max`` is local misuse: ``InvalidInput``.
* ``incoming()`` is one bounded channel of ``(peer, frame)``; when it is full, frames are dropped
  and counted (the sync protocol recovers by digest exchange, so drops cost time, not state).
* ``request`` raises only ``tva.errors``: ``PeerUnavailable`` (unreachable, time-out, stream
  died), ``RequestRefused`` (the peer's handler failed), ``TooLarge`` (reply over
  ``response_bytes_max``). The handler's exceptions never reach the transport's nursery.
* The peer filter (revoked / non-members) is checked when dialing, when a peer opens a stream,
  and on every inbound frame and request.

Kept free of libp2p imports so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Protocol

import trio

from tva.errors import DecodeError, InvalidInput

PeerId = str
RequestHandler = Callable[[PeerId, bytes], Awaitable[bytes]]
PeerFilter = Callable[[PeerId], bool]

MiB = 1024 * 1024


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
    incoming_frames_max: int = 1024
    requests_in_flight_max: int = 32  # inbound requests served at once; more are refused

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise InvalidInput(f"TransportLimits.{f.name} must be positive")
        if self.backoff_initial_ms > self.backoff_max_ms:
            raise InvalidInput("TransportLimits.backoff_initial_ms must not exceed backoff_max_ms")


class Transport(Protocol):
    local_peer: PeerId

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started()`` once listening."""

    def listen_addrs(self) -> list[str]:
        """Addresses peers can dial (for libp2p: multiaddrs ending in ``/p2p/<id>``)."""

    def add_peer_addrs(self, peer: PeerId, addrs: list[str]) -> None:
        """Learn where ``peer`` listens (host cards, bootstrap invite); newest are tried first."""

    async def send(self, peer: PeerId, frame: bytes) -> bool: ...

    def incoming(self) -> trio.MemoryReceiveChannel[tuple[PeerId, bytes]]: ...

    async def request(self, peer: PeerId, payload: bytes, timeout_ms: int) -> bytes: ...

    def set_request_handler(self, handler: RequestHandler) -> None: ...

    def set_peer_filter(self, allowed: PeerFilter) -> None: ...

    def is_connected(self, peer: PeerId) -> bool: ...

    def stats(self) -> dict[str, int]: ...


STAT_NAMES = (
    "frames_out", "bytes_out", "frames_in", "bytes_in", "send_failures", "send_queue_drops",
    "incoming_drops", "filtered", "decode_errors", "dial_failures", "dials", "requests_out",
    "requests_in", "request_failures", "handler_errors", "stream_errors",
)


class Counters:
    """Named integer counters; ``stats()`` returns a copy."""

    def __init__(self) -> None:
        self._c = dict.fromkeys(STAT_NAMES, 0)

    def add(self, name: str, n: int = 1) -> None:
        self._c[name] += n

    def snapshot(self) -> dict[str, int]:
        return dict(self._c)


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

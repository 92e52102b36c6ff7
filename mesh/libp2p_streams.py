"""Stream-level helpers of the libp2p transport shell (py-libp2p 0.8.1), kept apart so the
transport itself stays readable: reading exactly one frame, closing quietly within a deadline,
the notifee that drops filtered peers as soon as they connect, and dials that return once
connected.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from crdt.identity import is_peer_id
from mesh.framing import FrameDecoder
from mesh.transport import PeerId
from tva.errors import DecodeError, InvalidInput, PeerUnavailable

log = logging.getLogger("mesh.libp2p_transport")

READ_CHUNK_BYTES = 64 * 1024
STREAM_CLOSE_TIMEOUT_MS = 1_000


async def read_one(stream: Any, bytes_max: int) -> bytes:
    """One frame from ``stream``; ``PeerUnavailable`` if the stream ends first."""
    from libp2p.network.stream.exceptions import StreamEOF

    decoder = FrameDecoder(bytes_max)
    while True:
        try:
            chunk = await stream.read(READ_CHUNK_BYTES)
        except StreamEOF:
            chunk = b""
        if not chunk:
            raise PeerUnavailable("stream ended before a whole frame arrived")
        frames = decoder.feed(chunk)
        if frames:
            if len(frames) > 1 or decoder.buffered_bytes:
                raise DecodeError("more than one frame where one was expected")
            return frames[0]


async def close_stream(stream: Any) -> None:
    with trio.CancelScope(shield=True) as scope:
        scope.deadline = trio.current_time() + STREAM_CLOSE_TIMEOUT_MS / 1000
        try:
            await stream.close()
        except Exception:
            pass


async def close_quietly(conn: Any) -> None:
    try:
        await conn.close()
        # py-libp2p 0.8.1: a SwarmConn whose close() was cut short by cancellation (the host's own
        # tasks are cancelled first) is marked closed but never closed its muxer, so the socket
        # stays open and a peer goes on writing into it (seen when the daemon restarted its mesh).
        muxed = getattr(conn, "muxed_conn", None)
        if muxed is not None and not getattr(muxed, "is_closed", True):
            await muxed.close()
    except Exception as exc:
        log.debug("closing a connection: %r", exc)


def check_peer_id(peer: PeerId) -> None:
    if not is_peer_id(peer):
        raise InvalidInput(f"not a peer id: {str(peer)[:20]!r}", hint="peer ids look like 12D3KooW…")


class ConnectWaiters:
    """Dials waiting for their peer's connection to come up.

    py-libp2p's dial, with more than one connection allowed per peer (the mesh hosts), sits out its
    250 ms happy-eyeballs pause for further addresses after it has connected (FIELD-NOTES); we
    dial one address at a time, so the pause is pure delay — a first frame to a peer, a joiner's
    first contact with its fleet, waited for it. Here the dial runs in the background and its
    caller goes on as soon as the notifee reports the peer connected (``wake``)."""

    def __init__(self) -> None:
        self._by_peer: dict[str, list[trio.Event]] = {}

    def wake(self, peer: str) -> None:
        for ready in self._by_peer.pop(peer, ()):
            ready.set()

    async def connect(self, nursery: trio.Nursery, peer: str, connect: Callable[[], Awaitable[None]],
                      is_connected: Callable[[], bool]) -> None:
        """Run ``connect`` in ``nursery``; return once ``peer`` is connected, else raise what it raised."""
        ready = trio.Event()
        failed: list[Exception] = []

        async def dial() -> None:
            try:
                await connect()
            except Exception as exc:
                failed.append(exc)
            finally:
                ready.set()

        self._by_peer.setdefault(peer, []).append(ready)
        nursery.start_soon(dial)
        try:
            await ready.wait()
        finally:
            waiting = self._by_peer.get(peer, [])
            if ready in waiting:
                waiting.remove(ready)
            if not waiting:
                self._by_peer.pop(peer, None)
        if is_connected():
            return
        if failed:
            raise failed[0]
        raise PeerUnavailable("the dial ended without a connection")


class FilterNotifee:
    """Refuses connections from filtered peers (revoked / non-members) as soon as they connect,
    and wakes the dials waiting for the others (``ConnectWaiters``)."""

    def __init__(self, transport: Any) -> None:
        self._t = transport

    async def connected(self, network: Any, conn: Any) -> None:
        try:
            peer = conn.muxed_conn.peer_id.to_base58()
        except Exception:
            return
        self._t._connect_waiters.wake(peer)
        if not self._t._filter(peer) and self._t._nursery is not None:
            self._t._counters.add("filtered")
            # Not awaited here: closing from inside the swarm's notification could deadlock it.
            self._t._nursery.start_soon(self._t._drop_peer, peer)

    async def disconnected(self, network: Any, conn: Any) -> None:
        return None

    async def opened_stream(self, network: Any, stream: Any) -> None:
        return None

    async def closed_stream(self, network: Any, stream: Any) -> None:
        return None

    async def listen(self, network: Any, multiaddr: Any) -> None:
        return None

    async def listen_close(self, network: Any, multiaddr: Any) -> None:
        return None

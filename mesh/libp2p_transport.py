"""The libp2p transport shell (py-libp2p 0.8.1): ``mesh.transport.Transport`` over real sockets.

Choices, each for a reason recorded in FIELD-NOTES "py-libp2p 0.8.1":

* Security is Noise only (the library's default list also accepts plaintext, secio and TLS) and
  every connection is wrapped in the fleet's pre-shared key (libp2p private network).
* The host key *is* the node's ``crdt.identity`` seed, so libp2p peer ids equal ours.
* Frames travel on persistent outbound streams per peer, each direction its own stream: a new
  stream per frame costs ~4x. Two lanes, two streams: ``/tva/frames/2`` for pings, acks and
  rumours, ``/tva/bulk/2`` for deltas and document messages. yamux interleaves streams in 64 KiB
  frames, so a ping waits for at most one of those, not for a whole 4 MiB delta.
* Each frame stream opens with the version hello (``mesh.transport``): the opener writes its
  hello, the listener answers with its own, both agree on a frame version or drop the stream.
* Requests use a fresh stream each (``/tva/req/1``): they are rare and a stream per request keeps
  replies unambiguous.
* We own dial policy: the swarm's retries are switched off, its 60 s negative dial cache is
  cleared before each of our dials (a restarted peer must be reachable at once), its
  auto-connector is kept stopped (it would dial peers we have revoked or backed off), and one
  address is dialed at a time because the swarm dials only one address per transport class.
* ``host.close()`` runs shielded with a deadline on every exit; stream handlers catch and count
  everything, since the library swallows handler exceptions silently.

libp2p is imported lazily (inside functions): it costs ~1 s and ~85 MB, and most commands only
need ``mesh.transport``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from crdt.identity import NodeKey, is_peer_id
from mesh.framing import FrameDecoder, encode_frame
from mesh.libp2p_addrs import check_listen_addr_free, parse_peer_addr, psk_hex
from mesh.libp2p_host import make_host
from mesh.libp2p_streams import (
    READ_CHUNK_BYTES,
    STREAM_CLOSE_TIMEOUT_MS,
    ConnectWaiters,
    FilterNotifee,
    check_peer_id,
    close_quietly,
    close_stream,
    read_one,
)
from mesh.transport import (
    HELLO_BYTES_MAX,
    Backoff,
    Counters,
    IncomingFrames,
    PeerFilter,
    PeerId,
    RequestHandler,
    RequestServer,
    TransportLimits,
    VersionHandler,
    WireVersions,
    check_frame_size,
    check_request_size,
    decode_hello,
    decode_reply,
    encode_hello,
    negotiate,
    refusal_text,
)
from tva.errors import (
    DecodeError,
    InvalidInput,
    PeerUnavailable,
    RemoteDataError,
    RequestRefused,
    UnsupportedVersion,
)

log = logging.getLogger(__name__)

FRAMES_PROTOCOL = "/tva/frames/2.0.0"  # the priority lane
BULK_PROTOCOL = "/tva/bulk/2.0.0"
REQUEST_PROTOCOL = "/tva/req/1.0.0"
ADDRS_PER_PEER_MAX = 8
INBOUND_FRAME_STREAMS_PER_PEER_MAX = 4
STREAM_OPEN_ATTEMPTS = 3
STREAM_RETRY_DELAY_MS = 50
CLOSE_TIMEOUT_MS = 5_000
PEERSTORE_ADDR_TTL_S = 3600


@dataclass
class _Outbound:
    """The persistent frame stream to one peer and the senders queued on it."""

    lock: trio.Lock = field(default_factory=trio.Lock)
    stream: Any = None
    waiters: int = 0


class _DialFailed(Exception):
    pass


class Libp2pTransport:
    def __init__(
        self,
        seed: bytes,
        psk: bytes | str,
        *,
        listen_addrs: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",),
        limits: TransportLimits | None = None,
        versions: WireVersions | None = None,
        serve_frames: bool = True,
    ) -> None:
        # serve_frames=False: a requests-only host (the join listener); frame streams are refused.
        self._serve_frames = serve_frames
        self._key = NodeKey(seed)
        self.versions = versions or WireVersions()
        self._agreed: dict[PeerId, int] = {}
        self._refused_logged: set[PeerId] = set()
        self._on_version: VersionHandler = lambda _peer, _v: None
        self.local_peer: PeerId = self._key.peer_id
        self._psk = psk_hex(psk)
        self._listen = listen_addrs
        self.limits = limits or TransportLimits()
        self._host: Any = None
        self._nursery: trio.Nursery | None = None
        self._addrs: dict[PeerId, list[str]] = {}
        self._out: dict[tuple[PeerId, bool], _Outbound] = {}  # (peer, bulk lane)
        self._filter: PeerFilter = lambda _peer: True
        self._counters = Counters()
        self._backoff = Backoff(self.limits)
        self._requests = RequestServer(self._counters)
        self._inbound_streams: dict[tuple[PeerId, bool], int] = {}
        self._incoming = IncomingFrames(self.limits)
        self._connect_waiters = ConnectWaiters()

    # --- lifecycle ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from multiaddr import Multiaddr

        if self._host is not None:
            raise InvalidInput("this transport already ran; create a new one to restart")
        for addr in self._listen:
            check_listen_addr_free(addr)
        host = self._host = make_host(self._key, self._psk, self.limits, one_connection_per_peer=not self._serve_frames)
        if self._serve_frames:
            host.set_stream_handler(FRAMES_PROTOCOL, self._on_priority_stream)
            host.set_stream_handler(BULK_PROTOCOL, self._on_bulk_stream)
        host.set_stream_handler(REQUEST_PROTOCOL, self._on_request_stream)
        host.get_network().register_notifee(FilterNotifee(self))
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                async with host.run(listen_addrs=[Multiaddr(a) for a in self._listen]):
                    try:
                        task_status.started()
                        await trio.sleep_forever()
                    finally:
                        await self._close_host()
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            await self._close_host()
            self._incoming.close()

    async def _close_host(self) -> None:
        # Shielded: leaving host.run() without close() leaks the listening socket (FIELD-NOTES).
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + CLOSE_TIMEOUT_MS / 1000
            # The swarm closes connections one by one (~0.1-0.2 s each); close them all at once
            # first so a node with many peers still stops in well under a second.
            conns = [c for cs in list(self._host.get_network().connections.values()) for c in cs]
            async with trio.open_nursery() as closers:
                for conn in conns:
                    closers.start_soon(close_quietly, conn)
            try:
                await self._host.close()
            except Exception as exc:
                log.warning("libp2p host.close() failed: %r", exc)
        self._out.clear()

    def listen_addrs(self) -> list[str]:
        if self._host is None:
            return []
        suffix = f"/p2p/{self.local_peer}"
        return [a if a.endswith(suffix) else a + suffix for a in map(str, self._host.get_addrs())]

    def add_peer_addrs(self, peer: PeerId, addrs: list[str]) -> None:
        """Validates all first (``DecodeError``, nothing changed); newest addresses first."""
        if not is_peer_id(peer):
            raise DecodeError(f"not a peer id: {str(peer)[:20]!r}")
        parsed = [parse_peer_addr(peer, a) for a in addrs]
        if peer == self.local_peer:
            return
        known = self._addrs.get(peer, [])
        fresh = [a for a in dict.fromkeys(parsed) if a not in known]
        self._addrs[peer] = (fresh + known)[:ADDRS_PER_PEER_MAX]
        if fresh:
            self._backoff.reset(peer)

    def incoming(self) -> IncomingFrames:
        return self._incoming

    def set_version_handler(self, handler: VersionHandler) -> None:
        self._on_version = handler

    def wire_version(self, peer: PeerId) -> int | None:
        return self._agreed.get(peer)

    def set_request_handler(self, handler: RequestHandler) -> None:
        self._requests.handler = handler

    def set_peer_filter(self, allowed: PeerFilter) -> None:
        self._filter = allowed
        if self._host is not None and self._nursery is not None:
            for pid in list(self._host.get_network().connections):
                if not allowed(pid.to_base58()):
                    self._nursery.start_soon(self._drop_peer, pid.to_base58())

    def stats(self) -> dict[str, int]:
        return self._counters.snapshot()

    def is_connected(self, peer: PeerId) -> bool:
        if self._host is None or not is_peer_id(peer):
            return False
        from libp2p.peer.id import ID

        conns = self._host.get_network().get_connections(ID.from_base58(peer))
        return any(not c.is_closed for c in conns)

    # --- frames out -----------------------------------------------------------------------------

    async def send(self, peer: PeerId, frame: bytes, *, bulk: bool = False) -> bool:
        check_frame_size(frame, self.limits)
        check_peer_id(peer)
        if self._host is None or self._nursery is None:
            raise InvalidInput("send() before run() started the transport")
        if peer == self.local_peer or not self._filter(peer):
            self._counters.add("filtered")
            return False
        if self._backoff.blocked(peer, trio.current_time() * 1000):
            self._counters.add("send_failures")
            return False
        out = self._out.setdefault((peer, bulk), _Outbound())
        if out.waiters >= self.limits.send_queue_frames_max:
            self._counters.add("send_queue_drops")
            return False
        data = encode_frame(frame, self.limits.frame_bytes_max)
        out.waiters += 1
        try:
            with trio.move_on_after(self.limits.send_timeout_ms / 1000):
                async with out.lock:
                    # Senders queued behind a dial that just failed must not each redial.
                    if out.stream is None and self._backoff.blocked(peer, trio.current_time() * 1000):
                        self._counters.add("send_failures")
                        return False
                    if await self._write_frame(peer, out, data, BULK_PROTOCOL if bulk else FRAMES_PROTOCOL):
                        self._counters.add("frames_out")
                        self._counters.add("bytes_out", len(frame))
                        if bulk:
                            self._counters.add("bulk_frames_out")
                        return True
                    self._counters.add("send_failures")
                    return False
            # Timed out: the peer stopped reading (or the dial hung); start afresh next time.
            self._counters.add("send_failures")
            await self._discard_stream(out)
            return False
        finally:
            out.waiters -= 1

    async def _write_frame(self, peer: PeerId, out: _Outbound, data: bytes, protocol: str) -> bool:
        # An old stream may belong to a connection that died (peer killed or restarted): on
        # failure, retry once on a fresh dial before reporting the frame undeliverable.
        for _attempt in range(2):
            reused = out.stream is not None
            try:
                if out.stream is None:
                    stream = await self._open_stream(peer, protocol)
                    out.stream = stream  # from here a failure resets it (below)
                    await self._hello_out(peer, stream)
                await out.stream.write(data)
                return True
            except _DialFailed:
                await self._discard_stream(out)
                return False
            except Exception as exc:  # libp2p raises many types for a dead stream
                log.debug("frame write to %s failed: %r", peer[:16], exc)
                await self._discard_stream(out)
                if not reused:
                    self._backoff.failed(peer, trio.current_time() * 1000)
                    return False
        return False

    async def _discard_stream(self, out: _Outbound) -> None:
        stream, out.stream = out.stream, None
        if stream is not None:
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + STREAM_CLOSE_TIMEOUT_MS / 1000
                try:
                    await stream.reset()
                except Exception:
                    pass

    async def _open_stream(self, peer: PeerId, protocol: str) -> Any:
        """Dial if needed (one address at a time), then open a stream; all within dial_timeout_ms."""
        from libp2p.peer.id import ID

        pid = ID.from_base58(peer)
        last: Exception | None = None
        with trio.move_on_after(self.limits.dial_timeout_ms / 1000):
            for _attempt in range(STREAM_OPEN_ATTEMPTS):
                if not self.is_connected(peer):
                    await self._dial(peer, pid)
                try:
                    stream = await self._host.new_stream(pid, [protocol])
                except Exception as exc:
                    # When two nodes dial each other at once, libp2p keeps one connection and
                    # closes the other; a stream opened meanwhile fails ("No valid connections").
                    # Retry on the survivor (or a fresh dial) before calling the peer unreachable.
                    last = exc
                    await trio.sleep(STREAM_RETRY_DELAY_MS / 1000)
                    continue
                self._backoff.succeeded(peer)
                return stream
            self._dial_failed(peer, f"stream: {last!r}")
        self._dial_failed(peer, f"timed out after {self.limits.dial_timeout_ms} ms ({last!r})")

    async def _dial(self, peer: PeerId, pid: Any) -> None:
        from libp2p.peer.peerinfo import PeerInfo
        from multiaddr import Multiaddr

        addrs = self._addrs.get(peer, [])
        if not addrs:
            self._dial_failed(peer, "no known address")
        swarm = self._host.get_network()
        last: Exception | None = None
        for addr in list(addrs):
            self._counters.add("dials")
            # Our own back-off governs redials; the swarm's 60 s negative cache would keep a
            # restarted peer unreachable long after it came back.
            swarm.unblock_peer(pid)
            self._host.peerstore.clear_addrs(pid)
            self._host.peerstore.add_addrs(pid, [Multiaddr(addr)], PEERSTORE_ADDR_TTL_S)
            try:
                await self._connect_waiters.connect(
                    self._nursery, peer, partial(self._host.connect, PeerInfo(pid, [Multiaddr(addr)])),
                    partial(self.is_connected, peer))
            except Exception as exc:
                last = exc
                continue
            self._addrs[peer] = [addr] + [a for a in addrs if a != addr]  # working one first
            return
        self._dial_failed(peer, repr(last))

    async def _hello_out(self, peer: PeerId, stream: Any) -> None:
        """The opener's side of the hello: say ours, read theirs, agree or give up on the peer."""
        try:
            with trio.fail_after(self.limits.dial_timeout_ms / 1000):
                await stream.write(encode_frame(encode_hello(self.versions), HELLO_BYTES_MAX))
                theirs = decode_hello(await read_one(stream, HELLO_BYTES_MAX))
        except (trio.TooSlowError, RemoteDataError) as exc:
            self._dial_failed(peer, f"hello: {exc!r}")
        except Exception as exc:  # the stream died under us
            self._dial_failed(peer, f"hello: {exc!r}")
        if not self._agree(peer, theirs):
            self._dial_failed(peer, "no common frame version")

    def _agree(self, peer: PeerId, theirs: WireVersions) -> bool:
        try:
            v = negotiate(self.versions, theirs)
        except UnsupportedVersion as exc:
            self._counters.add("version_refused")
            if peer not in self._refused_logged:  # once per peer: it will keep trying
                self._refused_logged.add(peer)
                log.warning("refusing frames with %s: %s", peer[:16], exc.message)
            return False
        if self._agreed.get(peer) != v:
            self._agreed[peer] = v
            self._on_version(peer, v)
        return True

    def _dial_failed(self, peer: PeerId, why: str) -> None:
        self._counters.add("dial_failures")
        self._backoff.failed(peer, trio.current_time() * 1000)
        log.debug("dial %s failed: %s", peer[:16], why)
        raise _DialFailed(why)

    # --- frames in ------------------------------------------------------------------------------

    async def _on_priority_stream(self, stream: Any) -> None:
        await self._on_frames_stream(stream, bulk=False)

    async def _on_bulk_stream(self, stream: Any) -> None:
        await self._on_frames_stream(stream, bulk=True)

    async def _on_frames_stream(self, stream: Any, *, bulk: bool) -> None:
        peer = "?"
        counted = False
        try:
            peer = stream.muxed_conn.peer_id.to_base58()
            if not self._filter(peer):
                self._counters.add("filtered")
                await stream.reset()
                return
            # A peer needs one stream per lane (a few across reconnects); more is abuse.
            lane = (peer, bulk)
            if self._inbound_streams.get(lane, 0) >= INBOUND_FRAME_STREAMS_PER_PEER_MAX:
                self._counters.add("filtered")
                await stream.reset()
                return
            self._inbound_streams[lane] = self._inbound_streams.get(lane, 0) + 1
            counted = True
            await self._read_frames(peer, stream, bulk)
        except Exception as exc:  # libp2p swallows handler exceptions: count and log them here
            self._counters.add("decode_errors" if isinstance(exc, RemoteDataError) else "stream_errors")
            log.info("frame stream from %s closed: %r", peer[:16], exc)
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + STREAM_CLOSE_TIMEOUT_MS / 1000
                try:
                    await stream.reset()
                except Exception:
                    pass
        finally:
            if counted:
                self._inbound_streams[lane] -= 1
                if not self._inbound_streams[lane]:
                    del self._inbound_streams[lane]

    async def _read_frames(self, peer: PeerId, stream: Any, bulk: bool) -> None:
        from libp2p.network.stream.exceptions import StreamEOF

        decoder = FrameDecoder(self.limits.frame_bytes_max)
        greeted = False
        while True:
            try:
                chunk = await stream.read(READ_CHUNK_BYTES)
            except StreamEOF:
                return
            if not chunk:
                return
            for frame in decoder.feed(chunk):
                if not self._filter(peer):  # revoked while connected
                    self._counters.add("filtered")
                    await stream.reset()
                    return
                if not greeted:  # the first frame is the opener's hello: answer with ours
                    theirs = decode_hello(frame)
                    await stream.write(encode_frame(encode_hello(self.versions), HELLO_BYTES_MAX))
                    if not self._agree(peer, theirs):
                        await stream.reset()
                        return
                    greeted = True
                    continue
                lane_bulk = bulk or len(frame) > self.limits.priority_frame_bytes_max
                if lane_bulk and not bulk:
                    self._counters.add("priority_frames_demoted")
                if self._incoming.closed or not self._incoming.put_nowait(peer, frame, bulk=lane_bulk):
                    if self._incoming.closed:
                        return
                    self._counters.add("incoming_drops")
                    continue
                self._counters.add("frames_in")
                self._counters.add("bytes_in", len(frame))
                if lane_bulk:
                    self._counters.add("bulk_frames_in")

    async def _drop_peer(self, peer: PeerId) -> None:
        from libp2p.peer.id import ID

        for bulk in (False, True):
            out = self._out.pop((peer, bulk), None)
            if out is not None:
                await self._discard_stream(out)
        try:
            await self._host.disconnect(ID.from_base58(peer))
        except Exception as exc:
            log.debug("disconnect %s: %r", peer[:16], exc)

    # --- requests -------------------------------------------------------------------------------

    async def request(self, peer: PeerId, payload: bytes, timeout_ms: int) -> bytes:
        check_request_size(payload, self.limits)
        check_peer_id(peer)
        if timeout_ms <= 0:
            raise InvalidInput("timeout_ms must be positive")
        if self._host is None or self._nursery is None:
            raise InvalidInput("request() before run() started the transport")
        self._counters.add("requests_out")
        if peer == self.local_peer or not self._filter(peer):
            self._counters.add("request_failures")
            raise PeerUnavailable(f"peer {peer[:16]}… is not allowed by the peer filter")
        stream = None
        try:
            with trio.fail_after(timeout_ms / 1000):
                stream = await self._open_stream(peer, REQUEST_PROTOCOL)
                await stream.write(encode_frame(payload, self.limits.request_bytes_max))
                reply = await read_one(stream, self.limits.response_bytes_max + 1)
            ok, body = decode_reply(reply)
        except _DialFailed as exc:
            self._counters.add("request_failures")
            raise PeerUnavailable(f"peer {peer[:16]}… is unreachable: {exc}") from None
        except trio.TooSlowError:
            self._counters.add("request_failures")
            raise PeerUnavailable(f"peer {peer[:16]}… did not answer within {timeout_ms} ms") from None
        except RemoteDataError:
            self._counters.add("request_failures")
            raise
        except Exception as exc:
            self._counters.add("request_failures")
            raise PeerUnavailable(f"request to {peer[:16]}… failed: {type(exc).__name__}") from None
        finally:
            if stream is not None:
                await close_stream(stream)
        if not ok:
            self._counters.add("request_failures")
            raise RequestRefused(refusal_text(peer, body))
        return body

    async def _on_request_stream(self, stream: Any) -> None:
        peer = "?"
        try:
            peer = stream.muxed_conn.peer_id.to_base58()
            if not self._filter(peer):
                self._counters.add("filtered")
                await stream.reset()
                return
            with trio.move_on_after(self.limits.send_timeout_ms / 1000):
                reply = await self._answer(peer, stream)
                await stream.write(encode_frame(reply, self.limits.response_bytes_max + 1))
        except Exception as exc:  # libp2p swallows handler exceptions: count and log them here
            self._counters.add("decode_errors" if isinstance(exc, RemoteDataError) else "request_failures")
            log.info("request stream from %s failed: %r", peer[:16], exc)
        finally:
            await close_stream(stream)

    async def _answer(self, peer: PeerId, stream: Any) -> bytes:
        return await self._requests.answer(peer, await read_one(stream, self.limits.request_bytes_max), self.limits)

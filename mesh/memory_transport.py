"""In-memory transport: many nodes in one trio process, fast and deterministic under MockClock.

A ``MemoryNetwork`` hands out ``MemoryTransport``s that implement ``mesh.transport.Transport``
with the libp2p transport's semantics (filters at both ends, size caps, bounded queues, dial
back-off, request/response with time-outs), plus fault injection the real network lacks:
``kill``/``revive`` a node, ``partition``/``heal`` links, a fixed one-way ``latency_ms``.

Why it exists: runtime and convergence tests need dozens of nodes and simulated minutes; the real
transport costs ~250 ms a connection and ~85 MB a process.
"""

from __future__ import annotations

import logging
import math

import trio

from mesh.transport import (
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
    decode_reply,
    negotiate,
    refusal_text,
)
from tva.errors import InvalidInput, PeerUnavailable, RequestRefused, TooLarge, UnsupportedVersion

log = logging.getLogger(__name__)


class MemoryNetwork:
    def __init__(self, limits: TransportLimits | None = None, latency_ms: int = 0) -> None:
        if latency_ms < 0:
            raise InvalidInput("latency_ms must be >= 0")
        self.limits = limits or TransportLimits()
        self.latency_ms = latency_ms
        self._nodes: dict[PeerId, MemoryTransport] = {}
        self._killed: set[PeerId] = set()
        self._cut: set[frozenset[PeerId]] = set()
        self._siblings: dict[str, MemoryNetwork] = {}

    def sibling(self, name: str) -> MemoryNetwork:
        """Another network between the same peers (e.g. the join network beside the mesh's)."""
        if name not in self._siblings:
            self._siblings[name] = MemoryNetwork(self.limits, self.latency_ms)
        return self._siblings[name]

    def transport(self, peer: PeerId, limits: TransportLimits | None = None,
                  versions: WireVersions | None = None) -> MemoryTransport:
        """A new node (or a restarted one: same id, fresh transport, same network)."""
        node = MemoryTransport(self, peer, limits or self.limits, versions or WireVersions())
        self._nodes[peer] = node
        self._killed.discard(peer)
        return node

    def kill(self, peer: PeerId) -> None:
        """The node vanishes: frames and requests to and from it fail until ``revive``."""
        self._killed.add(peer)

    def revive(self, peer: PeerId) -> None:
        self._killed.discard(peer)

    def partition(self, side_a: list[PeerId], side_b: list[PeerId]) -> None:
        for a in side_a:
            for b in side_b:
                if a != b:
                    self._cut.add(frozenset((a, b)))

    def heal(self) -> None:
        self._cut.clear()

    def _reachable(self, src: PeerId, dst: PeerId) -> MemoryTransport | None:
        node = self._nodes.get(dst)
        if node is None or not node._running or dst in self._killed or src in self._killed:
            return None
        if frozenset((src, dst)) in self._cut:
            return None
        return node


class MemoryTransport:
    def __init__(self, network: MemoryNetwork, peer: PeerId, limits: TransportLimits,
                 versions: WireVersions | None = None) -> None:
        self.local_peer = peer
        self.limits = limits
        self.versions = versions or WireVersions()
        self._agreed: dict[PeerId, int] = {}  # the hello's result per peer, this transport's lifetime
        self._refused_logged: set[PeerId] = set()
        self._on_version: VersionHandler = lambda _peer, _v: None
        self._net = network
        self.network = network
        self._running = False
        self._addrs: dict[PeerId, list[str]] = {}
        self._contacted_by: set[PeerId] = set()
        self._filter: PeerFilter = lambda _peer: True
        self._counters = Counters()
        self._backoff = Backoff(limits)
        self._incoming = IncomingFrames(limits)
        self._send_waiters: dict[tuple[PeerId, bool], int] = {}
        self._requests = RequestServer(self._counters)

    # --- lifecycle ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._running = True
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            self._running = False
            self._incoming.close()  # as the libp2p transport: readers see the end of the channel

    def listen_addrs(self) -> list[str]:
        return [f"/memory/{self.local_peer}"]

    def add_peer_addrs(self, peer: PeerId, addrs: list[str]) -> None:
        if peer == self.local_peer:
            return
        known = self._addrs.setdefault(peer, [])
        fresh = [a for a in addrs if a not in known]
        self._addrs[peer] = fresh + known
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

    def stats(self) -> dict[str, int]:
        return self._counters.snapshot()

    def is_connected(self, peer: PeerId) -> bool:
        return self._net._reachable(self.local_peer, peer) is not None and not self._backoff.blocked(
            peer, self._now_ms()
        )

    # --- frames ---------------------------------------------------------------------------------

    async def send(self, peer: PeerId, frame: bytes, *, bulk: bool = False) -> bool:
        check_frame_size(frame, self.limits)
        if not self._allowed(peer):
            return False
        target = self._dial(peer)
        if target is None or not self._hello(target):
            return False
        lane = (peer, bulk)
        waiting = self._send_waiters.get(lane, 0)
        if waiting >= self.limits.send_queue_frames_max:
            self._counters.add("send_queue_drops")
            return False
        self._send_waiters[lane] = waiting + 1
        try:
            if self._net.latency_ms:
                await trio.sleep(self._net.latency_ms / 1000)
            # The link may have died while the frame was in flight.
            target = self._net._reachable(self.local_peer, peer)
            if target is None:
                self._counters.add("send_failures")
                self._backoff.failed(peer, self._now_ms())
                return False
            if not target._accept_frame(self.local_peer, frame, bulk):
                self._counters.add("send_failures")
                return False
        finally:
            self._send_waiters[lane] -= 1
        self._counters.add("frames_out")
        self._counters.add("bytes_out", len(frame))
        if bulk:
            self._counters.add("bulk_frames_out")
        return True

    def _hello(self, target: MemoryTransport) -> bool:
        """The connection's hello, both sides at once: agree on a frame version or refuse."""
        agreed = self._agreed.get(target.local_peer)
        if agreed is not None and target._agreed.get(self.local_peer) == agreed:
            return True
        try:
            v = negotiate(self.versions, target.versions)
        except UnsupportedVersion:
            for side, other in ((self, target), (target, self)):
                side._counters.add("version_refused")
                if other.local_peer not in side._refused_logged:
                    side._refused_logged.add(other.local_peer)
                    try:  # each side says it from where it stands ("upgrade this build"/"the peer")
                        negotiate(side.versions, other.versions)
                    except UnsupportedVersion as exc:
                        log.warning("refusing frames with %s: %s", other.local_peer[:16], exc.message)
            return False
        for side, other in ((self, target), (target, self)):
            if side._agreed.get(other.local_peer) != v:
                side._agreed[other.local_peer] = v
                side._on_version(other.local_peer, v)
        return True

    def _accept_frame(self, src: PeerId, frame: bytes, bulk: bool = False) -> bool:
        """Receiver side; False means the 'connection' was refused (filtered)."""
        if not self._filter(src):
            self._counters.add("filtered")
            return False
        self._contacted_by.add(src)
        if not bulk and len(frame) > self.limits.priority_frame_bytes_max:
            self._counters.add("priority_frames_demoted")
            bulk = True
        if not self._incoming.put_nowait(src, frame, bulk=bulk):
            self._counters.add("incoming_drops")
            return True
        self._counters.add("frames_in")
        self._counters.add("bytes_in", len(frame))
        if bulk:
            self._counters.add("bulk_frames_in")
        return True

    # --- requests -------------------------------------------------------------------------------

    async def request(self, peer: PeerId, payload: bytes, timeout_ms: int) -> bytes:
        check_request_size(payload, self.limits)
        if timeout_ms <= 0:
            raise InvalidInput("timeout_ms must be positive")
        self._counters.add("requests_out")
        if not self._allowed(peer):
            self._counters.add("request_failures")
            raise PeerUnavailable(f"peer {peer[:16]}… is not allowed by the peer filter")
        target = self._dial(peer)
        if target is None:
            self._counters.add("request_failures")
            raise PeerUnavailable(f"peer {peer[:16]}… is unreachable")
        try:
            with trio.fail_after(timeout_ms / 1000):
                if self._net.latency_ms:
                    await trio.sleep(self._net.latency_ms / 1000)
                reply = await target._serve(self.local_peer, payload)
                if self._net.latency_ms:
                    await trio.sleep(self._net.latency_ms / 1000)
        except trio.TooSlowError:
            self._counters.add("request_failures")
            raise PeerUnavailable(f"peer {peer[:16]}… did not answer within {timeout_ms} ms") from None
        except (RequestRefused, PeerUnavailable):
            self._counters.add("request_failures")
            raise
        if self._net._reachable(self.local_peer, peer) is None:
            self._counters.add("request_failures")
            raise PeerUnavailable(f"peer {peer[:16]}… went away during the request")
        if len(reply) > self.limits.response_bytes_max:
            self._counters.add("request_failures")
            raise TooLarge(f"reply of {len(reply)} bytes exceeds response_bytes_max")
        return reply

    async def _serve(self, src: PeerId, payload: bytes) -> bytes:
        if not self._filter(src):
            self._counters.add("filtered")
            raise PeerUnavailable("connection refused by the peer")
        if len(payload) > self.limits.request_bytes_max:
            raise RequestRefused("request too large for the peer")
        ok, body = decode_reply(await self._requests.answer(src, payload, self.limits))
        if not ok:
            raise RequestRefused(refusal_text(self.local_peer, body))
        return body

    # --- helpers --------------------------------------------------------------------------------

    def _allowed(self, peer: PeerId) -> bool:
        if peer == self.local_peer or not self._filter(peer):
            self._counters.add("filtered")
            return False
        return True

    def _dial(self, peer: PeerId) -> MemoryTransport | None:
        """The target if a 'connection' is possible now; counts and backs off otherwise."""
        now = self._now_ms()
        if self._backoff.blocked(peer, now):
            self._counters.add("send_failures")
            return None
        if peer not in self._addrs and peer not in self._contacted_by:
            self._counters.add("dial_failures")
            return None
        self._counters.add("dials")
        target = self._net._reachable(self.local_peer, peer)
        if target is None:
            self._counters.add("dial_failures")
            self._backoff.failed(peer, now)
            return None
        self._backoff.succeeded(peer)
        return target

    @staticmethod
    def _now_ms() -> float:
        try:
            return trio.current_time() * 1000
        except RuntimeError:  # called outside trio (e.g. is_connected from sync code)
            return math.inf

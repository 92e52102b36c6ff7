"""The shell around the pure mesh core: timers, frames in, effects out.

The core is synchronous and trio runs one task at a time, so any task may call ``submit``; the
effects it returns are carried out without awaiting in between, except sends, which go to a
bounded queue per peer and lane. Why per peer: a send to a host that is down waits for a dial
time-out, and that must not delay gossip to every other host. Why per lane: a ping or an ack
queued behind a 4 MiB delta to the same peer would arrive late, and a late ack is a false
suspicion — so ``Send.bulk`` frames have their own queue (bounded in bytes) and their own
stream; all bulk queues together are bounded too. A full queue drops the frame (counted) —
anti-entropy repairs what rumour mongering loses.

Each ``run`` is given the transport it drives (a restarted mesh component brings a new one). What
people read about a peer is one line per change of state — "cannot reach B …", "B reachable
again", "host B is dead" — never one per failed send (``agent.logs.PeerLog``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from agent.logs import PeerLog
from mesh.core import types as t
from mesh.core.frames import peek_kind
from mesh.transport import Transport
from tva.errors import InvalidInput

log = logging.getLogger("tva.mesh")

PEER_QUEUE_FRAMES_MAX = 32
PEER_BULK_QUEUE_BYTES_MAX = 8 * 1024 * 1024  # deltas waiting for one peer; two whole 4 MiB frames
# ... and for all peers together: a fleet of 100 slow peers must not hold 800 MiB of deltas (the sync
# protocol re-sends what was dropped, by digest, once a peer drains).
NODE_BULK_QUEUE_BYTES_MAX = 64 * 1024 * 1024
TIMER_SLICE_MS_MAX = 1000  # wake at least this often even if the core asks for later


def monotonic_ms() -> int:
    return int(trio.current_time() * 1000)


class MeshDriver:
    def __init__(self, node, transport: Transport, *,
                 on_liveness: Callable[[str, str], None] = lambda _p, _s: None,
                 on_state: Callable[[bool, bool], None] = lambda _f, _d: None,
                 peer_log: PeerLog | None = None) -> None:
        self.node = node
        self.transport = transport
        self._on_liveness = on_liveness
        self._on_state = on_state
        self.peer_log = peer_log or PeerLog(log)
        self._queues: dict[tuple[str, bool], trio.MemorySendChannel[bytes]] = {}  # (peer, bulk)
        self._bulk_bytes: dict[str, int] = {}  # queued on each peer's bulk lane
        self.bulk_bytes_queued = 0  # on all of them
        self._nursery: trio.Nursery | None = None
        self.counters: dict[str, int] = {}
        self.traffic: dict[tuple[str, str], list[int]] = {}  # (in|out, frame kind) -> [frames, bytes]
        self._watch_versions(transport)

    def _watch_versions(self, transport: Transport) -> None:
        # the transport's hello tells the core which frame version each peer reads
        transport.set_version_handler(lambda peer, version: self.submit(t.PeerWireVersion(peer, version)))

    # --- events in ----------------------------------------------------------------------------

    def submit(self, event, *, raise_invalid: bool = False) -> None:
        """Hand one event to the core and carry out its effects. ``raise_invalid``: the event
        carries data from outside (e.g. a file) and the caller reports the core's InvalidInput
        itself, as bad data rather than a core failure."""
        try:
            effects = self.node.handle(event, monotonic_ms())
        except InvalidInput:
            if raise_invalid:
                raise
            log.exception("mesh core refused %s", type(event).__name__)
            self._count("core_errors")
            return
        except Exception:  # a core bug must not take the daemon down; it is logged loudly
            log.exception("mesh core failed on %s", type(event).__name__)
            self._count("core_errors")
            return
        for effect in effects:
            self._carry_out(effect)

    def _carry_out(self, effect) -> None:
        if isinstance(effect, t.Send):
            self._enqueue(effect.peer, effect.data, effect.bulk)
        elif isinstance(effect, t.LivenessChanged):
            self.peer_log.liveness(effect.peer, effect.state.value, effect.incarnation)
            self._on_liveness(effect.peer, effect.state.value)
        elif isinstance(effect, t.StateChanged):
            self._on_state(effect.feeds, effect.doc)
        elif isinstance(effect, t.Log):
            log.log(logging.WARNING if effect.level == "warning" else
                    logging.INFO if effect.level == "info" else logging.DEBUG, "%s", effect.message)
        elif isinstance(effect, t.Counter):
            self._count(effect.name, effect.inc)

    def _count(self, name: str, inc: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + inc

    # --- sends --------------------------------------------------------------------------------

    def _enqueue(self, peer: str, data: bytes, bulk: bool = False) -> None:
        queue = self._queues.get((peer, bulk))
        if queue is None:
            if self._nursery is None:
                self._count("send_before_start")
                return
            queue, receive = trio.open_memory_channel[bytes](PEER_QUEUE_FRAMES_MAX)
            self._queues[(peer, bulk)] = queue
            self._nursery.start_soon(self._sender, peer, bulk, receive)
        if bulk and self._bulk_bytes.get(peer, 0) + len(data) > PEER_BULK_QUEUE_BYTES_MAX:
            self._count("send_queue_drops")
            return
        if bulk and self.bulk_bytes_queued + len(data) > NODE_BULK_QUEUE_BYTES_MAX:
            self._count("send_queue_drops_node_bound")
            return
        try:
            queue.send_nowait(data)
        except trio.WouldBlock:
            self._count("send_queue_drops")
            return
        if bulk:
            self._bulk_bytes[peer] = self._bulk_bytes.get(peer, 0) + len(data)
            self.bulk_bytes_queued += len(data)

    async def _sender(self, peer: str, bulk: bool, receive: trio.MemoryReceiveChannel[bytes]) -> None:
        async with receive:
            async for data in receive:
                self._account("out", data)
                try:
                    ok = await self.transport.send(peer, data, bulk=bulk)
                except Exception as exc:  # a transport bug: one peer's frame lost, not the mesh
                    self._count("send_errors")
                    self.peer_log.send_error(peer, exc)
                    ok = False
                finally:
                    if bulk:  # counted until sent: the frame being written is held as well
                        self._bulk_bytes[peer] -= len(data)
                        self.bulk_bytes_queued -= len(data)
                if not bulk:
                    self.peer_log.reachability(peer, ok)
                if not ok and not bulk:  # a probe's fate decides liveness; a delta's does not
                    self.submit(t.PeerUnreachable(peer))

    # --- loops --------------------------------------------------------------------------------

    async def run(self, transport: Transport | None = None, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Drive the core over ``transport`` (default: the one given at construction) until cancelled."""
        if transport is not None and transport is not self.transport:
            self.transport = transport
            self._watch_versions(transport)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._receive_loop)
                nursery.start_soon(self._timer_loop)
                task_status.started()
        finally:
            # The senders died with the nursery: a later run starts them afresh.
            self._nursery = None
            self._queues.clear()
            self._bulk_bytes.clear()
            self.bulk_bytes_queued = 0

    async def _receive_loop(self) -> None:
        async for peer, data in self.transport.incoming():
            self._account("in", data)
            self.submit(t.FrameReceived(peer, data))

    def _account(self, direction: str, data: bytes) -> None:
        """Frames and bytes by (direction, frame kind): what /metrics shows of the mesh's traffic."""
        key = (direction, peek_kind(data))
        counts = self.traffic.get(key)
        if counts is None:
            counts = self.traffic[key] = [0, 0]
        counts[0] += 1
        counts[1] += len(data)

    async def _timer_loop(self) -> None:
        # The core names its next deadline; events that need an immediate send return the Send
        # right away, so sleeping until the deadline (capped) never delays a fresh change.
        while True:
            self.submit(t.Tick())
            deadline = self.node.next_deadline_ms()
            wait_ms = TIMER_SLICE_MS_MAX if deadline is None else deadline - monotonic_ms()
            await trio.sleep(max(1, min(wait_ms, TIMER_SLICE_MS_MAX)) / 1000)

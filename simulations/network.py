"""The simulated network: per-link latency, loss, duplication, reordering, bandwidth, partitions.

A frame handed to :meth:`Network.send` comes back as zero, one or two delivery times. The
sender's uplink is a FIFO with a byte rate, so a node that floods its peers pays for it in
queueing delay — which is what makes "bytes per node per second" matter. As in the agent, bulk
frames (deltas, documents) have a lane of their own and a per-peer queue bounded in bytes. Partitions are sets of
blocked *directed* pairs, so an asymmetric partition (A hears B, B does not hear A) is one call.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from agent.mesh_driver import PEER_BULK_QUEUE_BYTES_MAX
from tva.errors import InvalidInput


@dataclass(frozen=True)
class LinkProfile:
    """How one class of link behaves. Latency = base + lognormal jitter (a long right tail)."""

    latency_ms_base: float = 5.0
    jitter_ms_median: float = 2.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0  # chance that a frame is held back by an extra reorder_delay_ms
    reorder_delay_ms: float = 50.0
    uplink_bytes_per_s: float = 1_250_000.0  # 10 Mbit/s

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidInput(f"{name} must be a probability in [0, 1], got {value}")
        if self.latency_ms_base < 0 or self.jitter_ms_median < 0 or self.reorder_delay_ms < 0:
            raise InvalidInput("latencies must be >= 0 ms")
        if self.uplink_bytes_per_s <= 0:
            raise InvalidInput("uplink_bytes_per_s must be > 0")


LAN = LinkProfile()
WAN = LinkProfile(latency_ms_base=40.0, jitter_ms_median=10.0, uplink_bytes_per_s=250_000.0)
LOSSY_WAN = LinkProfile(
    latency_ms_base=60.0, jitter_ms_median=25.0, loss=0.10, duplicate=0.02, reorder=0.05,
    reorder_delay_ms=150.0, uplink_bytes_per_s=125_000.0,
)


@dataclass
class NetStats:
    frames_sent: int = 0
    bytes_sent: int = 0
    frames_lost: int = 0
    frames_blocked: int = 0
    frames_duplicated: int = 0
    frames_dropped_bulk_queue: int = 0  # the sender's queue for that peer was full (the agent's bound)
    per_node_bytes: dict[str, int] = field(default_factory=dict)
    per_node_frames: dict[str, int] = field(default_factory=dict)
    bytes_by_kind: dict[str, int] = field(default_factory=dict)  # filled when the caller names kinds


class Network:
    """Decides when (and whether) each frame arrives. Owns no events: the caller schedules them."""

    def __init__(self, rng: random.Random, default: LinkProfile = LAN) -> None:
        self._rng = rng
        self.default = default
        self._profiles: dict[str, LinkProfile] = {}  # per-node override (its links in and out)
        self._blocked: set[tuple[str, str]] = set()
        self._groups: dict[str, int] | None = None  # symmetric split: node -> side
        self._uplink_free_ms: dict[tuple[str, bool], float] = {}
        self._bulk_queued: dict[tuple[str, str], deque[tuple[float, int]]] = {}  # (src, dst): (done, bytes)
        self.healed_at_ms: int | None = None  # when the last partition ended
        self.stats = NetStats()

    def set_profile(self, node: str, profile: LinkProfile) -> None:
        self._profiles[node] = profile

    def profile(self, src: str, dst: str) -> LinkProfile:
        # The worse end of a link decides: a laptop on hotel Wi-Fi is slow whoever it talks to.
        a = self._profiles.get(src, self.default)
        b = self._profiles.get(dst, self.default)
        return a if (a.loss, a.latency_ms_base) >= (b.loss, b.latency_ms_base) else b

    # --- partitions ---------------------------------------------------------------------------
    def split(self, sides: list[list[str]]) -> None:
        """Symmetric partition: nodes on different sides cannot reach each other."""
        self._groups = {n: i for i, side in enumerate(sides) for n in side}

    def block(self, src: str, dst: str) -> None:
        """Asymmetric: frames from src to dst are dropped; dst to src still flow."""
        self._blocked.add((src, dst))

    def heal(self, now_ms: int = 0) -> None:
        if self.partitioned():
            self.healed_at_ms = now_ms
        self._groups = None
        self._blocked.clear()

    def reachable(self, src: str, dst: str) -> bool:
        if (src, dst) in self._blocked:
            return False
        groups = self._groups
        if groups is not None and groups.get(src, -1) != groups.get(dst, -1):
            return False
        return True

    def partitioned(self) -> bool:
        return self._groups is not None or bool(self._blocked)

    # --- sending --------------------------------------------------------------------------------
    def send(self, src: str, dst: str, size_bytes: int, now_ms: int, kind: str = "", bulk: bool = False) -> list[int]:
        """Delivery times (ms) for one frame: [] when lost or blocked, two when duplicated.

        Bulk frames (deltas, documents) queue on a lane of their own, as the agent's transports
        carry them (``mesh.core.Send.bulk``): megabytes in flight never delay a ping or an ack."""
        stats = self.stats
        if kind:
            stats.bytes_by_kind[kind] = stats.bytes_by_kind.get(kind, 0) + size_bytes
        stats.frames_sent += 1
        stats.bytes_sent += size_bytes
        stats.per_node_bytes[src] = stats.per_node_bytes.get(src, 0) + size_bytes
        stats.per_node_frames[src] = stats.per_node_frames.get(src, 0) + 1
        prof = self.profile(src, dst)
        # The uplink serialises every frame, even ones the network will then drop.
        if bulk and not self._bulk_room(src, dst, size_bytes, now_ms):
            stats.frames_dropped_bulk_queue += 1
            return []
        lane = (src, bulk)
        start = max(float(now_ms), self._uplink_free_ms.get(lane, 0.0))
        done = start + 1000.0 * size_bytes / prof.uplink_bytes_per_s
        self._uplink_free_ms[lane] = done
        if bulk:
            self._bulk_queued.setdefault((src, dst), deque()).append((done, size_bytes))
        if not self.reachable(src, dst):
            stats.frames_blocked += 1
            return []
        rng = self._rng
        if prof.loss and rng.random() < prof.loss:
            stats.frames_lost += 1
            return []
        times = [self._arrival(done, prof)]
        if prof.duplicate and rng.random() < prof.duplicate:
            stats.frames_duplicated += 1
            times.append(self._arrival(done, prof))
        return times

    def _bulk_room(self, src: str, dst: str, size_bytes: int, now_ms: int) -> bool:
        """The agent queues bulk frames per peer, bounded in bytes (``agent.mesh_driver``): a frame
        that would overflow what still waits for the uplink is dropped, as the driver drops it."""
        queued = self._bulk_queued.get((src, dst))
        if not queued:
            return True
        while queued and queued[0][0] <= now_ms:
            queued.popleft()
        return sum(n for _, n in queued) + size_bytes <= PEER_BULK_QUEUE_BYTES_MAX

    def _arrival(self, sent_ms: float, prof: LinkProfile) -> int:
        rng = self._rng
        delay = prof.latency_ms_base
        if prof.jitter_ms_median:
            delay += prof.jitter_ms_median * rng.lognormvariate(0.0, 0.5)
        if prof.reorder and rng.random() < prof.reorder:
            delay += prof.reorder_delay_ms
        return int(sent_ms + delay) + 1

"""Values that cross the mesh core's boundary: events in, effects out, the replica seams.

The shell turns the world into events (a timer fired, a frame arrived, the member list changed)
and carries out the effects (send these bytes, tell the policy core a host died). All are frozen
dataclasses so a recorded run can be replayed and compared exactly.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


class Liveness(enum.Enum):
    """A member's state as this node sees it. ``rank`` orders states at the same incarnation."""

    ALIVE = "alive"
    ASLEEP = "asleep"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"

    # set just below, a plain attribute: read millions of times a second in a big simulation, where
    # a property's lookup (an enum hash in Python) was ~5 % of the CPU
    rank: int


_RANK = {Liveness.ALIVE: 0, Liveness.ASLEEP: 1, Liveness.SUSPECT: 2, Liveness.DEAD: 3, Liveness.LEFT: 4}
for _state, _rank in _RANK.items():
    _state.rank = _rank
LIVENESS_BY_RANK = {rank: state for state, rank in _RANK.items()}


# --- the replicas, as the core sees them ------------------------------------------------------


class FeedStore(Protocol):
    """Single-writer signed feeds (implemented by ``crdt.feedset.FeedSet``)."""

    # owner public key -> head version; read-only for the caller (a store may hand out a cached one)
    def version_vector(self) -> dict[bytes, int]: ...

    def deltas_since(self, vv: dict[bytes, int], bytes_max: int) -> list[bytes]: ...

    # raises tva.errors.RemoteDataError subclasses (StaleData, GapError, ...), changing nothing
    def apply_delta(self, data: bytes) -> object: ...

    # optional: (owner, head version) of an encoded delta, for the refused-feed cache; raises
    # RemoteDataError. A store without it simply gets no negative cache.
    # def delta_head(self, data: bytes) -> tuple[bytes, int]: ...


class DocSync(Protocol):
    """The fleet document's sync protocol (implemented by ``crdt.fleetdoc.FleetDoc``)."""

    def heads(self) -> list[bytes]: ...

    def sync_message_for(self, peer: str) -> bytes | None: ...

    def receive_sync_message(self, peer: str, data: bytes) -> bool: ...  # True when changed

    def forget_peer(self, peer: str) -> None: ...


class Rng(Protocol):
    """The subset of ``random.Random`` the core uses; the shell seeds it."""

    def random(self) -> float: ...

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int: ...

    def sample(self, population: list, k: int) -> list: ...

    def shuffle(self, x: list) -> None: ...


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    """Timers may have expired; ``handle``'s now_ms is the time. Fire at ``next_deadline_ms()``."""


@dataclass(frozen=True)
class FrameReceived:
    peer: str  # authenticated by the transport
    data: bytes


@dataclass(frozen=True)
class LocalChanged:
    """The local writer committed ``delta`` to the feed store, and/or changed the fleet document.

    Send an empty ``LocalChanged()`` after any other change the shell makes to the replicas
    (revoking or dropping feeds, loading state): the core caches its digest of them."""

    delta: bytes | None = None
    doc_changed: bool = False


@dataclass(frozen=True)
class MembersChanged:
    """The full admitted, unrevoked member set (this node may be in it) and their host classes."""

    members: frozenset[str]
    classes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SetSoftState:
    disk_free_bytes: int
    uptime_score: float  # 0.0 .. 1.0
    endpoints: tuple[str, ...] = ()
    host_class: str = ""


@dataclass(frozen=True)
class AnnounceSleep:
    """The host is about to suspend: peers wait sleep patience instead of suspecting it."""


@dataclass(frozen=True)
class Wake:
    """The host resumed after AnnounceSleep."""


@dataclass(frozen=True)
class Leave:
    """Graceful leave: peers mark this node left (never dead). Keep ticking it ~1 s afterwards."""


@dataclass(frozen=True)
class PeerUnreachable:
    """The shell failed to deliver a Send to ``peer``."""

    peer: str


@dataclass(frozen=True)
class PeerWireVersion:
    """The transport's hello agreed on this frame version with ``peer`` (see ``mesh.transport``);
    until then frames to it are written at ``frames.FRAME_VERSION_MIN``."""

    peer: str
    version: int


@dataclass(frozen=True)
class RestorePresence:
    """Members' soft state remembered from before a restart (e.g. ``presence()`` kept by the shell).

    Each record counts as received now, so the policy core has disks and classes at once instead
    of after refreshes; and a member whose next broadcast carries a sequence we already hold is
    not re-broadcast by us, so a fleet restarting together does not flood itself with n² copies
    of unchanged presence. Send after ``MembersChanged``; records about non-members are ignored.
    """

    records: tuple[Presence, ...]


Event = (Tick | FrameReceived | LocalChanged | MembersChanged | SetSoftState | AnnounceSleep | Wake | Leave
         | PeerUnreachable | RestorePresence | PeerWireVersion)


# --- effects ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    peer: str
    data: bytes
    # bulk: deltas, document messages, anything big. Shells carry it on a lane of its own, so
    # pings and acks never wait behind megabytes (a late ack is a false suspicion).
    bulk: bool = False


@dataclass(frozen=True)
class LivenessChanged:
    peer: str
    state: Liveness
    incarnation: int


@dataclass(frozen=True)
class StateChanged:
    feeds: bool
    doc: bool


@dataclass(frozen=True)
class Log:
    level: str  # "debug" | "info" | "warning"
    message: str


@dataclass(frozen=True)
class Counter:
    name: str
    inc: int = 1


Effect = Send | LivenessChanged | StateChanged | Log | Counter


@dataclass(frozen=True)
class Presence:
    """A member's soft state as last heard, valid until ``expires_ms`` (this node's clock).

    ``incarnation``/``pseq`` order it; ``sig`` is its owner's signature over ``body`` (the record
    as it travelled), which is what lets a remembered presence be handed back after a restart."""

    peer: str
    pseq: int
    disk_free_bytes: int
    uptime_score: float
    endpoints: tuple[str, ...]
    host_class: str
    asleep: bool
    expires_ms: int
    incarnation: int = 0
    sig: bytes = b""
    body: bytes = b""

"""The seam between the simulated world and one node: what the world asks of a node, and the
effects a node hands back.

Every node implementation the simulator can run — the stand-in protocol in
``simulations.standin`` and the adapter around the real ``mesh.core`` / ``agent.policy`` /
``crdt`` cores in ``simulations.realnode`` — satisfies :class:`SimNode`. The world never looks
inside a node; it carries out effects and asks read-only questions (version vector, duties,
peers_for) for the checkers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

# --- items and workload operations (values the world hands to a node) ---------------------------

POLICIES = ("public", "f2f_only", "search_only")
HOST_CLASSES = ("server", "seedbox", "portable")


def infohash_of(item: str) -> str:
    """The simulated item's BitTorrent v1 infohash (40 lower-case hex), derived from its name."""
    return hashlib.sha1(item.encode()).hexdigest()


@dataclass(frozen=True)
class AddHolding:
    item: str
    size_bytes: int
    policy: str  # one of POLICIES; private-tracker content is always f2f_only
    custody: bool = False  # a copy a repair made (the only kind a trim may remove)
    source: str = ""  # the holding record's source; "" = by policy (f2f_only: private-tracker)


@dataclass(frozen=True)
class RemoveHolding:
    item: str


@dataclass(frozen=True)
class SetPin:
    item: str
    copies_min: int
    copies_max: int
    friends: bool = False  # friend fleets' copies may count (``pin … --friends``)


@dataclass(frozen=True)
class Revoke:
    peer: str


@dataclass(frozen=True)
class AddFriend:
    fleet_id: str  # a friend fleet, linked by invite
    link: tuple = ()  # the link's fields (agent.policy.friend_links.link_fields) as sorted pairs; () = none


@dataclass(frozen=True)
class RemoveFriend:
    fleet_id: str  # `friend rm`: the link ends


@dataclass(frozen=True)
class SetDiskFull:
    full: bool


@dataclass(frozen=True)
class HoldingBatch:
    """Many holdings added and removed at once, committed as one change (a busy seedbox)."""

    changes: tuple[AddHolding | RemoveHolding, ...]


@dataclass(frozen=True)
class Unpin:
    item: str


Change = (AddHolding | RemoveHolding | HoldingBatch | SetPin | Unpin | Revoke | AddFriend | RemoveFriend
          | SetDiskFull)


# --- effects (what a node asks the world to do) -------------------------------------------------


@dataclass(frozen=True)
class Send:
    dst: str
    frame: bytes
    bulk: bool = False  # the bulk lane (deltas, documents): pings and acks never wait behind it


@dataclass(frozen=True)
class DeclaredDead:
    """This node now holds ``peer`` dead at ``incarnation`` (the checker dedupes by the pair)."""

    peer: str
    incarnation: int = 0


@dataclass(frozen=True)
class Fetch:
    """This node starts copying ``item`` from fleet holders (the world simulates the transfer)."""

    item: str
    target: str


@dataclass(frozen=True)
class RepairStart:
    """The planner (the pin's baton) asks ``target`` to fetch a copy of ``item``."""

    item: str
    target: str
    planner: str


@dataclass(frozen=True)
class Trimmed:
    """``holder`` dropped its copy of ``item`` because the pin is over its maximum."""

    item: str
    holder: str


@dataclass(frozen=True)
class Announce:
    """``holder`` announces ``item`` outside the fleet: ``where`` is "dht" or "tracker"."""

    item: str
    where: str
    holder: str


@dataclass(frozen=True)
class Applied:
    """A note for the metrics, not an action: this node now holds ``owner``'s ``version``."""

    owner: str
    version: int


@dataclass(frozen=True)
class FriendsCounted:
    """This node's custody plan of ``item`` counts copies held by these friend fleets."""

    item: str
    fleets: tuple[str, ...]


Effect = Applied | Send | DeclaredDead | Fetch | RepairStart | Trimmed | Announce | FriendsCounted


@dataclass(frozen=True)
class PeerAnswer:
    peer: str  # peer id, or an address for dht/tracker peers
    provenance: str  # fleet | seedbox | friend | dht | tracker
    fleet: str = ""  # the friend fleet's id for provenance "friend"


@dataclass(frozen=True)
class FriendOffer:
    """A holder in another fleet offering an item (linked or not: the gate must tell)."""

    fleet_id: str
    peer: str
    policy: str


class SimNode(Protocol):
    """One simulated host. ``now_ms`` is virtual time; nothing here may read a clock."""

    peer_id: str

    def tick(self, now_ms: int) -> list[Effect]: ...

    def next_deadline_ms(self, now_ms: int) -> int:
        """When this node next wants ``tick`` (the world may tick it earlier, never needlessly)."""
        ...

    def receive(self, src: str, frame: bytes, now_ms: int) -> list[Effect]: ...

    def change(self, op: Change, now_ms: int) -> list[Effect]: ...

    def leave(self, now_ms: int) -> list[Effect]: ...

    def sleep(self, now_ms: int) -> list[Effect]:
        """The host is about to suspend (a portable host announces it; others just stop)."""
        ...

    def wake(self, now_ms: int) -> list[Effect]: ...

    def snapshot(self) -> object:
        """What survives a crash (the atomic on-disk state): feeds, fleet doc, identity."""
        ...

    # --- read-only questions for the checkers ---
    def version_vector(self) -> dict[str, int]: ...

    def doc_digest(self) -> str: ...

    def duties(self) -> dict[str, str]: ...

    def live_view(self) -> frozenset[str]: ...

    def peers_for(self, item: str, offers: tuple[FriendOffer, ...],
                  external: tuple[str, ...]) -> list[PeerAnswer]:
        """Answer ``peers_for(item)`` from this node's view, given friend-fleet offers (linked or
        not) and external candidates (``"dht"``/``"tracker"``) the world found for it."""
        ...

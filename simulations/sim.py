"""A whole simulated fleet: the truth of the world, nodes, network, and the effects loop.

The world keeps the *truth* (which hosts are up, what each disk really holds, who is revoked)
apart from each node's *view* (its replicated state), so the checkers can compare the two.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from simulations.adapter import (
    AddHolding,
    Announce,
    Change,
    DeclaredDead,
    Fetch,
    FriendsCounted,
    HoldingBatch,
    RemoveHolding,
    RepairStart,
    Revoke,
    Send,
    SetDiskFull,
    SetPin,
    SimNode,
    Trimmed,
    Unpin,
)
from simulations.checkers import Checker
from simulations.metrics import Metrics
from simulations.network import LinkProfile, Network
from simulations.nodes import NodeFactory
from simulations.seeds import derive_rng
from simulations.world import Trace, World
from tva.errors import InvalidInput

UP, CRASHED, ASLEEP, LEFT = "up", "crashed", "asleep", "left"
TRANSFER_BYTES_PER_S = 10_000_000
# Frames at least this big are kept once while in flight, however many sends carry them (see
# ``FramesInFlight``); smaller ones are not worth the hashing.
SHARED_FRAME_BYTES_MIN = 16 * 1024


@dataclass(frozen=True)
class Item:
    name: str
    size_bytes: int
    policy: str
    fleet: int = 0  # the fleet whose item it is (multi-fleet runs)


@dataclass
class Host:
    peer: str
    index: int
    host_class: str
    status: str = UP
    disk: dict[str, int] = field(default_factory=dict)
    full: bool = False
    saved: object = None
    restarts: int = 0
    up_since_ms: int = 0  # when this host last started or woke


class GossipTally:
    """The real cores' gossip counters (``MeshNode.gossip_stats``) summed over nodes: bytes and
    items by item kind, and the rumour queues' extremes (deepest queue, most transmits of one
    rumour, evictions, items passed over for size). Stand-in cores have none: all stays zero."""

    def __init__(self) -> None:
        self.item_bytes: dict[str, int] = {}
        self.items: dict[str, int] = {}
        self.depth_max = 0
        self.transmits_max = 0
        self.limit_max = 0
        self.counts: dict[str, int] = {}

    def add(self, node: SimNode) -> None:
        stats = getattr(node, "gossip_stats", None)
        if stats is None:
            return
        g = stats()
        for k, v in g["item_bytes_sent"].items():
            self.item_bytes[k] = self.item_bytes.get(k, 0) + v
        for k, v in g["items_sent"].items():
            self.items[k] = self.items.get(k, 0) + v
        self.limit_max = max(self.limit_max, g["retransmit_limit"])
        for q in g["queues"].values():
            self.depth_max = max(self.depth_max, q["depth_max"])
            self.transmits_max = max(self.transmits_max, max(q["transmits_at_exit"], default=0))
            for k in ("put", "replaced", "retired", "evicted", "dropped_for_size", "skipped_for_size", "transmits"):
                self.counts[k] = self.counts.get(k, 0) + q.get(k, 0)

    def merge(self, other: GossipTally) -> None:
        for mine, theirs in ((self.item_bytes, other.item_bytes), (self.items, other.items),
                             (self.counts, other.counts)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        self.depth_max = max(self.depth_max, other.depth_max)
        self.transmits_max = max(self.transmits_max, other.transmits_max)
        self.limit_max = max(self.limit_max, other.limit_max)


class FramesInFlight:
    """One copy of each big frame between its sends and its deliveries.

    Every node encodes its frames afresh for every peer and every round, so a 4 MiB delta that
    waits minutes behind a flooded uplink is held once per send: the byzantine scenario at 100
    nodes once kept 8 GB of copies of fewer than ten distinct frames in its event queue. Bytes
    are immutable and a receiver reads only their value, so equal frames share one object; a
    frame is let go when its last delivery (or loss) is done. Small frames are left alone."""

    def __init__(self) -> None:
        self._held: dict[bytes, list] = {}  # content -> [the shared object, deliveries pending]
        self.bytes_held = 0
        self.bytes_held_max = 0  # the figure a test bounds: distinct big bytes in flight at once

    def hold(self, frame: bytes, deliveries: int) -> bytes:
        if len(frame) < SHARED_FRAME_BYTES_MIN or not deliveries:
            return frame
        entry = self._held.get(frame)
        if entry is None:
            entry = self._held[frame] = [frame, 0]
            self.bytes_held += len(frame)
            self.bytes_held_max = max(self.bytes_held_max, self.bytes_held)
        entry[1] += deliveries
        return entry[0]

    def delivered(self, frame: bytes) -> None:
        if len(frame) < SHARED_FRAME_BYTES_MIN:
            return
        entry = self._held[frame]
        entry[1] -= 1
        if not entry[1]:
            del self._held[frame]
            self.bytes_held -= len(frame)


class Simulation:
    def __init__(self, *, seed: int, n_nodes: int, classes: list[str], factory: NodeFactory,
                 link: LinkProfile, interval_ms: int, track_after_ms: int,
                 revocation_grace_ms: int, trace: Trace | None = None) -> None:
        if n_nodes < 2:
            raise InvalidInput("a fleet needs at least 2 nodes", hint="use --nodes 2 or more")
        self.seed = seed
        self.world = World(trace)
        self.net = Network(derive_rng(seed, "network"), link)
        self.rng = derive_rng(seed, "world")
        self.factory = factory
        self._kind_of: Callable[[bytes], str] = lambda frame: ""
        if factory.core == "real":  # the real wire format says its frame kind in its first bytes
            from mesh.core.frames import peek_kind
            self._kind_of = peek_kind
        self.interval_ms = interval_ms
        self.metrics = Metrics(track_after_ms)
        self.checker = Checker(self, revocation_grace_ms)
        self.hosts: dict[str, Host] = {}
        self.by_index: list[str] = []
        self.nodes: dict[str, SimNode] = {}  # only hosts that are up
        self.items: dict[str, Item] = {}
        self.pins: dict[str, tuple[int, int]] = {}
        self.revoked: dict[str, int] = {}
        self.friends: list[str] = []
        self.item_holders: dict[str, set[str]] = {}
        self.keep_crashed = False  # set by scenarios whose crashed hosts never come back
        # a scenario's own liveness checkers (name -> () -> (ok, detail)) and figures (() -> dict)
        self.liveness_checks: dict[str, Callable[[], tuple[bool, str]]] = {}
        self.metric_sources: list[Callable[[], dict]] = []
        self._tracked: dict[str, SimNode] | None = None
        self._calls: dict[int, Callable[[int], None]] = {}
        self._call_seq = 0
        self._tick_at: dict[str, int] = {}  # the one live tick per node; others are stale
        self._fetching: set[tuple[str, str]] = set()
        self.gossip = GossipTally()  # what the cores of nodes no longer running sent, by item kind
        self.in_flight = FramesInFlight()
        w = self.world
        w.on("tick", self._on_tick)
        w.on("deliver", self._on_deliver)
        w.on("call", self._on_call)
        w.on("transfer", self._on_transfer)
        self.fleet_of: dict[str, int] = {}  # peer -> its fleet (all 0 in a one-fleet run)
        self.friend_world = None  # simulations.friends.FriendWorld in a multi-fleet run
        self._tracked_by_fleet: tuple | None = None
        for i in range(n_nodes):
            peer = factory.peer_id(i)
            self.hosts[peer] = Host(peer, i, classes[i])
            self.by_index.append(peer)
            self.fleet_of[peer] = factory.fleet_of(i) if factory.fleets > 1 else 0

    # --- starting nodes -----------------------------------------------------------------------
    def start(self, index: int, now_ms: int, bootstrap: list[str]) -> None:
        host = self.hosts[self.by_index[index]]
        node = self.factory.make(index, host.host_class, host.restarts, bootstrap, host.saved)
        self.nodes[host.peer] = node
        host.status = UP
        host.up_since_ms = now_ms
        self._tracked = None
        self._pins_changed(now_ms)
        self._want_tick(host.peer, now_ms + self.rng.randrange(self.interval_ms))

    def at(self, at_ms: int, label: str, fn: Callable[[int], None]) -> None:
        """Run ``fn(now_ms)`` at virtual time ``at_ms`` (faults and workload use this)."""
        key = self._call_seq  # not len(self._calls): calls scheduled while others ran must not collide
        self._call_seq += 1
        self._calls[key] = fn
        self.world.schedule(at_ms, "call", label, key)

    # --- truth changes (called by faults and workload) ----------------------------------------------
    def up_nodes(self) -> dict[str, SimNode]:
        return self.nodes

    def change(self, peer: str, op: Change, now_ms: int) -> None:
        node = self.nodes.get(peer)
        if node is None:
            return
        if isinstance(op, AddHolding):
            self.items.setdefault(op.item, Item(op.item, op.size_bytes, op.policy, self.fleet_of[peer]))
            self._disk_add(peer, op.item, op.size_bytes)
        elif isinstance(op, RemoveHolding):
            self._disk_remove(peer, op.item)
        elif isinstance(op, HoldingBatch):
            for c in op.changes:
                if isinstance(c, AddHolding):
                    self.items.setdefault(c.item, Item(c.item, c.size_bytes, c.policy))
                    self._disk_add(peer, c.item, c.size_bytes)
                else:
                    self._disk_remove(peer, c.item)
        elif isinstance(op, SetPin):
            self.pins[op.item] = (op.copies_min, op.copies_max)
        elif isinstance(op, Unpin):
            self.pins.pop(op.item, None)
        elif isinstance(op, Revoke):
            self.revoked.setdefault(op.peer, now_ms)
            self._tracked = None
        elif isinstance(op, SetDiskFull):
            self.hosts[peer].full = op.full
            self.checker.disk_full_changed(peer, op.full, now_ms)
        self._run(peer, node.change(op, now_ms), now_ms)
        self._pins_changed(now_ms)

    def crash(self, peer: str, now_ms: int) -> None:
        node = self.nodes.pop(peer, None)
        if node is None:
            return
        host = self.hosts[peer]
        host.saved = node.snapshot()  # writes are atomic: the disk holds the last committed state
        self.gossip.add(node)
        host.status = CRASHED
        self._tick_at.pop(peer, None)
        self._went_down(now_ms)

    def restart(self, peer: str, now_ms: int) -> None:
        host = self.hosts[peer]
        if host.status != CRASHED:
            return
        host.restarts += 1
        self.start(host.index, now_ms, [])

    def leave(self, peer: str, now_ms: int) -> None:
        node = self.nodes.get(peer)
        if node is None:
            return
        self._run(peer, node.leave(now_ms), now_ms)
        del self.nodes[peer]
        self.gossip.add(node)
        self._tick_at.pop(peer, None)
        self.hosts[peer].status = LEFT
        self._went_down(now_ms)

    def sleep(self, peer: str, now_ms: int) -> None:
        host = self.hosts[peer]
        node = self.nodes.get(peer)
        if node is None:
            return
        self._run(peer, node.sleep(now_ms), now_ms)
        del self.nodes[peer]
        self._tick_at.pop(peer, None)
        host.saved = node  # a sleeping laptop keeps its whole memory
        host.status = ASLEEP
        self._went_down(now_ms)

    def wake(self, peer: str, now_ms: int) -> None:
        host = self.hosts[peer]
        if host.status != ASLEEP:
            return
        node: SimNode = host.saved  # type: ignore[assignment]
        self.nodes[peer] = node
        host.saved = None
        host.status = UP
        host.up_since_ms = now_ms
        self._tracked = None
        self._pins_changed(now_ms)
        self._run(peer, node.wake(now_ms), now_ms)
        self._want_tick(peer, now_ms + 1)

    def lose_item(self, peer: str, item: str, now_ms: int) -> None:
        """A disk loses an item: the truth changes at once, the host's feed when it notices."""
        if item in self.hosts[peer].disk:
            self.change(peer, RemoveHolding(item), now_ms)

    def tracked(self) -> dict[str, SimNode]:
        """The nodes a change must reach to count as converged: up and not revoked (nobody
        talks to a revoked host, so it never catches up, by design)."""
        if self._tracked is None:
            self._tracked = {p: n for p, n in self.nodes.items() if p not in self.revoked}
        return self._tracked

    def tracked_for(self, owner: str) -> dict[str, SimNode]:
        """The nodes ``owner``'s change must reach: its own fleet's (one fleet: all tracked)."""
        tracked = self.tracked()
        if self.factory.fleets == 1:
            return tracked
        if self._tracked_by_fleet is None or self._tracked_by_fleet[0] is not tracked:
            groups: dict[int, dict[str, SimNode]] = {}
            for p, n in tracked.items():
                groups.setdefault(self.fleet_of[p], {})[p] = n
            self._tracked_by_fleet = (tracked, groups)
        return self._tracked_by_fleet[1].get(self.fleet_of.get(owner, 0), {})

    def _went_down(self, now_ms: int) -> None:
        self._tracked = None
        self.metrics.recheck_pending(now_ms, self.tracked(),
                                     self.tracked_for if self.factory.fleets > 1 else None)
        self._pins_changed(now_ms)

    def _disk_add(self, peer: str, item: str, size_bytes: int) -> None:
        self.hosts[peer].disk[item] = size_bytes
        self.item_holders.setdefault(item, set()).add(peer)

    def _disk_remove(self, peer: str, item: str) -> None:
        self.hosts[peer].disk.pop(item, None)
        self.item_holders.get(item, set()).discard(peer)

    def gossip_totals(self) -> GossipTally:
        """Gossip counters summed over every core of the run: running, asleep, and gone ones."""
        total = GossipTally()
        total.merge(self.gossip)
        for host in self.hosts.values():
            node = self.nodes.get(host.peer) or (host.saved if host.status == ASLEEP else None)
            if node is not None:
                total.add(node)
        return total

    # --- truth queries --------------------------------------------------------------------------
    def durable_copies(self, item: str) -> int:
        """Copies on disks of members that have not left and are not revoked (up or not)."""
        return sum(1 for p in self.item_holders.get(item, ())
                   if self.hosts[p].status != LEFT and p not in self.revoked)

    def available_copies(self, item: str) -> int:
        return sum(1 for p in self.item_holders.get(item, ()) if p in self.nodes and p not in self.revoked)

    def _pins_changed(self, now_ms: int) -> None:
        for item, (copies_min, _) in self.pins.items():
            self.metrics.pin_copies(item, self.available_copies(item), copies_min, now_ms)

    # --- event handlers ------------------------------------------------------------------------------
    def _want_tick(self, peer: str, at_ms: int) -> None:
        cur = self._tick_at.get(peer)
        if cur is None or at_ms < cur:
            self._tick_at[peer] = at_ms
            self.world.schedule(at_ms, "tick", peer, at_ms)

    def _on_tick(self, now_ms: int, peer: str, at_ms: int) -> None:
        node = self.nodes.get(peer)
        if node is None or self._tick_at.get(peer) != at_ms:
            return  # down (the chain restarts with the node), or superseded by an earlier tick
        del self._tick_at[peer]
        self._run(peer, node.tick(now_ms), now_ms)
        if peer in self.nodes:
            self._want_tick(peer, max(now_ms + 1, node.next_deadline_ms(now_ms)))

    def _on_deliver(self, now_ms: int, dst: str, data: tuple[str, bytes]) -> None:
        src, frame = data
        self.in_flight.delivered(frame)
        node = self.nodes.get(dst)
        if node is None:
            return
        self._run(dst, node.receive(src, frame, now_ms), now_ms)
        if dst in self.nodes:
            self._want_tick(dst, max(now_ms + 1, node.next_deadline_ms(now_ms)))

    def _on_call(self, now_ms: int, _label: str, key: int) -> None:
        self._calls.pop(key)(now_ms)

    def _on_transfer(self, now_ms: int, target: str, item: str) -> None:
        self._fetching.discard((item, target))
        host = self.hosts[target]
        if target not in self.nodes or host.full or item in host.disk:
            return
        if not any(p in self.nodes for p in self.item_holders.get(item, ())):
            return  # no live source to copy from
        self.checker.repair_landed(item, target, now_ms)
        it = self.items[item]
        self.metrics.repairs_done += 1
        self.change(target, AddHolding(item, it.size_bytes, it.policy, custody=True), now_ms)

    def _run(self, peer: str, effects: list, now_ms: int) -> None:
        net = self.net
        schedule = self.world.schedule
        for eff in effects:
            if isinstance(eff, Send):
                times = net.send(peer, eff.dst, len(eff.frame), now_ms, self._kind_of(eff.frame), eff.bulk)
                frame = self.in_flight.hold(eff.frame, len(times))
                for at in times:
                    schedule(at, "deliver", eff.dst, (peer, frame))
            elif isinstance(eff, DeclaredDead):
                self.checker.declared_dead(peer, eff.peer, eff.incarnation, now_ms)
            elif isinstance(eff, RepairStart):
                self.checker.repair_started(eff, now_ms)
                self.metrics.repairs_started += 1
            elif isinstance(eff, Fetch):
                self.checker.fetch_started(eff, now_ms)
                it = self.items.get(eff.item)
                if it is None or (eff.item, eff.target) in self._fetching:
                    continue
                self._fetching.add((eff.item, eff.target))
                delay = 100 + 1000 * it.size_bytes // TRANSFER_BYTES_PER_S
                schedule(now_ms + delay, "transfer", eff.target, eff.item)
            elif isinstance(eff, Trimmed):
                self._disk_remove(eff.holder, eff.item)
                self.metrics.trims += 1
                self.checker.trimmed(eff, now_ms)
                self._pins_changed(now_ms)
            elif isinstance(eff, Announce):
                self.checker.announced(eff, now_ms)
            elif isinstance(eff, FriendsCounted):
                self.checker.friends_counted(peer, eff, now_ms)
            else:  # Applied (a note for the metrics)
                self.metrics.applied(peer, eff.owner, eff.version, now_ms, self.tracked_for(eff.owner))

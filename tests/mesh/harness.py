"""A pure, deterministic in-memory network for mesh-core tests, and toy replicas to drive it.

``Harness`` keeps one priority queue of (time, seq) events: frames in flight and node timers. A
Send effect becomes a FrameReceived at the destination after a delay drawn from the harness's own
seeded rng (loss, duplication and delay spread reorder frames); nodes are ticked exactly at their
``next_deadline_ms()``. The same seed and parameters replay the same run; hypothesis chooses them.

``MemFeeds`` and ``MemDoc`` are small stand-ins for ``crdt.feedset.FeedSet`` and
``crdt.fleetdoc.FleetDoc`` with the same methods and error behaviour: single-writer feeds whose
local deltas are incremental (so out-of-order delivery raises GapError) and snapshot deltas from
``deltas_since``; a grow-only set document whose per-peer sync state is optimistic (a lost message
leaves it believing the peer is up to date, as automerge's does).

Nodes are named ``node0000``… rather than by peer id, so each name gets a real Ed25519 key
(``named_key``) and the nodes check signatures with ``verify_named`` — real signatures, just a
different name-to-key mapping than production's ``signing.peer_verifier``.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import msgpack

from crdt.identity import NodeKey
from crdt.identity import verify as ed25519_verify
from mesh.core import (
    FrameReceived,
    LivenessChanged,
    LocalChanged,
    MembersChanged,
    MeshConfig,
    MeshNode,
    Send,
    Tick,
)
from mesh.core.frames import MemberRecord, PresenceRecord
from mesh.core.signing import OWN_STATES, CachingVerifier, issue_presence, own_member_record
from mesh.core.types import Event, Liveness
from tva.errors import DecodeError, GapError, StaleData

PAYLOAD_BYTES_MAX = 4096


@dataclass(frozen=True)
class NamedKey:
    """A real Ed25519 key that signs as ``peer_id`` = a test name."""

    peer_id: str
    key: NodeKey

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)


_KEYS: dict[str, NamedKey] = {}


def named_key(name: str) -> NamedKey:
    k = _KEYS.get(name)
    if k is None:
        k = _KEYS[name] = NamedKey(name, NodeKey(hashlib.blake2b(name.encode(), digest_size=32).digest()))
    return k


def _verify_named(peer: str, sig: bytes, message: bytes) -> bool:
    return ed25519_verify(named_key(peer).key.public, sig, message)


verify_named = CachingVerifier(_verify_named)


def make_node(name: str, config: MeshConfig, feeds, doc, rng, **kw) -> MeshNode:
    return MeshNode(name, config, feeds, doc, rng, signer=named_key(name), verify=verify_named, **kw)


def _strict_unpack(data: bytes) -> object:
    try:
        return msgpack.unpackb(data, raw=False, max_bin_len=PAYLOAD_BYTES_MAX, max_str_len=64,
                               max_array_len=4096, max_map_len=0, max_ext_len=0)
    except Exception as e:  # any msgpack failure is "not a delta"
        raise DecodeError(f"not msgpack: {type(e).__name__}") from None


class MemFeeds:
    """owner -> (version, payload); a delta is [owner, base, version, payload]."""

    def __init__(self, owner: bytes) -> None:
        self.owner = owner
        self.heads: dict[bytes, tuple[int, bytes]] = {}

    def version_vector(self) -> dict[bytes, int]:
        return {o: v for o, (v, _) in self.heads.items()}

    def commit(self, payload: bytes) -> bytes:
        base = self.heads.get(self.owner, (0, b""))[0]
        self.heads[self.owner] = (base + 1, payload)
        return msgpack.packb([self.owner, base, base + 1, payload])

    def deltas_since(self, vv: dict[bytes, int], bytes_max: int) -> list[bytes]:
        out, spent = [], 0
        for owner in sorted(self.heads):
            version, payload = self.heads[owner]
            if version > vv.get(owner, 0):
                d = msgpack.packb([owner, 0, version, payload])
                if spent + len(d) > bytes_max:
                    break
                out.append(d)
                spent += len(d)
        return out

    def apply_delta(self, data: bytes) -> object:
        f = _strict_unpack(data)
        if (type(f) is not list or len(f) != 4 or type(f[0]) is not bytes or not 0 < len(f[0]) <= 64
                or any(type(x) is not int or not 0 <= x < 2**63 for x in f[1:3]) or type(f[3]) is not bytes
                or f[1] >= f[2]):
            raise DecodeError("delta: expected [owner, base < version, payload]")
        owner, base, version, payload = f
        held = self.heads.get(owner, (0, b""))[0]
        if version <= held:
            raise StaleData(f"version {version} <= held {held}")
        if base > held:
            raise GapError(f"delta from {base} but only {held} held")
        self.heads[owner] = (version, payload)
        return version


class MemDoc:
    """A grow-only set of short byte strings with a ping-pong, per-peer sync."""

    def __init__(self) -> None:
        self.elems: set[bytes] = set()
        self.known: dict[str, set[bytes]] = {}

    def add(self, e: bytes) -> None:
        self.elems.add(e)

    def heads(self) -> list[bytes]:
        return [hashlib.blake2b(b"\0".join(sorted(self.elems)), digest_size=16).digest()] if self.elems else []

    def sync_message_for(self, peer: str) -> bytes | None:
        k = self.known.setdefault(peer, set())
        missing = sorted(self.elems - k)
        if not missing:
            return None
        k.update(missing)  # optimistic, like automerge: assumes the message arrives
        return msgpack.packb(missing)

    def receive_sync_message(self, peer: str, data: bytes) -> bool:
        f = _strict_unpack(data)
        if type(f) is not list or not all(type(e) is bytes and 0 < len(e) <= 64 for e in f):
            raise DecodeError("doc message: expected a list of short byte strings")
        self.known.setdefault(peer, set()).update(f)
        new = set(f) - self.elems
        self.elems |= new
        return bool(new)

    def forget_peer(self, peer: str) -> None:
        self.known.pop(peer, None)


@dataclass
class Net:
    loss: float = 0.0
    dup: float = 0.0
    delay_ms_min: int = 1
    delay_ms_max: int = 10


@dataclass
class Harness:
    n: int
    seed: int = 0
    config: MeshConfig = field(default_factory=MeshConfig)
    net: Net = field(default_factory=Net)
    classes: dict[str, str] = field(default_factory=dict)
    names: list[str] | None = None  # peer ids; node0000, node0001, ... by default

    def __post_init__(self) -> None:
        self.ids = list(self.names) if self.names else [f"node{i:04d}" for i in range(self.n)]
        self.rng = random.Random(self.seed)
        self.feeds = {p: MemFeeds(p.encode()) for p in self.ids}
        self.docs = {p: MemDoc() for p in self.ids}
        self.nodes = {p: make_node(p, self.config, self.feeds[p], self.docs[p], random.Random(self.seed * 7919 + i))
                      for i, p in enumerate(self.ids)}
        self.now = 0
        self._heap: list[tuple[int, int, str, Event]] = []
        self._seq = 0
        self._wake: dict[str, int] = {}
        self.down: set[str] = set()
        self.blocked: Callable[[str, str, int], bool] = lambda src, dst, t: False
        self.liveness_log: list[tuple[int, str, str, Liveness, int]] = []  # time, observer, peer, ...
        self.sent_frames = 0
        members = frozenset(self.ids)
        for p in self.ids:
            self.handle(p, MembersChanged(members, dict(self.classes)))

    # --- driving -------------------------------------------------------------------------------

    def at(self, t: int, node: str, event: Event) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, node, event))

    def handle(self, node: str, event: Event) -> list:
        effects = self.nodes[node].handle(event, self.now)
        for e in effects:
            if isinstance(e, Send):
                self._deliver(node, e)
            elif isinstance(e, LivenessChanged):
                self.liveness_log.append((self.now, node, e.peer, e.state, e.incarnation))
        self._schedule_tick(node, after_tick=isinstance(event, Tick))
        return effects

    def _schedule_tick(self, node: str, *, after_tick: bool) -> None:
        if node in self.down:
            return
        due = self.nodes[node].next_deadline_ms()
        if due is None:
            return
        if after_tick and due <= self.now:
            raise AssertionError(f"{node} asks for another tick at {due} right after one at {self.now}")
        due = max(due, self.now)
        cur = self._wake.get(node)
        if cur is None or due < cur or cur < self.now:
            self._wake[node] = due
            self.at(due, node, Tick())

    def _deliver(self, src: str, send: Send) -> None:
        self.sent_frames += 1
        dst = send.peer
        if dst not in self.nodes or src in self.down or dst in self.down or self.blocked(src, dst, self.now):
            return
        if self.rng.random() < self.net.loss:
            return
        copies = 2 if self.rng.random() < self.net.dup else 1
        for _ in range(copies):
            delay = self.rng.randint(self.net.delay_ms_min, self.net.delay_ms_max)
            self.at(self.now + delay, dst, FrameReceived(src, send.data))

    def run_until(self, t_end: int) -> None:
        while self._heap and self._heap[0][0] <= t_end:
            t, _, node, event = heapq.heappop(self._heap)
            self.now = t
            if node in self.down:
                continue
            if isinstance(event, Tick):
                if self._wake.get(node) != t:
                    continue  # superseded by an earlier wake-up
                del self._wake[node]
            self.handle(node, event)
        self.now = max(self.now, t_end)

    def run_until_true(self, pred: Callable[[], bool], t_max: int, step_ms: int = 10) -> int | None:
        """Run in steps until pred() holds; the time it first held, or None by t_max."""
        while self.now <= t_max:
            if pred():
                return self.now
            self.run_until(self.now + step_ms)
        return None

    # --- actions and views ---------------------------------------------------------------------

    def change(self, node: str, payload: bytes) -> None:
        self.handle(node, LocalChanged(delta=self.feeds[node].commit(payload)))

    def doc_add(self, node: str, elem: bytes) -> None:
        self.docs[node].add(elem)
        self.handle(node, LocalChanged(doc_changed=True))

    def stop(self, node: str) -> None:
        """The node goes silent: no ticks, frames to and from it vanish."""
        self.down.add(node)

    def live(self) -> list[str]:
        return [p for p in self.ids if p not in self.down]

    def converged(self, nodes: list[str] | None = None) -> bool:
        nodes = self.live() if nodes is None else nodes
        first = nodes[0]
        return all(self.feeds[p].heads == self.feeds[first].heads and self.docs[p].elems == self.docs[first].elems
                   for p in nodes[1:])

    def view(self, observer: str, peer: str) -> Liveness:
        return self.nodes[observer].liveness()[peer]

    def ever(self, peer: str, state: Liveness, observers: list[str] | None = None) -> bool:
        return any(p == peer and s is state and (observers is None or o in observers)
                   for _, o, p, s, _ in self.liveness_log)


def signed_member(state: Liveness, peer: str, incarnation: int, origin: str = "") -> MemberRecord:
    """A record as an honest node would send it: the peer's own signed statement, or a suspicion
    or verdict carrying the peer's (alive) statement at that incarnation as proof."""
    own = own_member_record(named_key(peer), state if state in OWN_STATES else Liveness.ALIVE, incarnation)
    return MemberRecord(state, peer, incarnation, origin, own.own, own.sig)


def signed_presence(peer: str, incarnation: int, pseq: int, disk: int = 10**9, score: float = 0.5,
                    endpoints: tuple[str, ...] = (), host_class: str = "", asleep: bool = False,
                    remaining_ms: int = 10**6) -> PresenceRecord:
    p = issue_presence(named_key(peer), incarnation, pseq, disk, score, endpoints, host_class, asleep)
    return replace(p, remaining_ms=remaining_ms)

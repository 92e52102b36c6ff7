"""What a compromised member can make with the project's own libraries: decisions signed by its own
key that no check of ours would write, mesh records about other hosts signed by the wrong key, an
equivocating feed, and a feed delta past the limits. Used by the ``byzantine-member`` scenario and
by the adversarial tests (``tests/agent/raw_decisions.py`` re-exports ``write_raw``).

Nothing here is reachable from the agent: these are the rogue's tools, built on private parts of
the cores on purpose (``FleetDoc._mutable``, ``Feed._overlay``), because a rogue would too.
"""

from __future__ import annotations

import msgpack

from crdt.decision_ops import FORMAT as DECISION_FORMAT
from crdt.decision_ops import make_op
from crdt.decision_sync import FORMAT as SYNC_FORMAT
from crdt.feed import Delta, Feed, SignedHead, digest_of, encode_delta
from crdt.feedset import FeedSet, OwnFeed
from crdt.fleetdoc import FleetDoc
from crdt.hlc import hlc_next
from crdt.identity import NodeKey
from mesh.core.frames import INCARNATION_MAX, MemberRecord, PresenceRecord
from mesh.core.signing import member_message, presence_message
from mesh.core.types import Liveness


def write_raw(doc: FleetDoc, key: NodeKey, kind: str, body: dict, at_ms: int) -> bool:
    """Sign one op by ``key`` on top of ``doc``'s heads and insert it; True when it was stored."""
    log = doc._mutable()
    seq = max((log.nodes[h].vc.get(key.public, 0) for h in log.heads), default=0) + 1
    prev = log.chains[key.public][seq - 2] if seq > 1 else None
    parents = set(log.heads) | ({prev.op.hash} if prev is not None else set())
    at_ms = max(at_ms, prev.op.at_ms) if prev is not None else at_ms  # an author's clock never goes back
    op = make_op(key, seq=seq, parents=sorted(parents), at_ms=at_ms, kind=kind, body=body)
    return bool(log.insert(op))


def next_ops(doc: FleetDoc, key: NodeKey, kind: str, bodies: list[dict], at_ms: int) -> list[bytes]:
    """Ops chained after ``key``'s last op in ``doc`` that are *not* inserted there (the rogue's
    own replica would refuse them: past its budget, or a second op at a taken seq)."""
    log = doc._log
    chain = log.chains.get(key.public, [])
    parents = [chain[-1].op.hash] if chain else sorted(log.heads)
    seq, wires = len(chain) + 1, []
    at = max(at_ms, chain[-1].op.at_ms) if chain else at_ms
    for body in bodies:
        op = make_op(key, seq=seq, parents=parents, at_ms=at, kind=kind, body=body)
        wires.append(op.wire)
        parents, seq = [op.hash], seq + 1
    return wires


def unstorable_ops(doc: FleetDoc, key: NodeKey, stranger: NodeKey, at_ms: int) -> list[bytes]:
    """Ops every replica refuses to store: a tampered signature, an author nobody admitted, one
    over the op size limit (packed by hand: ``make_op`` refuses to sign it)."""
    log = doc._log
    parents = sorted(log.heads)
    seq = max(log.nodes[h].vc.get(key.public, 0) for h in parents) + 1
    good = make_op(key, seq=seq, parents=parents, at_ms=at_ms, kind="pin",
                   body={"content": "sneaky", "min": 1, "max": None})
    wire = bytearray(good.wire)
    wire[-5] ^= 0xFF  # the signature no longer verifies
    alien = make_op(stranger, seq=1, parents=parents, at_ms=at_ms, kind="pin",
                    body={"content": "stranger", "min": 1, "max": None})
    huge_body = [DECISION_FORMAT, key.public, seq, list(parents), at_ms, "pin",
                 {"content": "x" * 2000, "blob": b"\0" * 250}]
    huge_packed = msgpack.packb(huge_body, use_bin_type=True) + b"\0" * (300 * 1024)
    huge = msgpack.packb([huge_packed, key.sign(b"whatever")], use_bin_type=True)
    return [bytes(wire), alien.wire, huge]


def raw_sync_message(wires: list[bytes]) -> bytes:
    """A decision sync message carrying just these ops (no heads, no vector, no wants)."""
    return msgpack.packb([SYNC_FORMAT, [], [], [], wires], use_bin_type=True)


def forged_left(rogue: NodeKey, victim: str) -> MemberRecord:
    """"``victim`` left, at the highest incarnation" — signed by the rogue, not the victim."""
    sig = rogue.sign(member_message(victim, INCARNATION_MAX, Liveness.LEFT.rank))
    return MemberRecord(Liveness.LEFT, victim, INCARNATION_MAX, "", Liveness.LEFT, sig)


def forged_dead(rogue: NodeKey, victim: str, incarnation: int) -> MemberRecord:
    """A death verdict carrying a forged "alive" statement of the victim at its incarnation."""
    sig = rogue.sign(member_message(victim, incarnation, Liveness.ALIVE.rank))
    return MemberRecord(Liveness.DEAD, victim, incarnation, rogue.peer_id, Liveness.ALIVE, sig)


def forged_presence(rogue: NodeKey, victim: str) -> PresenceRecord:
    """The victim's presence frozen at the maximum: no disk, portable, asleep."""
    body = msgpack.packb([victim, INCARNATION_MAX, 2**62, 0, 0.0, [], "portable", True])
    return PresenceRecord(victim, INCARNATION_MAX, 2**62, 0, 0.0, (), "portable", True,
                          rogue.sign(presence_message(body)), body, 10**9)


def own_copy(key: NodeKey, feed: Feed) -> OwnFeed:
    """A writer over a private copy of ``key``'s own feed (from its full snapshot)."""
    fs = FeedSet()
    fs.apply_delta(encode_delta(feed.delta_since(-1)))
    return OwnFeed(key, fs)


def feed_forks(key: NodeKey, feed: Feed, entries: list[tuple[str, bytes]], now_ms: int) -> list[bytes]:
    """One delta per entry, all at the same next version of ``key``'s feed: an equivocation."""
    out = []
    for k, v in entries:
        fork = own_copy(key, feed)
        fork.put(k, v)
        data = fork.commit(now_ms)
        assert data is not None
        out.append(data)
    return out


def oversized_delta(key: NodeKey, feed: Feed, n_entries: int, value: bytes, now_ms: int) -> bytes:
    """A correctly signed delta of ``key``'s feed past the feed limits (``OwnFeed`` refuses to
    make one: this builds the head by hand)."""
    f = own_copy(key, feed).feed
    assert f is not None
    version = hlc_next(f.version, now_ms)
    stamped = {f"over/{i}": (version, value) for i in range(n_entries)}
    overlay = f._overlay(stamped, f.gc_version)
    head = SignedHead.sign(key, version, f.gc_version, overlay.count, digest_of(overlay.acc))
    entries = tuple(sorted((k, version, v) for k, (_, v) in stamped.items()))
    return encode_delta(Delta(key.public, f.version, False, entries, head))

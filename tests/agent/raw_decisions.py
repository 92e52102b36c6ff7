"""Decisions no check of ours would write — signed ops made straight with ``make_op``, as an older
or newer build or a misbehaving member could — put into a replica directly (tests only)."""

from __future__ import annotations

from crdt.decision_ops import make_op
from crdt.fleetdoc import FleetDoc
from crdt.identity import NodeKey


def write_raw(doc: FleetDoc, key: NodeKey, kind: str, body: dict, at_ms: int) -> bool:
    """Sign one op by ``key`` on top of ``doc``'s heads and insert it; True when it was stored."""
    log = doc._mutable()
    seq = max((log.nodes[h].vc.get(key.public, 0) for h in log.heads), default=0) + 1
    prev = log.chains[key.public][seq - 2] if seq > 1 else None
    parents = set(log.heads) | ({prev.op.hash} if prev is not None else set())
    at_ms = max(at_ms, prev.op.at_ms) if prev is not None else at_ms  # an author's clock never goes back
    op = make_op(key, seq=seq, parents=sorted(parents), at_ms=at_ms, kind=kind, body=body)
    return bool(log.insert(op))

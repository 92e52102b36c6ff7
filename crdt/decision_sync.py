"""Syncing the decision log between two replicas (pure).

One message shape both ways: ``[FORMAT, heads, version vector, wants, ops]``. The version vector
(author → highest seq held) says exactly what the sender holds, because each author's ops form a
chain; so the receiver answers with precisely the ops the sender lacks, oldest (shallowest) first,
within the byte budget — a brand-new replica catches up in one exchange, a lagging one gets only
its gap (IPFS Cluster's joiners replayed whole DAGs; this never does). ``wants`` names hashes the
sender heard of but does not hold (an orphan's parents, a head it does not know): the only way an
equivocating author's second branch reaches a replica that already holds the first.

A replica stops answering once it has told the peer its current heads and has nothing the peer
lacks (the mesh core restarts a stalled exchange by
``forget``-ting the peer when its anti-entropy digest still differs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack

from crdt.decision_log import DecisionLog
from crdt.decision_ops import HASH_BYTES, OP_BYTES_MAX, Op, decode_op, hash_of_wire
from crdt.identity import PUBLIC_KEY_BYTES
from tva.errors import DecodeError, RemoteDataError, TooLarge

FORMAT = 1
HEADS_MAX = 256
WANTS_MAX = 256
AUTHORS_MAX = 4096
OPS_PER_MESSAGE_MAX = 4096
_OVERHEAD_BYTES = 64


@dataclass
class PeerSync:
    their_vc: dict[bytes, int] | None = None
    their_heads: tuple[bytes, ...] | None = None
    sent_heads: tuple[bytes, ...] | None = None
    sent: dict[bytes, int] = field(default_factory=dict)  # author -> highest seq sent since their report
    asked: list[bytes] = field(default_factory=list)  # hashes they want from us


def encode(heads: list[bytes], vc: dict[bytes, int], wants: list[bytes], ops: list[Op]) -> bytes:
    return msgpack.packb([FORMAT, heads, [[a, s] for a, s in sorted(vc.items())], wants,
                          [op.wire for op in ops]], use_bin_type=True)


def decode(data: bytes, bytes_max: int) -> tuple[tuple[bytes, ...], dict[bytes, int], list[bytes], list[bytes]]:
    if not isinstance(data, bytes):
        raise DecodeError("a decision sync message must be bytes")
    if len(data) > bytes_max:
        raise TooLarge(f"a decision sync message of {len(data)} bytes, limit {bytes_max}")
    try:
        msg = msgpack.unpackb(data, raw=False, use_list=True, max_bin_len=OP_BYTES_MAX + 128, max_str_len=16,
                              max_array_len=max(OPS_PER_MESSAGE_MAX, AUTHORS_MAX), max_map_len=0, max_ext_len=0)
    except Exception:
        raise DecodeError("a decision sync message does not decode") from None
    if not isinstance(msg, list) or len(msg) < 5 or msg[0] != FORMAT:
        raise DecodeError("a decision sync message has an unknown structure or version")
    heads, vc_list, wants, ops = msg[1:5]
    if not (isinstance(heads, list) and len(heads) <= HEADS_MAX and _hashes_ok(heads)
            and isinstance(wants, list) and len(wants) <= WANTS_MAX and _hashes_ok(wants)
            and isinstance(vc_list, list) and len(vc_list) <= AUTHORS_MAX
            and isinstance(ops, list) and len(ops) <= OPS_PER_MESSAGE_MAX
            and all(isinstance(o, bytes) for o in ops)):
        raise DecodeError("a decision sync message has malformed fields")
    vc: dict[bytes, int] = {}
    for entry in vc_list:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], bytes)
                and len(entry[0]) == PUBLIC_KEY_BYTES and type(entry[1]) is int and 0 < entry[1] < 2**40):
            raise DecodeError("a decision sync message has a malformed version vector")
        vc[entry[0]] = entry[1]
    return tuple(heads), vc, wants, ops


def _hashes_ok(items: list) -> bool:
    return all(isinstance(h, bytes) and len(h) == HASH_BYTES for h in items)


class Syncer:
    """Per-peer sync state over one log; ``message_for`` and ``receive`` are the protocol."""

    def __init__(self, log: DecisionLog, *, bytes_max: int, peers_max: int = 1024) -> None:
        self.log = log
        self.before_insert = lambda: None  # the owner may swap in a private copy of a shared log
        self.bytes_max = bytes_max
        self.peers_max = peers_max
        self.peers: dict[str, PeerSync] = {}

    @property
    def refused(self) -> dict[bytes, str]:
        """Op hash -> why it was refused (the log's negative cache: not re-verified)."""
        return self.log.refused

    def forget(self, peer: str) -> None:
        self.peers.pop(peer, None)

    def _state(self, peer: str) -> PeerSync:
        st = self.peers.get(peer)
        if st is None:
            while len(self.peers) >= self.peers_max:
                self.peers.pop(next(iter(self.peers)))
            st = self.peers[peer] = PeerSync()
        return st

    def vector(self) -> dict[bytes, int]:
        return {a: len(chain) for a, chain in self.log.chains.items()}

    def message_for(self, peer: str) -> bytes | None:
        log, st = self.log, self._state(peer)
        heads = sorted(log.heads)
        wants = log.missing()[:WANTS_MAX]
        if st.their_heads is not None:
            wants += [h for h in st.their_heads if h not in log.nodes and h not in log.orphans
                      and h not in self.refused][: WANTS_MAX - len(wants)]
        ops = self._ops_they_lack(st)
        if not ops and not wants and tuple(heads) == st.sent_heads:
            return None  # they have been told our heads, and we owe them nothing
        budget = self.bytes_max - _OVERHEAD_BYTES - (len(heads) + len(wants)) * 36 - len(log.chains) * 44
        chosen: list[Op] = []
        for op in ops:
            cost = op.size + 8
            if cost > budget or len(chosen) >= OPS_PER_MESSAGE_MAX:
                break
            budget -= cost
            chosen.append(op)
            if op.seq > st.sent.get(op.author, 0):
                st.sent[op.author] = op.seq
        st.asked = []
        st.sent_heads = tuple(heads)
        return encode(heads, self.vector(), wants, chosen)

    def _ops_they_lack(self, st: PeerSync) -> list[Op]:
        log = self.log
        picked: dict[bytes, Op] = {}
        for h in st.asked:
            node = log.nodes.get(h)
            if node is not None:
                picked[h] = node.op
        their_vc = st.their_vc
        if their_vc is None and st.their_heads is not None and all(h in log.nodes for h in st.their_heads):
            their_vc = {}  # every head they told us of is ours: their vector is those heads' merged
            for h in st.their_heads:
                for a, n in log.nodes[h].vc.items():
                    their_vc[a] = max(their_vc.get(a, 0), n)
        if their_vc is not None:
            for author, chain in log.chains.items():
                have = max(their_vc.get(author, 0), st.sent.get(author, 0))
                for node in chain[have:]:
                    picked[node.op.hash] = node.op
            for author, forks in log.forks.items():
                for node in forks:
                    if node.op.seq > their_vc.get(author, 0):
                        picked[node.op.hash] = node.op
        return sorted(picked.values(), key=lambda op: (log.nodes[op.hash].depth, op.hash))

    def receive(self, peer: str, data: bytes) -> tuple[bool, dict[str, int]]:
        """Apply a peer's message: (changed, refusals by reason). Raises RemoteDataError only when
        the message itself is malformed; a refused op is counted and the rest still apply."""
        heads, vc, wants, ops = decode(data, self.bytes_max)
        st = self._state(peer)
        refused: dict[str, int] = {}
        changed = False
        for wire in ops:
            try:
                h = hash_of_wire(wire)  # most ops a replica hears it holds already: skip those cheaply
                if h in self.refused:
                    refused["repeated"] = refused.get("repeated", 0) + 1
                    continue
                if h in self.log.nodes or h in self.log.orphans:
                    self.log.stats.duplicates += 1
                    continue
                op = decode_op(wire)
            except RemoteDataError as exc:
                refused[type(exc).__name__] = refused.get(type(exc).__name__, 0) + 1
                continue
            self.before_insert()
            try:
                if self.log.insert(op):
                    changed = True
            except RemoteDataError as exc:
                why = type(exc).__name__
                refused[why] = refused.get(why, 0) + 1
                self.log.remember_refused(op.hash, why)
        st.their_vc, st.their_heads, st.sent = vc, heads, {}
        st.asked = [h for h in wants if h in self.log.nodes]
        for why, n in refused.items():
            self.log.stats.refused[why] = self.log.stats.refused.get(why, 0) + n
        return changed, refused

"""The decision log: a DAG of signed ops, and who may do what in each op's causal past (pure).

Two questions decide an op's fate, both functions of its causal past only (its ancestors, which
are always present before it is inserted), so every honest replica answers them identically
whatever order ops arrive in:

1. **Stored?** (``insert`` refuses it otherwise, for everyone alike) — it is well-formed and
   signed; its author's previous op is one of its parents; its author is the owner, or was
   admitted and not revoked in its causal past (so a revoked key's changes made after it saw its
   revocation never enter the log, and a key nobody admitted writes nothing); and it stays within
   the budgets (ops and bytes per author, a rate per author, bytes of the whole causal past).
2. **Effective?** (``Node.valid``) — its kind is one this build knows, its body is well-formed,
   and its author held the right for it (``crdt.decision_rules``). A stored but ineffective op
   still syncs (a newer build may understand it), it simply changes nothing here.

An op concurrent with its author's revocation (neither saw the other) may stand: that is the
documented causal semantics. Equivocation (two ops with one author and seq, possible only with a
cloned or compromised key) is stored, counted and reported; it makes version vectors ambiguous for
that author, so ancestry tests fall back to a graph search there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crdt import decision_rules as rules
from crdt.decision_ops import Op
from tva.errors import DecodeError, ForeignFleet, RemoteDataError, TooLarge

# Budgets: deterministic (functions of an op's causal past), so a change over one is refused by
# every replica alike. A household writes a handful of decisions a day; these bound what one
# rogue member can make every replica store.
# (A household makes tens of decisions a week: 100,000 ops is decades of pins; the hourly rate
# still lets a script pin a whole library at once.)
AUTHOR_OPS_MAX = 100_000
AUTHOR_BYTES_MAX = 32 * 1024 * 1024
RATE_OPS = 2_000  # at most this many ops by one author …
RATE_WINDOW_MS = 3_600_000  # … within any hour of its own clock
STATE_BYTES_MAX = 128 * 1024 * 1024  # the causal past of any op
ORPHANS_MAX = 4_096  # ops held until their parents arrive
ORPHAN_BYTES_MAX = 8 * 1024 * 1024
REFUSED_REMEMBERED_MAX = 4096  # hashes of refused ops (a negative cache: never re-verified nor asked for)


class Unauthorized(RemoteDataError):
    """An op whose author may not write here (not admitted, revoked in its past, or over budget)."""


@dataclass(eq=False)
class Node:
    """One stored op and what its causal past says of it. Immutable once stored, and the same on
    every replica that stores the op — so replicas in one process (the simulator) may share them."""

    op: Op
    depth: int
    vc: dict[bytes, int]  # author -> highest seq in the causal past, this op included
    chain_bytes: int  # bytes of the author's ops up to and including this one
    past_bytes: int  # bytes of the whole causal past, this op included
    valid: bool = False
    why: str = ""
    parsed: object = None  # the body as crdt.decision_rules.parse_body read it


@dataclass
class Stats:
    inserted: int = 0
    duplicates: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    ineffective: dict[str, int] = field(default_factory=dict)
    orphans_dropped: int = 0
    equivocations: int = 0

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1


class DecisionLog:
    def __init__(self, *, expected_fleet_id: str | None = None) -> None:
        self.expected_fleet_id = expected_fleet_id
        self.genesis: Node | None = None
        self.nodes: dict[bytes, Node] = {}
        self.order: list[bytes] = []
        self.heads: set[bytes] = set()
        self.chains: dict[bytes, list[Node]] = {}  # author -> its ops by seq (first seen per seq)
        self.forks: dict[bytes, list[Node]] = {}  # author -> further ops at an already-taken seq
        self.fork_seq: dict[bytes, int] = {}  # author -> lowest equivocated seq
        self.orphans: dict[bytes, Op] = {}
        self.orphan_bytes = 0
        self.refused: dict[bytes, str] = {}  # op hash -> why; ops chained on a refused op are refused too
        self.stats = Stats()
        self.state = rules.State(self)
        self.bytes = 0

    def copy(self) -> DecisionLog:
        """An independent replica holding the same ops (nodes are shared: they never change)."""
        new = DecisionLog.__new__(DecisionLog)
        new.expected_fleet_id, new.genesis = self.expected_fleet_id, self.genesis
        new.nodes, new.order, new.heads = dict(self.nodes), list(self.order), set(self.heads)
        new.chains = {a: list(c) for a, c in self.chains.items()}
        new.forks = {a: list(c) for a, c in self.forks.items()}
        new.fork_seq, new.orphans, new.orphan_bytes = dict(self.fork_seq), dict(self.orphans), self.orphan_bytes
        new.refused = dict(self.refused)
        new.stats, new.bytes = Stats(), self.bytes
        new.state = self.state.copy(new)
        return new

    # --- reading ------------------------------------------------------------------------------

    @property
    def fleet_id(self) -> str | None:
        return rules.fleet_id_of(self.genesis.op) if self.genesis else None

    @property
    def owner(self) -> bytes | None:
        return self.genesis.op.author if self.genesis else None

    def missing(self) -> list[bytes]:
        """Parents orphans wait for (what to ask peers for); never one refused here."""
        want = {p for op in self.orphans.values() for p in op.parents if p not in self.nodes}
        return sorted(h for h in want if h not in self.orphans and h not in self.refused)

    def is_ancestor(self, x: Node, of: Node) -> bool:
        """Is ``x`` in the causal past of ``of`` (``of`` itself included)? Exact."""
        if x is of:
            return True
        a, s = x.op.author, x.op.seq
        if of.vc.get(a, 0) < s:
            return False
        if a == of.op.author and s >= of.op.seq:
            return False  # another op at the same seq: ``of`` may be an equivocation not yet stored

        if self.fork_seq.get(a, s + 1) > s:
            return True  # no equivocation at or below s: the version vector is exact
        return self._search(x, of)

    def _search(self, x: Node, of: Node) -> bool:
        a, s, stack, seen = x.op.author, x.op.seq, [of], set()
        while stack:
            n = stack.pop()
            for p in n.op.parents:
                if p == x.op.hash:
                    return True
                pn = self.nodes[p]
                if p not in seen and pn.depth > x.depth and pn.vc.get(a, 0) >= s:
                    seen.add(p)
                    stack.append(pn)
        return False

    # --- inserting ----------------------------------------------------------------------------

    def insert(self, op: Op) -> list[Node]:
        """Insert a verified op (and any orphans it completes). Returns the nodes added, in order;
        [] for a duplicate or an op parked until its parents arrive. Raises RemoteDataError
        (ForeignFleet, Unauthorized, DecodeError, TooLarge) for an op refused; the log is unchanged."""
        if op.hash in self.nodes:
            self.stats.duplicates += 1
            return []
        if not op.parents:
            return self._insert_genesis(op)
        if self.genesis is None or any(p not in self.nodes for p in op.parents):
            self._park(op)
            return []
        added = [self._insert_ready(op)]
        added += self._drain_orphans()
        return added

    def check(self, op: Op) -> str:
        """Why ``op`` (whose parents are all present) would be ineffective; "" when effective.
        Raises as ``insert`` would if it would be refused. Changes nothing."""
        node = self._node_for(op)
        return rules.why_invalid(self.state, node)

    def _insert_genesis(self, op: Op) -> list[Node]:
        if self.genesis is not None:
            raise ForeignFleet("a second genesis (another fleet's root) was refused")
        why = rules.genesis_problem(op)
        if why:
            raise DecodeError(f"not a fleet genesis: {why}")
        fid = rules.fleet_id_of(op)
        if self.expected_fleet_id is not None and fid != self.expected_fleet_id:
            raise ForeignFleet(f"a genesis of fleet {fid}, expected {self.expected_fleet_id}")
        node = Node(op, 1, {op.author: 1}, op.size, op.size, valid=True)
        self.genesis = node
        self._store(node)
        return [node, *self._drain_orphans()]

    def _node_for(self, op: Op) -> Node:
        """Build (not store) the node of an op whose parents are present; raise if it is refused."""
        parents = [self.nodes[p] for p in op.parents]
        vc: dict[bytes, int] = {}
        for p in parents:
            for a, s in p.vc.items():
                if s > vc.get(a, 0):
                    vc[a] = s
        prev_seq = vc.get(op.author, 0)
        if op.seq != prev_seq + 1:
            raise DecodeError(f"seq {op.seq} does not follow its author's {prev_seq} in its causal past")
        prev = None
        if op.seq > 1:
            prev = next((p for p in parents if p.op.author == op.author and p.op.seq == prev_seq), None)
            if prev is None:
                raise DecodeError("a decision change must name its author's previous change as a parent")
            if op.at_ms < prev.op.at_ms:
                raise DecodeError("a decision change is older than its author's previous one")
        vc[op.author] = op.seq
        chain_bytes = (prev.chain_bytes if prev else 0) + op.size
        node = Node(op, 1 + max(p.depth for p in parents), vc, chain_bytes, self._past_bytes(vc, op, prev))
        self._check_budget(node, prev)
        if not self._may_write(node):
            raise Unauthorized("the author was not a member (admitted, not revoked) in the change's causal past")
        return node

    def _past_bytes(self, vc: dict[bytes, int], op: Op, prev: Node | None) -> int:
        total = 0
        for a, s in vc.items():
            if a == op.author:
                total += (prev.chain_bytes if prev else 0) + op.size
            else:
                chain = self.chains.get(a, [])
                if s <= len(chain) and self.fork_seq.get(a, s + 1) > s:
                    total += chain[s - 1].chain_bytes
                else:  # equivocated author: any branch's chain bytes bound it (budget, not identity)
                    total += max((n.chain_bytes for n in (*chain, *self.forks.get(a, ())) if n.op.seq == s),
                                 default=0)
        return total

    def _check_budget(self, node: Node, prev: Node | None) -> None:
        op = node.op
        if op.seq > AUTHOR_OPS_MAX:
            raise TooLarge(f"an author may make at most {AUTHOR_OPS_MAX} decision changes")
        if node.chain_bytes > AUTHOR_BYTES_MAX:
            raise TooLarge(f"an author's decision changes may take at most {AUTHOR_BYTES_MAX} bytes")
        if node.past_bytes > STATE_BYTES_MAX:
            raise TooLarge(f"the fleet's decisions may take at most {STATE_BYTES_MAX} bytes")
        if op.seq > RATE_OPS:
            back = self._chain_op(op.author, op.seq - RATE_OPS, node)
            if back is not None and op.at_ms - back.op.at_ms < RATE_WINDOW_MS:
                raise TooLarge(f"an author may make at most {RATE_OPS} decision changes an hour")

    def _chain_op(self, author: bytes, seq: int, start: Node) -> Node | None:
        """The author's op at ``seq`` in ``start``'s past, following the author's own chain."""
        chain = self.chains.get(author, [])
        if seq <= len(chain) and self.fork_seq.get(author, seq + 1) > seq:
            return chain[seq - 1]  # no equivocation up to there: the chain is the author's only one
        node: Node | None = start
        while node is not None and node.op.seq > seq:
            node = next((self.nodes[p] for p in node.op.parents
                         if self.nodes[p].op.author == author and self.nodes[p].op.seq == node.op.seq - 1), None)
        return node

    def _may_write(self, node: Node) -> bool:
        author = node.op.author
        if author == self.owner:
            return True
        state = self.state
        if any(self.is_ancestor(r, node) for r in state.revokes_of(author)):
            return False
        return any(self.is_ancestor(a, node) for a in state.admits_of(author))

    def _insert_ready(self, op: Op) -> Node:
        node = self._node_for(op)
        why = rules.why_invalid(self.state, node)
        node.valid, node.why = not why, why
        self._store(node)
        if why:
            self.stats.ineffective[why] = self.stats.ineffective.get(why, 0) + 1
        return node

    def _store(self, node: Node) -> None:
        op = node.op
        self.nodes[op.hash] = node
        self.order.append(op.hash)
        self.bytes += op.size
        self.heads.difference_update(op.parents)
        self.heads.add(op.hash)
        chain = self.chains.setdefault(op.author, [])
        if op.seq == len(chain) + 1:
            chain.append(node)
        else:
            self.forks.setdefault(op.author, []).append(node)
            self.fork_seq[op.author] = min(self.fork_seq.get(op.author, op.seq), op.seq)
            self.stats.equivocations += 1
        self.stats.inserted += 1
        if node.valid:
            self.state.apply(node)

    def remember_refused(self, h: bytes, why: str) -> None:
        """``h`` was refused: it is never asked for, and ops chained on it are dropped, not kept
        waiting (a rogue's flood past its budget once kept every pair of replicas asking each
        other for the first op past it for ever)."""
        gone = [h]
        waiting: dict[bytes, list[bytes]] = {}
        if any(h in op.parents for op in self.orphans.values()):
            for oh, op in self.orphans.items():
                for p in op.parents:
                    waiting.setdefault(p, []).append(oh)
        while gone:
            g = gone.pop()
            if len(self.refused) >= REFUSED_REMEMBERED_MAX:
                self.refused.pop(next(iter(self.refused)))
            self.refused[g] = why
            for oh in waiting.pop(g, ()):
                op = self.orphans.pop(oh, None)
                if op is not None:
                    self.orphan_bytes -= op.size
                    self.stats.orphans_dropped += 1
                    gone.append(oh)

    def _park(self, op: Op) -> None:
        if op.hash in self.orphans:
            self.stats.duplicates += 1
            return
        refused = next((self.refused[p] for p in op.parents if p in self.refused), None)
        if refused is not None:  # it can never be stored
            self.stats.orphans_dropped += 1
            self.remember_refused(op.hash, refused)
            return
        while self.orphans and (len(self.orphans) >= ORPHANS_MAX or self.orphan_bytes + op.size > ORPHAN_BYTES_MAX):
            oldest = next(iter(self.orphans))
            self.orphan_bytes -= self.orphans.pop(oldest).size
            self.stats.orphans_dropped += 1
        self.orphans[op.hash] = op
        self.orphan_bytes += op.size

    def _drain_orphans(self) -> list[Node]:
        added: list[Node] = []
        progress = True
        while progress and self.orphans and self.genesis is not None:
            progress = False
            for h, op in list(self.orphans.items()):
                if all(p in self.nodes for p in op.parents):
                    del self.orphans[h]
                    self.orphan_bytes -= op.size
                    progress = True
                    try:
                        added.append(self._insert_ready(op))
                    except RemoteDataError as exc:
                        self.stats.refuse(type(exc).__name__)
                        self.remember_refused(h, type(exc).__name__)
        return added

"""Decisions under any delivery order, duplication, delay and a rogue author (hypothesis).

Five authors each hold a replica. Rules let them write through the real API (refused locally when
they lack the right), forge ops straight from ``make_op`` (beyond their rights, with back-dated
parents, equivocating, after being revoked), and deliver any op to any replica in any order, any
number of times, or sync two replicas through the real sync messages. Checked throughout: every
replica stores only ops whose author was a member in their causal past, and never lets an op take
effect whose author lacked the right there — both judged by a brute-force reference written here,
not by the code under test. Checked at every convergence point: replicas fed the same ops in
different orders hold identical stored sets, identical effective sets and identical documents.
"""

from __future__ import annotations

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from crdt.decision_log import DecisionLog
from crdt.decision_ops import Op, make_op
from crdt.fleetdoc import FleetDoc
from crdt.identity import NodeKey
from tva.errors import InvalidInput, LocalError, RemoteDataError

KEYS = [NodeKey(bytes([i + 1]) * 32) for i in range(5)]
PEERS = [k.peer_id for k in KEYS]
CONTENTS = ["a", "b"]
SUBNETS = ["10.7.0.0/24", "192.168.9.0/24", "8.8.8.0/24"]
ADMIN_KINDS = ("admit", "grant", "setting", "friend", "unfriend", "psk")


def document(doc: FleetDoc) -> tuple:
    return (doc.pins(), doc.overrides(), doc.admissions(), doc.revocations(), doc.settings(), doc.friends(),
            doc.members(), doc.roles(), doc.redeemed(), doc.psk_rotation())


# --- a brute-force reference of the rules (independent of the version-vector code) ----------------


def ancestors(log: DecisionLog, h: bytes) -> set[bytes]:
    seen, stack = set(), [h]
    while stack:
        for p in log.nodes[stack.pop()].op.parents:
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return seen


def reference_role(log: DecisionLog, author: bytes, past: set[bytes]) -> int:
    """The author's role given the effective ops in ``past``: owner 3, admin 2, member 1, none 0."""
    if author == log.owner:
        return 3
    peer = KEYS[[k.public for k in KEYS].index(author)].peer_id if author in [k.public for k in KEYS] else None
    ops = [log.nodes[h] for h in past if log.nodes[h].valid]
    if any(n.op.kind == "revoke" and n.op.body.get("peer") == peer for n in ops):
        return 0
    role_ops = [n for n in ops if n.op.kind in ("admit", "grant") and n.op.body.get("peer") == peer]
    frontier = [n for n in role_ops
                if not any(m is not n and n.op.hash in ancestors(log, m.op.hash) for m in role_ops)]
    names = {"admin": 2, "member": 1}
    return min((names[n.op.body["role"]] for n in frontier), default=0)


class Decisions(RuleBasedStateMachine):
    @initialize()
    def found(self) -> None:
        # the owner admits an admin and two members; KEYS[4] stays an outsider until someone admits it
        founder = FleetDoc.genesis("home", KEYS[0], "founder", 1, b"\x07" * 16)
        founder.admit(PEERS[1], "h1", "admin", None, 2)
        founder.admit(PEERS[2], "h2", "member", None, 3)
        founder.admit(PEERS[3], "h3", "member", None, 4)
        self.fid = founder.fleet_id
        self.docs = [founder] + [FleetDoc.load(founder.save(), k, expected_fleet_id=self.fid) for k in KEYS[1:]]
        self.pool: list[Op] = list(founder.ops())
        self.now = 10

    def _tick(self) -> int:
        self.now += 1
        return self.now

    # --- writes through the API: refused locally exactly when others would refuse --------------

    @rule(a=st.integers(0, 4), t=st.integers(0, 4), role=st.sampled_from(["admin", "member"]),
          kind=st.sampled_from(["admit", "grant", "revoke", "pin", "unpin", "override", "setting", "friend"]),
          c=st.sampled_from(CONTENTS), subnet=st.sampled_from(SUBNETS[:2]))
    def write(self, a: int, t: int, role: str, kind: str, c: str, subnet: str) -> None:
        doc, now, target = self.docs[a], self._tick(), PEERS[t]
        before = set(doc.heads())
        try:
            if kind == "admit":
                doc.admit(target, f"h{t}", role, f"n{now}", now)
            elif kind == "grant":
                doc.grant(target, role, now)
            elif kind == "revoke":
                doc.revoke(target, "r", now)
            elif kind == "pin":
                doc.pin(c, 1, 2, now)
            elif kind == "unpin":
                doc.unpin(c, now)
            elif kind == "override":
                doc.set_override(target, host_class="server", now_ms=now)
            elif kind == "setting":
                doc.set_setting("ipv4_subnet", subnet, now)
            else:
                doc.add_friend("otherfleet", "friends", {"peer": PEERS[0]}, now)
        except LocalError:
            assert set(doc.heads()) == before, "a refused write changed the replica"
            return
        new = [op for op in doc.ops() if op.hash not in {p.hash for p in self.pool}]
        # one effective op, or none when there was nothing to do (unpin of what is not pinned)
        assert len(new) <= 1 and all(self.docs[a]._log.nodes[op.hash].valid for op in new)
        self.pool += new

    # --- a rogue author: ops straight from make_op, beyond its rights ---------------------------

    @rule(a=st.integers(0, 4), t=st.integers(0, 4),
          kind=st.sampled_from(["admit", "grant", "revoke", "setting", "pin", "override", "psk", "nonsense"]),
          parents_mode=st.sampled_from(["heads", "heads", "own_last", "equivocate", "old"]),
          seq_skew=st.sampled_from([0, 0, 0, 0, -1, 1]), subnet=st.sampled_from(SUBNETS))
    def forge(self, a: int, t: int, kind: str, parents_mode: str, seq_skew: int, subnet: str) -> None:
        log = self.docs[a]._log
        mine = log.chains.get(KEYS[a].public, [])
        # parents: the current heads; only its own last op ("I had not seen anything since": a
        # revoked author back-dating); its second-to-last (a second op at one seq: equivocation);
        # or the genesis alone
        if parents_mode == "own_last" and mine:
            parents = {mine[-1].op.hash}
        elif parents_mode == "equivocate" and len(mine) >= 2:
            parents = {mine[-2].op.hash}
        elif parents_mode == "old":
            parents = {log.order[0]} | ({mine[-1].op.hash} if mine else set())
        else:
            parents = set(log.heads)
        vc_seq = max((log.nodes[p].vc.get(KEYS[a].public, 0) for p in parents), default=0)
        body = {"admit": {"peer": PEERS[t], "name": "x", "role": "admin", "nonce": None},
                "grant": {"peer": PEERS[t], "role": "admin"}, "revoke": {"peer": PEERS[t], "reason": ""},
                "setting": {"name": "ipv4_subnet", "value": subnet},
                "pin": {"content": "forged", "min": 1, "max": None},
                "override": {"peer": PEERS[t], "class": "seedbox", "services": None, "duty": None},
                "psk": {"epoch": 9, "sealed": {PEERS[t]: b"k" * 48}}, "nonsense": {"x": 1}}[kind]
        try:
            op = make_op(KEYS[a], seq=max(1, vc_seq + 1 + seq_skew), parents=sorted(parents),
                         at_ms=self._tick(), kind=kind, body=body)
        except InvalidInput:
            return
        self.pool.append(op)
        self._deliver(a, op)
        node = log.nodes.get(op.hash)
        event("forged op " + ("refused" if node is None else "stored, effective" if node.valid
                              else "stored, no effect"))
        if node is not None and op.author in log.fork_seq:
            event("equivocation stored")
        if node is not None and op.author != log.owner and log.state.revokes_of(op.author):
            event("op by a host revoked elsewhere stored (concurrent with its revocation)")

    # --- delivery in any order, duplicated, delayed --------------------------------------------

    def _deliver(self, r: int, op: Op) -> None:
        try:
            self.docs[r]._log.insert(op)
        except RemoteDataError:
            pass

    @rule(r=st.integers(0, 4), i=st.integers(0, 10_000))
    def deliver(self, r: int, i: int) -> None:
        self._deliver(r, self.pool[i % len(self.pool)])

    @rule(a=st.integers(0, 4), b=st.integers(0, 4))
    def sync(self, a: int, b: int) -> None:
        if a == b:
            return
        x, y = self.docs[a], self.docs[b]
        for _ in range(6):
            for src, dst, peer in ((x, y, PEERS[a]), (y, x, PEERS[b])):
                msg = src.sync_message_for(PEERS[b] if src is x else PEERS[a])
                if msg is not None:
                    dst.receive_sync_message(peer, msg)

    @precondition(lambda self: len(self.pool) > 1)
    @rule(data=st.data())
    def fresh_replicas_agree(self, data) -> None:
        """Two fresh replicas fed the whole pool in two hypothesis-chosen orders (with duplicates)
        agree with each other on everything, stored, effective and folded."""
        replicas = []
        for _ in range(2):
            order = data.draw(st.permutations(self.pool))
            dups = data.draw(st.lists(st.sampled_from(self.pool), max_size=4))
            doc = FleetDoc.empty_replica(None, expected_fleet_id=self.fid)
            for op in [*dups, *order]:
                try:
                    doc._log.insert(op)
                except RemoteDataError:
                    pass
            replicas.append(doc)
        a, b = replicas
        assert set(a._log.nodes) == set(b._log.nodes)
        assert {h for h, n in a._log.nodes.items() if n.valid} == {h for h, n in b._log.nodes.items() if n.valid}
        assert document(a) == document(b)
        assert a.heads() == b.heads()

    # --- safety, checked after every step on every replica ----------------------------------------

    @invariant()
    def only_rightful_changes(self) -> None:
        for doc in self.docs:
            log = doc._log
            for h in log.order[1:]:
                node = log.nodes[h]
                past = ancestors(log, h)
                role = reference_role(log, node.op.author, past)
                assert role > 0, "a stored op whose author was not a member in its causal past"
                if not node.valid:
                    continue
                kind, body = node.op.kind, node.op.body
                self_revoke = kind == "revoke" and body.get("peer") == PEERS[[k.public for k in KEYS].index(
                    node.op.author)]
                if kind in ADMIN_KINDS or (kind == "revoke" and not self_revoke):
                    assert role >= 2, f"a member-level author's {kind} took effect"
                if kind == "setting":
                    assert body["value"] != "8.8.8.0/24", "a public subnet took effect"
                if kind == "override" and body["peer"] != PEERS[[k.public for k in KEYS].index(node.op.author)]:
                    assert role >= 2, "a member overrode another host"

    @invariant()
    def synced_replicas_agree(self) -> None:
        by_ops: dict[frozenset, tuple] = {}
        for doc in self.docs:
            key = frozenset(doc._log.nodes)
            seen = by_ops.setdefault(key, document(doc))
            assert seen == document(doc), "two replicas with the same ops show different documents"


TestDecisions = Decisions.TestCase
TestDecisions.settings = settings(stateful_step_count=50, deadline=None)

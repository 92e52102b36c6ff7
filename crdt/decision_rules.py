"""Who may decide what, and the fleet document folded from the effective ops (pure).

Roles (a Keyhive-like capability chain without a server): the genesis author is the ``owner``;
``admin`` may admit, revoke, grant, change fleet settings, friend links and the fleet key;
``member`` may pin and unpin, and override its own host; anyone admitted may revoke itself (leave
for good). A host's role in an op's causal past is read from the admit/grant ops about it there:
those no later one supersedes (concurrent ones) count, the *lowest* role among them wins — a
concurrent demotion is never lost to a promotion.

The document: every decided key (a pin, a host's override, a setting, a friend link, the fleet
key) is a register over its effective ops; the ops no other of them supersedes are its frontier,
and the deepest (then the highest hash) of those holds — a function of the set of ops, so every
replica that holds the same ops shows the same document. Admissions are immutable (a second admit
of one host changes nothing) and revocations final (nothing re-admits a revoked key).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from crdt import fleetdoc_schema as sch
from crdt.decision_ops import Op
from crdt.identity import peer_id_from_public

if TYPE_CHECKING:
    from crdt.decision_log import DecisionLog, Node

MEMBER, ADMIN, OWNER = 1, 2, 3
ROLE_NAMES = {MEMBER: "member", ADMIN: "admin", OWNER: "owner"}
ROLE_BY_NAME = {v: k for k, v in ROLE_NAMES.items()}
GRANTABLE = ("admin", "member")
PRIVATE_V4 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
PSK_SEALED_BYTES_MAX = 128


@functools.lru_cache(maxsize=8192)
def peer_of(public: bytes) -> str:
    return peer_id_from_public(public)


def fleet_id_of(genesis: Op) -> str:
    """A fleet's id *is* its genesis: nobody can forge a second root under the same id."""
    return genesis.hash[:16].hex()


def genesis_problem(op: Op) -> str:
    body = op.body
    if op.kind != "genesis" or op.seq != 1:
        return "it is not a genesis change"
    if not sch.ok_text(body.get("name"), 64):
        return "it has no valid fleet name"
    if not isinstance(body.get("nonce"), bytes) or len(body["nonce"]) != 16:
        return "it has no 16-byte nonce"
    if not sch.ok_text(body.get("host"), 64):
        return "it does not name the founding host"
    return ""


def subnet_ok(value: object) -> bool:
    """A fleet IPv4 /24 inside RFC 1918 space: never a public range a member could hijack."""
    if not isinstance(value, str) or not sch.SETTINGS["ipv4_subnet"].fullmatch(value):
        return False
    try:
        net = ipaddress.ip_network(value)
    except ValueError:
        return False
    return net.prefixlen == 24 and any(net.subnet_of(p) for p in PRIVATE_V4)


SETTING_CHECKS = {"ipv4_subnet": subnet_ok}


# --- body checks: a parsed value, or None when malformed ------------------------------------------


def _peer(body: dict, name: str = "peer") -> str | None:
    v = body.get(name)
    return v if sch.peer_ok(v) else None


def parse_body(op: Op) -> Any:
    return parse_body_of(op.kind, op.body)


def parse_body_of(k: str, b: Any) -> Any:
    if k in ("admit", "grant", "revoke", "clear_override"):
        peer = _peer(b)
        if peer is None:
            return None
        if k == "admit":
            nonce, role = b.get("nonce"), b.get("role")
            ok = (sch.ok_text(b.get("name"), 64) and role in GRANTABLE
                  and (nonce is None or (isinstance(nonce, str) and sch.ID_RE.fullmatch(nonce))))
            return (peer, b["name"], role, nonce) if ok else None
        if k == "grant":
            return (peer, b["role"]) if b.get("role") in GRANTABLE else None
        if k == "revoke":
            reason = b.get("reason")
            return (peer, reason) if isinstance(reason, str) and (reason == "" or sch.ok_text(reason)) else None
        return peer
    if k in ("pin", "unpin"):
        content = b.get("content")
        if not sch.ok_text(content):
            return None
        if k == "unpin":
            return content
        # Any integers: whether they are usable is tva.limits' call at read time, so a pin outside
        # the limits (an older or newer build) holds its place in the register and is *reported*.
        lo, hi = b.get("min"), b.get("max")
        return (content, lo, hi) if type(lo) is int and (hi is None or type(hi) is int) else None
    if k == "override":
        peer, cls, svc, duty = _peer(b), b.get("class"), b.get("services"), b.get("duty")
        services = sch.services_parse(svc) if isinstance(svc, str) else None
        prefs = sch.duty_parse(duty) if isinstance(duty, str) else None
        if (peer is None or (cls is not None and not (isinstance(cls, str) and sch.TOKEN_RE.fullmatch(cls)))
                or (svc is not None and services is None) or (duty is not None and prefs is None)):
            return None
        return sch.Override(peer, cls, services, prefs)
    if k == "setting":
        name, value = b.get("name"), b.get("value")
        check = SETTING_CHECKS.get(name) if isinstance(name, str) else None
        return (name, value) if check is not None and check(value) else None
    if k in ("friend", "unfriend"):
        fid = b.get("fleet_id")
        if not (isinstance(fid, str) and sch.ID_RE.fullmatch(fid)):
            return None
        if k == "unfriend":
            return fid
        link = b.get("link")
        if not sch.ok_text(b.get("name"), 64) or not isinstance(link, dict) or len(link) > sch.LINK_FIELDS_MAX:
            return None
        if not all(sch.TOKEN_RE.fullmatch(f) and v is not None and not isinstance(v, bytes)
                   and (not isinstance(v, str) or len(v) <= sch.LINK_VALUE_CHARS_MAX) for f, v in link.items()):
            return None
        return (fid, b["name"], tuple(sorted(link.items())))
    if k == "psk":
        epoch, sealed = b.get("epoch"), b.get("sealed")
        if type(epoch) is not int or not 1 <= epoch <= sch.MS_MAX or not isinstance(sealed, dict):
            return None
        if not all(sch.peer_ok(p) and isinstance(v, bytes) and 0 < len(v) <= PSK_SEALED_BYTES_MAX
                   for p, v in sealed.items()):
            return None
        return (epoch, sealed)
    return None


# --- rights -----------------------------------------------------------------------------------------


def why_invalid(state: State, node: Node) -> str:
    """"" when ``node``'s op takes effect; otherwise the (counted) reason it does not."""
    op = node.op
    if op.kind == "genesis":
        return "a second genesis"
    parsed = node.parsed = parse_body(op)
    if op.kind not in KINDS:
        return "unknown kind"
    if parsed is None:
        return f"malformed {op.kind}"
    role = state.role_in_past(op.author, node)
    author = peer_of(op.author)
    k = op.kind
    if k in ("pin", "unpin"):
        return "" if role >= MEMBER else "not a member"
    if k in ("override", "clear_override"):
        target = parsed.peer if k == "override" else parsed
        return "" if role >= ADMIN or (role >= MEMBER and target == author) else "another host's override"
    if k == "revoke":
        target = parsed[0]
        if target == state.owner_peer:
            return "the owner cannot be revoked"
        return "" if role >= ADMIN or (role >= MEMBER and target == author) else "not an admin"
    if role < ADMIN:
        return "not an admin"
    if k == "admit":
        target = parsed[0]
        if target == state.owner_peer:
            return "the owner needs no admission"
        if any(state.log.is_ancestor(a, node) for a in state.admits_of_peer(target)):
            return "admissions are immutable"
        if any(state.log.is_ancestor(r, node) for r in state.revokes_of_peer(target)):
            return "revocations are final"
        return ""
    if k == "grant":
        target = parsed[0]
        if target == state.owner_peer:
            return "the owner's role is fixed"
        if not any(state.log.is_ancestor(a, node) for a in state.admits_of_peer(target)):
            return "grant to a host not admitted"
        if any(state.log.is_ancestor(r, node) for r in state.revokes_of_peer(target)):
            return "revocations are final"
        return ""
    return ""  # setting, friend, unfriend, psk: admin rights were enough


KINDS = frozenset({"admit", "grant", "revoke", "pin", "unpin", "override", "clear_override", "setting",
                   "friend", "unfriend", "psk"})


# --- the folded document ----------------------------------------------------------------------------


class State:
    """Indices and registers over the effective ops, updated as each one is inserted."""

    def __init__(self, log: DecisionLog) -> None:
        self.log = log
        self._admits: dict[str, tuple[Node, ...]] = {}  # by target peer id
        self._revokes: dict[str, tuple[Node, ...]] = {}
        self._roles: dict[str, tuple[Node, ...]] = {}  # frontier of admit/grant ops per target
        self._regs: dict[tuple, tuple[Node, ...]] = {}  # frontier per decided key
        self._role_history: dict[str, tuple[Node, ...]] = {}  # every effective admit/grant per target
        self.version = 0  # bumps on every effective op (callers cache reads on it)

    def copy(self, log: DecisionLog) -> State:
        new = State(log)
        # values are tuples: a copy shares them until either side appends
        new._admits, new._revokes = dict(self._admits), dict(self._revokes)
        new._roles, new._regs = dict(self._roles), dict(self._regs)
        new._role_history, new.version = dict(self._role_history), self.version
        return new

    @property
    def owner_peer(self) -> str | None:
        owner = self.log.owner
        return peer_of(owner) if owner else None

    # lookups by key bytes, for the log's storage rule
    def admits_of(self, author: bytes) -> tuple[Node, ...]:
        return self._admits.get(peer_of(author), ())

    def revokes_of(self, author: bytes) -> tuple[Node, ...]:
        return self._revokes.get(peer_of(author), ())

    def admits_of_peer(self, peer: str) -> tuple[Node, ...]:
        return self._admits.get(peer, ())

    def revokes_of_peer(self, peer: str) -> tuple[Node, ...]:
        return self._revokes.get(peer, ())

    def role_in_past(self, author: bytes, node: Node) -> int:
        """The author's role in ``node``'s causal past (0: none)."""
        if author == self.log.owner:
            return OWNER
        peer = peer_of(author)
        anc = self.log.is_ancestor
        if any(anc(r, node) for r in self._revokes.get(peer, ())):
            return 0
        ops = [n for n in self._role_ops(peer) if anc(n, node)]
        return _lowest_of_frontier(self.log, ops)

    def _role_ops(self, peer: str) -> Iterable[Node]:
        return self._role_history.get(peer, ())

    def apply(self, node: Node) -> None:
        k = node.op.kind
        self.version += 1
        if k == "genesis":
            return
        parsed = node.parsed
        if k == "admit":
            self._admits[parsed[0]] = (*self._admits.get(parsed[0], ()), node)
        if k in ("admit", "grant"):
            self._role_history[parsed[0]] = (*self._role_history.get(parsed[0], ()), node)
            self._roles[parsed[0]] = _advance(self.log, self._roles.get(parsed[0], ()), node)
        elif k == "revoke":
            self._revokes[parsed[0]] = (*self._revokes.get(parsed[0], ()), node)
        elif k in ("pin", "unpin"):
            self._bump(("pin", parsed if k == "unpin" else parsed[0]), node)
        elif k in ("override", "clear_override"):
            self._bump(("override", parsed if k == "clear_override" else parsed.peer), node)
        elif k == "setting":
            self._bump(("setting", parsed[0]), node)
        elif k in ("friend", "unfriend"):
            self._bump(("friend", parsed if k == "unfriend" else parsed[0]), node)
        elif k == "psk":
            self._bump(("psk",), node)

    def _bump(self, key: tuple, node: Node) -> None:
        self._regs[key] = _advance(self.log, self._regs.get(key, ()), node)

    # --- reads ------------------------------------------------------------------------------

    def winners(self, kind: str) -> dict[Any, Node]:
        out = {}
        for key, frontier in self._regs.items():
            if key[0] == kind:
                out[key[1] if len(key) > 1 else None] = _winner(frontier)
        return out

    def role_now(self, peer: str) -> int:
        if peer == self.owner_peer:
            return OWNER
        if self._revokes.get(peer):
            return 0
        return _lowest_of_frontier(self.log, list(self._roles.get(peer, ())))

    def admissions(self) -> dict[str, Node]:
        return {p: min(ns, key=_order_key) for p, ns in self._admits.items()}

    def revocations(self) -> dict[str, Node]:
        return {p: min(ns, key=_order_key) for p, ns in self._revokes.items()}


def _order_key(n: Node) -> tuple[int, bytes]:
    return (n.depth, n.op.hash)


def _winner(frontier: tuple[Node, ...]) -> Node:
    return max(frontier, key=_order_key)


def _advance(log: DecisionLog, frontier: tuple[Node, ...], node: Node) -> tuple[Node, ...]:
    """The frontier after a new op: the ones it has seen are superseded by it."""
    return (*(f for f in frontier if not log.is_ancestor(f, node)), node)


def _lowest_of_frontier(log: DecisionLog, ops: list[Node]) -> int:
    frontier = [n for n in ops if not any(m is not n and log.is_ancestor(n, m) for m in ops)]
    roles = [ROLE_BY_NAME[n.parsed[2 if n.op.kind == "admit" else 1]] for n in frontier]
    return min(roles) if roles else 0


def op_digest(ops: Iterable[Op]) -> bytes:
    """A short digest of a set of ops (tests compare replicas by it)."""
    h = hashlib.blake2b(digest_size=16)
    for o in sorted(op.hash for op in ops):
        h.update(o)
    return h.digest()

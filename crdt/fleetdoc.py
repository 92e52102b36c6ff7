"""The fleet document: what the fleet decided, as a fold of signed decision changes (pure).

Decisions — admissions, roles, revocations, pins, host overrides, settings, friend links, the fleet
key — are ops in a hash-linked DAG (``crdt.decision_ops``), each signed by its author and taking
effect only if its author held the right in its causal past (``crdt.decision_rules``). So every
decision is attributable, no member can change what others decide beyond its role, and every
replica holding the same ops shows the same document whatever order they came in.

This class is the face the rest of the agent uses: reads return the same values the automerge
document did (``Pin``, ``Override``, ``Admission``, ``Revocation``, ``FriendLink``), writes are
signed with the node's key and refused *locally* (``Forbidden``, with a hint) when the node lacks
the right — the same rule every other replica applies — and the sync methods implement the mesh
core's ``DocSync`` protocol. Pure: no clock, randomness or I/O; ``now_ms`` comes from the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import msgpack

from crdt import decision_rules as rules
from crdt import fleetdoc_schema as sch
from crdt.decision_log import DecisionLog, Unauthorized
from crdt.decision_ops import PARENTS_MAX, Op, decode_op, make_op
from crdt.decision_sync import Syncer
from crdt.fleetdoc_schema import Admission, FriendLink, Override, PeerId, Pin, Revocation
from crdt.identity import NodeKey
from tva import limits
from tva.errors import DecodeError, Forbidden, InvalidInput, NotInitialised, RemoteDataError, TooLarge

__all__ = ["Admission", "FleetDoc", "FriendLink", "Override", "Pin", "PskRotation", "Revocation"]

SAVE_FORMAT = 2  # 1 was the automerge document of tva-agent 0.1
ROLES = ("owner", "admin", "member")
_HINTS = {
    "not an admin": "only an admin may do this: ask one (`tva-agent hosts` shows roles), or have the "
                    "owner run `tva-agent grant HOST admin`",
    "not a member": "this host is not a member of the fleet (revoked, or not admitted yet)",
    "another host's override": "a member may override only its own host; an admin may override any",
    "the owner cannot be revoked": "the fleet's founder (owner) holds the root of every right",
    "admissions are immutable": "the host is admitted already; change its role with `tva-agent grant`",
    "revocations are final": "a revoked key never returns: the host must join with a new identity",
    "the owner's role is fixed": "the owner holds every right; grant roles to other hosts",
    "the owner needs no admission": "the owner is a member from the genesis on",
    "grant to a host not admitted": "admit it first: `tva-agent invite --role admin|member`",
}


@dataclass(frozen=True)
class PskRotation:
    epoch: int
    sealed: Mapping[str, bytes]  # peer id -> the fleet key sealed to that member's key
    by: PeerId
    at_ms: int


class FleetDoc:
    """One replica of a fleet's decisions. Build with ``genesis``, ``empty_replica`` or ``load``."""

    def __init__(self, log: DecisionLog, key: NodeKey | None, *, sync_message_bytes_max: int) -> None:
        self._log = log
        self._log_shared = False  # a clone shares its template's log until it first changes it
        self._key = key
        self._sync = Syncer(log, bytes_max=sync_message_bytes_max)
        self._sync.before_insert = self._mutable
        self._cache: dict[str, tuple[int, object]] = {}

    @property
    def sync_message_bytes_max(self) -> int:
        return self._sync.bytes_max

    @sync_message_bytes_max.setter
    def sync_message_bytes_max(self, value: int) -> None:
        self._sync.bytes_max = value

    # construction ---------------------------------------------------------------------------

    @classmethod
    def genesis(cls, fleet_name: str, key: NodeKey, host_name: str, now_ms: int, nonce: bytes, *,
                sync_message_bytes_max: int = sch.SYNC_MESSAGE_BYTES_MAX) -> FleetDoc:
        """Found a fleet: its one genesis, authored by ``key`` (the owner). The fleet id is derived
        from the genesis, so it can never be claimed by a second root."""
        sch.check_text(fleet_name, "fleet_name", 64)
        sch.check_text(host_name, "host_name", 64)
        sch.check_ms(now_ms)
        if not isinstance(nonce, bytes) or len(nonce) != 16:
            raise InvalidInput("a genesis needs a 16-byte random nonce from the shell")
        op = make_op(key, seq=1, parents=(), at_ms=now_ms, kind="genesis",
                     body={"name": fleet_name, "nonce": nonce, "host": host_name})
        self = cls(DecisionLog(), key, sync_message_bytes_max=sync_message_bytes_max)
        self._log.insert(op)
        return self

    @classmethod
    def empty_replica(cls, key: NodeKey | None, *, expected_fleet_id: str | None = None,
                      sync_message_bytes_max: int = sch.SYNC_MESSAGE_BYTES_MAX) -> FleetDoc:
        """A joiner's replica: holds nothing and can only receive the fleet's genesis by sync."""
        if expected_fleet_id is not None:
            sch.check_ident(expected_fleet_id, "expected_fleet_id")
        return cls(DecisionLog(expected_fleet_id=expected_fleet_id), key,
                   sync_message_bytes_max=sync_message_bytes_max)

    @classmethod
    def load(cls, data: bytes, key: NodeKey | None, *, expected_fleet_id: str | None = None,
             doc_bytes_max: int = sch.DOC_BYTES_MAX,
             sync_message_bytes_max: int = sch.SYNC_MESSAGE_BYTES_MAX) -> FleetDoc:
        """Load ``save()`` output (from disk or a join reply): every op is verified again.
        DecodeError/TooLarge/ForeignFleet when it is not this fleet's decision log."""
        if not isinstance(data, bytes):
            raise DecodeError("a saved fleet document must be bytes")
        if len(data) > doc_bytes_max:
            raise TooLarge(f"saved fleet document is {len(data)} bytes, limit {doc_bytes_max}")
        try:
            outer = msgpack.unpackb(data, raw=False, use_list=True, max_bin_len=1 << 20, max_str_len=64,
                                    max_array_len=1 << 22, max_map_len=0, max_ext_len=0)
        except Exception:
            raise DecodeError("not a saved fleet document (an older automerge document, or damaged)",
                              hint="tva-agent 0.1 state cannot be read: found or join the fleet again") from None
        if not (isinstance(outer, list) and len(outer) == 2 and outer[0] == SAVE_FORMAT
                and isinstance(outer[1], list) and all(isinstance(w, bytes) for w in outer[1])):
            raise DecodeError("not a saved fleet document of this version")
        self = cls.empty_replica(key, expected_fleet_id=expected_fleet_id,
                                 sync_message_bytes_max=sync_message_bytes_max)
        for wire in outer[1]:
            op = decode_op(wire)
            try:
                self._log.insert(op)
            except Unauthorized:
                continue  # a refused op never enters a log; a damaged file is the only way here
        if not self.has_genesis:
            raise DecodeError("not a fleet document: it holds no genesis")
        return self

    def clone(self, key: NodeKey | None) -> FleetDoc:
        """Another replica holding the same ops, for ``key``: what ``load(save())`` gives, without
        re-verifying every op. The log is shared until either side changes (the simulator starts a
        thousand replicas from one genesis this way)."""
        twin = FleetDoc(self._log, key, sync_message_bytes_max=self._sync.bytes_max)
        twin._log_shared = self._log_shared = True
        return twin

    def _mutable(self) -> DecisionLog:
        if self._log_shared:
            self._log = self._sync.log = self._log.copy()
            self._log_shared = False
            self._cache.clear()
        return self._log

    # identity and persistence -----------------------------------------------------------------

    @property
    def fleet_id(self) -> str:
        self._need_genesis()
        return self._log.fleet_id  # type: ignore[return-value]

    @property
    def fleet_name(self) -> str:
        self._need_genesis()
        return self._log.genesis.op.body["name"]  # type: ignore[union-attr]

    @property
    def owner(self) -> PeerId:
        self._need_genesis()
        return self._log.state.owner_peer  # type: ignore[return-value]

    @property
    def genesis_hash(self) -> bytes | None:
        return self._log.genesis.op.hash if self._log.genesis else None

    @property
    def has_genesis(self) -> bool:
        return self._log.genesis is not None

    @property
    def stats(self):
        return self._log.stats

    def stats_dict(self) -> dict:
        """What ``status`` shows: ops held, and the ops refused (never stored) or stored without
        effect (beyond their author's rights, malformed, an unknown kind), by reason."""
        st = self._log.stats
        return {"ops": len(self._log.order), "bytes": self._log.bytes, "refused": dict(st.refused),
                "ineffective": dict(st.ineffective), "equivocations": st.equivocations,
                "orphans": len(self._log.orphans), "orphans_dropped": st.orphans_dropped}

    @property
    def version(self) -> int:
        """Moves whenever an effective decision arrives (cache keys for readers)."""
        return self._log.state.version

    def heads(self) -> list[bytes]:
        return sorted(self._log.heads)

    def ops(self) -> list[Op]:
        return [self._log.nodes[h].op for h in self._log.order]

    def save(self) -> bytes:
        return msgpack.packb([SAVE_FORMAT, [op.wire for op in self.ops()]], use_bin_type=True)

    def _need_genesis(self) -> None:
        if self._log.genesis is None:
            raise NotInitialised("the fleet document has not arrived yet",
                                 hint="sync with a member of the fleet first")

    # writing ------------------------------------------------------------------------------

    def _write(self, kind: str, body: dict, now_ms: int) -> Op:
        """Sign one decision and insert it — only if every replica will take it: the same rule."""
        self._need_genesis()
        if self._key is None:
            raise InvalidInput("this replica has no key to sign decisions with")
        sch.check_ms(now_ms)
        log, me = self._mutable(), self._key.public
        own = [log.nodes[h] for h in log.heads if me in log.nodes[h].vc]
        seq = max((n.vc[me] for n in own), default=0) + 1
        prev = log.chains.get(me, [])[seq - 2] if seq > 1 else None
        heads = sorted(log.heads, key=lambda h: (-log.nodes[h].depth, h))
        parents = [prev.op.hash] if prev is not None else []
        parents += [h for h in heads if h not in parents][: PARENTS_MAX - len(parents)]
        at_ms = max(now_ms, prev.op.at_ms) if prev is not None else now_ms
        op = make_op(self._key, seq=seq, parents=parents, at_ms=at_ms, kind=kind, body=body)
        try:
            why = log.check(op)
        except Unauthorized:
            raise Forbidden("this host is not a member of the fleet any more (revoked?)",
                            hint="`tva-agent status` says whether and by whom") from None
        except (TooLarge, DecodeError) as exc:
            raise Forbidden(f"refused by the fleet's budget: {exc.message}",
                            hint="decisions are few and small; wait, or batch fewer changes") from None
        if why:
            raise Forbidden(f"refused: {why}", hint=_HINTS.get(why, "every member would refuse this change"))
        log.insert(op)
        return op

    def pin(self, content: str, min_copies: int, max_copies: int | None, now_ms: int, *,
            friends: bool = False) -> None:
        sch.check_text(content, "content")
        sch.check_int(min_copies, "min_copies", 1, sch.COPIES_MAX)
        if max_copies is not None:
            sch.check_int(max_copies, "max_copies", min_copies, sch.COPIES_MAX)
        if (why := limits.pin_problem(content, min_copies, max_copies)) is not None:
            raise InvalidInput(f"pin {content!r:.60}: {why}", hint="content ids are [A-Za-z0-9._:-] or an infohash")
        if not isinstance(friends, bool):
            raise InvalidInput("friends must be a bool", hint=repr(friends)[:40])
        held = self.pins().get(content)
        if held is not None and (held.min_copies, held.max_copies, held.friends) == (min_copies, max_copies, friends):
            return  # unchanged: no new op (history only grows with real decisions)
        body: dict = {"content": content, "min": min_copies, "max": max_copies}
        if friends:
            body["friends"] = True
        self._write("pin", body, now_ms)

    def unpin(self, content: str, now_ms: int) -> bool:
        if sch.check_text(content, "content") not in self.pins():
            return False
        self._write("unpin", {"content": content}, now_ms)
        return True

    def set_override(self, peer: PeerId, *, host_class: str | None = None,
                     services: Iterable[str] | None = None,
                     duty_prefs: Mapping[str, str] | None = None, now_ms: int) -> None:
        """Set the given fields of a host's override; fields left None keep their value."""
        sch.check_peer(peer)
        old = self.overrides().get(peer)
        fields = {"peer": peer, "class": old.host_class if old else None,
                  "services": ",".join(sorted(old.services)) if old and old.services is not None else None,
                  "duty": sch.duty_text(old.duty_prefs_dict()) if old and old.duty_prefs is not None else None}
        if host_class is None and services is None and duty_prefs is None:
            raise InvalidInput("set_override needs at least one field",
                               hint="pass host_class=, services= or duty_prefs=")
        why = limits.override_problem(host_class, None if services is None else tuple(services),
                                      None if duty_prefs is None else tuple(duty_prefs.items()))
        if why is not None:
            raise InvalidInput(f"override of {peer[:16]}…: {why}", hint="see tva.limits for the vocabulary")
        if host_class is not None:
            fields["class"] = sch.check_token(host_class, "host_class")
        if services is not None:
            fields["services"] = sch.services_text(services)
        if duty_prefs is not None:
            fields["duty"] = sch.duty_text(duty_prefs)
        if old is not None and rules.parse_body_of("override", fields) == old:
            return
        self._write("override", fields, now_ms)

    def clear_override(self, peer: PeerId, now_ms: int) -> bool:
        if sch.check_peer(peer) not in self.overrides():
            return False
        self._write("clear_override", {"peer": peer}, now_ms)
        return True

    def admit(self, peer: PeerId, name: str, role: str, invite_nonce: str | None, now_ms: int) -> None:
        sch.check_peer(peer)
        if role not in rules.GRANTABLE:
            raise InvalidInput(f"role must be one of {', '.join(rules.GRANTABLE)}", hint=f"got {role!r:.30}")
        if peer in self.revocations():
            raise Forbidden(f"peer {peer[:16]}… is revoked", hint="revocations are permanent")
        self._write("admit", {"peer": peer, "name": sch.check_text(name, "name", 64), "role": role,
                              "nonce": None if invite_nonce is None else sch.check_ident(invite_nonce, "nonce")},
                    now_ms)

    def grant(self, peer: PeerId, role: str, now_ms: int) -> None:
        sch.check_peer(peer)
        if role not in rules.GRANTABLE:
            raise InvalidInput(f"role must be one of {', '.join(rules.GRANTABLE)}", hint=f"got {role!r:.30}")
        self._write("grant", {"peer": peer, "role": role}, now_ms)

    def revoke(self, peer: PeerId, reason: str, now_ms: int) -> bool:
        """Record a permanent revocation; False when the peer was already revoked."""
        sch.check_peer(peer)
        reason = sch.check_text(reason, "reason", empty_ok=True)
        if peer in self.revocations():
            return False
        self._write("revoke", {"peer": peer, "reason": reason}, now_ms)
        return True

    def set_setting(self, name: str, value: str, now_ms: int) -> None:
        """A fleet-wide setting (e.g. ``ipv4_subnet``, chosen by the collision probe at init)."""
        check = rules.SETTING_CHECKS.get(name)
        if check is None:
            raise InvalidInput(f"unknown fleet setting {name!r:.40}", hint="known: " + ", ".join(rules.SETTING_CHECKS))
        if not check(value):
            raise InvalidInput(f"invalid value for {name}: {value!r:.60}",
                               hint="an IPv4 /24 inside 10/8, 172.16/12 or 192.168/16, e.g. 10.77.3.0/24")
        if self.settings().get(name) == value:
            return
        self._write("setting", {"name": name, "value": value}, now_ms)

    def add_friend(self, fleet_id: str, name: str, link: Mapping[str, str | int | bool], now_ms: int) -> None:
        sch.check_ident(fleet_id, "fleet_id")
        if fleet_id == self.fleet_id:
            raise InvalidInput("a fleet cannot befriend itself", hint="use the other fleet's id")
        if not isinstance(link, Mapping) or len(link) > sch.LINK_FIELDS_MAX:
            raise InvalidInput(f"link must be a mapping of at most {sch.LINK_FIELDS_MAX} fields",
                               hint="e.g. {'bootstrap': '/ip6/…', 'peer': '12D3KooW…'}")
        for key, value in link.items():
            sch.check_token(key, "link field")
            if isinstance(value, str):
                sch.check_text(value, f"link field {key}", sch.LINK_VALUE_CHARS_MAX, empty_ok=True)
            elif not isinstance(value, int) or abs(value) > sch.MS_MAX:
                raise InvalidInput(f"link field {key} must be str, bool or int within ±2**53",
                                   hint=repr(value)[:60])
        self._write("friend", {"fleet_id": fleet_id, "name": sch.check_text(name, "name", 64),
                               "link": dict(link)}, now_ms)

    def remove_friend(self, fleet_id: str, now_ms: int) -> bool:
        if sch.check_ident(fleet_id, "fleet_id") not in self.friends():
            return False
        self._write("unfriend", {"fleet_id": fleet_id}, now_ms)
        return True

    def rotate_psk(self, epoch: int, sealed: Mapping[PeerId, bytes], now_ms: int) -> None:
        """Record a new fleet key, sealed by the shell to each member's key (never in clear)."""
        sch.check_int(epoch, "epoch", 1, sch.MS_MAX)
        if not all(sch.peer_ok(p) and isinstance(v, bytes) and 0 < len(v) <= rules.PSK_SEALED_BYTES_MAX
                   for p, v in sealed.items()):
            raise InvalidInput("sealed must map member peer ids to sealed keys")
        self._write("psk", {"epoch": epoch, "sealed": dict(sealed)}, now_ms)

    # reading ------------------------------------------------------------------------------

    def _cached(self, name: str, build):
        version = self._log.state.version
        hit = self._cache.get(name)
        if hit is None or hit[0] != version:
            hit = self._cache[name] = (version, build())
        return hit[1]

    def _winners(self, kind: str) -> dict:
        return {k: n for k, n in self._log.state.winners(kind).items() if n.op.kind == kind}

    def pins(self) -> dict[str, Pin]:
        """Pins within tva.limits; a decision outside them (an older or newer build, a misbehaving
        member) still holds its place in the register but is listed by ``invalid_pins`` instead."""
        return self._cached("pins", lambda: {
            c: Pin(c, n.parsed[1], n.parsed[2], rules.peer_of(n.op.author), n.op.at_ms,
                   n.op.body.get("friends") is True)
            for c, n in sorted(self._winners("pin").items())
            if limits.pin_problem(c, n.parsed[1], n.parsed[2]) is None})

    def invalid_pins(self) -> dict[str, str]:
        """Stored pins a reader must skip: content → why (never raised)."""
        return self._cached("invalid_pins", lambda: {
            c: why for c, n in sorted(self._winners("pin").items())
            if (why := limits.pin_problem(c, n.parsed[1], n.parsed[2])) is not None})

    def overrides(self) -> dict[PeerId, Override]:
        return self._cached("overrides", lambda: {
            p: n.parsed for p, n in sorted(self._winners("override").items())})

    def settings(self) -> dict[str, str]:
        return self._cached("settings", lambda: {
            k: n.parsed[1] for k, n in sorted(self._winners("setting").items())})

    def friends(self) -> dict[str, FriendLink]:
        return self._cached("friends", lambda: {
            f: FriendLink(f, n.parsed[1], n.parsed[2], rules.peer_of(n.op.author), n.op.at_ms)
            for f, n in sorted(self._winners("friend").items())})

    def admissions(self) -> dict[PeerId, Admission]:
        """Every admission ever made (revoked hosts included), with each host's current role;
        the owner's is its genesis."""
        def build() -> dict[PeerId, Admission]:
            if self._log.genesis is None:
                return {}
            state, g = self._log.state, self._log.genesis.op
            out = {state.owner_peer: Admission(state.owner_peer, g.body["host"], "owner", None,
                                               state.owner_peer, g.at_ms)}
            for peer, n in sorted(state.admissions().items()):
                role = rules.ROLE_NAMES.get(state.role_now(peer), n.parsed[2])
                out[peer] = Admission(peer, n.parsed[1], role, n.parsed[3], rules.peer_of(n.op.author),
                                      n.op.at_ms)
            return out
        return self._cached("admissions", build)

    def revocations(self) -> dict[PeerId, Revocation]:
        return self._cached("revocations", lambda: {
            p: Revocation(p, rules.peer_of(n.op.author), n.parsed[1], n.op.at_ms)
            for p, n in sorted(self._log.state.revocations().items())})

    def redeemed(self) -> dict[str, PeerId]:
        return self._cached("redeemed", lambda: {
            a.invite_nonce: p for p, a in self.admissions().items() if a.invite_nonce is not None})

    def members(self) -> frozenset[PeerId]:
        """The owner and every admitted host not revoked (revocation always wins)."""
        revoked = self.revocations()
        return self._cached("members", lambda: frozenset(p for p in self.admissions() if p not in revoked))

    def roles(self) -> dict[PeerId, str]:
        return {p: a.role for p, a in self.admissions().items() if p in self.members()}

    def role_of(self, peer: PeerId) -> str | None:
        return self.roles().get(peer)

    def psk_rotation(self) -> PskRotation | None:
        n = self._winners("psk").get(None)
        if n is None:
            return None
        return PskRotation(n.parsed[0], n.parsed[1], rules.peer_of(n.op.author), n.op.at_ms)

    # catching up outside the mesh (a join listener's answer to a member behind on the fleet key)

    def vector(self) -> dict[bytes, int]:
        """Author key -> the highest seq held: exactly which ops this replica has."""
        return self._sync.vector()

    def ops_missing_from(self, vector: Mapping[bytes, int], bytes_max: int) -> list[bytes]:
        """The ops a replica at ``vector`` lacks, oldest first, within ``bytes_max``."""
        log, out, spent = self._log, [], 0
        lacking = [n for a, chain in log.chains.items() for n in chain[vector.get(a, 0):]]
        lacking += [n for a, forks in log.forks.items() for n in forks if n.op.seq > vector.get(a, 0)]
        for node in sorted(lacking, key=lambda n: (n.depth, n.op.hash)):
            if spent + node.op.size + 16 > bytes_max:
                break
            out.append(node.op.wire)
            spent += node.op.size + 16
        return out

    def take_ops(self, wires: Iterable[bytes]) -> bool:
        """Insert ops from any source: each verified, refused ones counted. True when changed."""
        changed = False
        for wire in wires:
            try:
                op = decode_op(wire)
                if op.hash not in self._log.nodes:
                    changed = bool(self._mutable().insert(op)) or changed
            except RemoteDataError as exc:
                self._log.stats.refuse(type(exc).__name__)
        return changed

    # sync (mesh.core.types.DocSync) ------------------------------------------------------------

    def forget_peer(self, peer: PeerId) -> None:
        self._sync.forget(peer)

    def sync_message_for(self, peer: PeerId) -> bytes | None:
        """The next sync message for ``peer``, or None when it has everything we know of."""
        sch.check_peer(peer)
        return self._sync.message_for(peer)

    def receive_sync_message(self, peer: PeerId, data: bytes) -> bool:
        """Apply a peer's sync message; True when the document changed. Ops refused one by one
        are counted in ``stats.refused``; a malformed message raises a RemoteDataError."""
        sch.check_peer(peer)
        try:
            changed, _refused = self._sync.receive(peer, data)
        except RemoteDataError:
            self.forget_peer(peer)
            raise
        return changed

    def merge(self, other: FleetDoc) -> bool:
        """Take every op of another in-process replica (tests and the simulator)."""
        changed = False
        log = self._mutable()
        for op in other.ops():
            try:
                changed = bool(log.insert(op)) or changed
            except RemoteDataError as exc:
                self._log.stats.refuse(type(exc).__name__)
        return changed

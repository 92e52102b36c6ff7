"""The fleet document: multi-writer decisions on automerge 1.0.0rc1, behind a wrapper.

What lives here: pins, host overrides, admissions, revocations, friend links and redeemed invite
nonces — low-churn decisions any member may make. Facts about hosts live in the signed feeds.

The rc1 binding has hazards this wrapper makes impossible to hit from outside:
* A transaction object not used as ``with doc.transaction() as tx:`` segfaults the process, so
  transactions are opened only inside this module, only as context managers (and validation runs
  before one is opened, so an exception inside is a rollback, never a half-applied record).
* ``ScalarType.Counter`` (and ``Unknown``) panic and poison the document: only Str, Int, Boolean
  and Null are ever written; anything else read back is a malformed record and is skipped.
* Documents that do not share one genesis lose whole top-level maps when merged. So every top-level
  map is created once, by ``genesis``; a replica that joins starts empty and can only *receive*;
  data that carries a second root change (a change without dependencies) is refused
  (``ForeignFleet``) before it touches the document.

Records are maps of scalars (``pins/<content>`` → ``{min, max, by, at_ms}``), created in one
transaction; later edits set scalars inside the existing map, so concurrent edits of different
fields merge and the same field gets automerge's deterministic winner (Lamport clock, then actor).
Two replicas that *create* the same record concurrently (both pin a content nobody pinned before)
make two maps at one key: one of them wins whole, the same one on every replica; the loser's
fields are not mixed in. For pins this means "one of the two concurrent pin decisions holds",
which is the documented contract. A delete (unpin) concurrent with a field update wins (the key is
gone); a delete concurrent with a re-creation keeps the re-created record.

Incoming sync messages are applied to a fork of the document and swapped in only when they
applied cleanly and brought no foreign genesis, so a refused message leaves the document as it was.
Pure: no clock, randomness or I/O; ``now_ms`` comes in from the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from automerge import core

from crdt import fleetdoc_schema as sch
from crdt.fleetdoc_schema import Admission, FriendLink, Override, PeerId, Pin, Revocation, Role, Scalar
from tva import limits
from tva.errors import DecodeError, ForeignFleet, InvalidInput, NotInitialised, TooLarge

__all__ = ["Admission", "FleetDoc", "FriendLink", "Override", "Pin", "Revocation"]

# --- the document --------------------------------------------------------------------------------


class FleetDoc:
    """One replica of a fleet's decisions. Build with ``genesis``, ``empty_replica`` or ``load``."""

    def __init__(self, doc: core.Document, actor: bytes, *, expected_fleet_id: str | None,
                 sync_message_bytes_max: int) -> None:
        # Private: use the three constructors, which establish the genesis invariant.
        self._doc = doc
        self._actor = actor
        self._doc.set_actor(actor)
        self._expected_fleet_id = expected_fleet_id
        self._sync: dict[PeerId, core.SyncState] = {}
        self.sync_message_bytes_max = sync_message_bytes_max
        self.malformed_records = 0  # records from peers skipped while reading (cumulative)
        self._genesis: bytes | None = None
        self._fleet_id: str | None = None
        self._fleet_name = ""

    # construction ---------------------------------------------------------------------------

    @classmethod
    def genesis(cls, fleet_id: str, fleet_name: str, founder: PeerId, actor: bytes, now_ms: int, *,
                sync_message_bytes_max: int = sch.SYNC_MESSAGE_BYTES_MAX) -> FleetDoc:
        """Create a fleet's one and only genesis: every top-level map, the meta and the founder."""
        sch.check_ident(fleet_id, "fleet_id")
        sch.check_text(fleet_name, "fleet_name", 64)
        sch.check_peer(founder, "founder")
        sch.check_ms(now_ms)
        self = cls(core.Document(sch.check_actor(actor)), actor, expected_fleet_id=fleet_id,
                   sync_message_bytes_max=sync_message_bytes_max)
        with self._doc.transaction() as tx:
            ids = {name: tx.put_object(core.ROOT, name, core.ObjType.Map) for name in sch.TOP_MAPS}
            for key, value in (("schema", sch.SCHEMA_VERSION), ("fleet_id", fleet_id),
                               ("fleet_name", fleet_name), ("founder", founder),
                               ("created_at_ms", now_ms)):
                _put(tx, ids["meta"], key, value)
            record = tx.put_object(ids["admissions"], founder, core.ObjType.Map)
            for key, value in (("name", "founder"), ("role", "founder"), ("nonce", None),
                               ("by", founder), ("at_ms", now_ms)):
                _put(tx, record, key, value)
        self._adopt_genesis(self._doc)
        return self

    @classmethod
    def empty_replica(cls, actor: bytes, *, expected_fleet_id: str | None = None,
                      sync_message_bytes_max: int = sch.SYNC_MESSAGE_BYTES_MAX) -> FleetDoc:
        """A joiner's replica: holds nothing and can only receive the fleet's genesis by sync."""
        if expected_fleet_id is not None:
            sch.check_ident(expected_fleet_id, "expected_fleet_id")
        return cls(core.Document(sch.check_actor(actor)), actor, expected_fleet_id=expected_fleet_id,
                   sync_message_bytes_max=sync_message_bytes_max)

    @classmethod
    def load(cls, data: bytes, actor: bytes, *, expected_fleet_id: str | None = None,
             doc_bytes_max: int = sch.DOC_BYTES_MAX,
             sync_message_bytes_max: int = sch.SYNC_MESSAGE_BYTES_MAX) -> FleetDoc:
        """Load ``save()`` output; DecodeError/TooLarge/ForeignFleet when it is not our fleet doc."""
        sch.check_actor(actor)
        if not isinstance(data, bytes):
            raise DecodeError("a saved fleet document must be bytes")
        if len(data) > doc_bytes_max:
            raise TooLarge(f"saved fleet document is {len(data)} bytes, limit {doc_bytes_max}")
        try:
            doc = core.Document.load(data)
        except BaseException as exc:
            if not isinstance(exc, Exception) and not sch.is_panic(exc):
                raise
            raise DecodeError(f"not an automerge document: {exc}") from None
        self = cls(doc, actor, expected_fleet_id=expected_fleet_id,
                   sync_message_bytes_max=sync_message_bytes_max)
        roots = [c for c in doc.get_changes([]) if not c.deps]
        if not roots:
            raise DecodeError("not a fleet document: it holds no genesis change")
        if len(roots) > 1:
            raise ForeignFleet(f"a fleet document has exactly one genesis, this one has {len(roots)}")
        self._adopt_genesis(doc)
        return self

    def _adopt_genesis(self, doc: core.Document) -> None:
        """Check the meta of a document that just gained its root; remember the genesis."""
        roots = [c for c in doc.get_changes([]) if not c.deps]
        meta = _map_at(doc, core.ROOT, "meta")
        fields = _scalars(doc, meta) if meta is not None else {}
        fleet_id, name, schema = fields.get("fleet_id"), fields.get("fleet_name"), fields.get("schema")
        if not (isinstance(fleet_id, str) and sch.ID_RE.fullmatch(fleet_id) and sch.ok_text(name, 64)):
            raise DecodeError("fleet document has no valid meta (fleet_id, fleet_name)")
        if schema != sch.SCHEMA_VERSION:
            raise DecodeError(f"fleet document schema {schema!r}, this build reads {sch.SCHEMA_VERSION}")
        if self._expected_fleet_id is not None and fleet_id != self._expected_fleet_id:
            raise ForeignFleet(f"fleet document of fleet {fleet_id!r}, expected "
                               f"{self._expected_fleet_id!r}")
        self._genesis = roots[0].hash
        self._fleet_id = fleet_id
        self._fleet_name = str(name)

    # identity and persistence -----------------------------------------------------------------

    @property
    def fleet_id(self) -> str:
        self._need_genesis()
        assert self._fleet_id is not None
        return self._fleet_id

    @property
    def fleet_name(self) -> str:
        self._need_genesis()
        meta = _map_at(self._doc, core.ROOT, "meta")
        name = _scalars(self._doc, meta).get("fleet_name") if meta is not None else None
        return name if sch.ok_text(name, 64) else self._fleet_name  # type: ignore[return-value]

    @property
    def genesis_hash(self) -> bytes | None:
        return self._genesis

    @property
    def has_genesis(self) -> bool:
        return self._genesis is not None

    def heads(self) -> list[bytes]:
        return sorted(self._doc.get_heads())

    def save(self) -> bytes:
        return self._doc.save()

    def _need_genesis(self) -> bool:
        if self._genesis is None:
            raise NotInitialised("the fleet document has not arrived yet",
                                 hint="sync with a member of the fleet first")
        return True

    # writing ------------------------------------------------------------------------------

    def _write(self, top: str, key: str, fields: Mapping[str, Scalar], *,
               stale_prefix: str | None = None) -> None:
        """Create or update one record in one transaction; unchanged scalars are not rewritten
        (every overwrite costs ~1 KB that automerge never frees)."""
        self._need_genesis()
        parent = _map_at(self._doc, core.ROOT, top)
        if parent is None:
            raise DecodeError(f"fleet document lost its {top!r} map (a peer broke it)")
        current = _map_at(self._doc, parent, key)
        old = _scalars(self._doc, current) if current is not None else {}
        with self._doc.transaction() as tx:
            record = current if current is not None else tx.put_object(parent, key, core.ObjType.Map)
            for name, value in fields.items():
                if name not in old or old[name] != value or type(old[name]) is not type(value):
                    _put(tx, record, name, value)
            if stale_prefix is not None:
                for name in old:
                    if name.startswith(stale_prefix) and name not in fields:
                        tx.delete(record, name)

    def _delete(self, top: str, key: str) -> bool:
        self._need_genesis()
        parent = _map_at(self._doc, core.ROOT, top)
        if parent is None or self._doc.get(parent, key) is None:
            return False
        with self._doc.transaction() as tx:
            tx.delete(parent, key)
        return True

    def pin(self, content: str, min_copies: int, max_copies: int | None, by: PeerId,
            now_ms: int) -> None:
        sch.check_text(content, "content")
        sch.check_int(min_copies, "min_copies", 1, sch.COPIES_MAX)
        if max_copies is not None:
            sch.check_int(max_copies, "max_copies", min_copies, sch.COPIES_MAX)
        if (why := limits.pin_problem(content, min_copies, max_copies)) is not None:
            raise InvalidInput(f"pin {content!r:.60}: {why}", hint="content ids are [A-Za-z0-9._:-] or an infohash")
        self._write("pins", content, {"min": min_copies, "max": max_copies, "by": sch.check_peer(by, "by"),
                                      "at_ms": sch.check_ms(now_ms)})

    def unpin(self, content: str) -> bool:
        return self._delete("pins", sch.check_text(content, "content"))

    def set_override(self, peer: PeerId, *, host_class: str | None = None,
                     services: Iterable[str] | None = None,
                     duty_prefs: Mapping[str, str] | None = None) -> None:
        """Set the given fields of a host's override; fields left None keep their value."""
        sch.check_peer(peer)
        fields: dict[str, Scalar] = {}
        if host_class is not None:
            fields["class"] = sch.check_token(host_class, "host_class")
        if services is not None:
            fields["services"] = sch.services_text(services)
        if duty_prefs is not None:
            fields["duty"] = sch.duty_text(duty_prefs)
        why = limits.override_problem(host_class, None if services is None else tuple(services),
                                      None if duty_prefs is None else tuple(duty_prefs.items()))
        if why is not None:
            raise InvalidInput(f"override of {peer[:16]}…: {why}", hint="see tva.limits for the vocabulary")
        if not fields:
            raise InvalidInput("set_override needs at least one field",
                               hint="pass host_class=, services= or duty_prefs=")
        self._write("overrides", peer, fields)

    def clear_override(self, peer: PeerId) -> bool:
        return self._delete("overrides", sch.check_peer(peer))

    def admit(self, peer: PeerId, name: str, role: Role, invite_nonce: str | None, by: PeerId,
              now_ms: int) -> None:
        sch.check_peer(peer)
        if role not in sch.ROLES:
            raise InvalidInput(f"role must be one of {sorted(sch.ROLES)}", hint=f"got {role!r:.30}")
        if peer in self.revocations():
            raise InvalidInput(f"peer {peer[:16]}… is revoked", hint="revocations are permanent")
        self._write("admissions", peer, {
            "name": sch.check_text(name, "name", 64), "role": role,
            "nonce": None if invite_nonce is None else sch.check_ident(invite_nonce, "invite_nonce"),
            "by": sch.check_peer(by, "by"), "at_ms": sch.check_ms(now_ms)})

    def revoke(self, peer: PeerId, by: PeerId, reason: str, now_ms: int) -> bool:
        """Record a permanent revocation; False when the peer was already revoked."""
        sch.check_peer(peer)
        fields = {"by": sch.check_peer(by, "by"), "reason": sch.check_text(reason, "reason", empty_ok=True),
                  "at_ms": sch.check_ms(now_ms)}
        if peer in self.revocations():
            return False
        self._write("revocations", peer, fields)
        return True

    def redeem_invite(self, nonce: str, peer: PeerId, now_ms: int) -> bool:
        """Mark an invite nonce used; False when this replica has seen it redeemed already.
        Two partitions may redeem one nonce concurrently: one record wins on merge, and the
        admission of the other peer still names the nonce, so the conflict stays visible."""
        sch.check_ident(nonce, "nonce")
        fields = {"peer": sch.check_peer(peer), "at_ms": sch.check_ms(now_ms)}
        if nonce in self.redeemed():
            return False
        self._write("redeemed", nonce, fields)
        return True

    def add_friend(self, fleet_id: str, name: str, link: Mapping[str, str | int | bool], by: PeerId,
                   now_ms: int) -> None:
        sch.check_ident(fleet_id, "fleet_id")
        if fleet_id == self.fleet_id:
            raise InvalidInput("a fleet cannot befriend itself", hint="use the other fleet's id")
        if not isinstance(link, Mapping) or len(link) > sch.LINK_FIELDS_MAX:
            raise InvalidInput(f"link must be a mapping of at most {sch.LINK_FIELDS_MAX} fields",
                               hint="e.g. {'bootstrap': '/ip6/…', 'peer': '12D3KooW…'}")
        fields: dict[str, Scalar] = {"name": sch.check_text(name, "name", 64), "by": sch.check_peer(by, "by"),
                                     "at_ms": sch.check_ms(now_ms)}
        for key, value in link.items():
            sch.check_token(key, "link field")
            if isinstance(value, str):
                sch.check_text(value, f"link field {key}", sch.LINK_VALUE_CHARS_MAX, empty_ok=True)
            elif not isinstance(value, int) or abs(value) > sch.MS_MAX:
                raise InvalidInput(f"link field {key} must be str, bool or int within ±2**53",
                                   hint=repr(value)[:60])
            fields[f"l:{key}"] = value
        self._write("friends", fleet_id, fields, stale_prefix="l:")

    def remove_friend(self, fleet_id: str) -> bool:
        return self._delete("friends", sch.check_ident(fleet_id, "fleet_id"))

    # reading (skips and counts malformed records; never raises on peer data) ------------------

    def _records(self, top: str) -> Iterable[tuple[str, dict[str, Scalar]]]:
        if self._genesis is None:
            return
        parent = _map_at(self._doc, core.ROOT, top)
        if parent is None:
            self.malformed_records += 1
            return
        for key in self._doc.keys(parent):
            record = _map_at(self._doc, parent, key)
            if record is None:
                self.malformed_records += 1
                continue
            yield key, _scalars(self._doc, record)

    def _collect(self, top: str, build) -> dict:
        out = {}
        for key, f in self._records(top):
            try:
                value = build(key, f)
            except (TypeError, ValueError, KeyError):
                value = None
            if value is None:
                self.malformed_records += 1
            else:
                out[key] = value
        return out

    def pins(self) -> dict[str, Pin]:
        """Pins within tva.limits; the others are listed by ``invalid_pins`` (never raised)."""
        records = self._pin_records()
        good = {k: p for k, p in records.items() if isinstance(p, Pin)}
        self.malformed_records += len(records) - len(good)
        return good

    def invalid_pins(self) -> dict[str, str]:
        """Stored pins a reader must skip (an older or newer build, another writer): content → why."""
        return {k: p for k, p in self._pin_records().items() if isinstance(p, str)}

    def _pin_records(self) -> dict[str, Pin | str]:
        def build(key: str, f: dict[str, Scalar]) -> Pin | str | None:
            lo, hi = f.get("min"), f.get("max")
            if not (sch.ok_text(key) and sch.ok_ms(f.get("at_ms")) and sch.peer_ok(f.get("by"))):
                return None
            why = limits.pin_problem(key, lo, hi)
            return Pin(key, lo, hi, f["by"], f["at_ms"]) if why is None else why
        return self._collect("pins", build)

    def overrides(self) -> dict[PeerId, Override]:
        def build(key: str, f: dict[str, Scalar]) -> Override | None:
            cls, svc, duty = f.get("class"), f.get("services"), f.get("duty")
            services = sch.services_parse(svc) if isinstance(svc, str) else None
            prefs = sch.duty_parse(duty) if isinstance(duty, str) else None
            if (not sch.peer_ok(key) or (cls is not None and not (isinstance(cls, str)
                                                                 and sch.TOKEN_RE.fullmatch(cls)))
                    or (svc is not None and services is None) or (duty is not None and prefs is None)):
                return None
            return Override(key, cls, services, prefs)
        return self._collect("overrides", build)

    def admissions(self) -> dict[PeerId, Admission]:
        """Every admission ever recorded, revoked peers included (see ``members``)."""
        def build(key: str, f: dict[str, Scalar]) -> Admission | None:
            nonce = f["nonce"]
            good = (sch.peer_ok(key) and sch.ok_text(f["name"], 64) and f["role"] in sch.ROLES
                    and (nonce is None or (isinstance(nonce, str) and sch.ID_RE.fullmatch(nonce)))
                    and sch.peer_ok(f["by"]) and sch.ok_ms(f["at_ms"]))
            return Admission(key, f["name"], f["role"], nonce, f["by"], f["at_ms"]) if good else None
        return self._collect("admissions", build)

    def revocations(self) -> dict[PeerId, Revocation]:
        def build(key: str, f: dict[str, Scalar]) -> Revocation | None:
            reason = f["reason"]
            good = (sch.peer_ok(key) and sch.peer_ok(f["by"]) and sch.ok_ms(f["at_ms"])
                    and isinstance(reason, str) and (reason == "" or sch.ok_text(reason)))
            return Revocation(key, f["by"], reason, f["at_ms"]) if good else None
        return self._collect("revocations", build)

    def redeemed(self) -> dict[str, PeerId]:
        def build(key: str, f: dict[str, Scalar]) -> PeerId | None:
            good = sch.ID_RE.fullmatch(key) and sch.peer_ok(f["peer"]) and sch.ok_ms(f["at_ms"])
            return f["peer"] if good else None
        return self._collect("redeemed", build)

    def set_setting(self, name: str, value: str, by: PeerId, now_ms: int) -> None:
        """A fleet-wide setting (e.g. ``ipv4_subnet``, chosen by the collision probe at init)."""
        pattern = sch.SETTINGS.get(name)
        if pattern is None:
            raise InvalidInput(f"unknown fleet setting {name!r:.40}", hint="known: " + ", ".join(sch.SETTINGS))
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise InvalidInput(f"invalid value for {name}: {value!r:.60}")
        self._write("settings", name, {"value": value, "by": sch.check_peer(by, "by"), "at_ms": sch.check_ms(now_ms)})

    def settings(self) -> dict[str, str]:
        def build(key: str, f: dict[str, Scalar]) -> str | None:
            pattern, value = sch.SETTINGS.get(key), f.get("value")
            return value if pattern is not None and isinstance(value, str) and pattern.fullmatch(value) else None
        return self._collect("settings", build)

    def friends(self) -> dict[str, FriendLink]:
        def build(key: str, f: dict[str, Scalar]) -> FriendLink | None:
            link = tuple(sorted((k[2:], v) for k, v in f.items() if k.startswith("l:")))
            good = (sch.ID_RE.fullmatch(key) and sch.ok_text(f["name"], 64) and sch.peer_ok(f["by"])
                    and sch.ok_ms(f["at_ms"]) and len(link) <= sch.LINK_FIELDS_MAX
                    and all(sch.TOKEN_RE.fullmatch(k) and v is not None
                            and (not isinstance(v, str) or len(v) <= sch.LINK_VALUE_CHARS_MAX)
                            for k, v in link))
            return FriendLink(key, f["name"], link, f["by"], f["at_ms"]) if good else None
        return self._collect("friends", build)

    def members(self) -> frozenset[PeerId]:
        """Admitted founders and members, minus every revoked peer (revocation always wins)."""
        revoked = self.revocations()
        return frozenset(p for p, a in self.admissions().items()
                         if a.role in ("founder", "member") and p not in revoked)

    # sync ---------------------------------------------------------------------------------

    def forget_peer(self, peer: PeerId) -> None:
        """Drop a peer's sync state (on reconnect, or after it sent something refused)."""
        self._sync.pop(peer, None)

    def _state(self, peer: PeerId) -> core.SyncState:
        sch.check_peer(peer)
        state = self._sync.get(peer)
        if state is None:
            while len(self._sync) >= sch.SYNC_PEERS_MAX:
                self._sync.pop(next(iter(self._sync)))
            state = self._sync[peer] = core.SyncState()
        return state

    def sync_message_for(self, peer: PeerId) -> bytes | None:
        """The next sync message for ``peer``, or None when it has everything we know of."""
        message = self._doc.generate_sync_message(self._state(peer))
        if message is None:
            return None
        data = message.encode()
        if len(data) > self.sync_message_bytes_max:
            self.forget_peer(peer)  # the state believes this was sent: start over next time
            raise TooLarge(f"sync message for {peer[:16]}… is {len(data)} bytes, limit "
                           f"{self.sync_message_bytes_max}",
                           hint="send the peer a saved document (save/load) instead")
        return data

    def receive_sync_message(self, peer: PeerId, data: bytes) -> bool:
        """Apply a peer's sync message; True when the document changed. On any problem raises a
        RemoteDataError (DecodeError, TooLarge, ForeignFleet) and the document is unchanged."""
        state = self._state(peer)
        if not isinstance(data, bytes):
            raise DecodeError("a sync message must be bytes")
        if len(data) > self.sync_message_bytes_max:
            raise TooLarge(f"sync message from {peer[:16]}… is {len(data)} bytes, limit "
                           f"{self.sync_message_bytes_max}")
        try:
            message = core.Message.decode(data)
        except Exception as exc:
            raise DecodeError(f"malformed sync message from {peer[:16]}…: {exc}") from None
        if sch.sync_change_count(data) == 0:
            try:  # no changes: only the sync state moves, the document cannot
                self._doc.receive_sync_message(state, message)
            except Exception as exc:
                self.forget_peer(peer)
                raise DecodeError(f"sync message from {peer[:16]}… refused: {exc}") from None
            return False
        before = self._doc.get_heads()
        work = self._doc.fork()
        try:
            work.set_actor(self._actor)
            work.receive_sync_message(state, message)
            roots = [c for c in work.get_changes(before) if not c.deps]
        except BaseException as exc:
            if not isinstance(exc, Exception) and not sch.is_panic(exc):
                raise
            self.forget_peer(peer)
            raise DecodeError(f"sync message from {peer[:16]}… refused: {exc}") from None
        if roots and (self._genesis is not None or len(roots) > 1):
            self.forget_peer(peer)
            raise ForeignFleet(f"{peer[:16]}… sent changes from another genesis; refused")
        if roots:
            try:
                self._adopt_genesis(work)
            except (DecodeError, ForeignFleet):
                self.forget_peer(peer)
                raise
        self._doc = work
        return sorted(work.get_heads()) != sorted(before)

    def merge(self, other: FleetDoc) -> bool:
        """Merge another in-process replica of the same fleet; ForeignFleet for another genesis."""
        self._need_genesis()
        if other._genesis != self._genesis:
            raise ForeignFleet("cannot merge fleet documents with different genesis changes")
        before = self.heads()
        work = self._doc.fork()
        work.set_actor(self._actor)
        work.merge(other._doc)
        self._doc = work
        return self.heads() != before


# --- automerge helpers ---------------------------------------------------------------------------


def _put(tx: core.Transaction, obj: bytes, key: str, value: Scalar) -> None:
    if value is None:
        tx.put(obj, key, core.ScalarType.Null, None)
    elif isinstance(value, bool):
        tx.put(obj, key, core.ScalarType.Boolean, value)
    elif isinstance(value, int):
        tx.put(obj, key, core.ScalarType.Int, value)
    else:
        tx.put(obj, key, core.ScalarType.Str, value)


_READABLE = (core.ScalarType.Str, core.ScalarType.Int, core.ScalarType.Boolean, core.ScalarType.Null)


def _map_at(doc: core.Document, obj: bytes, key: str) -> bytes | None:
    got = doc.get(obj, key)
    if got is None or got[0] != core.ObjType.Map:
        return None
    return got[1]


def _scalars(doc: core.Document, obj: bytes) -> dict[str, Scalar]:
    """The readable scalar fields of a record; other types (Counter, F64, bytes…) are left out,
    so the record reads as malformed through a missing field instead of crashing."""
    out: dict[str, Scalar] = {}
    for key in doc.keys(obj):
        try:
            got = doc.get(obj, key)
        except BaseException as exc:
            if not isinstance(exc, Exception) and not sch.is_panic(exc):
                raise
            continue
        if got is None or isinstance(got[0], core.ObjType):
            continue
        kind, value = got[0]
        if kind in _READABLE:
            out[key] = value
    return out

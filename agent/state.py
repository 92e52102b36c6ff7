"""A node's whole persistent state: identity, fleet, feeds, fleet document, local bookkeeping.

One object owns it so the daemon and the CLI's offline mode mutate it the same way. Every
write to disk goes through ``agent.store`` (atomic, checksummed, previous generation kept).

Files in the state dir:
  identity   the Ed25519 seed (0600; the peer id is derived from it)
  fleet      fleet id, name, pre-shared key (0600: the PSK is a secret)
  feeds      every host feed this node holds (crdt.feedset)
  fleetdoc   the fleet document: every signed decision change (crdt.fleetdoc)
  local      this node's bookkeeping: uptime score, API token
  presence   peers' soft state remembered across a restart (agent.presence_memory; the daemon writes it)
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import msgpack

from agent.store import StateStore, load_or_create_identity
from crdt import records
from crdt.feedset import FeedSet, FrozenFeedSet, OwnFeed, encode_frozen
from crdt.fleetdoc import FleetDoc
from crdt.identity import NodeKey, public_from_peer_id
from tva.errors import DecodeError, InvalidInput, NotFound, NotInitialised, StateCorrupt

FLEET_FILE, FEEDS_FILE, DOC_FILE, LOCAL_FILE = "fleet", "feeds", "fleetdoc", "local"


@dataclass(frozen=True)
class FleetInfo:
    fleet_id: str
    fleet_name: str
    psk: bytes  # the fleet key (libp2p private network) of epoch ``psk_epoch``; rotates on revoke
    psk_epoch: int = 0

    def encode(self) -> bytes:
        return msgpack.packb([2, self.fleet_id, self.fleet_name, self.psk, self.psk_epoch], use_bin_type=True)

    @classmethod
    def decode(cls, data: bytes) -> FleetInfo:
        try:
            fields = msgpack.unpackb(data, raw=False, max_bin_len=64, max_str_len=256)
        except Exception:
            raise StateCorrupt("the fleet file is unreadable") from None
        if isinstance(fields, list) and len(fields) == 4 and fields[0] == 1:
            fields = [2, *fields[1:], 0]  # before key rotation: epoch 0
        if not (isinstance(fields, list) and len(fields) == 5 and fields[0] == 2):
            raise StateCorrupt("the fleet file has an unknown format")
        _v, fid, name, psk, epoch = fields
        if not isinstance(fid, str) or not isinstance(name, str) or not isinstance(psk, bytes) \
                or len(psk) != 32 or type(epoch) is not int or epoch < 0:
            raise StateCorrupt("the fleet file has an unknown format")
        return cls(fid, name, psk, epoch)


@dataclass(frozen=True)
class StateSnapshot:
    fleet: bytes
    feeds: FrozenFeedSet
    doc: bytes
    local: bytes


def write_snapshot(store: StateStore, snap: StateSnapshot, written: Mapping[str, bytes] | None = None
                   ) -> dict[str, bytes]:
    """Write the files of ``snap`` whose content differs from ``written`` (name -> sha256 of what was
    last written; None: write all). Blocking (fsyncs): the daemon runs it in a worker thread.
    Returns the digests now on disk."""
    done = dict(written or {})
    for name, data, secret in ((FLEET_FILE, snap.fleet, True), (FEEDS_FILE, encode_frozen(snap.feeds), False),
                               (DOC_FILE, snap.doc, False), (LOCAL_FILE, snap.local, True)):
        digest = hashlib.sha256(data).digest()
        if written is not None and done.get(name) == digest:
            continue
        store.write(name, data, secret=secret)
        done[name] = digest
    return done


@dataclass(frozen=True)
class LocalInfo:
    api_token: str
    uptime_score: float = 0.5
    uptime_sample_ms: int = 0

    def encode(self) -> bytes:
        return msgpack.packb([1, self.api_token, self.uptime_score, self.uptime_sample_ms])

    @classmethod
    def decode(cls, data: bytes) -> LocalInfo:
        try:
            v, token, score, at = msgpack.unpackb(data, raw=False, max_str_len=256)
            if v != 1 or not isinstance(token, str) or not 0 <= float(score) <= 1 or int(at) < 0:
                raise ValueError
        except Exception:
            raise StateCorrupt("the local file has an unknown format") from None
        return cls(token, float(score), int(at))


class NodeState:
    def __init__(self, store: StateStore, key: NodeKey, fleet: FleetInfo, feeds: FeedSet, doc: FleetDoc,
                 local: LocalInfo) -> None:
        self.store = store
        self.key = key
        self.fleet = fleet
        self.feeds = feeds
        self.doc = doc
        self.local = local
        self.own = OwnFeed(key, feeds)
        self.refresh_membership()

    @property
    def peer_id(self) -> str:
        return self.key.peer_id

    # --- construction ---------------------------------------------------------------------------

    @staticmethod
    def exists(store: StateStore) -> bool:
        return store.read(FLEET_FILE) is not None

    @classmethod
    def load(cls, store: StateStore) -> NodeState:
        fleet_raw = store.read(FLEET_FILE)
        if fleet_raw is None:
            raise NotInitialised(f"no fleet in {store.state_dir}",
                                 hint="found one with `tva-agent init --name NAME` or join with `tva-agent join INVITE`")
        key = load_or_create_identity(store)
        fleet = FleetInfo.decode(fleet_raw)
        feeds_raw, doc_raw, local_raw = store.read(FEEDS_FILE), store.read(DOC_FILE), store.read(LOCAL_FILE)
        if doc_raw is None:
            raise StateCorrupt(f"{store.state_dir}: the fleet document is missing",
                               hint="restore the state dir from a backup, or join the fleet again")
        try:
            feeds = FeedSet.from_bytes(feeds_raw) if feeds_raw else FeedSet()
        except DecodeError as exc:
            raise StateCorrupt(f"{store.state_dir}: feeds file is corrupt ({exc.message})") from None
        doc = FleetDoc.load(doc_raw, key, expected_fleet_id=fleet.fleet_id)
        local = LocalInfo.decode(local_raw) if local_raw else LocalInfo(secrets.token_urlsafe(24))
        return cls(store, key, fleet, feeds, doc, local)

    @classmethod
    def found(cls, store: StateStore, *, fleet_name: str, card: records.HostCard, now_ms: int,
              random_bytes: Callable[[int], bytes] = os.urandom) -> NodeState:
        """`tva-agent init`: a new fleet with this node as founder (one genesis, created here only)."""
        if cls.exists(store):
            raise InvalidInput(f"{store.state_dir} already holds a fleet",
                               hint="use another --state-dir, or remove this one to start over")
        if not 0 < len(fleet_name) <= 64:
            raise InvalidInput("fleet name must be 1–64 characters")
        key = load_or_create_identity(store, random_bytes)
        # The founder's key is the fleet's owner; the fleet id is derived from the genesis.
        doc = FleetDoc.genesis(fleet_name, key, card.name, now_ms, random_bytes(16))
        fleet = FleetInfo(doc.fleet_id, fleet_name, random_bytes(32))
        node = cls(store, key, fleet, FeedSet(), doc, LocalInfo(random_bytes(18).hex()))
        node.own.put("card", records.encode_card(card))
        node.own.commit(now_ms)
        node.save()
        return node

    @classmethod
    def joined(cls, store: StateStore, key: NodeKey, fleet: FleetInfo, doc_bytes: bytes,
               deltas: list[bytes], feeds: FeedSet,
               random_bytes: Callable[[int], bytes] = os.urandom) -> NodeState:
        """After admission: adopt the fleet document and the feeds the admitting member sent.

        ``feeds`` already holds this node's own feed (its card went with the join request)."""
        doc = FleetDoc.load(doc_bytes, key, expected_fleet_id=fleet.fleet_id)
        node = cls(store, key, fleet, feeds, doc, LocalInfo(random_bytes(18).hex()))
        for delta in deltas:
            node.apply_delta_quietly(delta)
        node.save()
        return node

    # --- persistence ----------------------------------------------------------------------------

    def save(self) -> None:
        write_snapshot(self.store, self.snapshot())

    def snapshot(self) -> StateSnapshot:
        """What a save writes, detached from the live state (on the thread that owns the state; the
        feeds are encoded later, by ``write_snapshot``, which may run in a worker thread)."""
        return StateSnapshot(self.fleet.encode(), self.feeds.freeze(), self.doc.save(), self.local.encode())

    def adopt_fleet_key(self, epoch: int, psk: bytes) -> bool:
        """Keep a newer fleet key (saved with the next ``save``); False when it is not newer."""
        if epoch <= self.fleet.psk_epoch:
            return False
        self.fleet = replace(self.fleet, psk=psk, psk_epoch=epoch)
        return True

    def set_uptime(self, score: float, sample_ms: int) -> None:
        self.local = replace(self.local, uptime_score=score, uptime_sample_ms=sample_ms)

    # --- membership -----------------------------------------------------------------------------

    def members(self) -> frozenset[str]:
        return self.doc.members()

    def revoked(self) -> frozenset[str]:
        return frozenset(self.doc.revocations())

    def revocation(self):  # -> the fleet document's revocation record (.by, .at_ms, .reason) | None
        """This host's own revocation, if the fleet revoked it (then it no longer takes part)."""
        return self.doc.revocations().get(self.peer_id)

    def refresh_membership(self) -> None:
        """Feeds are accepted only from current members; a revoked host's feed is dropped for good.
        This host's own revocation drops nothing here: it keeps its data and stops taking part
        (agent.runtime), and a state dir that was revoked still loads, so it can be inspected."""
        revoked = self.revoked()
        for peer in revoked:
            if peer == self.peer_id:
                continue
            try:
                self.feeds.revoke(public_from_peer_id(peer))
            except DecodeError:
                continue
        allowed = []
        for peer in self.members():
            try:
                allowed.append(public_from_peer_id(peer))
            except DecodeError:
                continue
        self.feeds.set_allowed(frozenset(allowed))

    def resolve_host(self, host: str) -> str:
        """A peer id, or a host name known from cards and admissions → the peer id."""
        known = self.doc.admissions()
        if host in known:
            return host
        cards = records.cards(self.feeds)
        by_name = sorted({p for p, c in cards.items() if c.name == host}
                         | {p for p, a in known.items() if a.name == host})
        if len(by_name) == 1:
            return by_name[0]
        if len(by_name) > 1:
            raise InvalidInput(f"host name {host!r} is ambiguous", hint="use the peer id: " + ", ".join(by_name))
        raise NotFound(f"unknown host {host!r}", hint="`tva-agent hosts` lists names and peer ids")

    # --- own feed -------------------------------------------------------------------------------

    def card(self) -> records.HostCard | None:
        raw = self.own.get("card")
        return records.decode_card(raw) if raw is not None else None

    def apply_delta_quietly(self, delta: bytes) -> bool:
        """Apply a delta from a trusted bulk source (join reply); bad ones are skipped, not fatal."""
        from tva.errors import RemoteDataError

        try:
            self.feeds.apply_delta(delta)
        except RemoteDataError:
            return False
        return True

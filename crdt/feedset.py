"""A replica's set of host feeds, and the local writer of its own feed.

``FeedSet`` holds one :class:`crdt.feed.Feed` per owner, hands out deltas to peers by version
vector, and merges received deltas only after :func:`crdt.feed.apply_to_feed` verified them.
``OwnFeed`` is the single writer of this node's feed: it batches ``put``/``delete`` and signs one
head per ``commit``. Merge is per-owner "the newer signed head wins", so it is commutative,
associative and idempotent (tests/crdt/test_feed_laws.py).

Persistence (``to_bytes``/``from_bytes``) stores each feed's accumulator so a load of 100k entries
does not recompute 100k 8192-bit hashes; ``from_bytes(verify=True)`` does the full re-check.
Uncommitted ``OwnFeed`` changes are not part of the state: commit before saving.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from crdt.codec import expect_bytes, expect_int, expect_list, expect_str, pack, unpack_bounded
from crdt.feed import (
    DELTA_BYTES_MAX,
    FEED_BYTES_MAX,
    FEED_ENTRIES_MAX,
    KEY_BYTES_MAX,
    VALUE_BYTES_MAX,
    Delta,
    Feed,
    SignedHead,
    accumulator_bytes,
    apply_to_feed,
    decode_delta,
    digest_of,
    encode_delta,
    entry_bytes,
    entry_hash,
    feed_from_parts,
    head_from_fields,
)
from crdt.hlc import VERSION_MAX, hlc_next
from crdt.identity import PUBLIC_KEY_BYTES, NodeKey
from tva.errors import DecodeError, InvalidInput, RemoteDataError, RevokedPeer, StateCorrupt, TooLarge

OWNERS_MAX = 1024
STATE_FORMAT = 1
STATE_BYTES_MAX = 1 << 30
_STATE_MAGIC = "tva-feedset"
_CHECKSUM_BYTES = 32
# The sum of up to FEED_ENTRIES_MAX 8192-bit values needs at most 8192 + 15 bits.
_ACC_BYTES_MAX = 1024 + 2


@dataclass(frozen=True)
class AppliedDelta:
    owner: bytes
    changed_keys: tuple[str, ...]
    full: bool
    version: int = 0


class FeedSet:
    """Every feed this replica holds. ``allowed=None`` accepts any validly signed owner (tests)."""

    def __init__(self, allowed: frozenset[bytes] | None = None, *, owners_max: int = OWNERS_MAX) -> None:
        self._feeds: dict[bytes, Feed] = {}
        self._allowed: frozenset[bytes] | None = frozenset(allowed) if allowed is not None else None
        self._revoked: set[bytes] = set()
        self._local: set[bytes] = set()  # owners with an OwnFeed here: always allowed
        self._owners_max = owners_max

    # --- membership ----------------------------------------------------------------------------
    @property
    def allowed(self) -> frozenset[bytes] | None:
        return self._allowed

    def set_allowed(self, allowed: Iterable[bytes] | None) -> tuple[bytes, ...]:
        """Admit exactly these owners (plus our own); drops and returns the feeds of everyone else."""
        self._allowed = frozenset(allowed) if allowed is not None else None
        if self._allowed is None:
            return ()
        dropped = tuple(sorted(o for o in self._feeds if o not in self._allowed and o not in self._local))
        for o in dropped:
            del self._feeds[o]
        return dropped

    def revoke(self, owner: bytes) -> bool:
        """Drop ``owner``'s feed and refuse it forever after. True when a feed was dropped."""
        if owner in self._local:
            raise InvalidInput("cannot revoke this node's own feed", hint="revoke it from another member")
        self._revoked.add(owner)
        return self._feeds.pop(owner, None) is not None

    def is_revoked(self, owner: bytes) -> bool:
        return owner in self._revoked

    @property
    def revoked(self) -> frozenset[bytes]:
        return frozenset(self._revoked)

    def _check_admitted(self, owner: bytes) -> None:
        if owner in self._revoked:
            raise RevokedPeer(f"feed owner {owner.hex()[:16]}… is revoked")
        if self._allowed is not None and owner not in self._allowed and owner not in self._local:
            raise RevokedPeer(f"feed owner {owner.hex()[:16]}… is not a member of this fleet")

    # --- reading -------------------------------------------------------------------------------
    def owners(self) -> tuple[bytes, ...]:
        return tuple(sorted(self._feeds))

    def feed(self, owner: bytes) -> Feed | None:
        return self._feeds.get(owner)

    def version_vector(self) -> dict[bytes, int]:
        return {o: f.version for o, f in self._feeds.items()}

    def deltas_since(self, vv: Mapping[bytes, int], bytes_max: int = DELTA_BYTES_MAX) -> list[bytes]:
        """Encoded deltas the holder of ``vv`` lacks, in owner order, totalling at most ``bytes_max``.

        The first delta is always included (so a small ``bytes_max`` still makes progress); a single
        delta never exceeds DELTA_BYTES_MAX because feeds are capped at FEED_BYTES_MAX. An owner is
        sent a full snapshot when ``vv`` is behind its GC horizon. Call again after they are applied.

        The work is bounded by the budget too, not by how far behind ``vv`` is: a whole feed that
        cannot fit is skipped unencoded, and encoding stops once the budget (or as much again in
        deltas that turned out too big) is spent — a 10-byte request cannot make us encode every feed.
        """
        return self._deltas_among(self._feeds, vv, bytes_max)

    def _deltas_among(self, owners: Iterable[bytes], vv: Mapping[bytes, int], bytes_max: int) -> list[bytes]:
        """``deltas_since`` for the feeds of ``owners`` (held ones; a subclass that knows where
        the others cannot differ passes fewer)."""
        out: list[bytes] = []
        total = wasted = 0
        # the feeds they lack, found before sorting: a SYNC usually lacks a few of a thousand
        lacking = []
        feeds = self._feeds
        for owner in owners:
            feed = feeds[owner]
            theirs = vv.get(owner, 0)
            if type(theirs) is not int or theirs < 0:
                theirs = 0  # a nonsense claim costs them a full resend, never a crash
            if theirs < feed.version:
                lacking.append((owner, feed, theirs))
        lacking.sort(key=lambda x: x[0])
        for _owner, feed, theirs in lacking:
            if out and (total >= bytes_max or wasted > bytes_max):
                break
            whole = theirs == 0 or theirs < feed.gc_version  # they get every entry: its size is known
            if out and whole and total + feed.size_bytes > bytes_max:
                continue
            data = encode_delta(feed.delta_since(theirs))
            if out and total + len(data) > bytes_max:
                wasted += len(data)
                continue
            out.append(data)
            total += len(data)
        return out

    def snapshot(self, owner: bytes) -> bytes | None:
        """A full, owner-signed snapshot of one feed (None if not held).

        For a peer whose incremental deltas for ``owner`` keep failing verification although the
        head is validly signed: its copy diverged (e.g. the owner equivocated after restoring an
        old backup), and a snapshot with a newer head replaces it wholesale.
        """
        feed = self._feeds.get(owner)
        if feed is None:
            return None
        return encode_delta(feed.delta_since(-1))

    # --- merging -------------------------------------------------------------------------------
    def apply_delta(self, data: bytes) -> AppliedDelta:
        """Verify and merge one encoded delta; raises a RemoteDataError and changes nothing on any problem."""
        delta = decode_delta(data)
        return self._apply(delta)

    @staticmethod
    def delta_head(data: bytes) -> tuple[bytes, int]:
        """(owner, version) an encoded delta claims, unverified; RemoteDataError if malformed."""
        delta = decode_delta(data)
        return delta.owner, delta.head.version

    def _apply(self, delta: Delta) -> AppliedDelta:
        self._check_admitted(delta.owner)
        feed = self._feeds.get(delta.owner)
        is_new = feed is None
        if is_new:
            if len(self._feeds) >= self._owners_max:
                raise TooLarge(f"already holding {len(self._feeds)} feeds, the limit")
            feed = Feed(delta.owner)
        changed = apply_to_feed(feed, delta)
        if is_new:
            self._feeds[delta.owner] = feed
        return AppliedDelta(delta.owner, changed, delta.full, feed.version)

    def merge_from(self, other: FeedSet) -> list[AppliedDelta]:
        """Pull whatever ``other`` holds newer, through the same verified path as the network."""
        applied = []
        for data in other.deltas_since(self.version_vector(), bytes_max=1 << 62):
            try:
                applied.append(self.apply_delta(data))
            except RevokedPeer:
                continue  # we refuse that owner; other replicas may not (yet)
        return applied

    # --- persistence ---------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        return encode_frozen(self.freeze())

    def freeze(self) -> FrozenFeedSet:
        """A consistent copy to encode elsewhere (the daemon encodes it in a worker thread while this
        set goes on changing): shallow copies only — entries are immutable tuples — ~5 ms for 100k."""
        feeds = tuple((owner, f.head.fields(), f.accumulator, dict(f._entries))
                      for owner, f in sorted(self._feeds.items()))
        allowed = tuple(sorted(self._allowed)) if self._allowed is not None else None
        return FrozenFeedSet(allowed, tuple(sorted(self._revoked)), feeds)

    @classmethod
    def from_bytes(cls, data: bytes, *, verify: bool = False) -> FeedSet:
        """Load ``to_bytes`` output; any inconsistency raises StateCorrupt.

        Structure, counts, version ranges and digest-of-accumulator are always checked; with
        ``verify`` every entry hash and head signature is recomputed too (seconds for 100k entries).
        """
        try:
            return cls._load(data, verify)
        except StateCorrupt:
            raise
        except RemoteDataError as exc:
            raise StateCorrupt(f"feed state: {exc.message}") from None

    @classmethod
    def _load(cls, data: bytes, verify: bool) -> FeedSet:
        if not isinstance(data, bytes | bytearray) or not data:
            raise StateCorrupt("feed state: empty or not bytes")
        if data[0] != STATE_FORMAT:
            raise StateCorrupt(f"feed state: format {data[0]} is not {STATE_FORMAT}")
        # A checksum over the whole body: membership lists and unverified entries are covered too,
        # for ~15 ms on 10 MB (signatures only protect what an owner signed).
        raw = bytes(data[1 + _CHECKSUM_BYTES:])
        if len(data) < 1 + _CHECKSUM_BYTES or hashlib.sha256(raw).digest() != data[1:1 + _CHECKSUM_BYTES]:
            raise StateCorrupt("feed state: checksum mismatch (truncated or corrupt file)")
        body = unpack_bounded(
            raw, what="feed state", bytes_max=STATE_BYTES_MAX, str_bytes_max=KEY_BYTES_MAX,
            bin_bytes_max=VALUE_BYTES_MAX, array_len_max=3 * FEED_ENTRIES_MAX,
        )
        top = expect_list(body, "feed state", 4)
        if top[0] != _STATE_MAGIC:
            raise StateCorrupt("feed state: not a feed-set file")
        allowed = None
        if top[1] is not None:
            allowed = frozenset(expect_bytes(o, "allowed owner", PUBLIC_KEY_BYTES)
                                for o in expect_list(top[1], "allowed"))
        fs = cls(allowed)
        fs._revoked = {expect_bytes(o, "revoked owner", PUBLIC_KEY_BYTES) for o in expect_list(top[2], "revoked")}
        for i, raw in enumerate(expect_list(top[3], "feeds")):
            feed = _load_feed(raw, i, verify)
            if feed.owner in fs._feeds or feed.owner in fs._revoked:
                raise StateCorrupt(f"feed state: feed {i} is duplicated or revoked")
            fs._feeds[feed.owner] = feed
        return fs

    def state_key(self) -> bytes:
        """Canonical bytes of the replicated state (the feeds), for equality checks."""
        out = []
        for owner in sorted(self._feeds):
            f = self._feeds[owner]
            out.append([owner, f.head.fields(), [list(e) for e in f.entries_since(0)]])
        return pack(out)

    def copy(self) -> FeedSet:
        fs = FeedSet.from_bytes(self.to_bytes())
        fs._owners_max = self._owners_max
        return fs


def _load_feed(raw: object, i: int, verify: bool) -> Feed:
    what = f"feed {i}"
    f = expect_list(raw, what, 4)
    owner = expect_bytes(f[0], f"{what} owner", PUBLIC_KEY_BYTES)
    head = head_from_fields(owner, f[1], f"{what} head")
    acc_raw = expect_bytes(f[2], f"{what} accumulator", bytes_max=_ACC_BYTES_MAX)
    flat = expect_list(f[3], f"{what} entries")
    if len(flat) != 3 * head.entry_count:
        raise StateCorrupt(f"feed state: {what} holds {len(flat) // 3} entries, its head says {head.entry_count}")
    entries: dict[str, tuple[int, bytes | None]] = {}
    top, gc = head.version, head.gc_version
    for j in range(0, len(flat), 3):
        key, version, value = flat[j], flat[j + 1], flat[j + 2]
        # Fast path checks inline: this loop runs 100k times on a full load.
        if type(key) is not str or type(version) is not int or not 0 < version <= top:
            expect_str(key, f"{what} key", KEY_BYTES_MAX)
            expect_int(version, f"{what} version", 1, top)
        if value is None:
            if version <= gc:
                raise StateCorrupt(f"feed state: {what} keeps a tombstone below its GC horizon")
        elif type(value) is not bytes:
            raise StateCorrupt(f"feed state: {what} entry value is not bytes")
        entries[key] = (version, value)
    if len(entries) != head.entry_count:
        raise StateCorrupt(f"feed state: {what} has duplicate keys")
    acc = int.from_bytes(acc_raw, "big")
    if digest_of(acc) != head.digest:
        raise StateCorrupt(f"feed state: {what} accumulator does not match its head")
    if verify:
        if not head.verifies():
            raise StateCorrupt(f"feed state: {what} head signature does not verify")
        if sum(entry_hash(owner, k, *e) for k, e in entries.items()) != acc:
            raise StateCorrupt(f"feed state: {what} entries do not match the accumulator")
    feed = feed_from_parts(owner, entries, acc, head)
    if feed.size_bytes > FEED_BYTES_MAX:
        raise StateCorrupt(f"feed state: {what} exceeds the feed size limit")
    return feed


@dataclass(frozen=True)
class FrozenFeedSet:
    """``FeedSet.freeze()``: what ``to_bytes`` writes, detached from the live set."""

    allowed: tuple[bytes, ...] | None
    revoked: tuple[bytes, ...]
    feeds: tuple[tuple[bytes, list, int, dict], ...]  # (owner, head fields, accumulator, entries)


def encode_frozen(frozen: FrozenFeedSet) -> bytes:
    """The persisted form (``FeedSet.from_bytes`` reads it); pure, safe to run in any thread."""
    feeds = []
    for owner, head, acc, entries in frozen.feeds:
        flat: list = []
        for k, e in entries.items():
            flat += (k, e[0], e[1])
        feeds.append([owner, head, accumulator_bytes(acc), flat])
    allowed = list(frozen.allowed) if frozen.allowed is not None else None
    body = pack([_STATE_MAGIC, allowed, list(frozen.revoked), feeds])
    return bytes([STATE_FORMAT]) + hashlib.sha256(body).digest() + body


def encode_version_vector(vv: Mapping[bytes, int]) -> bytes:
    """Wire form of a version vector: a flat msgpack array [owner, version, …] sorted by owner."""
    flat: list = []
    for owner in sorted(vv):
        flat += (owner, vv[owner])
    return pack(flat)


def decode_version_vector(data: bytes) -> dict[bytes, int]:
    """Inverse of :func:`encode_version_vector`, bounded to OWNERS_MAX owners; RemoteDataError otherwise."""
    flat = expect_list(unpack_bounded(
        data, what="version vector", bytes_max=OWNERS_MAX * 48 + 8, str_bytes_max=0,
        bin_bytes_max=PUBLIC_KEY_BYTES, array_len_max=2 * OWNERS_MAX,
    ), "version vector")
    if len(flat) % 2:
        raise DecodeError("version vector: odd number of fields")
    vv = {}
    for i in range(0, len(flat), 2):
        owner = expect_bytes(flat[i], "version vector owner", PUBLIC_KEY_BYTES)
        vv[owner] = expect_int(flat[i + 1], "version vector version", 0, VERSION_MAX)
    if len(vv) != len(flat) // 2:
        raise DecodeError("version vector: an owner appears twice")
    return vv


class OwnFeed:
    """This node's feed writer. Changes are batched until ``commit`` signs them under one head."""

    def __init__(self, key: NodeKey, feedset: FeedSet) -> None:
        if feedset.is_revoked(key.public):
            raise InvalidInput("this node's key is revoked in the given feed set")
        self._key = key
        self._fs = feedset
        self._pending: dict[str, bytes | None] = {}
        self._contrib: dict[str, int] = {}  # pending key -> bytes it adds to the feed's accounted size
        self._new: set[str] = set()  # pending keys the feed does not hold yet
        self._pending_bytes = 0
        self._revived = (0, 0)  # pending keys that are held tombstones: (count, accounted bytes)
        self._tomb_cache = (-1, 0, 0)
        feedset._local.add(key.public)

    @property
    def owner(self) -> bytes:
        return self._key.public

    @property
    def feed(self) -> Feed | None:
        return self._fs.feed(self.owner)

    @property
    def version(self) -> int:
        f = self.feed
        return f.version if f is not None else 0

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def get(self, key: str) -> bytes | None:
        """The value as it will be after the next commit."""
        if key in self._pending:
            return self._pending[key]
        f = self.feed
        return f.get(key) if f is not None else None

    def put(self, key: str, value: bytes) -> None:
        _check_key(key)
        if not isinstance(value, bytes):
            raise InvalidInput(f"feed values are bytes, got {type(value).__name__}")
        if len(value) > VALUE_BYTES_MAX:
            raise InvalidInput(f"value for {key!r} is {len(value)} bytes; the limit is {VALUE_BYTES_MAX}")
        self._check_room(key, value)
        self._pending[key] = value

    def delete(self, key: str) -> None:
        _check_key(key)
        f = self.feed
        if (f is None or f.get(key) is None) and key not in self._pending:
            return  # nothing to delete; a tombstone for an unknown key would only cost space
        self._check_room(key, None)
        self._pending[key] = None

    def _check_room(self, key: str, value: bytes | None) -> None:
        """Refuse a put that would overflow the feed limits (commit re-checks exactly).

        Tracked incrementally: a full rescan per put would make building a 25k-entry feed quadratic.
        """
        f = self._fs._feeds.get(self._key.public)
        held = f._entries.get(key) if f is not None else None
        if held is None:
            contrib = entry_bytes(key, value)
        else:  # same key, so only the value length differs
            contrib = (len(value) if value is not None else 0) - (len(held[1]) if held[1] is not None else 0)
        is_new = held is None and key not in self._new
        count = (f.entry_count if f is not None else 0) + len(self._new) + (1 if is_new else 0)
        size = (f.size_bytes if f is not None else 0) + self._pending_bytes - self._contrib.get(key, 0) + contrib
        revives = held is not None and held[1] is None and key not in self._contrib
        if (count > FEED_ENTRIES_MAX or size > FEED_BYTES_MAX) and f is not None:
            # Tombstones the commit may collect (see commit) do not count against the room,
            # except those this batch writes again.
            t_count, t_bytes = self._tombstone_room(f)
            count -= t_count - self._revived[0] - revives
            size -= t_bytes - self._revived[1] - (entry_bytes(key, None) if revives else 0)
        if count > FEED_ENTRIES_MAX:
            raise InvalidInput(f"feed is full ({FEED_ENTRIES_MAX} entries)", hint="delete entries first")
        if size > FEED_BYTES_MAX:
            raise InvalidInput(f"feed would exceed {FEED_BYTES_MAX} bytes", hint="delete entries first")
        self._pending_bytes += contrib - self._contrib.get(key, 0)
        self._contrib[key] = contrib
        if is_new:
            self._new.add(key)
        if revives:
            self._revived = (self._revived[0] + 1, self._revived[1] + entry_bytes(key, None))

    def _tombstone_room(self, f: Feed) -> tuple[int, int]:
        """(count, accounted bytes) of the held tombstones, computed once per feed version."""
        if self._tomb_cache[0] != f.version:
            keys = f._tombstones
            self._tomb_cache = (f.version, len(keys), sum(entry_bytes(k, None) for k in keys))
        return self._tomb_cache[1], self._tomb_cache[2]

    def commit(self, now_ms: int) -> bytes | None:
        """Sign pending changes under one new head; returns the delta to push (None: nothing changed)."""
        f = self.feed if self.feed is not None else Feed(self.owner)
        changes = {}
        for k, v in self._pending.items():
            held = f.entry(k)
            if (held.value if held else None) == v and (held is not None or v is None):
                continue  # unchanged, or deleting something absent
            changes[k] = v
        if not changes:
            self._clear_pending()
            return None
        prev = f.version
        version = hlc_next(prev, now_ms)
        stamped = {k: (version, v) for k, v in changes.items()}
        gc = f.gc_version
        overlay = f._overlay(stamped, gc)
        if (overlay.count > FEED_ENTRIES_MAX or overlay.size_bytes > FEED_BYTES_MAX) and prev > gc:
            # Churn filled the feed with tombstones: collect every one older than this commit in
            # the same signed head (replicas behind the new horizon get a full snapshot).
            gc = prev
            overlay = f._overlay(stamped, gc)
        if overlay.count > FEED_ENTRIES_MAX or overlay.size_bytes > FEED_BYTES_MAX:
            raise InvalidInput("commit would exceed the feed limits", hint="delete entries first")
        head = SignedHead.sign(self._key, version, gc, overlay.count, digest_of(overlay.acc))
        f._install(overlay, head)
        self._clear_pending()
        self._fs._feeds[self.owner] = f
        entries = tuple(sorted((k, version, v) for k, v in changes.items()))
        return encode_delta(Delta(self.owner, prev, False, entries, head))

    def _clear_pending(self) -> None:
        self._pending.clear()
        self._contrib.clear()
        self._new.clear()
        self._pending_bytes = 0
        self._revived = (0, 0)

    def rebase(self, now_ms: int) -> bytes | None:
        """Sign a new head whose GC horizon is its own version, and return the full snapshot.

        After a restart the last pushed commit may not have been saved: peers may hold a head of
        ours we no longer have, and every later incremental delta would fail their digest check
        (a split feed, for good). A horizon at the new version makes every replica holding any
        older head — the lost one included — take a full snapshot instead. None: no feed yet.
        """
        f = self.feed
        if f is None:
            return None
        if self._pending:
            raise InvalidInput("commit pending changes before rebasing", hint="call commit() first")
        version = hlc_next(f.version, now_ms)
        overlay = f._overlay({}, version)
        head = SignedHead.sign(self._key, version, version, overlay.count, digest_of(overlay.acc))
        f._install(overlay, head)
        return encode_delta(f.delta_since(-1))

    def collect_tombstones(self, horizon_version: int) -> bytes | None:
        """Drop own tombstones at or below ``horizon_version`` (the minimum of every member's
        version vector entry for us, computed by the caller) and sign a head saying so.

        Returns the delta to push, or None when nothing was collectable.
        """
        f = self.feed
        if f is None or not 0 <= horizon_version <= VERSION_MAX:
            return None
        horizon = min(horizon_version, f.version)
        if horizon <= f.gc_version:
            return None
        if not any(f.entry(k).version <= horizon for k in f.tombstone_keys()):
            return None
        prev = f.version
        overlay = f._overlay({}, horizon)
        head = SignedHead.sign(self._key, prev + 1, horizon, overlay.count, digest_of(overlay.acc))
        f._install(overlay, head)
        return encode_delta(Delta(self.owner, prev, False, (), head))


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise InvalidInput("feed keys are non-empty strings")
    try:
        n = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput("feed keys must be valid UTF-8 text") from None
    if n > KEY_BYTES_MAX:
        raise InvalidInput(f"feed key is {n} bytes; the limit is {KEY_BYTES_MAX}")

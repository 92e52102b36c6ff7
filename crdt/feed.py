"""Single-writer signed feeds: one host's facts, verifiable by anyone, servable by anyone.

Model
-----
A feed maps ``key`` (str, ≤ 200 UTF-8 bytes) → ``Entry(version, value)``; ``value`` is bytes
(≤ 4 KiB) or ``None`` for a tombstone. Only the owner writes. Each commit stamps the changed
entries with one hybrid-logical-clock version (:mod:`crdt.hlc`) and signs a **head**::

    SignedHead(owner, version, gc_version, entry_count, digest, signature)

signed over ``b"tva/feed-head/v1" + owner + u64 version + u64 gc_version + u32 count + digest``.

The digest: a homomorphic multiset hash
---------------------------------------
``digest = sha256(A)`` where ``A = Σ h(e)`` is the *exact integer sum* over every entry (tombstones
included) of ``h(e) = int(shake_256(b"tva/feed-entry/v1" + owner + msgpack([key, version,
value])).digest(1024))``. Because the sum is homomorphic, a receiver updates ``A`` in O(delta):
subtract the hashes of the entries a delta replaces, add the new ones, and compare with the signed
head. So a delta need not come from the owner: any replica holding the feed at head ``V`` can
serve "everything newer than ``since``", and the receiver still knows the result is *exactly*
the owner's state at ``V`` — a relay cannot add, drop, reorder, replay or alter an entry.

Why this is collision resistant: forging means finding two different multisets with equal
sums. Over the integers with no modulus, any such pair is also a collision modulo ``2**8192``,
so the attack is at least as hard as the k-sum problem on 8192-bit random values. Wagner's
generalized-birthday algorithm solves k-sum in about ``2**(n / (1 + lg k))`` work, minimised over k
at roughly ``2**(2 * sqrt(n))``; for n = 8192 that is about ``2**181`` — well past the 128-bit level.
(This is the AdHash/MuHash argument of Bellare–Micciancio; 8192-bit elements are the price of not
needing a modulus, and cost ~7 µs an entry to compute.) The head's ``entry_count`` is checked too.

Deltas
------
``Delta(owner, since, full, entries, head)``; entries are every ``(key, version, value)`` with
``version > since`` (tombstones included), sorted by key. A receiver holding the owner's feed at
version ``H`` accepts it when the head verifies, ``head.version > H`` (else :class:`StaleData`),
``since ≤ H`` and ``H ≥ head.gc_version`` (else :class:`GapError`), every entry version lies in
``(since, head.version]``, and after the overlay (plus purging its own tombstones at or below
``head.gc_version``) the count and digest match the head *exactly*. Only then is anything changed.
A ``full`` delta is a snapshot that replaces the owner's feed wholesale after the same checks; it
is what a peer behind the owner's tombstone-GC horizon (or a brand-new peer) receives.

Limits (a validly signed but hostile member must not exhaust us either): ≤ 25,000 entries and
≤ ~4 MiB of keys+values per feed, so no delta or snapshot exceeds ``DELTA_BYTES_MAX``.

Tombstones in steady state
--------------------------
A delete leaves a tombstone until the owner raises ``gc_version`` past it. Any horizon is safe —
a replica behind it receives a full snapshot — so the owner picks one by itself
(:func:`tombstone_horizon`): every tombstone older than a TTL, and beyond that the oldest ones
while they outnumber the live entries (or a small floor). ``OwnFeed.commit`` also collects every
older tombstone when a commit would otherwise overflow the limits, so churn never refuses a write
and a feed stays bounded by its live entries.

Known limit: an owner that signs two different heads with the same version (e.g. restored from an
old backup while its clock ran backwards) splits replicas until its next commit. The HLC's wall
component makes that unlikely; ``OwnFeed`` always continues from the newest head it holds.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import NamedTuple

from crdt.codec import expect_bool, expect_bytes, expect_int, expect_list, expect_str, pack, unpack_bounded
from crdt.hlc import VERSION_MAX, WALL_MS_MAX, hlc_version
from crdt.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, NodeKey, verify
from tva.errors import DecodeError, GapError, SignatureError, StaleData, TooLarge, UnsupportedVersion

DELTA_FORMAT = 1
KEY_BYTES_MAX = 200
VALUE_BYTES_MAX = 4096
FEED_ENTRIES_MAX = 25_000
# Accounted size of one entry beyond its key and value: the msgpack framing of (key, version, value)
# is at most 1 + 2 + 9 + 3 bytes; round up.
ENTRY_OVERHEAD_BYTES = 16
DELTA_BYTES_MAX = 4 * 1024 * 1024
# Leave room for the delta's envelope and head so a full snapshot always fits DELTA_BYTES_MAX.
FEED_BYTES_MAX = DELTA_BYTES_MAX - 4096
DIGEST_BYTES = 32
ENTRY_HASH_BYTES = 1024  # 8192-bit multiset-hash elements; see the module docstring
_ENTRY_DOMAIN = b"tva/feed-entry/v1"
_HEAD_DOMAIN = b"tva/feed-head/v1"
_HEAD_FIELDS = struct.Struct(">QQI")


class Entry(NamedTuple):
    """One key's state. A NamedTuple rather than a frozen dataclass: 100k of them are built on load."""

    version: int
    value: bytes | None


def entry_hash(owner: bytes, key: str, version: int, value: bytes | None) -> int:
    data = _ENTRY_DOMAIN + owner + pack([key, version, value])
    return int.from_bytes(hashlib.shake_256(data).digest(ENTRY_HASH_BYTES), "big")


def entry_bytes(key: str, value: bytes | None) -> int:
    """The accounted size of an entry (for FEED_BYTES_MAX)."""
    return len(key.encode("utf-8")) + (len(value) if value is not None else 0) + ENTRY_OVERHEAD_BYTES


def accumulator_bytes(acc: int) -> bytes:
    return acc.to_bytes((acc.bit_length() + 7) // 8, "big")


def digest_of(acc: int) -> bytes:
    return hashlib.sha256(accumulator_bytes(acc)).digest()


@dataclass(frozen=True)
class SignedHead:
    owner: bytes
    version: int
    gc_version: int
    entry_count: int
    digest: bytes
    signature: bytes

    @staticmethod
    def signing_message(owner: bytes, version: int, gc_version: int, entry_count: int, digest: bytes) -> bytes:
        return _HEAD_DOMAIN + owner + _HEAD_FIELDS.pack(version, gc_version, entry_count) + digest

    @classmethod
    def sign(cls, key: NodeKey, version: int, gc_version: int, entry_count: int, digest: bytes) -> SignedHead:
        msg = cls.signing_message(key.public, version, gc_version, entry_count, digest)
        return cls(key.public, version, gc_version, entry_count, digest, key.sign(msg))

    def verifies(self) -> bool:
        msg = self.signing_message(self.owner, self.version, self.gc_version, self.entry_count, self.digest)
        return verify(self.owner, self.signature, msg)

    def fields(self) -> list:
        """The head as sent inside a delta (the owner travels once, in the envelope)."""
        return [self.version, self.gc_version, self.entry_count, self.digest, self.signature]


def head_from_fields(owner: bytes, obj: object, what: str = "head") -> SignedHead:
    f = expect_list(obj, what, 5)
    version = expect_int(f[0], f"{what} version", 1, VERSION_MAX)
    gc_version = expect_int(f[1], f"{what} gc_version", 0, version)
    count = expect_int(f[2], f"{what} entry_count", 0, 2**32 - 1)
    if count > FEED_ENTRIES_MAX:
        raise TooLarge(f"{what}: {count} entries exceeds the feed limit of {FEED_ENTRIES_MAX}")
    digest = expect_bytes(f[3], f"{what} digest", DIGEST_BYTES)
    signature = expect_bytes(f[4], f"{what} signature", SIGNATURE_BYTES)
    return SignedHead(owner, version, gc_version, count, digest, signature)


@dataclass(frozen=True)
class Delta:
    owner: bytes
    since: int
    full: bool
    entries: tuple[tuple[str, int, bytes | None], ...]
    head: SignedHead


def encode_delta(delta: Delta) -> bytes:
    body = [delta.owner, delta.since, delta.full, [list(e) for e in delta.entries], delta.head.fields()]
    return bytes([DELTA_FORMAT]) + pack(body)


def decode_delta(data: bytes) -> Delta:
    """Parse and structurally validate a delta; never raises anything but a RemoteDataError."""
    if isinstance(data, bytes | bytearray | memoryview) and len(data) > DELTA_BYTES_MAX:
        raise TooLarge(f"delta: {len(data)} bytes exceeds the limit of {DELTA_BYTES_MAX}")
    if not isinstance(data, bytes | bytearray | memoryview) or not data:
        raise DecodeError("delta: expected non-empty bytes")
    if data[0] != DELTA_FORMAT:
        raise UnsupportedVersion(f"delta format {data[0]} (this build speaks {DELTA_FORMAT})")
    body = unpack_bounded(
        bytes(data[1:]), what="delta", bytes_max=DELTA_BYTES_MAX, str_bytes_max=KEY_BYTES_MAX,
        bin_bytes_max=VALUE_BYTES_MAX, array_len_max=FEED_ENTRIES_MAX,
    )
    f = expect_list(body, "delta", 5)
    owner = expect_bytes(f[0], "delta owner", PUBLIC_KEY_BYTES)
    since = expect_int(f[1], "delta since", 0, VERSION_MAX)
    full = expect_bool(f[2], "delta full")
    raw_entries = expect_list(f[3], "delta entries")
    head = head_from_fields(owner, f[4])
    if full and since != 0:
        raise DecodeError("delta: a full snapshot must have since = 0")
    if since >= head.version:
        raise DecodeError(f"delta: since {since} is not below the head version {head.version}")
    entries = []
    prev_key = None
    for i, raw in enumerate(raw_entries):
        e = expect_list(raw, f"delta entry {i}", 3)
        key = expect_str(e[0], f"delta entry {i} key", KEY_BYTES_MAX)
        version = expect_int(e[1], f"delta entry {i} version", since + 1, head.version)
        value = None if e[2] is None else expect_bytes(e[2], f"delta entry {i} value", bytes_max=VALUE_BYTES_MAX)
        # Sorted, distinct keys: one canonical encoding per delta, and no key listed twice.
        if prev_key is not None and key <= prev_key:
            raise DecodeError(f"delta entry {i}: keys not strictly sorted")
        if value is None and version <= head.gc_version:
            raise DecodeError(f"delta entry {i}: tombstone at or below the GC horizon")
        prev_key = key
        entries.append((key, version, value))
    return Delta(owner, since, full, tuple(entries), head)


class Feed:
    """One owner's feed as held by a replica (read-only outside this package)."""

    __slots__ = ("_acc", "_bytes", "_entries", "_head", "_tombstones", "owner")

    def __init__(self, owner: bytes) -> None:
        self.owner = owner
        self._entries: dict[str, tuple[int, bytes | None]] = {}
        self._tombstones: set[str] = set()
        self._acc = 0
        self._bytes = 0
        self._head: SignedHead | None = None

    # --- reading -------------------------------------------------------------------------------
    @property
    def head(self) -> SignedHead | None:
        return self._head

    @property
    def version(self) -> int:
        return self._head.version if self._head else 0

    @property
    def gc_version(self) -> int:
        return self._head.gc_version if self._head else 0

    @property
    def entry_count(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def accumulator(self) -> int:
        return self._acc

    def entry(self, key: str) -> Entry | None:
        e = self._entries.get(key)
        return Entry(*e) if e is not None else None

    def get(self, key: str) -> bytes | None:
        e = self._entries.get(key)
        return e[1] if e is not None else None

    def live_items(self):
        """(key, value) of every entry that is not a tombstone, in no particular order."""
        return ((k, e[1]) for k, e in self._entries.items() if e[1] is not None)

    def tombstone_keys(self) -> frozenset[str]:
        return frozenset(self._tombstones)

    def entries_since(self, since: int) -> tuple[tuple[str, int, bytes | None], ...]:
        return tuple(sorted((k, e[0], e[1]) for k, e in self._entries.items() if e[0] > since))

    def delta_since(self, since: int) -> Delta:
        """What a holder at ``since`` lacks: a snapshot when ``since`` is behind the GC horizon
        (pass ``since=-1`` to force a snapshot)."""
        if self._head is None:
            raise ValueError("an empty feed has no delta")
        if since < self._head.gc_version:
            return Delta(self.owner, 0, True, self.entries_since(0), self._head)
        return Delta(self.owner, since, False, self.entries_since(since), self._head)

    # --- changing (package-internal) -----------------------------------------------------------
    def _overlay(self, changes: dict[str, tuple[int, bytes | None]], gc_version: int) -> _Overlay:
        """The feed after ``changes`` and purging tombstones ≤ gc_version, computed without mutating."""
        owner, entries = self.owner, self._entries
        acc, size, count = self._acc, self._bytes, len(entries)
        for key, new in changes.items():
            old = entries.get(key)
            if old is not None:
                if old == new:
                    continue
                acc -= entry_hash(owner, key, *old)
                size -= entry_bytes(key, old[1])
                count -= 1
            acc += entry_hash(owner, key, *new)
            size += entry_bytes(key, new[1])
            count += 1
        purged = []
        if gc_version:
            # Tombstones at or below our current horizon are already gone: only a raised horizon
            # needs a scan of the held ones; new tombstones in ``changes`` are always checked.
            candidates = {k for k, e in changes.items() if e[1] is None}
            if gc_version > self.gc_version:
                candidates |= self._tombstones
            for key in candidates:
                e = changes.get(key) or entries.get(key)
                if e is not None and e[1] is None and e[0] <= gc_version:
                    purged.append(key)
                    acc -= entry_hash(owner, key, *e)
                    size -= entry_bytes(key, None)
                    count -= 1
        return _Overlay(changes, tuple(purged), acc, size, count)

    def _install(self, overlay: _Overlay, head: SignedHead) -> tuple[str, ...]:
        """Commit a verified overlay; returns the keys whose live value changed."""
        entries, tomb = self._entries, self._tombstones
        changed = []
        for key, new in overlay.changes.items():
            old = entries.get(key)
            if (old[1] if old else None) != new[1]:
                changed.append(key)
            entries[key] = new
            if new[1] is None:
                tomb.add(key)
            else:
                tomb.discard(key)
        for key in overlay.purged:
            del entries[key]
            tomb.discard(key)
        self._acc, self._bytes, self._head = overlay.acc, overlay.size_bytes, head
        return tuple(sorted(changed))

    def _replace(self, entries: dict[str, tuple[int, bytes | None]], acc: int, size: int,
                 head: SignedHead) -> tuple[str, ...]:
        old = self._entries
        changed = sorted(
            k for k in old.keys() | entries.keys()
            if (old[k][1] if k in old else None) != (entries[k][1] if k in entries else None)
        )
        self._entries = entries
        self._tombstones = {k for k, e in entries.items() if e[1] is None}
        self._acc, self._bytes, self._head = acc, size, head
        return tuple(changed)


@dataclass(frozen=True)
class _Overlay:
    changes: dict[str, tuple[int, bytes | None]]
    purged: tuple[str, ...]
    acc: int
    size_bytes: int
    count: int


def _check_result(head: SignedHead, acc: int, count: int, size: int) -> None:
    if count != head.entry_count:
        raise SignatureError(
            f"delta does not match its signed head: {count} entries, head says {head.entry_count}"
        )
    if digest_of(acc) != head.digest:
        raise SignatureError("delta does not match its signed head (digest differs): tampered or incomplete")
    if size > FEED_BYTES_MAX:
        raise TooLarge(f"feed would hold {size} bytes, over the limit of {FEED_BYTES_MAX}")


def apply_to_feed(feed: Feed, delta: Delta) -> tuple[str, ...]:
    """Verify ``delta`` against ``feed`` and merge it atomically; any problem raises, changing nothing.

    The caller has already decoded the delta and checked the owner is admitted and not revoked.
    """
    head = delta.head
    if delta.owner != feed.owner:
        raise ValueError("delta for another feed")
    if not head.verifies():
        raise SignatureError(f"feed head for owner {feed.owner.hex()[:16]}… is not signed by that owner")
    held = feed.version
    if head.version <= held:
        raise StaleData(f"delta up to version {head.version} is not newer than the held {held}")
    if delta.full:
        acc = size = 0
        entries: dict[str, tuple[int, bytes | None]] = {}
        for key, version, value in delta.entries:
            acc += entry_hash(feed.owner, key, version, value)
            size += entry_bytes(key, value)
            entries[key] = (version, value)
        _check_result(head, acc, len(entries), size)
        return feed._replace(entries, acc, size, head)
    if delta.since > held:
        raise GapError(f"delta starts after version {delta.since}; only {held} is held (pull a full sync)")
    if held < head.gc_version:
        raise GapError(
            f"held version {held} is behind the owner's GC horizon {head.gc_version}: needs a full snapshot"
        )
    overlay = feed._overlay({k: (v, val) for k, v, val in delta.entries}, head.gc_version)
    _check_result(head, overlay.acc, overlay.count, overlay.size_bytes)
    return feed._install(overlay, head)


def tombstone_horizon(feed: Feed, now_ms: int, *, ttl_ms: int, tombstones_floor: int) -> int:
    """The version up to which ``feed``'s owner may collect its tombstones at ``now_ms``.

    Every tombstone older than ``ttl_ms``; beyond that, the oldest ones while more remain than
    ``max(tombstones_floor, live entries)`` — so under any churn the tombstones never outnumber
    the live entries by more than the floor. Never below the feed's current horizon nor above its
    version. (A replica behind the horizon gets a full snapshot, so a high horizon costs bytes,
    never correctness.)
    """
    if feed.head is None:
        return 0
    wall = min(max(0, now_ms - ttl_ms), WALL_MS_MAX)
    horizon = max(feed.gc_version, min(feed.version, hlc_version(wall)))
    tomb = feed._tombstones
    keep = max(tombstones_floor, len(feed._entries) - len(tomb))
    if len(tomb) > keep:
        versions = sorted(v for v in (feed._entries[k][0] for k in tomb) if v > horizon)
        excess = len(versions) - keep
        if excess > 0:
            horizon = max(horizon, versions[excess - 1])
    return horizon


def feed_from_parts(owner: bytes, entries: dict[str, tuple[int, bytes | None]], acc: int,
                    head: SignedHead | None) -> Feed:
    """Rebuild a feed from persisted parts (structure already validated by the caller)."""
    feed = Feed(owner)
    feed._entries = entries
    feed._tombstones = {k for k, e in entries.items() if e[1] is None}
    feed._acc = acc
    feed._bytes = sum(entry_bytes(k, e[1]) for k, e in entries.items())
    feed._head = head
    return feed

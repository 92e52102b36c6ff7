"""Bucketed push-pull anti-entropy: find *which* feed owners differ without sending whole vectors.

Why: a digest mismatch used to be answered with the full version vector (≈45 bytes per feed
owner), and in a busy fleet digests mismatch most of the time simply because a rumour is still in
flight. At 1000 hosts that was ≈90 KB per mismatch, both ways, twice a second per node. Now the
side that saw the mismatch answers with a SUMMARY: one 8-byte hash per bucket of owners (owners
are Ed25519 keys, so their leading bits spread them evenly). The other side compares bucket by
bucket and sends a SYNC whose vector covers only the differing buckets — one in-flight change costs
one bucket (≈8 owners) instead of the whole fleet.

The bucket count is chosen by whoever sends the summary (carried in the frame), so two nodes with
different fleet views still agree on the partition. A hash collision (2^-64 per bucket) or a
mismatch only in the fleet document's heads falls back to what it needs: heads alone, or, when
nothing differs yet the digests do, the full vector.

Membership and presence ride the same exchange (``SoftVector``): per member the (incarnation,
state) and the presence (incarnation, sequence) this node holds, hashed into member buckets. A
rumour that missed a node — e.g. one that started just after it went round — differs there at
the next digest, and the node gets exactly the records it lacks (RECORDS), within one sync
interval instead of waiting for the next refresh. The member hashes are kept incrementally (a sum
of per-entry hashes per fine bucket), because presence changes far more often than feeds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping

from tva.errors import RemoteDataError

from .frames import (  # 256 buckets at most (a summary stays under 2.1 KB), 8-byte hashes
    BUCKET_BITS_MAX,
    BUCKET_HASH_BYTES,
    DELTAS_MAX,
    HEADS_MAX,
    ITEMS_MAX,
    VV_ENTRIES_MAX,
    Deltas,
    Digest,
    DocMessage,
    Item,
    Records,
    Scope,
    SoftEntry,
    Summary,
    Sync,
    item_size,
)
from .outbox import FRAME_OVERHEAD_BYTES, Outbox, error_name
from .types import DocSync, FeedStore

OWNERS_PER_BUCKET = 8  # the target: a differing bucket costs ~8 vector entries
REFUSED_OWNERS_MAX = 256


def bucket_bits_for(owner_count: int) -> int:
    """Bits of the bucket index for a fleet of ``owner_count`` feeds (0: one bucket)."""
    bits = 0
    while bits < BUCKET_BITS_MAX and (OWNERS_PER_BUCKET << bits) < owner_count:
        bits += 1
    return bits


def bucket_of(owner: bytes, bits: int) -> int:
    """The bucket of an owner: the top ``bits`` bits of its first two bytes (owner keys are uniform)."""
    if bits == 0:
        return 0
    head = int.from_bytes(owner[:2].ljust(2, b"\0"), "big")
    return head >> (16 - bits)


def _entry_bytes(owner: bytes, version: int) -> bytes:
    """One (owner, version) pair as hashed by the digest and the bucket hashes alike."""
    return len(owner).to_bytes(1, "big") + owner + version.to_bytes(8, "big")


def bucket_hashes(vv: Mapping[bytes, int], bits: int) -> tuple[bytes, ...]:
    """One hash per bucket over the (owner, version) pairs it holds, in owner order."""
    hashers = [hashlib.blake2b(digest_size=BUCKET_HASH_BYTES) for _ in range(1 << bits)]
    for owner, version in sorted(vv.items()):
        hashers[bucket_of(owner, bits)].update(_entry_bytes(owner, version))
    return tuple(h.digest() for h in hashers)


def differing_buckets(ours: tuple[bytes, ...], theirs: tuple[bytes, ...]) -> tuple[int, ...]:
    return tuple(i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b)


def restrict(vv: Mapping[bytes, int], bits: int, buckets: Iterable[int]) -> dict[bytes, int]:
    """The part of a version vector that falls into ``buckets``."""
    wanted = set(buckets)
    return {o: v for o, v in vv.items() if bucket_of(o, bits) in wanted}


def scoped_vector(mine: Mapping[bytes, int], theirs: Mapping[bytes, int], bits: int,
                  buckets: Iterable[int]) -> dict[bytes, int]:
    """The vector to compute "what they lack" from when their vector covers only ``buckets``:
    their entries inside the scope (an owner missing there is one they lack entirely), and for
    owners outside it our own version, so nothing outside the scope is sent."""
    wanted = set(buckets)
    out = {o: v for o, v in theirs.items() if bucket_of(o, bits) in wanted}
    for owner, version in mine.items():
        if bucket_of(owner, bits) not in wanted:
            out[owner] = version
    return out


# --- membership and presence ---------------------------------------------------------------------

_MOD = 1 << 128
_FINE = 1 << BUCKET_BITS_MAX
NOTHING: Scope = (0, ())  # a scope with no buckets: "this part matched, compare nothing"


def member_bucket(peer: str, bits: int) -> int:
    """Peer ids share a long prefix (12D3KooW…), so members are bucketed by a hash of the id."""
    if bits == 0:
        return 0
    return hashlib.blake2b(peer.encode(), digest_size=2).digest()[0] >> (BUCKET_BITS_MAX - bits)


def soft_entry_hash(peer: str, entry: SoftEntry) -> tuple[int, int]:
    """(fine bucket, hash) of one member's entry: what its share of the digest and bucket hashes is."""
    raw = peer.encode()
    h = hashlib.blake2b(len(raw).to_bytes(1, "big") + raw + b"".join(x.to_bytes(8, "big") for x in entry),
                        digest_size=16).digest()
    return member_bucket(peer, BUCKET_BITS_MAX), int.from_bytes(h, "big")


class SoftVector:
    """peer -> (incarnation, state rank, presence incarnation, presence sequence), with its digest
    and bucket hashes maintained in O(1) per change (sums of per-entry hashes, mod 2^128).

    ``entries`` is ordered by when each entry was last set (that order reaches the wire in a
    SYNC), and each fine bucket knows its members with their set order, so a scoped read costs
    the members of the scope, not of the fleet (a 1000-member fleet reads a few buckets of ~8)."""

    def __init__(self) -> None:
        self.entries: dict[str, SoftEntry] = {}
        self._hash: dict[str, tuple[int, int]] = {}  # peer -> (fine bucket, entry hash)
        self._fine = [0] * _FINE
        self._members: list[dict[str, int]] = [{} for _ in range(_FINE)]  # fine bucket -> {peer: set order}
        self._order = 0
        self._total = 0
        self._bucket_hashes: dict[int, tuple[bytes, ...]] = {}  # bits -> hashes, until the next change

    def set(self, peer: str, entry: SoftEntry | None) -> None:
        old = self._hash.get(peer)
        if old is not None:
            if entry is not None and self.entries[peer] == entry:  # unchanged: only its place moves
                del self.entries[peer]
                self.entries[peer] = entry
                self._order += 1
                self._members[old[0]][peer] = self._order
                return
            del self._hash[peer]
            self._bucket_hashes.clear()
            self._fine[old[0]] = (self._fine[old[0]] - old[1]) % _MOD
            self._total = (self._total - old[1]) % _MOD
            del self.entries[peer]
            del self._members[old[0]][peer]
        if entry is None:
            return
        fine, value = soft_entry_hash(peer, entry)
        self._bucket_hashes.clear()
        self._hash[peer] = (fine, value)
        self.entries[peer] = entry
        self._order += 1
        self._members[fine][peer] = self._order
        self._fine[fine] = (self._fine[fine] + value) % _MOD
        self._total = (self._total + value) % _MOD

    def digest(self) -> bytes:
        return self._total.to_bytes(16, "big")

    def bucket_hashes(self, bits: int) -> tuple[bytes, ...]:
        hit = self._bucket_hashes.get(bits)
        if hit is None:
            width = _FINE >> bits
            hit = self._bucket_hashes[bits] = tuple(
                (sum(self._fine[b * width:(b + 1) * width]) % _MOD).to_bytes(16, "big")[:BUCKET_HASH_BYTES]
                for b in range(1 << bits))
        return hit

    def scoped(self, scope: Scope | None) -> dict[str, SoftEntry]:
        if scope is None:
            return dict(self.entries)
        width = _FINE >> scope[0]
        found: list[tuple[int, str]] = []
        for b in set(scope[1]):
            if not 0 <= b < 1 << scope[0]:
                continue  # no member is there (decoded scopes are checked; this keeps a bad one harmless)
            for fine in range(b * width, (b + 1) * width):
                found.extend((order, peer) for peer, order in self._members[fine].items())
        found.sort()
        entries = self.entries
        return {peer: entries[peer] for _, peer in found}


# (their vector, its scope) -> the records they lack, from the node that holds them
SoftAnswer = Callable[[Mapping[str, SoftEntry], Scope | None], list[Item]]


class Reconciler:
    """One node's side of anti-entropy: its state digest, summaries, and SYNC/DELTAS handling.

    The node owns the timers and the document-sync session pushes; this owns what goes on the
    wire when two nodes compare state. ``invalidate()`` whenever the replicas change."""

    def __init__(self, feeds: FeedStore, doc: DocSync, out: Outbox, frame_bytes_max: int, *,
                 soft: SoftVector | None = None, soft_answer: SoftAnswer = lambda _v, _s: [],
                 records_bytes_max: int = 8192) -> None:
        self.feeds, self.doc, self.out = feeds, doc, out
        self.frame_bytes_max = frame_bytes_max
        self.soft = soft if soft is not None else SoftVector()
        self._soft_answer = soft_answer
        self.records_bytes_max = records_bytes_max
        self._digest: bytes | None = None
        self._vv: dict[bytes, int] | None = None
        self._buckets: dict[int, tuple[bytes, ...]] = {}
        # Negative cache: owners whose feeds we refuse (not admitted here, e.g. while the member
        # lists of two nodes differ) -> (version refused, until when). Our vector claims that
        # version, so peers stop re-sending a feed we would refuse again every round.
        self.refused: dict[bytes, tuple[int, int]] = {}

    def invalidate(self) -> None:
        self._digest = self._vv = None
        self._buckets.clear()

    def vector(self) -> dict[bytes, int]:
        """The feeds' version vector (plus the refused versions), read once per state change."""
        if self._vv is None:
            vv = self.feeds.version_vector()
            claimed = {o: v for o, (v, _) in self.refused.items() if v > vv.get(o, 0)}
            if claimed:  # a new dict: the store's vector is not ours to change (it may be cached)
                vv = {**vv, **claimed}
            self._vv = vv
        return self._vv

    def refuse(self, owner: bytes, version: int, until_ms: int) -> None:
        if len(self.refused) >= REFUSED_OWNERS_MAX and owner not in self.refused:
            del self.refused[next(iter(self.refused))]  # oldest first: a peer cannot grow it
        old = self.refused.get(owner, (0, 0))[0]
        self.refused[owner] = (max(old, version), until_ms)
        self.invalidate()

    def forget_refusals(self, now_ms: int | None = None) -> None:
        """Drop expired refusals (all of them when ``now_ms`` is None: the member list changed)."""
        gone = [o for o, (_, until) in self.refused.items() if now_ms is None or until <= now_ms]
        for owner in gone:
            del self.refused[owner]
        if gone:
            self.invalidate()

    def digest(self) -> bytes:
        if self._digest is None:
            h = hashlib.blake2b(digest_size=16)
            for owner, version in sorted(self.vector().items()):
                h.update(_entry_bytes(owner, version))
            h.update(b"\xff")
            for head in sorted(self.doc.heads()):
                h.update(len(head).to_bytes(1, "big") + head)
            self._digest = h.digest()
        return self._digest

    def _hashes(self, bits: int) -> tuple[bytes, ...]:
        hit = self._buckets.get(bits)
        if hit is None:
            hit = self._buckets[bits] = bucket_hashes(self.vector(), bits)
        return hit

    def digest_frame(self) -> Digest:
        return Digest(self.digest(), self.soft.digest())

    def on_digest(self, peer: str, frame: Digest) -> None:
        feeds_match, soft_match = frame.digest == self.digest(), frame.soft == self.soft.digest()
        if feeds_match and soft_match:
            return
        self.out.count("digest_mismatches")
        bits = bucket_bits_for(len(self.vector())) if not feeds_match else 0
        soft_bits = bucket_bits_for(len(self.soft.entries)) if not soft_match else 0
        self.out.send(peer, Summary(self.digest(), bits, () if feeds_match else self._hashes(bits),
                                    tuple(self.doc.heads()), self.soft.digest(), soft_bits,
                                    () if soft_match else self.soft.bucket_hashes(soft_bits)))

    def on_summary(self, peer: str, frame: Summary) -> None:
        feeds_differ, soft_differ = frame.digest != self.digest(), frame.soft != self.soft.digest()
        if not feeds_differ and not soft_differ:
            return  # caught up in the meantime
        scope: Scope | None = NOTHING
        if feeds_differ and frame.bucket_hashes:
            differ = differing_buckets(self._hashes(frame.bucket_bits), frame.bucket_hashes)
            if not differ and sorted(frame.heads) == sorted(self.doc.heads()):
                # every bucket hash agrees yet the digests do not: a bucket-hash collision (2^-64)
                self.out.count("summary_collisions", notable=True)
                scope = None
            else:
                self.out.count("summary_buckets_differing", len(differ))
                scope = (frame.bucket_bits, differ)
        soft_scope: Scope | None = None
        soft = soft_differ and bool(frame.soft_hashes)  # empty: it matched when the summary was made
        if soft:
            differ = differing_buckets(self.soft.bucket_hashes(frame.soft_bits), frame.soft_hashes)
            self.out.count("summary_member_buckets_differing", len(differ))
            soft_scope = (frame.soft_bits, differ) if differ else None  # None: a collision, compare all
        self.send_sync(peer, reply=True, scope=scope, soft=soft, soft_scope=soft_scope)

    def send_sync(self, peer: str, *, reply: bool, scope: Scope | None = None, soft: bool = False,
                  soft_scope: Scope | None = None) -> None:
        vv, heads = self.vector(), tuple(self.doc.heads())
        if scope is not None:
            vv = restrict(vv, *scope)
        members = self.soft.scoped(soft_scope) if soft else None
        if len(vv) > VV_ENTRIES_MAX or len(heads) > HEADS_MAX or len(members or ()) > VV_ENTRIES_MAX:
            # peers would refuse the frame; say so instead of failing silently on their side
            self.out.count("sync_over_wire_limits", notable=True)
            self.out.log("warning", f"{len(vv)} feed owners / {len(heads)} heads / {len(members or ())} members "
                                    f"exceed the SYNC frame limits ({VV_ENTRIES_MAX} / {HEADS_MAX})")
            return
        self.out.send(peer, Sync(vv, heads, reply, scope, members, soft_scope if soft else None))

    def on_sync(self, peer: str, frame: Sync) -> bool:
        """Send the deltas the peer lacks (within its scope) and our vector if asked; True when the
        document heads differ (the node then starts a document sync)."""
        theirs = frame.vv
        if frame.scope is not None:
            theirs = scoped_vector(self.vector(), theirs, *frame.scope)
        budget = self.frame_bytes_max - FRAME_OVERHEAD_BYTES
        batch: list[bytes] = []
        spent = 0
        for d in self.feeds.deltas_since(theirs, budget):
            cost = len(d) + 5
            if cost > budget:
                self.out.count("deltas_too_large_to_send", notable=True)
                continue
            if spent + cost > budget or len(batch) >= DELTAS_MAX:
                self.out.send(peer, Deltas(tuple(batch)))
                batch, spent = [], 0
            batch.append(d)
            spent += cost
        if batch:
            self.out.send(peer, Deltas(tuple(batch)))
        if frame.soft is not None:
            self._send_records(peer, self._soft_answer(frame.soft, frame.soft_scope))
        if frame.reply:
            self.send_sync(peer, reply=False, scope=frame.scope, soft=frame.soft is not None,
                           soft_scope=frame.soft_scope)
        return sorted(frame.heads) != sorted(self.doc.heads())

    def _send_records(self, peer: str, items: list[Item]) -> None:
        batch: list[Item] = []
        spent = 0
        for item in items:
            cost = item_size(item)
            if batch and (spent + cost > self.records_bytes_max or len(batch) >= ITEMS_MAX):
                self.out.send(peer, Records(tuple(batch)))
                batch, spent = [], 0
            batch.append(item)
            spent += cost
        if batch:
            self.out.send(peer, Records(tuple(batch)))

    # --- the fleet document's sync sessions --------------------------------------------------------

    def heads_differ(self, peer: str) -> None:
        msg = self._doc_message_for(peer)
        if msg is None:
            # heads differ yet the sync state thinks nothing is owed: a message was lost
            self.doc.forget_peer(peer)
            self.out.count("doc_sync_restarts")
            msg = self._doc_message_for(peer)
        if msg is not None:
            self.out.send(peer, DocMessage(msg))

    def on_doc(self, peer: str, data: bytes, refused: Callable[[str, str, str], None]) -> bool:
        """Take one document sync message and answer it; True when the document changed."""
        try:
            changed = self.doc.receive_sync_message(peer, data)
        except RemoteDataError as e:
            self.out.count(f"doc_refused_{error_name(e)}", notable=True)
            refused(peer, "a document sync message", str(e))
            self.doc.forget_peer(peer)
            return False
        reply = self._doc_message_for(peer)
        if reply is not None:
            self.out.send(peer, DocMessage(reply))
        return changed

    def push_doc(self, peers: Iterable[str]) -> None:
        for peer in peers:
            msg = self._doc_message_for(peer)
            if msg is not None:
                self.out.send(peer, DocMessage(msg))

    def _doc_message_for(self, peer: str) -> bytes | None:
        try:
            return self.doc.sync_message_for(peer)
        except RemoteDataError as e:  # e.g. TooLarge: the document cannot produce a sendable message
            self.out.count(f"doc_message_failed_{error_name(e)}", notable=True)
            self.out.log("warning", f"no document sync message for {peer[:16]}: {e}")
            self.doc.forget_peer(peer)
            return None

"""What simulated nodes share instead of each holding its own copy: feeds, version vectors, and
the anti-entropy hashes computed from them. Simulator-only; the product never does any of this.

A thousand simulated nodes each holding a thousand feeds was 6 GB, and each node re-hashing its
whole version vector for every anti-entropy digest was 40 % of a 1000-node run's CPU. Converged
nodes hold equal feeds and equal vectors, so:

* ``SharedFeedSet`` is a real ``crdt.feedset.FeedSet`` whose ``Feed`` objects are shared with
  other nodes and copied on write: a delta is applied to a private copy (the real
  ``apply_to_feed``, with every check), and the result is swapped for an equal feed another node
  already made — equal by (owner, version, accumulator), the same identity the policy memo uses
  (``simulations.realview``). A node's own feed is never shared: ``OwnFeed`` changes it in place.
  A crash hands the dict of feeds to the restart instead of a serialised file: the same state
  the agent's atomic save would load, without 1000 parses.
* ``VectorPool`` hands out one ``Vector`` (a dict) per distinct version vector, so the
  anti-entropy functions installed by ``install_antientropy_memo`` compute a digest, a bucket
  hash list or a bucket restriction once per vector for the whole fleet. Every one of them is
  the real function's result for that vector (tests/sim/test_sharing.py runs a scenario with the
  sharing on and off and compares the traces byte for byte).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from crdt.feed import DELTA_BYTES_MAX, Delta, Feed, feed_from_parts
from crdt.feedset import AppliedDelta, FeedSet
from mesh.core.antientropy import bucket_of

VECTORS_KEPT_MAX = 256  # distinct version vectors remembered (a converged fleet needs a handful)
SOFT_HASHES_KEPT_MAX = 1 << 16  # member entries' hashes remembered (a fleet's members, a few states each)


def _private_copy(feed: Feed) -> Feed:
    return feed_from_parts(feed.owner, dict(feed._entries), feed.accumulator, feed.head)


FEED_STATES_KEPT_PER_OWNER = 8  # nodes converge on an owner's latest states: older ones go


class FeedPool:
    """The feed states nodes reached lately, one object each: (owner, version, acc).

    Only the last few states of each owner are remembered: a pool of every state any node ever
    reached grew without bound (a month with a busy seedbox: 3.7 GB at 30 nodes). A node still
    holding an older state keeps its object; one reaching it again makes its own (equal) copy."""

    def __init__(self) -> None:
        self.feeds: dict[bytes, dict[tuple[int, int], Feed]] = {}

    def intern(self, feed: Feed) -> Feed:
        states = self.feeds.setdefault(feed.owner, {})
        key = (feed.version, feed.accumulator)
        held = states.get(key)
        if held is not None:
            return held
        if len(states) >= FEED_STATES_KEPT_PER_OWNER:
            del states[next(iter(states))]  # the oldest interned
        states[key] = feed
        return feed


class SharedState:
    """A replica's feeds as a crash leaves them (the shared objects, not a file)."""

    __slots__ = ("allowed", "feeds", "revoked")

    def __init__(self, feeds: Mapping[bytes, Feed], allowed: frozenset[bytes] | None,
                 revoked: Iterable[bytes]) -> None:
        self.feeds = dict(feeds)
        self.allowed = allowed
        self.revoked = frozenset(revoked)


class SharedFeedSet(FeedSet):
    def __init__(self, pool: FeedPool, vectors: VectorPool, start: SharedState | None, own: bytes) -> None:
        super().__init__(start.allowed if start is not None else None)
        self._pool, self._vectors = pool, vectors
        if start is not None:
            self._feeds = dict(start.feeds)
            self._revoked = set(start.revoked)
        mine = self._feeds.get(own)
        if mine is not None:  # OwnFeed writes into this one in place: it must be ours alone
            self._feeds[own] = _private_copy(mine)
        self._own = own
        self._rebuild_vector()

    def _apply(self, delta: Delta) -> AppliedDelta:
        owner = delta.owner
        shared = self._feeds.get(owner)
        if shared is None or owner == self._own or delta.head.version <= shared.version:
            # new feed, our own, or stale (the real check raises before it changes anything)
            result = super()._apply(delta)
        else:
            self._feeds[owner] = _private_copy(shared)
            try:
                result = super()._apply(delta)
            except BaseException:
                self._feeds[owner] = shared
                raise
        feed = self._feeds[owner]
        if shared is None:  # a new owner
            self._owners_by_bucket.clear()
        if owner != self._own:
            self._feeds[owner] = self._pool.intern(feed)
        self._set_version(owner, feed.version)
        return result

    def deltas_since(self, vv: Mapping[bytes, int], bytes_max: int = DELTA_BYTES_MAX) -> list[bytes]:
        # A SYNC scoped to some buckets: outside them the vector holds our own versions (see
        # ``ScopedVector``), so only our feeds inside them can be lacking — when that vector is our
        # current one. Otherwise the real scan of every feed.
        if type(vv) is not ScopedVector or vv.mine is not self.version_vector():
            return super().deltas_since(vv, bytes_max)
        bits, wanted = vv.scope
        index = self._owners_by_bucket.get(bits)
        if index is None:
            index = self._owners_by_bucket[bits] = {}
            for owner in self._feeds:
                index.setdefault(bucket_of(owner, bits), []).append(owner)
        return self._deltas_among([o for b in set(wanted) for o in index.get(b, ())], vv, bytes_max)

    def shared_state(self) -> SharedState:
        return SharedState(self._feeds, self._allowed, self._revoked)

    # --- the version vector, kept up to date instead of rebuilt (O(changes), not O(owners)) ---

    def _rebuild_vector(self) -> None:
        self._owners_by_bucket: dict[int, dict[int, list[bytes]]] = {}  # bits -> bucket -> owners
        self._vv = {o: f.version for o, f in self._feeds.items()}  # in the order of _feeds, as FeedSet's
        self._fp = sum(map(entry_fingerprint, self._vv.items())) % FINGERPRINT_MOD
        self._vector: Vector | None = None

    def _set_version(self, owner: bytes, version: int) -> None:
        old = self._vv.get(owner)
        if old == version:
            return
        if old is not None:
            self._fp -= entry_fingerprint((owner, old))
        self._vv[owner] = version
        self._fp = (self._fp + entry_fingerprint((owner, version))) % FINGERPRINT_MOD
        self._vector = None

    def version_vector(self) -> dict[bytes, int]:
        if len(self._vv) != len(self._feeds):  # our own feed was created (it went in by OwnFeed)
            self._rebuild_vector()
        own = self._feeds.get(self._own)
        if own is not None:
            self._set_version(self._own, own.version)  # OwnFeed commits change it in place
        if self._vector is None:
            self._vector = self._vectors.get(self._fp, self._vv)
        return self._vector

    def revoke(self, owner: bytes) -> bool:
        dropped = super().revoke(owner)
        self._rebuild_vector()
        return dropped

    def set_allowed(self, allowed: Iterable[bytes] | None) -> tuple[bytes, ...]:
        dropped = super().set_allowed(allowed)
        self._rebuild_vector()
        return dropped


# --- version vectors and the anti-entropy hashes over them ---------------------------------------

FINGERPRINT_MOD = 1 << 128


def entry_fingerprint(entry: tuple[bytes, int]) -> int:
    """One (owner, version) pair's share of a vector's fingerprint (a sum, so it updates in O(1))."""
    owner, version = entry
    return int.from_bytes(hashlib.blake2b(owner + version.to_bytes(8, "big"), digest_size=16).digest(), "big")


class Vector(dict):
    """A version vector that equal replicas share (read-only by convention, as the mesh core
    treats the one its FeedStore returns), with what anti-entropy computed from it."""

    __slots__ = ("memo",)


class ScopedVector(dict):
    """``antientropy.scoped_vector(mine, theirs, *scope)`` for a shared ``mine``: their entries
    inside the scope, ``mine``'s outside it — so a feed set whose vector *is* ``mine`` knows that
    only its feeds inside the scope can be lacking (``SharedFeedSet.deltas_since``)."""

    __slots__ = ("mine", "scope")


class VectorPool:
    """One Vector per distinct vector — equal entries in the same order (the order reaches the
    wire: a SYNC encodes the vector as a map), found by fingerprint, confirmed by comparison."""

    def __init__(self) -> None:
        self._by_fp: dict[int, list[Vector]] = {}

    def get(self, fp: int, vv: dict[bytes, int]) -> Vector:
        chain = self._by_fp.get(fp)
        if chain is None:
            if len(self._by_fp) >= VECTORS_KEPT_MAX:
                del self._by_fp[next(iter(self._by_fp))]  # oldest first; holders keep theirs
            chain = self._by_fp[fp] = []
        for v in chain:
            if v == vv and list(v) == list(vv):
                return v
        v = Vector(vv)
        v.memo = {}
        chain.append(v)
        return v


def install_antientropy_memo() -> None:
    """Memoise ``mesh.core.antientropy``'s pure functions of a version vector on shared Vectors.

    Installed once per process; any other vector (a plain dict: tests, the product) goes to the
    real function untouched."""
    from mesh.core import antientropy as ae
    if getattr(ae.bucket_hashes, "sim_memo", False):
        return
    real_hashes, real_restrict, real_scoped = ae.bucket_hashes, ae.restrict, ae.scoped_vector
    real_digest = ae.Reconciler.digest

    def bucket_hashes(vv, bits):
        if type(vv) is not Vector:
            return real_hashes(vv, bits)
        key = ("hashes", bits)
        hit = vv.memo.get(key)
        if hit is None:
            hit = vv.memo[key] = real_hashes(vv, bits)
        return hit

    def restrict(vv, bits, buckets):
        if type(vv) is not Vector:
            return real_restrict(vv, bits, buckets)
        key = ("restrict", bits, tuple(buckets))
        hit = vv.memo.get(key)
        if hit is None:
            hit = vv.memo[key] = real_restrict(vv, bits, key[2])
        return dict(hit)

    def scoped_vector(mine, theirs, bits, buckets):
        if type(mine) is not Vector:
            return real_scoped(mine, theirs, bits, buckets)
        # = their entries inside the scope, then ours outside it (order is irrelevant: it is read
        # by owner); ours outside it is one per (vector, scope), shared
        wanted = tuple(buckets)
        key = ("outside", bits, wanted)
        outside = mine.memo.get(key)
        if outside is None:
            outside = mine.memo[key] = real_scoped(mine, {}, bits, wanted)
        out = ScopedVector(real_restrict(theirs, bits, wanted))
        out.update(outside)
        out.mine, out.scope = mine, (bits, wanted)
        return out

    def digest(self):
        vv = self.vector()
        if self._digest is not None or type(vv) is not Vector:
            return real_digest(self)
        key = ("digest", tuple(self.doc.heads()))
        hit = vv.memo.get(key)
        if hit is None:
            hit = vv.memo[key] = real_digest(self)
        self._digest = hit
        return hit

    # a member's (incarnation, state, presence order) hashes alike on every node that holds it:
    # a warm start alone is a thousand nodes each hashing the same thousand entries
    real_entry_hash = ae.soft_entry_hash
    entry_hashes: dict[tuple, tuple[int, int]] = {}

    def soft_entry_hash(peer, entry):
        key = (peer, entry)
        hit = entry_hashes.get(key)
        if hit is None:
            if len(entry_hashes) >= SOFT_HASHES_KEPT_MAX:
                del entry_hashes[next(iter(entry_hashes))]  # oldest first
            hit = entry_hashes[key] = real_entry_hash(peer, entry)
        return hit

    bucket_hashes.sim_memo = True  # type: ignore[attr-defined]
    ae.bucket_hashes, ae.restrict, ae.scoped_vector = bucket_hashes, restrict, scoped_vector
    soft_entry_hash.real = real_entry_hash  # type: ignore[attr-defined]
    ae.soft_entry_hash = soft_entry_hash
    ae.Reconciler.digest = digest  # type: ignore[method-assign]


# --- decoded frames --------------------------------------------------------------------------------

# recent frames' decodings (a rumour's relays repeat within rounds; ~5 KB each with its items: at
# 1000 nodes 8k frames hit 58 % of deliveries, 32k cost 175 MB more and ~5 % less CPU)
DECODED_FRAMES_KEPT_MAX = 32768
RECORDS_KEPT_MAX = 8192  # remembered presence turned back into records (a fleet's worth, a few times)
DECODED_FRAME_BYTES_MAX = 16 * 1024  # bigger frames (deltas, documents) are decoded by each receiver


def install_decode_memo() -> None:
    """Memoise ``mesh.core.frames.decode_frame`` as the mesh core calls it, for small frames.

    Most frames a simulated fleet delivers are byte for byte ones already delivered to another
    node (a member's record relayed along, the same digest to several peers: 85 % at 300 nodes),
    and decoding is a pure function of the bytes. The decoded frames are frozen values, shared by
    the nodes that receive them; a SYNC (it holds dicts) and a frame that fails to decode (its
    error is raised again) are decoded afresh every time. tests/sim/test_sharing.py holds the
    memo's frames equal to the real decoder's."""
    from mesh.core import frames as fr
    from mesh.core import node as node_mod
    if getattr(node_mod.decode_frame, "sim_memo", False):
        return
    real = fr.decode_frame
    memo: OrderedDict[tuple[bytes, int], object] = OrderedDict()

    def decode_frame(data, frame_bytes_max):
        if type(data) is not bytes or len(data) > DECODED_FRAME_BYTES_MAX:
            return real(data, frame_bytes_max)
        key = (data, frame_bytes_max)
        hit = memo.get(key)
        if hit is not None:
            memo.move_to_end(key)  # most recently used last
            return hit
        hit = real(data, frame_bytes_max)
        if type(hit) is not fr.Sync:
            memo[key] = hit
            if len(memo) > DECODED_FRAMES_KEPT_MAX:
                memo.popitem(last=False)  # least recently used first
        return hit

    # A warm start hands every node the same remembered presence: each record is turned back
    # into its signed form once, not once per node (a frozen value, shared like a decoded frame).
    real_from = node_mod.from_presence
    records: dict[tuple[bytes, bytes, int], object] = {}

    def from_presence(r, remaining_ms):
        if not r.body:
            return real_from(r, remaining_ms)
        key = (r.body, r.sig, remaining_ms)
        hit = records.get(key)
        if hit is None:
            if len(records) >= RECORDS_KEPT_MAX:
                del records[next(iter(records))]
            hit = records[key] = real_from(r, remaining_ms)
        return hit

    # ... and checking the remembered records (a tuple of frozen values) once is checking them
    # for every node: the one tuple last checked is kept (alive, so its id is never reused)
    real_check = node_mod.check_remembered
    checked: list[object] = [None]

    def check_remembered(recs):
        if type(recs) is tuple and recs is checked[0]:
            return
        real_check(recs)
        checked[0] = recs

    decode_frame.sim_memo = True  # type: ignore[attr-defined]
    decode_frame.real, from_presence.real, check_remembered.real = real, real_from, real_check  # type: ignore[attr-defined]
    node_mod.decode_frame, node_mod.from_presence = decode_frame, from_presence  # type: ignore[assignment]
    node_mod.check_remembered = check_remembered  # type: ignore[assignment]


VERDICTS_KEPT_MAX = 1 << 16  # recent (peer, signature, message) verdicts, by value (~0.4 KB each)


class RecentVerdicts:
    """The mesh cores' verifier as the simulator shares it: the latest verdicts by the values
    themselves in front of ``CachingVerifier`` (whose 16-byte keys cost a hash per check; a
    thousand nodes checking the same records — a warm start is a million checks — look them up
    by value instead). A verdict is a pure function of the three values, so either answers alike."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self._verdicts: dict[tuple[str, bytes, bytes], bool] = {}

    def __call__(self, peer: str, signature: bytes, message: bytes) -> bool:
        key = (peer, signature, message)
        hit = self._verdicts.get(key)
        if hit is None:
            hit = bool(self._inner(peer, signature, message))
            if len(self._verdicts) >= VERDICTS_KEPT_MAX:
                del self._verdicts[next(iter(self._verdicts))]  # oldest first
            self._verdicts[key] = hit
        return hit

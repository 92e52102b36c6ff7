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

from collections.abc import Iterable, Mapping

from crdt.feed import Delta, Feed, feed_from_parts
from crdt.feedset import AppliedDelta, FeedSet

VECTORS_KEPT_MAX = 256  # distinct version vectors remembered (a converged fleet needs a handful)


def _private_copy(feed: Feed) -> Feed:
    return feed_from_parts(feed.owner, dict(feed._entries), feed.accumulator, feed.head)


class FeedPool:
    """Every feed state any node of the run reached, one object each: (owner, version, acc)."""

    def __init__(self) -> None:
        self.feeds: dict[tuple[bytes, int, int], Feed] = {}

    def intern(self, feed: Feed) -> Feed:
        key = (feed.owner, feed.version, feed.accumulator)
        return self.feeds.setdefault(key, feed)


class SharedState:
    """A replica's feeds as a crash leaves them (the shared objects, not a file)."""

    __slots__ = ("allowed", "feeds", "revoked")

    def __init__(self, feeds: Mapping[bytes, Feed], allowed: frozenset[bytes] | None,
                 revoked: Iterable[bytes]) -> None:
        self.feeds = dict(feeds)
        self.allowed = allowed
        self.revoked = frozenset(revoked)


class SharedFeedSet(FeedSet):
    def __init__(self, pool: FeedPool, start: SharedState | None, own: bytes) -> None:
        super().__init__(start.allowed if start is not None else None)
        self._pool = pool
        if start is not None:
            self._feeds = dict(start.feeds)
            self._revoked = set(start.revoked)
        mine = self._feeds.get(own)
        if mine is not None:  # OwnFeed writes into this one in place: it must be ours alone
            self._feeds[own] = _private_copy(mine)
        self._own = own

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
        if owner != self._own:
            self._feeds[owner] = self._pool.intern(self._feeds[owner])
        return result

    def shared_state(self) -> SharedState:
        return SharedState(self._feeds, self._allowed, self._revoked)


# --- version vectors and the anti-entropy hashes over them ---------------------------------------


class Vector(dict):
    """A version vector that equal replicas share (read-only by convention, as the mesh core
    treats the one its FeedStore returns), with what anti-entropy computed from it."""

    __slots__ = ("key", "memo")


class VectorPool:
    def __init__(self) -> None:
        self._vectors: dict[frozenset, Vector] = {}

    def get(self, vv: dict[bytes, int]) -> Vector:
        key = frozenset(vv.items())
        hit = self._vectors.get(key)
        if hit is None:
            hit = Vector(vv)
            hit.key, hit.memo = key, {}
            if len(self._vectors) >= VECTORS_KEPT_MAX:
                del self._vectors[next(iter(self._vectors))]  # oldest first; holders keep theirs
            self._vectors[key] = hit
        return hit


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
        out = real_restrict(theirs, bits, wanted)
        out.update(outside)
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

    bucket_hashes.sim_memo = True  # type: ignore[attr-defined]
    ae.bucket_hashes, ae.restrict, ae.scoped_vector = bucket_hashes, restrict, scoped_vector
    ae.Reconciler.digest = digest  # type: ignore[method-assign]

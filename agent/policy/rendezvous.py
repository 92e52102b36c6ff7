"""Weighted rendezvous (highest-random-weight) hashing: who wins a key, in a stable order.

For a key (a duty name or a pin's content) every host gets ``u = blake2b(key, peer_id)`` mapped to
(0, 1) and the score ``-weight / ln(u)``; hosts are ranked by score, ties by peer id. A host's
score depends only on the key, its own id and its own weight, so adding or removing one host
never reorders the others: it only moves the keys that host wins or held (minimal movement).
The score distribution makes a host win a key with probability weight / Σ weights.

Determinism: blake2b is exact; ``math.log`` and the division are IEEE-754 double operations that
CPython delegates to the C library. Two scores could only order differently on two machines if
they differed in the last bit, which for 53-bit hash fractions is a ~2⁻⁵⁰ event per comparison.
"""

from __future__ import annotations

import math
from hashlib import blake2b

_FRACTION_BITS = 53  # a double holds 53 bits exactly: u is exact and never 0 or 1
SCALE = float(2**_FRACTION_BITS)
SHIFT = 64 - _FRACTION_BITS


def key_bytes(namespace: str, key: str) -> bytes:
    """Domain-separated key, so a duty named like a content id never shares hashes with it."""
    return f"{namespace}\x00{key}\x00".encode()


def hash64(key: bytes, peer_id: str) -> int:
    """The raw 64-bit draw; for equal weights ranking by it equals ranking by score."""
    return int.from_bytes(blake2b(key + peer_id.encode(), digest_size=8).digest(), "big")


def unit(key: bytes, peer_id: str) -> float:
    """The host's uniform draw in (0, 1) for this key."""
    n = int.from_bytes(blake2b(key + peer_id.encode(), digest_size=8).digest(), "big") >> SHIFT
    return (n + 0.5) / SCALE


def score(key: bytes, peer_id: str, weight: float) -> float:
    """Weighted rendezvous score; higher wins. ``weight`` must be > 0."""
    return -weight / math.log(unit(key, peer_id))


def rank(key: bytes, weighted: list[tuple[str, float]]) -> list[str]:
    """Peer ids ordered best first (score descending, then peer id ascending)."""
    scored = sorted((-score(key, p, w), p) for p, w in weighted)
    return [p for _, p in scored]

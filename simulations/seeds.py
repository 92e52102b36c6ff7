"""One root seed; every component's seed is derived from it by name.

Why names, not draw order: if component seeds were drawn one after another from a root
``random.Random``, adding a node or a fault model would shift every later seed and change an
unrelated part of the run. Hashing (root, label…) keeps each stream stable on its own.
"""

from __future__ import annotations

import hashlib
import random

SEED_BYTES = 8


def derive_seed(root_seed: int, *labels: object) -> int:
    """A 64-bit seed for the component named by ``labels`` (stable across runs and processes)."""
    text = "\x1f".join([str(int(root_seed)), *map(str, labels)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:SEED_BYTES], "big")


def derive_rng(root_seed: int, *labels: object) -> random.Random:
    """A private ``random.Random`` for one component; pass it into the pure cores."""
    return random.Random(derive_seed(root_seed, *labels))


def derive_bytes(root_seed: int, *labels: object, n_bytes: int = 32) -> bytes:
    """Deterministic key material (e.g. a node's Ed25519 seed) — simulation only, never production."""
    text = "\x1f".join(["bytes", str(int(root_seed)), *map(str, labels)])
    return hashlib.sha256(text.encode()).digest()[:n_bytes]

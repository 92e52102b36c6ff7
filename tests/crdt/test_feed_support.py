"""Shared helpers for the feed tests (no tests here): deterministic keys and small feed builders."""

from __future__ import annotations

from crdt.feedset import FeedSet, OwnFeed
from crdt.identity import NodeKey

T0_MS = 1_700_000_000_000
KEYS = tuple(NodeKey(bytes([i + 1]) * 32) for i in range(8))


def live(feedset: FeedSet, owner: bytes) -> dict[str, bytes]:
    f = feedset.feed(owner)
    return dict(f.live_items()) if f is not None else {}


def writer(i: int, feedset: FeedSet | None = None) -> tuple[FeedSet, OwnFeed]:
    fs = feedset if feedset is not None else FeedSet()
    return fs, OwnFeed(KEYS[i], fs)


def sync(src: FeedSet, dst: FeedSet) -> None:
    """One pull: everything ``src`` holds that ``dst`` lacks (must never be refused)."""
    for data in src.deltas_since(dst.version_vector()):
        dst.apply_delta(data)

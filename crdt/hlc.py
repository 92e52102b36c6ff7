"""Hybrid logical clock for single-writer feeds.

A version is one int: ``wall_ms << 16 | logical``. It sorts like the pair (wall time, counter),
stays close to real time (useful when reading a feed: "changed about when?"), and is strictly
increasing per owner even when the wall clock stalls or steps back, because the next version is
never below ``previous + 1``. Only the owner stamps its own feed, so no remote observation is
needed for ordering; :func:`hlc_observe` exists for callers that want their clock to stay ahead of
versions they have seen (e.g. after a restore from peers).

Pure: the wall time comes in as ``now_ms``.
"""

from __future__ import annotations

from tva.errors import InvalidInput

LOGICAL_BITS = 16
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1
# Versions travel as msgpack uint64 and are packed as signed 64-bit in places: keep them below 2**63.
VERSION_MAX = (1 << 63) - 1
WALL_MS_MAX = VERSION_MAX >> LOGICAL_BITS


def hlc_version(wall_ms: int, logical: int = 0) -> int:
    if not 0 <= wall_ms <= WALL_MS_MAX:
        raise InvalidInput(f"wall_ms out of range: {wall_ms}")
    if not 0 <= logical <= LOGICAL_MASK:
        raise InvalidInput(f"logical counter out of range: {logical}")
    return wall_ms << LOGICAL_BITS | logical


def hlc_next(prev_version: int, now_ms: int) -> int:
    """The next version after ``prev_version`` at wall time ``now_ms``: max(now << 16, prev + 1)."""
    if not 0 <= prev_version < VERSION_MAX:
        raise InvalidInput(f"previous version out of range: {prev_version}")
    if now_ms < 0:
        raise InvalidInput(f"now_ms must not be negative: {now_ms}")
    return max(min(now_ms, WALL_MS_MAX) << LOGICAL_BITS, prev_version + 1)


def hlc_observe(prev_version: int, seen_version: int, now_ms: int) -> int:
    """A version above both our own previous one and one seen elsewhere (classic HLC receive)."""
    if not 0 <= seen_version < VERSION_MAX:
        raise InvalidInput(f"seen version out of range: {seen_version}")
    return hlc_next(max(prev_version, seen_version), now_ms)


def wall_ms_of(version: int) -> int:
    return version >> LOGICAL_BITS


def logical_of(version: int) -> int:
    return version & LOGICAL_MASK

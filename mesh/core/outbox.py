"""Where the node's effects collect, and the transmit-limited broadcast queue.

``Outbox`` is shared by the node and its failure detector during one ``handle`` call: it encodes
frames, refuses to emit one over ``frame_bytes_max`` (a local bug, logged and counted, never sent),
and keeps ``stats`` — every counter, including bytes sent, which the traffic budget is measured by.
Only notable counters (refusals, errors, refutations) also go out as ``Counter`` effects, so a
routine tick does not produce a pile of effect objects.

``BroadcastQueue`` is memberlist's TransmitLimitedQueue: each broadcast goes out at most
``limit`` times (counted per peer it is sent to); the least-sent, newest entries go first; a newer
broadcast with the same key (e.g. a later record about the same member) replaces the older one.
Taking is O(items taken), not O(queue), which keeps a 1000-node simulation affordable.
"""

from __future__ import annotations

import functools
import re
from collections import Counter as _Tally
from collections.abc import Hashable
from dataclasses import dataclass

from .frames import (
    FRAME_VERSION,
    ITEMS_MAX,
    REMAINING_MS_MAX,
    Ack,
    DeltaItem,
    Deltas,
    DocMessage,
    Frame,
    Gossip,
    Item,
    MemberRecord,
    Ping,
    PingReq,
    PresenceRecord,
    Records,
    encode_frame,
    item_size,
)
from .types import Counter, Effect, Log, Send

# bytes a frame needs around its items: version byte, array headers, kind, seq, presence slot
FRAME_OVERHEAD_BYTES = 64
# frames above this (and every delta or document frame) go on the bulk lane (``Send.bulk``)
PRIORITY_FRAME_BYTES_MAX = 16 * 1024
# what travels inside frames, by kind: the per-kind counters say where the bytes go
ITEM_KINDS = ("membership", "presence", "delta", "doc")
_KIND_OF_ITEM = {MemberRecord: "membership", PresenceRecord: "presence", DeltaItem: "delta"}


_SIZES_KEPT_MAX = 4096
_sizes: dict[int, tuple[Item, int]] = {}  # id -> (item, its size): the item kept alive, so the id stays its own


def wire_item_size(item: Item) -> int:
    """``item_size`` without encoding the item: msgpack's sizes follow from the fields' lengths
    and values, and counting every item of every frame (the per-kind counters) must not cost a
    second encoding of it. tests/mesh/test_core_rumours.py holds the two equal.

    Items are frozen values and one is sized many times (queued, then counted in each of up to
    ``retransmit_limit`` frames), so the last few thousand sizes of records are remembered by
    identity (not of deltas: sized at once, and up to megabytes each to keep alive)."""
    if type(item) is DeltaItem:
        return 2 + _bin_size(len(item.data))  # array header and kind, then the payload
    hit = _sizes.get(id(item))
    if hit is not None and hit[0] is item:
        return hit[1]
    size = _wire_item_size(item)
    if len(_sizes) >= _SIZES_KEPT_MAX:
        _sizes.clear()  # all at once: O(1) per item, and a rumour's item is sized again at most once
    _sizes[id(item)] = (item, size)
    return size


def _wire_item_size(item: Item) -> int:
    t = type(item)
    if t is MemberRecord:
        own = item.own  # type: ignore[union-attr]
        return (2 + _uint_size(item.state.rank) + _str_size(item.peer) + _uint_size(item.incarnation)  # type: ignore[union-attr]
                + _str_size(item.origin) + (1 if own is None else _uint_size(own.rank))  # type: ignore[union-attr]
                + _bin_size(len(item.sig)))  # type: ignore[union-attr]
    if t is PresenceRecord:
        remaining = min(max(0, item.remaining_ms), REMAINING_MS_MAX)  # type: ignore[union-attr]
        return (2 + _bin_size(len(item.wire_body())) + _bin_size(len(item.sig))  # type: ignore[union-attr]
                + _uint_size(remaining))
    return item_size(item)


def _uint_size(n: int) -> int:
    return 1 if n < 128 else 2 if n < 256 else 3 if n < 65536 else 5 if n < 2**32 else 9


@functools.lru_cache(maxsize=4096)  # peer ids, mostly: a fleet's worth, sized millions of times
def _str_size(s: str) -> int:
    n = len(s.encode())
    return n + (1 if n < 32 else 2 if n < 256 else 3 if n < 65536 else 5)


def _bin_size(n: int) -> int:
    return n + (2 if n < 256 else 3 if n < 65536 else 5)


def error_name(e: Exception) -> str:
    """``DecodeError`` -> ``decode_error``, for counter names."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(e).__name__).lower()


class Outbox:
    def __init__(self, frame_bytes_max: int) -> None:
        self.frame_bytes_max = frame_bytes_max
        self.effects: list[Effect] = []
        self.stats: _Tally[str] = _Tally()
        self.versions: dict[str, int] = {}  # peer -> frame version its connection's hello agreed on

    def reset(self) -> list[Effect]:
        out, self.effects = self.effects, []
        return out

    def emit(self, effect: Effect) -> None:
        self.effects.append(effect)

    def count(self, name: str, inc: int = 1, *, notable: bool = False) -> None:
        self.stats[name] += inc
        if notable:
            self.effects.append(Counter(name, inc))

    def log(self, level: str, message: str) -> None:
        self.effects.append(Log(level, message))

    def send(self, peer: str, frame: Frame) -> bool:
        data = encode_frame(frame, self.versions.get(peer, FRAME_VERSION))
        if len(data) > self.frame_bytes_max:
            self.count("frames_oversize_dropped", notable=True)
            self.log("warning", f"not sending a {type(frame).__name__} of {len(data)} bytes to "
                                f"{peer[:16]}: over frame_bytes_max={self.frame_bytes_max}")
            return False
        stats = self.stats
        stats["frames_sent"] += 1
        stats["bytes_sent"] += len(data)
        sent_key, bytes_key = _frame_counter_names(type(frame))
        stats[sent_key] += 1
        stats[bytes_key] += len(data)
        if type(frame) in (Gossip, Ping, Ack, PingReq, Records):  # rumours, piggybacks, anti-entropy
            if type(frame) in (Ping, Ack) and frame.presence is not None:  # type: ignore[union-attr]
                self._count_item("presence", wire_item_size(frame.presence))  # type: ignore[union-attr]
            items = frame.items  # type: ignore[union-attr]
            if items:
                tally: dict[str, list[int]] = {}  # kind -> [items, bytes], counted once per frame
                for item in items:
                    kind = _KIND_OF_ITEM.get(type(item), "unknown")
                    t = tally.get(kind)
                    if t is None:
                        t = tally[kind] = [0, 0]
                    t[0] += 1
                    t[1] += wire_item_size(item)
                for kind, (n, size) in tally.items():
                    self._count_item(kind, size, n)
        elif type(frame) is DocMessage:
            self._count_item("doc", len(data))
        self.effects.append(Send(peer, data, isinstance(frame, Deltas | DocMessage) or len(data) > PRIORITY_FRAME_BYTES_MAX))
        return True

    def _count_item(self, kind: str, size: int, n: int = 1) -> None:
        items_key, bytes_key = _item_counter_names(kind)
        self.stats[items_key] += n
        self.stats[bytes_key] += size


# counter names, made once per kind rather than formatted for every frame and item sent
@functools.lru_cache(maxsize=64)
def _frame_counter_names(frame_type: type) -> tuple[str, str]:
    kind = frame_type.__name__.lower()
    return f"sent_{kind}", f"bytes_sent_{kind}"


@functools.lru_cache(maxsize=64)
def _item_counter_names(kind: str) -> tuple[str, str]:
    return f"items_sent_{kind}", f"item_bytes_sent_{kind}"


_MISSES_MAX = 32  # entries one take passes over for not fitting before it stops looking
_NO_FLOOR = 1 << 62


@dataclass
class _Entry:
    item: Item
    size: int
    transmits: int


class BroadcastQueue:
    """Entries bucketed by how often they were sent; within a bucket, dict order is age."""

    def __init__(self, entries_max: int, item_bytes_max: int = 1 << 62) -> None:
        self._buckets: list[dict[Hashable, _Entry]] = [{}]
        self._where: dict[Hashable, int] = {}  # key -> bucket (= transmits so far)
        self._entries_max = entries_max
        self._item_bytes_max = item_bytes_max  # bigger than any frame it is taken for: never sendable
        # what happened to broadcasts: how many were put, replaced by a newer one with their key
        # before reaching their limit, retired at it, evicted from a full queue, dropped at once
        # for being too big to ever send, passed over by one frame they did not fit; how often
        # each was sent when it left the queue
        self.counts: _Tally[str] = _Tally()
        self.transmits_at_exit: _Tally[int] = _Tally()
        self.depth_max = 0
        self.taken_bytes = 0  # wire bytes of the items the last take returned (their sizes are known here)
        # no entry is smaller (a lower bound, reset when the queue empties): once a frame's room
        # is below it, ``take`` knows every further entry is a miss without visiting it
        self._size_floor = _NO_FLOOR

    @property
    def dropped(self) -> int:
        return self.counts["evicted"]

    def __len__(self) -> int:
        return len(self._where)

    def put(self, key: Hashable, item: Item) -> None:
        counts = self.counts
        counts["put"] += 1
        old = self._where.pop(key, None)
        if old is not None:
            del self._buckets[old][key]
            counts["replaced"] += 1
            self.transmits_at_exit[old] += 1
        size = wire_item_size(item)
        if size > self._item_bytes_max:
            counts["dropped_for_size"] += 1  # anti-entropy carries what a rumour cannot
            return
        self._buckets[0][key] = _Entry(item, size, 0)
        self._where[key] = 0
        if size < self._size_floor:
            self._size_floor = size
        if len(self._where) > self._entries_max:
            # full: forget the most-sent, oldest broadcast; anti-entropy covers what it carried
            for t in range(len(self._buckets) - 1, -1, -1):
                bucket = self._buckets[t]
                if bucket:
                    victim = next(iter(bucket))
                    del bucket[victim]
                    del self._where[victim]
                    counts["evicted"] += 1
                    self.transmits_at_exit[t] += 1
                    break
        self.depth_max = max(self.depth_max, len(self._where))

    def get(self, key: Hashable) -> Item | None:
        b = self._where.get(key)
        return None if b is None else self._buckets[b][key].item

    def take(self, budget_bytes: int, limit: int, *, alone_bytes_max: int = 0,
             items_max: int = ITEMS_MAX) -> list[Item]:
        """Items for one frame to one peer: least-sent first, newest first within a count, at most
        ``items_max`` in ``budget_bytes``. When nothing fits, one item up to ``alone_bytes_max``
        may go by itself."""
        if items_max <= 0 or not self._where:  # every ping and ack asks, mostly of an empty queue
            self.taken_bytes = 0
            return []
        chosen: list[tuple[int, Hashable]] = []
        spent = misses = seen = 0
        floor = self._size_floor
        for t, bucket in enumerate(self._buckets):
            for key, e in reversed(bucket.items()):
                seen += 1
                if spent + e.size <= budget_bytes:
                    chosen.append((t, key))
                    spent += e.size
                elif not chosen and e.size <= alone_bytes_max:
                    chosen.append((t, key))
                    spent = budget_bytes
                else:
                    misses += 1
                if budget_bytes - spent < 16 or misses > _MISSES_MAX or len(chosen) >= items_max:
                    break
                if chosen and budget_bytes - spent < floor:
                    # nothing further fits: each entry left would be one more miss, up to the limit
                    # (most of a piggyback's walk; the outcome is the walk's, without walking it)
                    misses += min(len(self._where) - seen, _MISSES_MAX + 1 - misses)
                    break
            else:
                continue
            break
        if misses:
            self.counts["skipped_for_size"] += misses
        items = []
        self.taken_bytes = 0
        for t, key in chosen:
            e = self._buckets[t].pop(key)
            items.append(e.item)
            self.taken_bytes += e.size
            if t + 1 >= limit:
                del self._where[key]
                self.counts["retired"] += 1
                self.transmits_at_exit[t + 1] += 1
                continue
            if t + 1 == len(self._buckets):
                self._buckets.append({})
            self._buckets[t + 1][key] = e
            self._where[key] = t + 1
        self.counts["transmits"] += len(items)
        while len(self._buckets) > 1 and not self._buckets[-1]:
            self._buckets.pop()
        if not self._where:
            self._size_floor = _NO_FLOOR
        return items


def gossip_stats(out: Outbox, queues: dict[str, BroadcastQueue], retransmit_limit: int) -> dict:
    """Items and bytes sent by item kind (membership, presence, feed delta, document change), and
    per rumour queue its depth, what happened to its broadcasts and how often each was sent when
    it left (never more than ``retransmit_limit``): for metrics, the simulator and ``status``."""
    stats = out.stats
    return {
        "items_sent": {k: stats[f"items_sent_{k}"] for k in ITEM_KINDS},
        "item_bytes_sent": {k: stats[f"item_bytes_sent_{k}"] for k in ITEM_KINDS},
        "retransmit_limit": retransmit_limit,
        "queues": {name: {"depth": len(q), "depth_max": q.depth_max, **dict(q.counts),
                          "transmits_at_exit": dict(sorted(q.transmits_at_exit.items()))}
                   for name, q in queues.items()},
    }


class RecentKeys:
    """The last ``keys_max`` keys seen, as a set (oldest forgotten first). The node keeps the
    hashes of deltas it applied or found stale: under rumour mongering each delta arrives
    ~retransmit_limit times, and a repeat is then known without decoding it again. 4096 keys
    (16 bytes each, ~0.3 MB) is a few times the rumour queue, so any delta still rumoured is known."""

    def __init__(self, keys_max: int = 4096) -> None:
        self._keys: dict[bytes, None] = {}
        self._keys_max = keys_max

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, key: bytes) -> None:
        self._keys[key] = None
        if len(self._keys) > self._keys_max:
            del self._keys[next(iter(self._keys))]  # that old, it is stale by any other path too

    def clear(self) -> None:
        self._keys.clear()

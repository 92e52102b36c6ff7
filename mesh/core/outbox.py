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

import re
from collections import Counter as _Tally
from collections.abc import Hashable
from dataclasses import dataclass

from .frames import FRAME_VERSION, ITEMS_MAX, Deltas, DocMessage, Frame, Item, encode_frame, item_size
from .types import Counter, Effect, Log, Send

# bytes a frame needs around its items: version byte, array headers, kind, seq, presence slot
FRAME_OVERHEAD_BYTES = 64
# frames above this (and every delta or document frame) go on the bulk lane (``Send.bulk``)
PRIORITY_FRAME_BYTES_MAX = 16 * 1024


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
        self.stats["frames_sent"] += 1
        self.stats["bytes_sent"] += len(data)
        kind = type(frame).__name__.lower()
        self.stats[f"sent_{kind}"] += 1
        self.stats[f"bytes_sent_{kind}"] += len(data)
        self.effects.append(Send(peer, data, isinstance(frame, Deltas | DocMessage) or len(data) > PRIORITY_FRAME_BYTES_MAX))
        return True


@dataclass
class _Entry:
    item: Item
    size: int
    transmits: int


class BroadcastQueue:
    """Entries bucketed by how often they were sent; within a bucket, dict order is age."""

    def __init__(self, entries_max: int) -> None:
        self._buckets: list[dict[Hashable, _Entry]] = [{}]
        self._where: dict[Hashable, int] = {}  # key -> bucket (= transmits so far)
        self._entries_max = entries_max
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._where)

    def put(self, key: Hashable, item: Item) -> None:
        old = self._where.pop(key, None)
        if old is not None:
            del self._buckets[old][key]
        self._buckets[0][key] = _Entry(item, item_size(item), 0)
        self._where[key] = 0
        if len(self._where) > self._entries_max:
            # full: forget the most-sent, oldest broadcast; anti-entropy covers what it carried
            for bucket in reversed(self._buckets):
                if bucket:
                    victim = next(iter(bucket))
                    del bucket[victim]
                    del self._where[victim]
                    self.dropped += 1
                    break

    def get(self, key: Hashable) -> Item | None:
        b = self._where.get(key)
        return None if b is None else self._buckets[b][key].item

    def take(self, budget_bytes: int, limit: int, *, alone_bytes_max: int = 0,
             items_max: int = ITEMS_MAX) -> list[Item]:
        """Items for one frame to one peer: least-sent first, newest first within a count, at most
        ``items_max`` in ``budget_bytes``. When nothing fits, one item up to ``alone_bytes_max``
        may go by itself."""
        chosen: list[tuple[int, Hashable]] = []
        spent = misses = 0
        if items_max <= 0:
            return []
        for t, bucket in enumerate(self._buckets):
            for key in reversed(bucket):
                e = bucket[key]
                if spent + e.size <= budget_bytes:
                    chosen.append((t, key))
                    spent += e.size
                elif not chosen and e.size <= alone_bytes_max:
                    chosen.append((t, key))
                    spent = budget_bytes
                else:
                    misses += 1
                if budget_bytes - spent < 16 or misses > 32 or len(chosen) >= items_max:
                    break
            else:
                continue
            break
        items = []
        for t, key in chosen:
            e = self._buckets[t].pop(key)
            items.append(e.item)
            if t + 1 >= limit:
                del self._where[key]
                continue
            if t + 1 == len(self._buckets):
                self._buckets.append({})
            self._buckets[t + 1][key] = e
            self._where[key] = t + 1
        while len(self._buckets) > 1 and not self._buckets[-1]:
            self._buckets.pop()
        return items

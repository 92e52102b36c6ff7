"""Membership table for the stand-in protocol: SWIM states, incarnations, rumors, sampling.

Kept apart from the node so sampling stays O(k): live and dead peers live in indexed lists
(swap-remove), because a 1000-node fleet samples a gossip target on every 200 ms tick.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

ALIVE, SUSPECT, DEAD, LEFT = 0, 1, 2, 3
RUMOR_BYTES_EST = 64


class IndexedList:
    """A list with O(1) add/remove (swap-remove) and O(k) sampling; order is deterministic."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.pos: dict[str, int] = {}

    def add(self, x: str) -> None:
        if x not in self.pos:
            self.pos[x] = len(self.items)
            self.items.append(x)

    def remove(self, x: str) -> None:
        i = self.pos.pop(x, None)
        if i is None:
            return
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self.pos[last] = i


class Members:
    def __init__(self, me: str, rng: random.Random) -> None:
        self.me = me
        self.rng = rng
        self.table: dict[str, list] = {}  # peer -> [state, inc, full, suspect_deadline_ms]
        self._live = IndexedList()
        self._dead = IndexedList()
        self._suspects: dict[str, int] = {}
        self._rumors: dict[str, list] = {}  # peer -> [rumor, remaining or None]
        # XOR of the dead/left records: anti-entropy compares it, so a node that was down when a
        # death or a leave was rumoured learns it later (SWIM alone would take a probe cycle).
        self.gone_hash = 0

    # --- reads ---------------------------------------------------------------------------------
    def state(self, peer: str) -> int:
        row = self.table.get(peer)
        return DEAD if row is None else row[0]

    def inc(self, peer: str) -> int:
        row = self.table.get(peer)
        return 0 if row is None else row[1]

    def full(self, peer: str) -> bool:
        row = self.table.get(peer)
        return bool(row and row[2])

    def live(self) -> Iterator[str]:
        return iter(self._live.items)

    def known(self) -> list[str]:
        return list(self.table)

    def size(self) -> int:
        return len(self.table) + 1

    def sample_live(self, k: int) -> list[str]:
        items = self._live.items
        return self.rng.sample(items, min(k, len(items))) if items else []

    def sample_dead(self, k: int) -> list[str]:
        items = self._dead.items
        return self.rng.sample(items, min(k, len(items))) if items else []

    # --- writes --------------------------------------------------------------------------------
    def set_state(self, peer: str, state: int, inc: int, now_ms: int, full: bool | None = None,
                  deadline_ms: int = 0) -> None:
        row = self.table.get(peer)
        if row is None:
            row = self.table[peer] = [ALIVE, 0, False, 0]
        if row[0] in (DEAD, LEFT):
            self.gone_hash ^= _gone(peer, row[0], row[1])
        if state in (DEAD, LEFT):
            self.gone_hash ^= _gone(peer, state, inc)
        row[0], row[1] = state, inc
        if full is not None:
            row[2] = full
        row[3] = deadline_ms
        if state in (ALIVE, SUSPECT):
            self._live.add(peer)
            self._dead.remove(peer)
        else:
            self._live.remove(peer)
            if state == DEAD:
                self._dead.add(peer)
            else:
                self._dead.remove(peer)
        if state == SUSPECT:
            self._suspects[peer] = deadline_ms
        else:
            self._suspects.pop(peer, None)

    def gone(self) -> list[list]:
        return [[p, r[0], r[1], False] for p, r in self.table.items() if r[0] in (DEAD, LEFT)]

    def learn(self, peer: str) -> None:
        if peer != self.me and peer not in self.table:
            self.set_state(peer, ALIVE, 0, 0)

    def forget(self, peer: str) -> None:
        """A revoked peer: out of every list, never gossiped to again."""
        if peer in self.table:
            self.set_state(peer, LEFT, self.inc(peer) + 1_000_000, 0)
            self._rumors.pop(peer, None)

    def suspect(self, peer: str, inc: int, deadline_ms: int) -> None:
        self.set_state(peer, SUSPECT, inc, 0, deadline_ms=deadline_ms)
        self.queue(peer)

    def expired_suspects(self, now_ms: int) -> list[str]:
        if not self._suspects:
            return []
        return [p for p, d in self._suspects.items() if d <= now_ms]

    def heard_from(self, src: str, inc: int, full: bool, now_ms: int) -> list | None:
        """Direct evidence that src is up. Returns [state, inc] when src should refute."""
        row = self.table.get(src)
        if row is None:
            self.set_state(src, ALIVE, inc, now_ms, full)
            return None
        state, cur = row[0], row[1]
        if inc > cur and state != LEFT:
            self.set_state(src, ALIVE, inc, now_ms, full)
            self.queue(src)
            return None
        if state == ALIVE:
            row[2] = full
            return None
        if state in (SUSPECT, DEAD):
            return [state, cur]
        return None

    def rumor(self, peer: str, state: int, inc: int, full: bool, now_ms: int, deadline_ms: int) -> None:
        row = self.table.get(peer)
        if row is None:
            if state == LEFT:
                return
            self.set_state(peer, state, inc, now_ms, full, deadline_ms)
            self.queue(peer)
            return
        cur_state, cur = row[0], row[1]
        if state == ALIVE:
            ok = inc > cur
        elif state == SUSPECT:
            ok = (cur_state == ALIVE and inc >= cur) or (cur_state == SUSPECT and inc > cur)
        elif state == DEAD:
            ok = (cur_state in (ALIVE, SUSPECT) and inc >= cur) or inc > cur
        else:
            ok = cur_state != LEFT and inc >= cur
        if ok:
            self.set_state(peer, state, inc, now_ms, full, deadline_ms)
            self.queue(peer)

    # --- rumors --------------------------------------------------------------------------------
    def queue(self, peer: str) -> None:
        row = self.table[peer]
        self._rumors.pop(peer, None)
        self._rumors[peer] = [[peer, row[0], row[1], row[2]], None]

    def queue_self(self, inc: int, full: bool) -> None:
        self._rumors.pop(self.me, None)
        self._rumors[self.me] = [[self.me, ALIVE, inc, full], None]

    def queue_left(self, inc: int) -> None:
        self._rumors.pop(self.me, None)
        self._rumors[self.me] = [[self.me, LEFT, inc, False], None]

    def take_rumors(self, n_targets: int, budget: int, bytes_max: int) -> list[list]:
        if not self._rumors:
            return []
        out: list[list] = []
        done: list[str] = []
        for peer in reversed(list(self._rumors)):  # newest first
            if len(out) * RUMOR_BYTES_EST >= bytes_max:
                break
            entry = self._rumors[peer]
            if entry[1] is None:
                entry[1] = budget
            out.append(entry[0])
            entry[1] -= n_targets
            if entry[1] <= 0:
                done.append(peer)
        for peer in done:
            del self._rumors[peer]
        return out


def _gone(peer: str, state: int, inc: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{peer}/{state}/{inc}".encode(), digest_size=8).digest(), "big")

"""What a run measures: convergence of each change, traffic, time pins spend under N, false deaths."""

from __future__ import annotations

from dataclasses import dataclass, field


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (deterministic, no interpolation surprises); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))
    return ordered[int(rank) - 1]


@dataclass
class PendingCommit:
    t0_ms: int
    have: set[str] = field(default_factory=set)


class Metrics:
    def __init__(self, track_after_ms: int) -> None:
        self.track_after_ms = track_after_ms
        self.pending: dict[str, dict[int, PendingCommit]] = {}  # owner -> version -> commit
        self.convergence_ms: list[int] = []
        self.declared_dead = 0
        self.false_dead = 0
        self.dead_while_partitioned = 0
        self.pin_under_ms: dict[str, int] = {}
        self._pin_under_since: dict[str, int] = {}
        self.restore_ms: list[int] = []
        self.repairs_started = 0
        self.repairs_done = 0
        self.trims = 0
        self.refused_frames = 0

    # --- convergence of one change --------------------------------------------------------------
    # A node that holds owner's version v holds every earlier version too (feeds are applied in
    # order or as a snapshot), so "node has change (owner, w)" is "node applied some v >= w".
    def applied(self, node: str, owner: str, version: int, now_ms: int, up: dict[str, object]) -> None:
        per = self.pending.get(owner)
        if node == owner and now_ms >= self.track_after_ms:
            if per is None:
                per = self.pending[owner] = {}
            per.setdefault(version, PendingCommit(now_ms))
        if not per:
            return
        done = []
        for w, p in per.items():
            if w > version:
                continue
            p.have.add(node)
            if len(p.have) >= len(up) and all(n in p.have for n in up):
                self.convergence_ms.append(now_ms - p.t0_ms)
                done.append(w)
        for w in done:
            del per[w]

    def recheck_pending(self, now_ms: int, up: dict[str, object], up_of=None) -> None:
        """After a node goes down, changes waiting only for it are complete. ``up_of(owner)``:
        the nodes an owner's change must reach, when that depends on the owner (several fleets)."""
        for owner, per in self.pending.items():
            need = up if up_of is None else up_of(owner)
            for w in [w for w, p in per.items() if all(n in p.have for n in need)]:
                self.convergence_ms.append(now_ms - per.pop(w).t0_ms)

    def pending_count(self) -> int:
        return sum(len(per) for per in self.pending.values())

    # --- pins under N -----------------------------------------------------------------------------
    def pin_copies(self, item: str, copies: int, copies_min: int, now_ms: int) -> None:
        since = self._pin_under_since.get(item)
        if copies < copies_min and since is None:
            self._pin_under_since[item] = now_ms
        elif copies >= copies_min and since is not None:
            span = now_ms - since
            del self._pin_under_since[item]
            if span > 0:  # not the instant between two hosts starting at one virtual time
                self.pin_under_ms[item] = self.pin_under_ms.get(item, 0) + span
                self.restore_ms.append(span)

    def close(self, now_ms: int) -> None:
        for item, since in self._pin_under_since.items():
            self.pin_under_ms[item] = self.pin_under_ms.get(item, 0) + now_ms - since
        self._pin_under_since.clear()

    def pins_under_now(self) -> list[str]:
        return sorted(self._pin_under_since)

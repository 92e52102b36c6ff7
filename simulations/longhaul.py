"""The ``long-haul`` scenario (issue 14, item 9): a month (``days``) of a fleet's life, compressed.

Each simulated day is an active phase of ``duration_s`` of virtual time, then the whole fleet is
powered off (every node's state saved as a crash leaves it) and the clock jumps to the next day,
when every host starts again from its saved state. So everything that lives for years — feeds,
tombstones and their GC horizon (3 days), the decision log, intents, incarnations — runs on the
real day clock through the real cores and the agent's own rules (``agent.feed_upkeep``:
tombstone collection, finished intents removed), while only the seconds that matter are simulated.
Each day: holdings churn on every host, a busy seedbox churning whole batches (the "1,000,000
holding changes on one host" figure, in the soak), pins set, raised (repairs) and lowered (trims)
and unpinned, a crash and restart, a restart within the same second at the same incarnation,
peers_for probes; once, the owner revokes a host; mid-run, half the fleet comes back on a build
one wire minor ahead (``simulations.upgrade``).

Checkers, at the end of every day (after a quiet spell) and at the end of the run:
* **feeds bounded by live entries** — each host's own feed holds exactly its card, its disk's
  holdings and its open intents (at most one per missing copy), and the tombstones older than its
  last GC are at most ``max(TOMBSTONES_FLOOR, live entries)``;
* **no write refused** — no own-feed write ever hit a feed limit;
* **every pin at min ≤ copies ≤ max**;
* **the decision log grows only with decisions** — every replica holds the genesis plus exactly
  the decisions made;
* **state per node bounded** — the bytes a node holds (every feed it replicates, the decision log)
  stay within twice the fleet's live bytes plus the tombstone floor per feed;
* **no false dead** — no death verdict ever named a running process's own incarnation;
* and the common ones: one feed state and one document, one duty map, pins restored.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from agent.feed_upkeep import TOMBSTONES_FLOOR
from crdt import records
from crdt.feed import ENTRY_OVERHEAD_BYTES
from simulations.adapter import AddHolding, HoldingBatch, RemoveHolding, Revoke, SetPin, Unpin
from simulations.sim import CRASHED
from simulations.upgrade import NewerNode
from tva.errors import InvalidInput

if TYPE_CHECKING:
    from simulations.realnode import RealNode
    from simulations.scenarios import Params
    from simulations.sim import Simulation

BUSY_INDEX = 2  # a bootstrap server turned busy seedbox
BUSY_LIVE = 300  # torrents it holds at once: each batch adds new ones and drops the oldest …
BUSY_READD = 4  # … and re-adds a few it dropped (reviving their tombstones)
BUSY_COMMIT_MS = 200  # one commit of a batch of holding changes every …
QUIET_MS = 12_000  # the end of each day: no workload, the fleet settles before the checks


def setup(sim: Simulation, p: Params, rng: random.Random, heal_ms: int) -> None:
    from simulations import scenarios
    if sim.factory.core != "real":
        raise InvalidInput("long-haul needs the real cores", hint=f"they cannot run: {sim.factory.core_note}")
    active_ms = int(p.duration_s * 1000)
    if active_ms < QUIET_MS + 8000:
        raise InvalidInput(f"long-haul days need duration_s >= {(QUIET_MS + 8000) / 1000:.0f}")
    sim.checker.false_dead_by_incarnation = True
    scenarios._start_all(sim, p, p.nodes)
    work = scenarios.Workload(sim, p, rng)
    work.seed_items(1000, p.copies_min)
    watch = LongHaulWatch(sim, p)
    owner, busy = sim.by_index[0], sim.by_index[BUSY_INDEX]
    movable = [q for q in sim.by_index[scenarios.SEED_NODES:]]
    revoked = movable[-1]
    upgraded = set(sim.by_index[1::2])
    revoke_day, upgrade_day = max(1, p.days // 3), p.days // 2

    def power_on(day: int):
        def act(now: int) -> None:
            for q in sim.by_index:
                if sim.hosts[q].status == CRASHED and q not in sim.revoked:
                    if day >= upgrade_day and q in upgraded:
                        sim.factory.node_classes[sim.hosts[q].index] = NewerNode
                    sim.restart(q, now)
        return act

    def day_end(day: int, last: bool):
        def act(now: int) -> None:
            watch.day_check(day, now)
            if not last:
                for q in list(sim.nodes):
                    sim.crash(q, now)  # power off: each node's state as a crash leaves it
        return act

    batch = max(2, int(p.busy_changes_per_s * BUSY_COMMIT_MS / 1000))
    held: list[str] = []  # the busy host's torrents, oldest first
    dropped: list[str] = []

    def busy_churn(now: int) -> None:
        if busy not in sim.nodes:
            return
        ops: list[AddHolding | RemoveHolding] = []
        fresh = [dropped.pop(rng.randrange(len(dropped))) for _ in range(min(BUSY_READD, len(dropped)))]
        while len(fresh) < batch // 2:
            watch.busy_names += 1
            fresh.append(f"busy-{watch.busy_names}")
        for item in fresh:
            held.append(item)
            ops.append(AddHolding(item, 700_000_000, "public"))
        while len(held) > BUSY_LIVE:
            item = held.pop(0)
            dropped.append(item)
            ops.append(RemoveHolding(item))
        del dropped[:-BUSY_LIVE]
        watch.busy_changes += len(ops)
        sim.change(busy, HoldingBatch(tuple(ops)), now)

    def restarts(now: int) -> None:
        up = [q for q in movable if q in sim.nodes and q != revoked]
        if len(up) < 2:
            return
        crashed, quick = rng.sample(up, 2)
        sim.crash(crashed, now)
        sim.at(now + rng.randrange(2000, 5000), "restart", lambda t, q=crashed: sim.restart(q, t))
        # a restart within the same second: a board without a real-time clock comes back at the
        # incarnation it had (the restart counter is derived from the clock in the agent)
        sim.crash(quick, now)
        saved = sim.hosts[quick].saved
        sim.hosts[quick].saved = {**saved, "incarnation": saved["incarnation"] - 1}  # type: ignore[dict-item]
        sim.restart(quick, now)

    def pin_work(day: int):
        def act(now: int) -> None:
            stable = [q for q in work.stable_hosts() if q in sim.nodes and q not in sim.revoked]
            phase = day % 3
            if phase == 0:  # a new pin of something held on a stable host
                held = sorted(i for q in stable for i in sim.hosts[q].disk
                              if i not in sim.pins and not i.startswith("busy-"))
                if held:
                    watch.decide(owner, SetPin(rng.choice(held), 2, 3), now)
            elif phase == 1:  # raise a pin to three copies: a repair
                low = sorted(i for i, (lo, _) in sim.pins.items() if lo < 3)
                if low:
                    watch.decide(owner, SetPin(rng.choice(low), 3, 3), now)
            else:  # lower a pin to two: a trim of a custody copy; and let the oldest pin go
                high = sorted(i for i, (lo, _) in sim.pins.items() if lo == 3)
                if high:
                    watch.decide(owner, SetPin(rng.choice(high), 2, 2), now)
                if len(sim.pins) > p.pins_max // 2:
                    watch.decide(owner, Unpin(min(sim.pins)), now)
        return act

    for day in range(p.days):
        t0 = day * scenarios.DAY_MS
        work_end = t0 + active_ms - QUIET_MS
        if day > 0:
            sim.at(t0, "power-on", power_on(day))
        work.churn_holdings(t0 + 2000, work_end)
        work.probes(t0 + 1500, work_end)
        for t in range(t0 + 2000, work_end, BUSY_COMMIT_MS):
            sim.at(t, "busy-churn", busy_churn)
        sim.at(t0 + 3000, "pins", pin_work(day))
        sim.at(t0 + 4000 + rng.randrange(2000), "restarts", restarts)
        if day == revoke_day:
            sim.at(t0 + 5000, "revoke", lambda now: watch.decide(owner, Revoke(revoked), now))
        sim.at(t0 + active_ms - 1, "day-end", day_end(day, day == p.days - 1))
    watch.upgraded, watch.upgrade_day = upgraded, upgrade_day


class LongHaulWatch:
    """The scenario's checkers (every day, and at the end) and figures."""

    def __init__(self, sim: Simulation, p: Params) -> None:
        self.sim, self.p = sim, p
        self.busy_changes = 0
        self.busy_names = 0
        self.decisions = 0
        # the decisions of the running fleet it starts from: genesis, admissions, pins, friends
        self.base_ops = len(sim.hosts[sim.by_index[0]].saved["doc"].ops())  # type: ignore[index]
        self.failures: dict[str, list[str]] = {k: [] for k in ("feeds", "pins", "log", "state")}
        self.by_day: list[tuple[int, int, int, int]] = []  # day, state bytes max, tombstones max, feed bytes max
        sim.liveness_checks.update({
            "feeds_bounded": lambda: self._verdict("feeds", "every own feed: live entries = card + disk + "
                                                   "open intents, old tombstones <= max(floor, live)"),
            "no_write_refused": self._no_write_refused,
            "pins_within_min_max": lambda: self._verdict("pins", "every pin at min <= copies <= max, every day"),
            "decision_log_bounded": lambda: self._verdict("log", "every replica: genesis + the decisions made"),
            "state_per_node_bounded": lambda: self._verdict("state", "every node's state within its bound"),
            "no_false_dead": self.sim.checker.no_false_dead,
            "mixed_builds_talk": self._mixed_builds_talk,
        })
        sim.metric_sources.append(self.figures)

    def decide(self, writer: str, op: SetPin | Unpin | Revoke, now: int) -> None:
        if writer in self.sim.nodes:
            self.decisions += 1
            self.sim.change(writer, op, now)

    def _verdict(self, kind: str, ok_text: str) -> tuple[bool, str]:
        bad = self.failures[kind]
        return not bad, (ok_text if not bad else f"{len(bad)} failures, first: " + "; ".join(bad[:3]))

    def _up(self) -> list[tuple[str, RealNode]]:
        return [(q, n) for q, n in self.sim.nodes.items() if q not in self.sim.revoked]  # type: ignore[misc]

    def day_check(self, day: int, now: int) -> None:
        sim = self.sim
        tag = f"day {day}"
        pins_max_copies = sum(hi for _, hi in sim.pins.values())
        state_max = tomb_max = feed_max = 0
        base_ops = self.base_ops
        live_bytes = sum(n.own.feed.size_bytes for _, n in self._up() if n.own.feed is not None)
        for q, node in self._up():
            feed = node.own.feed
            if feed is None:
                continue
            tombs = feed.tombstone_keys()
            live = feed.entry_count - len(tombs)
            intents = len(records.intents_of(feed))
            disk = len(sim.hosts[q].disk)
            if live - intents != 1 + disk or intents > pins_max_copies:
                self.failures["feeds"].append(f"{tag} {q[-6:]}: {live} live, {intents} intents, {disk} on disk")
            mark_version, mark_live = node.gc_mark
            old = sum(1 for k in tombs if feed.entry(k).version <= mark_version)
            if old > max(TOMBSTONES_FLOOR, mark_live):
                self.failures["feeds"].append(f"{tag} {q[-6:]}: {old} tombstones older than its last GC")
            ops = len(node.doc.ops())
            if ops != base_ops + self.decisions:
                self.failures["log"].append(f"{tag} {q[-6:]}: {ops} ops for {self.decisions} decisions")
            held = sum(node.feeds.inner.feed(o).size_bytes for o in node.feeds.inner.owners()) + node.doc._log.bytes
            bound = 2 * live_bytes + len(sim.by_index) * TOMBSTONES_FLOOR * (ENTRY_OVERHEAD_BYTES + 64) \
                + node.doc._log.bytes
            if held > bound:
                self.failures["state"].append(f"{tag} {q[-6:]}: holds {held} B, bound {bound} B")
            state_max, tomb_max, feed_max = max(state_max, held), max(tomb_max, len(tombs)), max(feed_max, feed.size_bytes)
        for item, (lo, hi) in sorted(sim.pins.items()):
            have = sim.available_copies(item)
            if have and not lo <= have <= hi:
                self.failures["pins"].append(f"{tag} {item}: {have} copies, pin {lo}..{hi}")
        self.by_day.append((day, state_max, tomb_max, feed_max))

    def _no_write_refused(self) -> tuple[bool, str]:
        refused = sum(n.writes_refused for _, n in self._up())
        return refused == 0, f"{refused} own-feed writes refused"

    def _mixed_builds_talk(self) -> tuple[bool, str]:
        """After the upgrade of half the fleet, both builds run and the older one reads (and
        skips) what only the newer one says."""
        if self.p.days < 2:
            return True, "one day: no upgrade"
        up = self._up()
        newer = [q for q, n in up if isinstance(n, NewerNode)]
        older = [n for _, n in up if not isinstance(n, NewerNode)]
        heard = sum(1 for n in older if n.mesh.stats.get("items_unknown_kind", 0) > 0)
        ok = bool(newer) and bool(older) and heard == len(older)
        return ok, f"{len(newer)} nodes on the newer build, {heard} of {len(older)} older ones read its items"

    def figures(self) -> dict:
        sim = self.sim
        busy = sim.nodes.get(sim.by_index[BUSY_INDEX])
        feed = busy.own.feed if busy is not None else None  # type: ignore[attr-defined]
        up = self._up()
        pick = sorted({0, len(self.by_day) // 2, len(self.by_day) - 1}) if self.by_day else []
        return {
            "days": self.p.days,
            "newer_build_nodes": sum(1 for _, n in up if isinstance(n, NewerNode)),
            "holding_changes_busy_host": self.busy_changes,
            "busy_feed": ({"bytes": feed.size_bytes, "entries": feed.entry_count,
                           "tombstones": len(feed.tombstone_keys())} if feed is not None else None),
            "tombstones_collected": sum(n.tombstones_collected for _, n in up),
            "decisions": self.decisions,
            "decision_log_ops": len(up[0][1].doc.ops()) if up else None,
            "by_day_state_bytes_max_tombstones_max_feed_bytes_max": [list(self.by_day[i]) for i in pick],
        }

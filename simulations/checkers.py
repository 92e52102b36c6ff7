"""Safety, checked on every effect as it happens; liveness, checked after the faults heal.

Safety (never, at any step):
* a private (``f2f_only``) or ``search_only`` item announced to the DHT/tracker, or its holders
  revealed by ``peers_for`` to a non-friend;
* a repair that targets a portable host, a revoked host or a host whose disk is full (revocations
  and full disks count once they are older than the gossip grace: a planner cannot know sooner);
* a trim that leaves fewer than the pin's minimum durable copies.
Liveness (within a bound after healing):
* every live node holds the same feeds (version vectors) and the same fleet document;
* every pin is back to >= N available copies, when the fleet has room for them;
* every live node computes the same duties.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from simulations.adapter import Announce, Fetch, RepairStart, Trimmed

if TYPE_CHECKING:
    from simulations.sim import Simulation

VIOLATIONS_KEPT = 50
# A death verdict is false when the host was up — and, for "false" rather than "partitioned",
# reachable — for this long before it: suspicion timeouts reach ~70 s in a 1000-node fleet.
FALSE_DEAD_WINDOW_MS = 90_000


@dataclass(frozen=True)
class Violation:
    at_ms: int
    rule: str
    detail: str


class Checker:
    def __init__(self, sim: Simulation, revocation_grace_ms: int) -> None:
        self.sim = sim
        self.grace_ms = revocation_grace_ms
        self.violations: list[Violation] = []
        self.count = 0
        self._full_since: dict[str, int] = {}
        self._deaths_seen: set[tuple[str, int]] = set()
        self.never_fetch: set[str] = set()  # items no honest host may ever fetch (a rogue's bait)
        self.rogues: set[str] = set()  # a rogue announces what it likes: that is its own doing
        # long-haul: a verdict is false when it names the running process's own incarnation (or
        # above) — exact, where the time window below is a bound for big fleets' suspicion times
        self.false_dead_by_incarnation = False

    def _fail(self, at_ms: int, rule: str, detail: str) -> None:
        self.count += 1
        if len(self.violations) < VIOLATIONS_KEPT:
            self.violations.append(Violation(at_ms, rule, detail))

    # --- safety ------------------------------------------------------------------------------------
    def announced(self, eff: Announce, now_ms: int) -> None:
        if eff.holder in self.rogues:
            return
        item = self.sim.items.get(eff.item)
        if item is None or item.policy != "public":
            policy = item.policy if item else "unknown"
            self._fail(now_ms, "private-announced", f"{eff.holder[-8:]} announced {policy} item "
                       f"{eff.item} to {eff.where}")

    def peers_for_answered(self, item: str, answer: list, now_ms: int) -> None:
        """An item's holders reach the public swarm (dht/tracker) only when it is public, a
        friend fleet's offer only when that fleet is linked, and search_only answers nothing."""
        it = self.sim.items.get(item)
        if it is None:
            return
        for a in answer:
            if it.policy == "search_only":
                self._fail(now_ms, "private-revealed", f"peers_for({item}, search_only) answered {a.provenance}")
            elif it.policy != "public" and a.provenance in ("dht", "tracker"):
                self._fail(now_ms, "private-provenance", f"peers_for({item}, {it.policy}) used {a.provenance}")
            elif a.provenance == "friend" and a.fleet not in self.sim.friends:
                self._fail(now_ms, "non-friend", f"peers_for({item}) offered a peer of unlinked fleet {a.fleet}")

    def disk_full_changed(self, peer: str, full: bool, now_ms: int) -> None:
        if full:
            self._full_since.setdefault(peer, now_ms)
        else:
            self._full_since.pop(peer, None)

    def repair_started(self, eff: RepairStart, now_ms: int) -> None:
        host = self.sim.hosts.get(eff.target)
        if host is None:
            self._fail(now_ms, "repair-target", f"repair of {eff.item} targets an unknown host")
            return
        if host.host_class == "portable":
            self._fail(now_ms, "repair-portable", f"repair of {eff.item} targets portable {eff.target[-8:]}")
        revoked_at = self.sim.revoked.get(eff.target)
        if revoked_at is not None and now_ms - revoked_at > self.grace_ms:
            self._fail(now_ms, "repair-revoked", f"repair of {eff.item} targets revoked {eff.target[-8:]}")
        full_at = self._full_since.get(eff.target)
        if full_at is not None and now_ms - full_at > self.grace_ms:
            self._fail(now_ms, "repair-full", f"repair of {eff.item} targets full {eff.target[-8:]}")

    def fetch_started(self, eff: Fetch, now_ms: int) -> None:
        if eff.item in self.never_fetch:
            self._fail(now_ms, "forced-fetch", f"{eff.target[-8:]} fetches {eff.item}, which only a rogue asked for")

    def repair_landed(self, item: str, target: str, now_ms: int) -> None:
        # The copy is being written: a full or revoked disk must never receive it, whatever the
        # planner believed (the world refuses full disks before calling this).
        if target in self.sim.revoked and now_ms - self.sim.revoked[target] > self.grace_ms:
            self._fail(now_ms, "repair-revoked", f"copy of {item} written to revoked {target[-8:]}")

    def trimmed(self, eff: Trimmed, now_ms: int) -> None:
        pin = self.sim.pins.get(eff.item)
        if pin is None:
            return
        copies = self.sim.durable_copies(eff.item)
        if copies < pin[0]:
            self._fail(now_ms, "trim-below-n", f"{eff.holder[-8:]} trimmed {eff.item}: {copies} < {pin[0]} copies")

    def declared_dead(self, declarer: str, peer: str, incarnation: int, now_ms: int) -> None:
        m = self.sim.metrics
        if declarer in self.sim.revoked:
            return  # nobody talks to a revoked host any more: its verdicts are its own business
        # One death is one (peer, incarnation), however many nodes come to hold it.
        if (peer, incarnation) in self._deaths_seen:
            return
        self._deaths_seen.add((peer, incarnation))
        m.declared_dead += 1
        if peer not in self.sim.nodes:
            return  # really down (crashed, asleep, left): a true verdict
        running = getattr(self.sim.nodes[peer], "incarnation", None)
        if self.false_dead_by_incarnation and running is not None:
            if incarnation >= running():
                m.false_dead += 1
            return
        if now_ms - self.sim.hosts[peer].up_since_ms < FALSE_DEAD_WINDOW_MS:
            return  # it was down recently: the verdict is about the process that died
        net = self.sim.net
        healed = net.healed_at_ms
        if (not net.reachable(declarer, peer) or not net.reachable(peer, declarer)
                or (healed is not None and now_ms - healed < FALSE_DEAD_WINDOW_MS)):
            m.dead_while_partitioned += 1
        else:
            m.false_dead += 1

    # --- liveness ------------------------------------------------------------------------------------
    def live_members(self) -> list[str]:
        return sorted(p for p in self.sim.nodes if p not in self.sim.revoked)

    def converged(self) -> tuple[bool, str]:
        """Do all live, unrevoked nodes hold the same feeds and fleet document?"""
        # honest nodes only (a rogue holds what it likes), but every feed: the rogue's too
        live = [p for p in self.live_members() if p not in self.rogues]
        ignored = self.sim.revoked
        seen_vv: dict[tuple, str] = {}
        seen_doc: dict[str, str] = {}
        for p in live:
            node = self.sim.nodes[p]
            vv = tuple(sorted((o, v) for o, v in node.version_vector().items() if o not in ignored))
            seen_vv.setdefault(vv, p)
            seen_doc.setdefault(node.doc_digest(), p)
            if len(seen_vv) > 1 or len(seen_doc) > 1:
                return False, f"{len(seen_vv)} feed states, {len(seen_doc)} fleet documents among {len(live)} live nodes"
        return True, f"{len(live)} live nodes hold one feed state and one fleet document"

    def duties_agree(self) -> tuple[bool, str]:
        seen: dict[tuple, str] = {}
        for p in self.live_members():
            seen.setdefault(tuple(sorted(self.sim.nodes[p].duties().items())), p)
        return len(seen) <= 1, f"{len(seen)} distinct duty maps"

    def pins_restored(self) -> tuple[bool, str]:
        sim = self.sim
        eligible = [p for p in sim.nodes if p not in sim.revoked and not sim.hosts[p].full
                    and sim.hosts[p].host_class != "portable"]
        short = []
        for item, (copies_min, _) in sorted(sim.pins.items()):
            have = sim.available_copies(item)
            has_source = have > 0
            room = len(eligible) >= copies_min
            if have < copies_min and has_source and room:
                short.append(f"{item}:{have}/{copies_min}")
        return not short, ("all pins at >= N copies" if not short else "under N: " + ", ".join(short[:5]))

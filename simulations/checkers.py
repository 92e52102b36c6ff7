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
# A member hears that a link ended (or a friend dropped a copy) by gossip of its fleet document and
# the next friend sync (simulations.friends.SYNC_MS): answers and plans may lag the truth this long.
FRIEND_GRACE_MS = 5000


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

    def peers_for_answered(self, item: str, answer: list, now_ms: int, asker: str | None = None) -> None:
        """An item's holders reach the public swarm (dht/tracker) only when it is public, a
        friend fleet's offer only when that fleet is linked, and search_only answers nothing.
        Several fleets: a closed item's holders reach only its own fleet and the fleets linked
        with it (``asker``: the node that asked)."""
        it = self.sim.items.get(item)
        if it is None:
            return
        friends = self.sim.friend_world
        for a in answer:
            if it.policy == "search_only":
                self._fail(now_ms, "private-revealed", f"peers_for({item}, search_only) answered {a.provenance}")
            elif it.policy != "public" and a.provenance in ("dht", "tracker"):
                self._fail(now_ms, "private-provenance", f"peers_for({item}, {it.policy}) used {a.provenance}")
            elif a.provenance == "friend" and friends is None and a.fleet not in self.sim.friends:
                self._fail(now_ms, "non-friend", f"peers_for({item}) offered a peer of unlinked fleet {a.fleet}")
            elif a.provenance in ("fleet", "seedbox") and friends is not None and asker is not None:
                if self.sim.fleet_of.get(a.peer) != self.sim.fleet_of[asker]:  # fleets never share a mesh
                    self._fail(now_ms, "foreign-fleet-peer", f"peers_for({item}) gave another fleet's host as "
                               f"{a.provenance}")
            elif a.provenance == "friend" and friends is not None and asker is not None:
                mine = self.sim.fleet_of[asker]
                theirs = friends.fleet_number(a.fleet)
                if theirs is None:
                    continue  # a made-up offer of a fleet that does not exist: the gate's test, above
                if self.sim.fleet_of.get(a.peer) != theirs:
                    self._fail(now_ms, "friend-misattributed", f"peers_for({item}) named a host of fleet "
                               f"{self.sim.fleet_of.get(a.peer)} as fleet {theirs}'s")
                elif not friends.linked(mine, theirs, now_ms, FRIEND_GRACE_MS):
                    self._fail(now_ms, "non-friend", f"peers_for({item}) at fleet {mine} offered a peer of "
                               f"unlinked fleet {theirs}")
                elif it.policy != "public" and not friends.may_see(it.fleet, mine, now_ms, FRIEND_GRACE_MS):
                    self._fail(now_ms, "closed-item-left", f"{it.policy} item {item} of fleet {it.fleet}: its "
                               f"holders reached fleet {mine}, neither it nor a friend of it")

    def view_delivered(self, issuer: int, audience: int, view, now_ms: int) -> None:
        """A friend view crossing from fleet ``issuer`` to fleet ``audience``: only to a linked fleet,
        never a search_only item, a closed item only where its own fleet's friends are."""
        friends = self.sim.friend_world
        # No grace: the issuing gateway recorded the end itself, so it must stop serving at once.
        if not friends.linked(issuer, audience, now_ms, 0):
            self._fail(now_ms, "view-unlinked", f"fleet {issuer}'s view reached unlinked fleet {audience}")
        by_ih = friends.items_by_infohash
        for entry in view.items:
            it = by_ih.get(entry.infohash)
            if it is None:
                self._fail(now_ms, "view-unknown", f"fleet {issuer}'s view lists an unknown item")
                continue
            if it.policy == "search_only":
                self._fail(now_ms, "view-search-only", f"search_only item {it.name} crossed to fleet {audience}")
            elif it.policy != "public" and not friends.may_see(it.fleet, audience, now_ms, 0):
                self._fail(now_ms, "closed-item-left", f"{it.policy} item {it.name} of fleet {it.fleet} reached "
                           f"fleet {audience} in fleet {issuer}'s view")

    def friends_counted(self, node: str, eff, now_ms: int) -> None:
        """A plan counts friends' copies only for a pin that allows it (``--friends``), a public
        item, friends linked now that offer custody and really hold a copy."""
        sim, friends = self.sim, self.sim.friend_world
        pin, it = sim.pins.get(eff.item), sim.items.get(eff.item)
        if friends is None or it is None:
            return
        mine = sim.fleet_of[node]
        if pin is None or eff.item not in friends.friend_pins:
            self._fail(now_ms, "friend-count-pin", f"{eff.item} counts friends' copies without --friends")
        if it.policy != "public":
            self._fail(now_ms, "friend-count-policy", f"{it.policy} item {eff.item} counts friends' copies")
        for fleet_id in eff.fleets:
            theirs = friends.fleet_number(fleet_id)
            if theirs is None or not friends.linked(mine, theirs, now_ms, FRIEND_GRACE_MS):
                self._fail(now_ms, "friend-count-unlinked", f"{eff.item} counts a copy of unlinked fleet {theirs}")
            elif not friends.offers(theirs, mine, now_ms, FRIEND_GRACE_MS):
                self._fail(now_ms, "friend-count-no-offer", f"{eff.item} counts fleet {theirs}, which offers nothing")
            elif not friends.holds(theirs, eff.item, now_ms, FRIEND_GRACE_MS):
                self._fail(now_ms, "friend-count-no-copy", f"{eff.item} counts fleet {theirs}, which holds no copy")

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

    def no_false_dead(self) -> tuple[bool, str]:
        """A liveness check for scenarios that count a false death as a failure."""
        m = self.sim.metrics
        return m.false_dead == 0, f"{m.false_dead} false of {m.declared_dead} death verdicts"

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

    def _by_fleet(self) -> list[list[str]]:
        groups: dict[int, list[str]] = {}
        for p in self.live_members():
            groups.setdefault(self.sim.fleet_of.get(p, 0), []).append(p)
        return [groups[f] for f in sorted(groups)]

    def converged(self) -> tuple[bool, str]:
        """Do all live, unrevoked nodes of each fleet hold the same feeds and fleet document?"""
        # honest nodes only (a rogue holds what it likes), but every feed: the rogue's too
        revoked = self.sim.revoked
        total = 0
        for live in self._by_fleet():
            live = [p for p in live if p not in self.rogues]
            seen_vv: dict[tuple, str] = {}
            seen_doc: dict[str, str] = {}
            for p in live:
                node = self.sim.nodes[p]
                vv = tuple(sorted((o, v) for o, v in node.version_vector().items() if o not in revoked))
                seen_vv.setdefault(vv, p)
                seen_doc.setdefault(node.doc_digest(), p)
                if len(seen_vv) > 1 or len(seen_doc) > 1:
                    return False, (f"{len(seen_vv)} feed states, {len(seen_doc)} fleet documents among "
                                   f"{len(live)} live nodes")
            total += len(live)
        return True, f"{total} live nodes hold one feed state and one fleet document (per fleet)"

    def duties_agree(self) -> tuple[bool, str]:
        counts = []
        for live in self._by_fleet():
            seen: dict[tuple, str] = {}
            for p in live:
                seen.setdefault(tuple(sorted(self.sim.nodes[p].duties().items())), p)
            counts.append(len(seen))
        return all(c <= 1 for c in counts), f"{max(counts, default=0)} distinct duty maps (per fleet)"

    def pins_restored(self) -> tuple[bool, str]:
        sim = self.sim
        eligible = [p for p in sim.nodes if p not in sim.revoked and not sim.hosts[p].full
                    and sim.hosts[p].host_class != "portable"]
        short = []
        fleets = sim.friend_world
        for item, (copies_min, _) in sorted(sim.pins.items()):
            have = sim.available_copies(item)
            has_source = have > 0
            it = sim.items.get(item)
            owner = it.fleet if it is not None else 0
            hosts = sum(1 for p in eligible if sim.fleet_of.get(p, 0) == owner)
            if fleets is not None and it is not None and item in fleets.friend_pins and it.policy == "public":
                now = sim.world.now_ms  # a friend pin may also count one copy per linked friend that offers room
                hosts += sum(1 for k in range(fleets.n) if k != owner and fleets.offers(k, owner, now, 0))
            room = hosts >= copies_min
            if have < copies_min and has_source and room:
                short.append(f"{item}:{have}/{copies_min}")
        return not short, ("all pins at >= N copies" if not short else "under N: " + ", ".join(short[:5]))

"""The ``friends`` scenario: several fleets (three of 50 by default), links made and broken, friend
custody on (see simulations.friends for what is real and what is modelled).

Timeline (``H`` = the healing point, ``duration_s``):

* every fleet starts converged on its own items (public, f2f_only from a private tracker,
  search_only), its own pins, no links;
* 2 s (fleet 0 and 1 linked): fleet 0's gateway pins two items with ``--friends`` at one more copy
  than the fleet has usable hosts: a public one (only a friend's copy can complete it) and an
  f2f_only one from a private tracker (friends' copies must never count for it: it stays under);
* 1.5 s: fleets 0 and 1 link, 1 offering 0 custody; 2.5 s: fleets 1 and 2 link, 2 offering 1;
* 0.2 H–0.3 H: fleet 2's gateway is down (views stop crossing; held ones age out);
* 0.6 H: fleets 0 and 2 link, 2 offering 0; 0.7 H: fleets 0 and 1 unlink (fleet 1 drops the
  copy it kept) — the friend pin must come back through fleet 2 (liveness ``friends_settled``);
* all along: holdings churn in every fleet, random nodes of every fleet answer ``peers_for`` for
  items of every fleet (with offers from unlinked, made-up fleets and DHT/tracker candidates).
"""

from __future__ import annotations

import random

from simulations.adapter import AddHolding, SetPin
from simulations.friends import SYNC_MS, FriendWorld
from simulations.scenarios import SEED_NODES, Params, Workload
from simulations.sim import CRASHED, Item, Simulation

OFFER_BYTES = 10**12  # what a fleet offers a friend: a terabyte, a gift
FRIEND_PIN_AT_MS = 2000


def setup(sim: Simulation, p: Params, rng: random.Random, heal_ms: int) -> None:
    factory = sim.factory
    fw = FriendWorld(sim, factory)
    sim.friend_world = fw
    w = Workload(sim, p, rng)
    for f in range(p.fleets):
        indexes = factory.fleet_indexes(f)
        seeds = [sim.by_index[i] for i in indexes[:SEED_NODES]]
        for i in indexes:
            sim.at(0, "start", lambda now, i=i, seeds=seeds: sim.start(i, now, seeds))
        _seed_fleet(sim, p, rng, w, fw, f)

    sim.at(1500, "link", lambda now: fw.link(0, 1, now, offer_b_to_a=OFFER_BYTES))
    sim.at(2500, "link", lambda now: fw.link(1, 2 % p.fleets, now, offer_b_to_a=OFFER_BYTES)
           if p.fleets > 2 else None)
    last = p.fleets - 1
    gateway = fw.gateways[last]
    sim.at(heal_ms * 20 // 100, "crash-gateway", lambda now: sim.crash(gateway, now))
    sim.at(heal_ms * 30 // 100, "restart-gateway",
           lambda now: sim.restart(gateway, now) if sim.hosts[gateway].status == CRASHED else None)
    sim.at(heal_ms * 60 // 100, "link", lambda now: fw.link(0, last, now, offer_b_to_a=OFFER_BYTES))
    sim.at(heal_ms * 70 // 100, "unlink", lambda now: fw.unlink(0, 1, now))

    w.churn_holdings(3000, heal_ms - 1000)
    w.probes(1500, heal_ms)
    for t in range(1000, heal_ms + int(p.bound_s * 1000), SYNC_MS):
        sim.at(t, "friend-sync", fw.sync)


def _seed_fleet(sim: Simulation, p: Params, rng: random.Random, w: Workload, fw: FriendWorld, fleet: int) -> None:
    """Fleet ``fleet`` starts converged on its items and pins (the real writers sign them)."""
    factory = sim.factory
    peers = [sim.by_index[i] for i in factory.fleet_indexes(fleet)]
    stable = [q for q in peers if sim.hosts[q].host_class != "portable"]
    plan = []
    for _ in range(max(4, int(len(peers) * p.items_per_node))):
        item, size, policy = w.new_item()
        plan.append((item, size, policy, rng.sample(stable, min(p.copies_min, len(stable)))))
    if fleet == 0:  # one item of each policy at least: the friend pins below need them
        for k, policy in enumerate(("public", "f2f_only", "search_only")):
            plan[k] = (plan[k][0], plan[k][1], policy, plan[k][3])
    pins = [SetPin(item, p.copies_min, p.copies_max) for item, *_ in plan[3: 3 + p.pins_max // p.fleets]]
    if fleet == 0:
        # One more copy than our usable hosts: only a friend can complete it, and such a pin is valid
        # only while a friend is linked (FleetView's fit check), so the gateway pins it once linked.
        usable = len(stable)
        for k in (0, 1):  # the public one, and a private tracker's (friends' copies must never count for it)
            pin = SetPin(plan[k][0], usable + 1, usable + 1, friends=True)
            sim.at(FRIEND_PIN_AT_MS + k, "friend-pin", lambda now, pin=pin: sim.change(fw.gateways[0], pin, now))
            fw.friend_pins.add(plan[k][0])
    per_host: dict[str, list[AddHolding]] = {q: [] for q in peers}
    for item, size, policy, holders in plan:
        sim.items[item] = Item(item, size, policy, fleet)
        for h in holders:
            sim._disk_add(h, item, size)
            per_host[h].append(AddHolding(item, size, policy))
    for pin in pins:
        sim.pins[pin.item] = (pin.copies_min, pin.copies_max)
    state = factory.warm_state_of(fleet, [sim.hosts[q].host_class for q in peers], [per_host[q] for q in peers],
                                  pins)
    for q in peers:
        sim.hosts[q].saved = state

"""Named, parameterised scenarios: each schedules its faults and workload on a Simulation.

Every scenario has an *active* phase (workload and faults) that ends with everything healed at
``heal_ms``; the liveness checkers then get ``bound_s`` to see the fleet settle.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

from simulations.adapter import (
    AddFriend,
    AddHolding,
    FriendOffer,
    RemoveHolding,
    Revoke,
    SetDiskFull,
    SetPin,
)
from simulations.network import WAN
from simulations.seeds import derive_bytes
from simulations.sim import ASLEEP, CRASHED, Item, Simulation
from tva.errors import InvalidInput

SCENARIOS = ("steady", "churn", "partition-heal", "sleepy-laptops", "holder-loss", "mass-join",
             "lossy-wan", "byzantine-member", "long-haul", "friends")
SEED_NODES = 5
FLEETS_MAX = 8
FLEET_NODES_MIN = SEED_NODES + 3
NODES_MAX = 5000
DURATION_S_MAX = 3600.0
DAYS_MAX = 3650
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Params:
    scenario: str = "steady"
    nodes: int = 30
    seed: int = 1
    duration_s: float = 20.0  # the active phase; all faults heal by its end
    bound_s: float = 30.0  # liveness bound after healing
    interval_ms: int = 200
    fanout: int = 3
    core: str = "auto"
    anti_entropy: bool = True
    link: str = "lan"  # lan | wan | lossy
    portable_fraction: float = 0.2
    seedbox_fraction: float = 0.1
    items_per_node: float = 0.5
    pins_max: int = 20
    copies_min: int = 2
    copies_max: int = 3
    changes_per_s: float = 2.0
    probes_per_s: float = 4.0
    warm_start: bool = True  # begin converged (a running fleet); mass-join starts cold
    days: int = 1  # long-haul: simulated days, each an active phase of duration_s (simulations.longhaul)
    busy_changes_per_s: float = 120.0  # long-haul: the busy seedbox's holding changes per active second
    fleets: int = 1  # several fleets share the nodes evenly (friends: 3); each its own genesis and mesh

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise InvalidInput(f"unknown scenario {self.scenario!r}", hint="one of " + ", ".join(SCENARIOS))
        if not 4 <= self.nodes <= NODES_MAX:
            raise InvalidInput(f"a scenario needs 4..{NODES_MAX} nodes", hint="e.g. --nodes 30")
        if self.changes_per_s <= 0 or self.probes_per_s <= 0 or self.items_per_node < 0 or self.pins_max < 0:
            raise InvalidInput("changes_per_s and probes_per_s must be > 0; items_per_node, pins_max >= 0")
        if self.duration_s > DURATION_S_MAX or self.bound_s > DURATION_S_MAX:
            raise InvalidInput(f"duration_s and bound_s are at most {DURATION_S_MAX:.0f} s of virtual time")
        if self.duration_s <= 2 or self.bound_s <= 0 or self.interval_ms <= 0 or self.fanout <= 0:
            raise InvalidInput("duration_s must be > 2; bound_s, interval_ms and fanout > 0")
        if not 0 <= self.portable_fraction + self.seedbox_fraction < 0.9:
            raise InvalidInput("portable_fraction + seedbox_fraction must be in [0, 0.9)")
        if not 1 <= self.copies_min <= self.copies_max:
            raise InvalidInput("need 1 <= copies_min <= copies_max")
        if not 1 <= self.days <= DAYS_MAX:
            raise InvalidInput(f"days must be in 1..{DAYS_MAX}")
        if self.link not in ("lan", "wan", "lossy"):
            raise InvalidInput(f"unknown link {self.link!r}", hint="lan, wan or lossy")
        if not 1 <= self.fleets <= FLEETS_MAX or (self.fleets > 1 and self.nodes < self.fleets * FLEET_NODES_MIN):
            raise InvalidInput(f"fleets must be 1..{FLEETS_MAX}, each of at least {FLEET_NODES_MIN} nodes",
                               hint=f"e.g. --nodes {3 * FLEET_NODES_MIN} --set fleets=3")
        if (self.fleets > 1) != (self.scenario == "friends"):
            raise InvalidInput("the friends scenario runs 2 or more fleets, the others one",
                               hint="--scenario friends --set fleets=3")

    def heal_ms(self) -> int:
        """When the faults are over: the end of the last day's active phase."""
        return (self.days - 1) * DAY_MS + int(self.duration_s * 1000)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def replay_command(self) -> str:
        defaults = params_for(self.scenario)
        parts = ["python -m simulations", f"--scenario {self.scenario}", f"--nodes {self.nodes}",
                 f"--seed {self.seed}"]
        for f in fields(self):
            if f.name in ("scenario", "nodes", "seed"):
                continue
            value = getattr(self, f.name)
            if value != getattr(defaults, f.name):
                parts.append(f"--set {f.name}={value}")
        return " ".join(parts)


SCENARIO_DEFAULTS: dict[str, dict] = {
    "lossy-wan": {"link": "lossy"},
    "sleepy-laptops": {"portable_fraction": 0.4},
    "holder-loss": {"copies_min": 3, "copies_max": 4},
    "mass-join": {"warm_start": False},
    "byzantine-member": {"duration_s": 40.0, "bound_s": 120.0},
    "long-haul": {"days": 30, "duration_s": 40.0, "changes_per_s": 4.0},
    "friends": {"fleets": 3, "nodes": 150},  # three fleets of 50
}


def params_for(scenario: str, **overrides: object) -> Params:
    """The scenario's defaults, then the caller's overrides."""
    if scenario not in SCENARIOS:
        raise InvalidInput(f"unknown scenario {scenario!r}", hint="one of " + ", ".join(SCENARIOS))
    values = {**SCENARIO_DEFAULTS.get(scenario, {}), **overrides, "scenario": scenario}
    return Params(**values)  # type: ignore[arg-type]


def host_classes(p: Params, rng: random.Random) -> list[str]:
    """Every node's class; several fleets: each fleet's share, its first SEED_NODES servers."""
    if p.fleets > 1:
        per = p.nodes // p.fleets
        sizes = [per] * (p.fleets - 1) + [p.nodes - per * (p.fleets - 1)]
        return [c for size in sizes for c in host_classes(replace(p, nodes=size, fleets=1, scenario="steady"), rng)]
    n_portable = int(p.nodes * p.portable_fraction)
    n_seedbox = int(p.nodes * p.seedbox_fraction)
    # The first SEED_NODES are always servers: they are the bootstrap addresses of the fleet.
    rest = ["portable"] * n_portable + ["seedbox"] * n_seedbox
    rest += ["server"] * (p.nodes - SEED_NODES - len(rest))
    rng.shuffle(rest)
    return ["server"] * SEED_NODES + rest[: p.nodes - SEED_NODES]


def friend_fleet(seed: int, n: int) -> tuple[str, str]:
    """(fleet id, one holder's peer id) of simulated fleet n outside ours."""
    from crdt.identity import NodeKey
    return f"fleet-{derive_bytes(seed, 'fleet', n, n_bytes=6).hex()}", \
        NodeKey(derive_bytes(seed, "friend-fleet", n)).peer_id


class Workload:
    """Holdings added and removed, pins set, items lost, friend links, peers_for probes."""

    def __init__(self, sim: Simulation, p: Params, rng: random.Random) -> None:
        self.sim, self.p, self.rng = sim, p, rng
        self.n_items = 0

    def stable_hosts(self) -> list[str]:
        return [peer for peer in self.sim.by_index if self.sim.hosts[peer].host_class != "portable"]

    def new_item(self) -> tuple[str, int, str]:
        self.n_items += 1
        r = self.rng.random()
        policy = "public" if r < 0.5 else ("f2f_only" if r < 0.85 else "search_only")
        return f"item-{self.n_items}", self.rng.randrange(1, 50) * 1_000_000, policy

    def seed_items(self, at_ms: int, copies: int) -> None:
        """Items on ``copies`` stable hosts each; the first pins_max of them pinned; one friend
        fleet linked. Warm start: the fleet begins converged on all of that (a running fleet),
        instead of every node announcing everything at t=0 (a start-up storm no fleet has)."""
        sim, p = self.sim, self.p
        n_items = max(3, int(p.nodes * p.items_per_node))
        hosts = self.stable_hosts()
        plan = []
        for _ in range(n_items):
            item, size, policy = self.new_item()
            plan.append((item, size, policy, self.rng.sample(hosts, min(copies, len(hosts)))))
        pins = [SetPin(item, p.copies_min, p.copies_max) for item, *_ in plan[: p.pins_max]]
        friend, _ = friend_fleet(p.seed, 0)
        sim.friends.append(friend)
        if p.warm_start:
            per_host: dict[str, list[AddHolding]] = {peer: [] for peer in sim.by_index}
            for item, size, policy, holders in plan:
                sim.items[item] = Item(item, size, policy)
                for h in holders:
                    sim._disk_add(h, item, size)
                    per_host[h].append(AddHolding(item, size, policy))
            for pin in pins:
                sim.pins[pin.item] = (pin.copies_min, pin.copies_max)
            state = sim.factory.warm_state([sim.hosts[peer].host_class for peer in sim.by_index],
                                           [per_host[peer] for peer in sim.by_index], pins, [friend])
            for host in sim.hosts.values():
                host.saved = state
            return
        for i, (item, size, policy, holders) in enumerate(plan):
            for j, h in enumerate(holders):
                sim.at(at_ms + i * 7 + j, "add-holding",
                       lambda now, h=h, op=AddHolding(item, size, policy): sim.change(h, op, now))
        for i, pin in enumerate(pins):
            holder = plan[i][3][0]
            sim.at(at_ms + 500 + i * 7, "set-pin", lambda now, h=holder, op=pin: sim.change(h, op, now))
        sim.at(at_ms + 300, "add-friend", lambda now: sim.change(sim.by_index[0], AddFriend(friend), now))

    def churn_holdings(self, start_ms: int, end_ms: int) -> None:
        sim, rng = self.sim, self.rng
        step = max(1, int(1000 / self.p.changes_per_s))
        for t in range(start_ms, end_ms, step):
            def act(now: int) -> None:
                up = [peer for peer in sim.by_index if peer in sim.nodes]
                if not up:
                    return
                peer = rng.choice(up)
                mine = sorted(i for i in sim.hosts[peer].disk if i not in sim.pins)
                if mine and rng.random() < 0.4:
                    sim.change(peer, RemoveHolding(rng.choice(mine)), now)
                else:
                    item, size, policy = self.new_item()
                    sim.change(peer, AddHolding(item, size, policy), now)
            sim.at(t, "workload", act)

    def probes(self, start_ms: int, end_ms: int) -> None:
        """Ask random nodes peers_for(random item), with offers from a linked friend fleet and an
        unlinked one, and external dht/tracker candidates: the gate must filter them."""
        sim, rng = self.sim, self.rng
        step = max(1, int(1000 / self.p.probes_per_s))
        fleets = [friend_fleet(self.p.seed, 0), friend_fleet(self.p.seed, 1)]
        for t in range(start_ms, end_ms, step):
            def probe(now: int) -> None:
                up = [peer for peer in sim.by_index if peer in sim.nodes]
                if not up or not sim.items:
                    return
                item = rng.choice(sorted(sim.items))
                policy = sim.items[item].policy
                offers = tuple(FriendOffer(f, peer, policy) for f, peer in fleets)
                asker = rng.choice(up)
                answer = sim.nodes[asker].peers_for(item, offers, ("dht", "tracker"))
                sim.checker.peers_for_answered(item, answer, now, asker)
                if sim.friend_world is not None:
                    sim.friend_world.friend_answer(answer, now)
            sim.at(t, "probe", probe)


# --- scenarios ---------------------------------------------------------------------------------


def _start_all(sim: Simulation, p: Params, count: int, at_ms: int = 0) -> None:
    seeds = sim.by_index[:SEED_NODES]
    for i in range(count):
        sim.at(at_ms, "start", lambda now, i=i: sim.start(i, now, seeds))


def _common(sim: Simulation, p: Params, rng: random.Random, heal_ms: int, copies: int | None = None) -> Workload:
    w = Workload(sim, p, rng)
    w.seed_items(1000, copies or p.copies_min)
    w.churn_holdings(3000, heal_ms - 1000)
    w.probes(1500, heal_ms)
    return w


def steady(sim: Simulation, p: Params, rng: random.Random, heal_ms: int) -> None:
    _start_all(sim, p, p.nodes)
    _common(sim, p, rng, heal_ms)


def churn(sim: Simulation, p: Params, rng: random.Random, heal_ms: int) -> None:
    _start_all(sim, p, p.nodes)
    _common(sim, p, rng, heal_ms)
    victims = sim.by_index[SEED_NODES:]
    # ~2% of the fleet crashes every 2 s; each comes back 2-6 s later from its saved state,
    # always before the healing point.
    for t in range(3000, max(3001, heal_ms - 7000), 2000):
        for peer in rng.sample(victims, max(1, len(victims) // 50)):
            sim.at(t, "crash", lambda now, peer=peer: sim.crash(peer, now))
            sim.at(t + rng.randrange(2000, 6000), "restart", lambda now, peer=peer: sim.restart(peer, now))
    leaver = victims[-1]
    sim.at(heal_ms // 2, "leave", lambda now: sim.leave(leaver, now))
    full = victims[-2]
    sim.at(5000, "disk-full", lambda now: sim.change(full, SetDiskFull(True), now))
    revoked = victims[-3]
    admin = sim.by_index[0]
    sim.at(6000, "revoke", lambda now: sim.change(admin, Revoke(revoked), now))


def partition_heal(sim: Simulation, p: Params, rng: random.Random, heal_ms: int) -> None:
    _start_all(sim, p, p.nodes)
    _common(sim, p, rng, heal_ms)
    order = list(sim.by_index)
    rng.shuffle(order)
    half = len(order) // 2
    a, b = order[:half], order[half:]
    split_at, heal_at = 4000, max(6000, heal_ms * 6 // 10)
    sim.at(split_at, "split", lambda now: sim.net.split([a, b]))
    sim.at(heal_at, "heal", lambda now: sim.net.heal(now))

    def asym(now: int) -> None:
        for x in a:
            for y in b:
                sim.net.block(x, y)  # a cannot reach b; b still reaches a
    sim.at(heal_at + 1000, "asymmetric", asym)
    sim.at(heal_ms - 1000, "heal", lambda now: sim.net.heal(now))


def sleepy_laptops(sim: Simulation, p: Params, rng: random.Random, heal_ms: int) -> None:
    _start_all(sim, p, p.nodes)
    _common(sim, p, rng, heal_ms)
    laptops = [peer for peer in sim.by_index if sim.hosts[peer].host_class == "portable"]
    for peer in laptops:
        sim.net.set_profile(peer, WAN)  # laptops roam: their links are slower than the LAN's
        t = 3000 + rng.randrange(3000)
        while t < heal_ms - 3000:
            nap = rng.randrange(2000, 15000)
            wake_at = min(t + nap, heal_ms - 1000)
            sim.at(t, "sleep", lambda now, peer=peer: sim.sleep(peer, now))
            sim.at(wake_at, "wake", lambda now, peer=peer: sim.wake(peer, now))
            t = wake_at + rng.randrange(2000, 10000)


def holder_loss(sim: Simulation, p: Params, rng: random.Random, heal_ms: int) -> None:
    _start_all(sim, p, p.nodes)
    w = Workload(sim, p, rng)
    w.seed_items(1000, p.copies_min)
    w.probes(1500, heal_ms)
    kill_at = 6000
    sim.keep_crashed = True  # the dead holders stay dead: the copies must come from elsewhere

    def kill(now: int) -> None:
        # One holder of every pin dies for good; another loses its copy from disk.
        pinned = sorted(sim.pins)
        dead: set[str] = set()
        for item in pinned:
            holders = sorted(h for h in sim.item_holders.get(item, ()) if h in sim.nodes)
            holders = [h for h in holders if h not in sim.by_index[:SEED_NODES]] or holders
            if holders and len(dead) < max(1, len(sim.nodes) // 10):
                victim = holders[0]
                dead.add(victim)
        for peer in sorted(dead):
            sim.crash(peer, now)
        for item in pinned[::3]:
            holders = sorted(h for h in sim.item_holders.get(item, ()) if h in sim.nodes)
            if holders:
                sim.lose_item(holders[-1], item, now)
    sim.at(kill_at, "holder-loss", kill)


def mass_join(sim: Simulation, p: Params, rng: random.Random, heal_ms: int) -> None:
    first = max(SEED_NODES, p.nodes // 10)
    _start_all(sim, p, first)
    seeds = sim.by_index[:SEED_NODES]
    for i in range(first, p.nodes):
        sim.at(3000 + rng.randrange(1000), "join", lambda now, i=i: sim.start(i, now, seeds))
    _common(sim, p, rng, heal_ms)


def byzantine_member(sim: Simulation, p: Params, rng: random.Random, heal_ms: int) -> None:
    from simulations.byzantine import setup  # the real cores only: imported when asked for
    setup(sim, p, rng, heal_ms)


def long_haul(sim: Simulation, p: Params, rng: random.Random, heal_ms: int) -> None:
    from simulations.longhaul import setup  # the real cores only: imported when asked for
    setup(sim, p, rng, heal_ms)


def lossy_wan(sim: Simulation, p: Params, rng: random.Random, heal_ms: int) -> None:
    steady(sim, p, rng, heal_ms)


def friends(sim: Simulation, p: Params, rng: random.Random, heal_ms: int) -> None:
    from simulations.friend_scenario import setup
    setup(sim, p, rng, heal_ms)


SETUP: dict[str, Callable[[Simulation, Params, random.Random, int], None]] = {
    "steady": steady, "churn": churn, "partition-heal": partition_heal,
    "sleepy-laptops": sleepy_laptops, "holder-loss": holder_loss, "mass-join": mass_join,
    "lossy-wan": lossy_wan,
    "byzantine-member": byzantine_member,
    "long-haul": long_haul,
    "friends": friends,
}


def finish_faults(sim: Simulation, heal_ms: int) -> None:
    """At heal time every crashed host restarts and every laptop wakes: faults are over."""
    def heal(now: int) -> None:
        sim.net.heal(now)
        for peer in sim.by_index:
            status = sim.hosts[peer].status
            if status == CRASHED and peer not in sim.revoked and not sim.keep_crashed:
                sim.restart(peer, now)
            elif status == ASLEEP:
                sim.wake(peer, now)
    sim.at(heal_ms, "heal-all", heal)

"""Builds nodes: deterministic identities and per-node randomness derived from the root seed.

``core="standin"`` runs ``simulations.standin``; ``core="real"`` runs the real cores through
``simulations.realnode`` and fails with a clear error when they are not importable yet;
``core="auto"`` picks the real cores when they import and says which one ran.
"""

from __future__ import annotations

from dataclasses import dataclass

from crdt.identity import NodeKey
from simulations.adapter import AddHolding, SetPin, SimNode
from simulations.seeds import derive_bytes, derive_rng
from simulations.standin import Shared, StandinConfig, StandinNode
from tva.errors import InvalidInput

CORES = ("auto", "standin", "real")
# "auto" runs the real cores up to the real FeedSet's feed limit and the stand-in above it. (Up to
# issue 7's second pass this was 200: the real cores then cost hours at 1000 nodes; bucketed
# anti-entropy, remembered presence and the shared policy memo brought churn at 1000 to ~6 min.)
REAL_NODES_MAX = 1024  # crdt.feedset.OWNERS_MAX (not imported: the real cores may be absent)
AUTO_REAL_NODES_MAX = REAL_NODES_MAX


@dataclass(frozen=True)
class CoreConfig:
    gossip_interval_ms: int = 200
    fanout: int = 3
    anti_entropy: bool = True
    policy_interval_ms: int = 0  # 0: 1 s up to 100 nodes, then growing with the fleet (CPU)
    repair_lease_ms: int = 30_000
    verify_cache: bool = True
    policy_memo: bool = True  # share policy parses/views/duties/plans between nodes (simulations.realview)
    share_state: bool = True  # share feeds, vectors, anti-entropy hashes between nodes (simulations.sharing)


def real_core_missing() -> str | None:
    """Why the real cores cannot run here (None when they can)."""
    try:
        from simulations import realnode
    except ImportError as exc:
        return f"simulations.realnode not importable: {exc}"
    return realnode.missing()


def policy_interval_for(n_nodes: int) -> int:
    """How often each simulated node re-runs the policy core. Every round rebuilds a FleetView of
    the whole fleet on every node (O(n²) per round), so big fleets plan less often; this adds up to
    one interval to repair start times, which the report states next to the restore figures."""
    return min(10_000, max(1000, 10 * n_nodes))


class NodeFactory:
    def __init__(self, seed: int, core: str, config: CoreConfig, n_nodes: int, fleets: int = 1) -> None:
        if core not in CORES:
            raise InvalidInput(f"unknown core {core!r}", hint=f"one of {', '.join(CORES)}")
        why = real_core_missing() if core in ("auto", "real") else "standin requested"
        if fleets > 1 and why is not None:  # friend fleets exist only in the real cores
            raise InvalidInput(f"{fleets} fleets need the real cores ({why})", hint="use --set core=auto")
        if core == "auto" and why is None and n_nodes > AUTO_REAL_NODES_MAX:
            why = (f"auto: {n_nodes} nodes > {AUTO_REAL_NODES_MAX}, the real FeedSet's feed limit "
                   "(crdt.feedset.OWNERS_MAX)")
        if core == "real" and why is None and n_nodes > REAL_NODES_MAX:
            why = f"the real FeedSet holds at most {REAL_NODES_MAX} feeds (crdt.feedset.OWNERS_MAX)"
        if core == "real" and why is not None:
            raise InvalidInput(f"the real cores cannot run: {why}", hint="use --core standin")
        self.core = "real" if why is None else "standin"
        self.core_note = "" if why is None else why
        self.seed = seed
        self.config = config
        self.shared = Shared()
        self.n_nodes = n_nodes
        # Several fleets: node i belongs to fleet i // per_fleet; each fleet its own genesis, fleet id,
        # configs and view memo (simulations.friends links them).
        self.fleets = fleets
        self.per_fleet = n_nodes // fleets
        self._real_by_fleet: dict[int, object] = {}
        self.friend_inputs_for = None  # (fleet, index) -> (node -> FriendInputs); set by simulations.friends
        self._real = None
        self._keys: dict[int, NodeKey] = {}
        self.node_classes: dict[int, type] = {}  # index -> a RealNode subclass (a scenario's rogue)
        self._standin_cfg = StandinConfig(
            gossip_interval_ms=config.gossip_interval_ms, fanout=config.fanout,
            anti_entropy=config.anti_entropy,
        )

    def fleet_of(self, index: int) -> int:
        return min(index // self.per_fleet, self.fleets - 1)

    def fleet_indexes(self, fleet: int) -> range:
        return range(fleet * self.per_fleet, self.n_nodes if fleet == self.fleets - 1 else (fleet + 1) * self.per_fleet)

    def real_shared(self, fleet: int = 0):
        """A fleet's genesis and the cores' configs, made once per run (per fleet)."""
        if self.fleets > 1:
            return self._fleet_shared(fleet)
        if self._real is None:
            from agent.policy import CustodyConfig
            from mesh.core import MeshConfig
            from simulations import realnode
            if self.config.verify_cache:
                realnode.install_verify_cache()
            # "Anti-entropy off" (the deliberately broken variant): MeshConfig has no switch, so
            # the periodic digest is pushed out past any run; gap-triggered syncs remain.
            sync_ms = 1000 if self.config.anti_entropy else 10**12
            mesh = MeshConfig(gossip_interval_ms=self.config.gossip_interval_ms,
                              fanout_max=self.config.fanout, sync_interval_ms=sync_ms)
            custody = CustodyConfig(lease_ms=self.config.repair_lease_ms, reserve_bytes=1024**3)
            members = [self.peer_id(i) for i in range(self.n_nodes)]
            genesis = realnode.make_genesis(self.key(0), members, derive_bytes(self.seed, "genesis", 0)[:16])
            fleet_id = realnode.fleet_id_of(genesis)
            policy_ms = self.config.policy_interval_ms or policy_interval_for(self.n_nodes)
            self._real = realnode.RealShared(genesis, fleet_id, mesh, custody, policy_ms,
                                             policy_memo=self.config.policy_memo,
                                             share_state=self.config.share_state)
        return self._real

    def _fleet_shared(self, fleet: int):
        shared = self._real_by_fleet.get(fleet)
        if shared is None:
            from simulations import realnode
            base = self.real_shared_config()
            indexes = self.fleet_indexes(fleet)
            members = [self.peer_id(i) for i in indexes]
            genesis = realnode.make_genesis(self.key(indexes[0]), members,
                                            derive_bytes(self.seed, "genesis", fleet)[:16])
            shared = self._real_by_fleet[fleet] = realnode.RealShared(
                genesis, realnode.fleet_id_of(genesis), base.mesh, base.custody, base.policy_interval_ms,
                policy_memo=self.config.policy_memo, share_state=self.config.share_state, fleet=fleet,
                addressed=True)
        return shared

    def real_shared_config(self):
        """Configs shared by every fleet of a multi-fleet run (its first fleet's, built the usual way)."""
        if self._real is None:
            fleets, self.fleets = self.fleets, 1
            try:
                self.real_shared()
            finally:
                self.fleets = fleets
        return self._real

    def warm_state(self, classes: list[str], holdings: list[list[AddHolding]], pins: list[SetPin],
                   friends: list[str]) -> object:
        """The replicated state of a converged fleet (every card, holding, pin and friend link),
        built once and handed to every node as its starting disk state."""
        if self.core == "real" and self.fleets > 1:
            raise InvalidInput("a multi-fleet run starts each fleet with warm_state_of")
        if self.core == "real":
            from simulations import realnode
            return realnode.warm_state(self.real_shared(), [self.key(i) for i in range(len(classes))],
                                       classes, holdings, pins, friends)
        from simulations.standin_state import warm_state
        return warm_state(self.shared, [self.key(i) for i in range(len(classes))], classes, holdings,
                          pins, friends)

    def warm_state_of(self, fleet: int, classes: list[str], holdings: list[list[AddHolding]],
                      pins: list[SetPin]) -> object:
        """One fleet's converged state in a multi-fleet run (``classes``/``holdings``: its nodes')."""
        from simulations import realnode
        indexes = self.fleet_indexes(fleet)
        return realnode.warm_state(self._fleet_shared(fleet), [self.key(i) for i in indexes], classes, holdings,
                                   pins, [], first_index=indexes[0])

    def key(self, index: int) -> NodeKey:
        k = self._keys.get(index)
        if k is None:
            # Simulation-only: keys derived from the seed make a run replayable from its seed.
            k = self._keys[index] = NodeKey(derive_bytes(self.seed, "node-key", index))
        return k

    def peer_id(self, index: int) -> str:
        return self.key(index).peer_id

    def make(self, index: int, host_class: str, restarts: int, bootstrap: list[str],
             saved: object) -> SimNode:
        rng = derive_rng(self.seed, "node", index, restarts)
        if self.core == "real":
            from simulations import realnode
            fleet = self.fleet_of(index)
            friends = self.friend_inputs_for(fleet, index) if self.friend_inputs_for is not None else None
            cls = self.node_classes.get(index, realnode.RealNode)
            return cls(self.key(index), host_class, rng, self.real_shared(fleet), f"host-{index}",
                       saved, index=index, friend_inputs=friends)  # type: ignore[no-any-return]
        return StandinNode(self.key(index), host_class, rng, self.shared, self._standin_cfg,
                           bootstrap, saved)  # type: ignore[arg-type]

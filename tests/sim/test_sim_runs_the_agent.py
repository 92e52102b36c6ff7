"""The simulator plans with the agent's own code: for generated fleet states — real feeds and a
real fleet document, members and strangers, revocations, overrides, pins, intents, any liveness
and presence — a simulated node's view, duties and plans are byte for byte what the agent's
``build_snapshot`` (what ``agent.service.Service.snapshot`` runs) gives for the same replicas,
with the simulator's cross-node memo on and off, and on every node of a running simulation."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import views
from agent.policy import CustodyConfig, FleetView, assign_duties, plan_all
from agent.policy.classes import DUTIES, DUTY_PREFS, HOST_CLASSES, SERVICES
from crdt import records
from crdt.feedset import FeedSet, OwnFeed
from crdt.fleetdoc import FleetDoc
from crdt.identity import NodeKey
from mesh.core import Liveness, Presence
from simulations import run
from simulations.nodes import real_core_missing
from simulations.realnode import RealNode
from simulations.realview import Interner, ViewBuilder
from simulations.scenarios import params_for

pytestmark = pytest.mark.skipif(real_core_missing() is not None, reason=str(real_core_missing()))

CFG = CustodyConfig(lease_ms=30_000, reserve_bytes=1024**3)
NOW_MS = 1_700_000_000_000
KEYS = [NodeKey(bytes([i + 1]) * 32) for i in range(8)]
ITEMS = [f"item-{i}" for i in range(5)]


def canon(obj: object) -> object:
    """A JSON-able form that keeps every order the value has (dicts, lists) and sorts sets."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [type(obj).__name__] + [canon(getattr(obj, f.name)) for f in dataclasses.fields(obj)]
    if isinstance(obj, dict):
        return [[canon(k), canon(v)] for k, v in obj.items()]
    if isinstance(obj, set | frozenset):
        return sorted((canon(x) for x in obj), key=json.dumps)
    if isinstance(obj, list | tuple):
        return [canon(x) for x in obj]
    if isinstance(obj, FleetView):  # slots, no dataclass: every slot, in declaration order
        return ["FleetView"] + [canon(getattr(obj, name)) for name in FleetView.__slots__]
    assert obj is None or isinstance(obj, str | int | float), type(obj)
    return obj


def encoded(*values: object) -> bytes:
    return json.dumps(canon(values)).encode()


host_st = st.fixed_dictionaries({
    "card": st.one_of(st.none(), st.sampled_from([*HOST_CLASSES, "fridge"])),  # an unknown class too
    "holds": st.lists(st.tuples(st.sampled_from(ITEMS), st.sampled_from(["public", "f2f_only", "search_only"]),
                                st.sampled_from(records.SOURCES), st.sampled_from(records.STATES)),
                       max_size=3, unique_by=lambda h: h[0]),
    "intents": st.lists(st.tuples(st.sampled_from(ITEMS), st.integers(0, 7), st.integers(-60_000, 60_000)),
                        max_size=2, unique_by=lambda i: (i[0], i[1])),
    "member": st.booleans(),
    "revoked": st.integers(0, 9),  # revoked when 0
    "liveness": st.one_of(st.none(), st.sampled_from(list(Liveness))),
    # few distinct values: equal inputs recur across examples, where a memo keyed wrongly shows
    "presence": st.one_of(st.none(), st.sampled_from([(0, 0.0), (2 * 10**12, 1.0), (5 * 10**11, 0.5)]),
                          st.tuples(st.integers(0, 2**42), st.floats(0, 1))),
    "override": st.one_of(st.none(), st.tuples(st.sampled_from(HOST_CLASSES),
                                               st.sets(st.sampled_from(SERVICES), max_size=2),
                                               st.sampled_from(DUTIES), st.sampled_from(DUTY_PREFS))),
})
fleet_st = st.fixed_dictionaries({
    "hosts": st.lists(host_st, min_size=2, max_size=8),
    "pins": st.lists(st.tuples(st.sampled_from(ITEMS), st.integers(1, 3), st.integers(0, 2)), max_size=4,
                     unique_by=lambda p: p[0]),
    "me": st.integers(0, 7),
    "now": st.integers(-90_000, 90_000),
})


def build_replicas(fleet: dict) -> tuple[FeedSet, FleetDoc, dict, dict]:
    hosts = fleet["hosts"]
    keys = KEYS[:len(hosts)]
    feeds = FeedSet()
    for i, (key, h) in enumerate(zip(keys, hosts, strict=True)):
        own = OwnFeed(key, feeds)
        if h["card"] is not None:
            own.put(records.CARD_KEY, records.encode_card(records.HostCard(f"host-{i}", h["card"])))
        for item, policy, source, state in h["holds"]:
            if source == "private-tracker" and policy == "public":
                policy = "f2f_only"  # a record can never say so (records.Holding refuses it)
            rec = records.Holding(item, records_infohash(item), 10**9, state, policy, source)
            own.put(records.holding_key(item), records.encode_holding(rec))
        for item, target, lease in h["intents"]:
            intent = records.RepairIntent(item, keys[target % len(keys)].peer_id, NOW_MS + lease)
            own.put(records.intent_key(item, intent.target_peer_id), records.encode_intent(intent))
        own.commit(1000 + i)
    doc = FleetDoc.genesis("sim", keys[0], "host-0", 1, b"\x01" * 16)  # keys[0] owns the fleet
    for i, (key, h) in enumerate(zip(keys, hosts, strict=True)):
        if i and h["member"]:
            doc.admit(key.peer_id, f"host-{i}", "member", None, 1)
        if i and h["revoked"] == 0:
            doc.revoke(key.peer_id, "test", 2)
        if h["override"] is not None:
            cls, services, duty, pref = h["override"]
            doc.set_override(key.peer_id, host_class=cls, services=sorted(services), duty_prefs={duty: pref},
                             now_ms=2)
    for item, lo, extra in fleet["pins"]:
        doc.pin(item, lo, lo + extra, 3)
    liveness = {k.peer_id: h["liveness"] for k, h in zip(keys, hosts, strict=True) if h["liveness"] is not None}
    presence = {k.peer_id: Presence(k.peer_id, 1, h["presence"][0], h["presence"][1], (), "server", False, 0)
                for k, h in zip(keys, hosts, strict=True) if h["presence"] is not None}
    return feeds, doc, liveness, presence


def records_infohash(item: str) -> str:
    import hashlib
    return hashlib.sha1(item.encode()).hexdigest()


class _State:
    def __init__(self, peer_id, feeds, doc):
        self.peer_id, self.feeds, self.doc = peer_id, feeds, doc


def agent_view(me: str, feeds: FeedSet, doc: FleetDoc, liveness: dict, presence: dict) -> views.Snapshot:
    """What the agent builds for these replicas: the daemon's live info (agent.runtime) from the
    core's liveness and presence, then ``build_snapshot`` as ``Service.snapshot`` calls it."""
    live = views.live_info({p: s.value for p, s in liveness.items()}, presence)
    return views.build_snapshot(_State(me, feeds, doc), live, live.presence.get(me, views.Presence()))


LONG_LIVED = Interner(memo=True)


@settings(max_examples=60, deadline=None)
@given(fleet=fleet_st)
def test_a_simulated_nodes_view_duties_and_plans_are_the_agents_byte_for_byte(fleet):
    feeds, doc, liveness, presence = build_replicas(fleet)
    me = KEYS[fleet["me"] % len(fleet["hosts"])].peer_id
    now = NOW_MS + fleet["now"]
    agent = agent_view(me, feeds, doc, liveness, presence).view
    want = encoded(agent, assign_duties(agent), plan_all(agent, now, CFG))
    # fresh memos, and one shared by every example as it is by every node of a run
    for interner in (Interner(memo=True), Interner(memo=False), LONG_LIVED):
        for _ in range(2):  # the second build is served from the memo
            sim = ViewBuilder(interner).build(me, feeds, doc, liveness, presence)
            assert encoded(sim.view, sim.duties(), sim.plans(now, CFG)) == want


def test_every_node_of_a_running_simulation_plans_as_the_agent_would():
    p = params_for("holder-loss", nodes=14, seed=4, duration_s=10.0, core="real")
    sim, heal_ms = run.build(p)
    checked = planned = 0
    for t in range(2000, heal_ms + 3000, 2500):
        sim.world.run(t)
        for node in sim.nodes.values():
            assert isinstance(node, RealNode)
            mesh = node.mesh
            agent = agent_view(node.peer_id, node.feeds.inner, node.doc, mesh.liveness(), mesh.presence()).view
            shared = node._shared_view()
            assert encoded(shared.view, shared.duties(), shared.plans(t, CFG)) == \
                encoded(agent, assign_duties(agent), plan_all(agent, t, CFG))
            checked += 1
            planned += bool(agent.pins)
    assert checked > 50 and planned == checked  # every node saw the pins: real plans were compared

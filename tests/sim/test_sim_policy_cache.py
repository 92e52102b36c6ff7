"""The simulator's cross-node policy memo (simulations.realview with ``memo`` on) changes cost only:
every shared view, duty map and plan equals what a node computes on its own, and a run's trace
is byte-identical with the memo on and off."""

from __future__ import annotations

import functools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.policy import CustodyConfig, FleetView, assign_duties, plan_all
from crdt import records
from crdt.feedset import FeedSet, OwnFeed
from crdt.identity import NodeKey
from simulations import run
from simulations.nodes import CoreConfig, real_core_missing
from simulations.realnode import RealNode
from simulations.realview import Interner, SharedView, ViewBuilder
from simulations.run import deterministic_part, run_scenario
from simulations.scenarios import params_for
from tests.policy.strategies import NOW_MS, state_st

pytestmark = pytest.mark.skipif(real_core_missing() is not None, reason=str(real_core_missing()))

CFG = CustodyConfig(lease_ms=30_000, reserve_bytes=1024**3)
VIEW_FIELDS = ("duty_prefs", "overrides", "revoked_listed", "revoked_peers", "pins", "rejected_pins",
               "by_content", "by_infohash", "by_peer", "intents")


def _same_view(a: FleetView, b: FleetView) -> None:
    assert list(a.hosts.items()) == list(b.hosts.items())  # same hosts, same order
    for f in VIEW_FIELDS:
        assert getattr(a, f) == getattr(b, f), f


def _check_node(node: RealNode, now_ms: int) -> int:
    """The node's shared (memoised) view, duties and plans against a private, memo-off build.
    Returns how many intent leases the view held (so the caller knows time was exercised)."""
    args = (node.peer_id, node.feeds.inner, node.doc, node.mesh.liveness(), node.mesh.presence())
    shared = node.views.build(*args)
    ref = ViewBuilder(Interner(memo=False)).build(*args).view
    _same_view(shared.view, ref)
    assert shared.duties() == assign_duties(ref)
    edges = sorted({i.lease_until_ms for per in ref.intents.values() for i in per})
    # Every side of every lease end, in an order that hits the cache both before and after.
    times = [now_ms] + [t + d for t in reversed(edges) for d in (1, 0, -1)] + [now_ms, 0]
    for t in times:
        assert shared.plans(t, CFG) == plan_all(ref, t, CFG), t
    return len(edges)


def _memo_switch(monkeypatch, on: bool) -> None:
    # run.build makes its CoreConfig from the scenario's parameters; policy_memo is not one.
    monkeypatch.setattr(run, "CoreConfig", functools.partial(CoreConfig, policy_memo=on))


def test_shared_views_duties_and_plans_equal_a_nodes_own_through_a_run(monkeypatch):
    _memo_switch(monkeypatch, True)
    p = params_for("holder-loss", nodes=16, seed=3, duration_s=12.0, core="real")
    sim, heal_ms = run.build(p)
    leases = checked = 0
    for t in range(1500, heal_ms + 4000, 1500):
        sim.world.run(t)
        for node in sim.nodes.values():
            leases += _check_node(node, t)
            checked += 1
    interner = next(iter(sim.nodes.values())).shared.interner
    assert checked > 100 and leases > 0  # repairs ran: lease ends were crossed, not only "now"
    assert interner.view_hits > interner.view_misses  # converged nodes really share views


@pytest.mark.parametrize("scenario", ["churn", "holder-loss"])
def test_trace_is_byte_identical_with_the_memo_on_and_off(monkeypatch, scenario):
    results = []
    for on in (True, False):
        _memo_switch(monkeypatch, on)
        results.append(run_scenario(params_for(scenario, nodes=16, seed=5, duration_s=10.0, core="real")))
    on, off = results
    assert on["core"] == "real"
    assert json.dumps(deterministic_part(on), sort_keys=True) == json.dumps(deterministic_part(off), sort_keys=True)


def test_memo_off_shares_nothing_between_nodes():
    interner = Interner(memo=False)
    key = NodeKey(b"\x01" * 32)
    feeds = FeedSet()
    own = OwnFeed(key, feeds)
    own.put(records.CARD_KEY, records.encode_card(records.HostCard("a", "server")))
    own.commit(1000)
    doc = _doc([key.peer_id])
    a = ViewBuilder(interner).build(key.peer_id, feeds, doc, {}, {})
    b = ViewBuilder(interner).build(key.peer_id, feeds, doc, {}, {})
    assert a is not b and a.view is not b.view and not interner.parsed and not interner.views
    assert list(a.view.hosts) == [key.peer_id]
    _same_view(a.view, b.view)


def test_a_forked_feed_version_is_parsed_again_not_served_from_the_cache():
    # Two replicas holding different content under one (owner, version) — a forking owner: the
    # parse cache must not hand the first replica's card to the second.
    key = NodeKey(b"\x02" * 32)
    replicas = []
    for name in ("first", "second"):
        feeds = FeedSet()
        own = OwnFeed(key, feeds)
        own.put(records.CARD_KEY, records.encode_card(records.HostCard(name, "nas")))
        own.commit(5000)
        replicas.append((feeds, own.version))
    assert replicas[0][1] == replicas[1][1]
    interner = Interner(memo=True)
    cards = [interner.feed_parts(feeds, key.public).card.name for feeds, _ in replicas]
    assert cards == ["first", "second"]
    again = [interner.feed_parts(feeds, key.public).card.name for feeds, _ in reversed(replicas)]
    assert again == ["second", "first"]


def test_equal_inputs_share_one_view_and_different_liveness_does_not():
    from mesh.core import Liveness
    interner = Interner(memo=True)
    keys = [NodeKey(bytes([i + 10]) * 32) for i in range(3)]
    feeds = FeedSet()
    for i, k in enumerate(keys):
        own = OwnFeed(k, feeds)
        own.put(records.CARD_KEY, records.encode_card(records.HostCard(f"h{i}", "server")))
        own.commit(1000 + i)
    doc = _doc([k.peer_id for k in keys])
    me = keys[0].peer_id
    alive = {k.peer_id: Liveness.ALIVE for k in keys[1:]}
    a = ViewBuilder(interner).build(me, feeds, doc, alive, {})
    b = ViewBuilder(interner).build(me, feeds, doc, dict(alive), {})
    c = ViewBuilder(interner).build(me, feeds, doc, {**alive, keys[2].peer_id: Liveness.DEAD}, {})
    assert a is b and a is not c
    assert c.view.hosts[keys[2].peer_id].liveness == "dead" and a.view.hosts[keys[2].peer_id].liveness == "alive"
    assert interner.view_hits == 1 and interner.view_misses == 2
    # Duties are shared by hosts: a host's liveness changes them.
    assert c.duties() == assign_duties(c.view) != a.duties() == assign_duties(a.view)


def test_views_differing_only_in_holdings_share_one_duty_map():
    interner = Interner(memo=True)
    keys = [NodeKey(bytes([i + 20]) * 32) for i in range(4)]
    feeds = FeedSet()
    owns = [OwnFeed(k, feeds) for k in keys]
    for i, own in enumerate(owns):
        own.put(records.CARD_KEY, records.encode_card(records.HostCard(f"h{i}", ("server", "nas")[i % 2])))
        own.commit(1000 + i)
    doc = _doc([k.peer_id for k in keys])
    me = keys[0].peer_id
    a = ViewBuilder(interner).build(me, feeds, doc, {}, {})
    hold = records.Holding("film", "ab" * 20, 10**9, "complete", "public", "public")
    owns[1].put(records.holding_key("film"), records.encode_holding(hold))
    owns[1].commit(2000)
    b = ViewBuilder(interner).build(me, feeds, doc, {}, {})
    assert a is not b and "film" in b.view.by_content and "film" not in a.view.by_content
    assert a.duties() is b.duties() and b.duties() == assign_duties(b.view)
    assert len(interner.duties) == 1


@given(state_st(), st.lists(st.integers(-90_000, 90_000), min_size=1, max_size=12))
def test_plans_per_lease_bucket_equal_plan_all_at_every_time(state, deltas):
    view = FleetView.build(**state)
    shared = SharedView(view, memo=True)
    for d in deltas:
        now = NOW_MS + d
        assert shared.plans(now, CFG) == plan_all(view, now, CFG)
    assert shared.duties() == assign_duties(view) == shared.duties()


def _doc(members=()):
    from crdt.fleetdoc import FleetDoc
    founder = NodeKey(b"\x07" * 32)
    doc = FleetDoc.genesis("sim", founder, "host-0", 1, b"\x07" * 16)
    for i, peer in enumerate(members):
        doc.admit(peer, f"h{i}", "member", None, 1)
    return doc

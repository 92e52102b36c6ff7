"""Two agents with the same state compute byte-identical outputs, whatever the arrival order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.policy import (
    CustodyConfig,
    CustodyPlanner,
    FleetView,
    actions_for,
    assign_duties,
    encode,
    peers_for,
    plan_all,
)
from tests.policy.strategies import INFOHASHES, NOW_MS, friend_peers_st, state_st

CFG = CustodyConfig()


def _everything(state: dict, friends: list) -> bytes:
    view = FleetView.build(**state)
    duties = assign_duties(view)
    plans = plan_all(view, NOW_MS, CFG)
    answers = [peers_for(view, ih, friends=friends, friend_fleets=["fleet-a", "fleet-b"]) for ih in INFOHASHES[:4]]
    acts = [actions_for(h.peer_id, plans, duties, view, NOW_MS) for h in sorted(state["hosts"], key=lambda h: h.peer_id)]
    return b"\n".join([encode(duties), encode(plans), encode(answers), encode(acts)])


@given(state_st(), friend_peers_st(), st.data())
def test_arrival_order_does_not_change_any_output(state, friends, data):
    reordered = {k: data.draw(st.permutations(v), label=k) for k, v in state.items()}
    friends2 = data.draw(st.permutations(friends))
    assert _everything(state, friends) == _everything(reordered, friends2)


@given(state_st(), st.data())
def test_incremental_arrival_in_any_order_ends_in_the_same_plans(state, data):
    # Agent A got everything at once; agent B got the hosts and pins first, then the holdings one
    # by one in another order: both end with the same bytes.
    full = plan_all(FleetView.build(**state), NOW_MS, CFG)
    empty = {**state, "holdings": []}
    planner = CustodyPlanner(FleetView.build(**empty), NOW_MS, CFG)
    for h in data.draw(st.permutations(state["holdings"])):
        planner.put_holding(h)
    assert encode(planner.plans()) == encode(full)


def test_a_crowded_pin_encodes_identically_from_any_arrival_order():
    from agent.policy import HoldingView, HostView, PinView
    from tests.policy.strategies import PEERS

    kinds = [("server", "alive"), ("portable", "alive"), ("nas", "asleep"), ("desktop", "dead"), ("nas", "suspect"),
             ("server", "left"), ("portable", "asleep"), ("seedbox", "alive")] * 2
    hosts = [HostView(PEERS[i], f"h{i}", c, lv, disk_free_bytes=10**13) for i, (c, lv) in enumerate(kinds)]
    holds = [HoldingView(PEERS[i], "film", INFOHASHES[0], 10**9, i % 5 != 4) for i in range(len(kinds))]
    pins = [PinView("film", 3, 4)]
    a = encode(plan_all(FleetView.build(hosts, holds, pins), NOW_MS, CFG))
    b = encode(plan_all(FleetView.build(hosts[::-1], holds[::-1], pins), NOW_MS, CFG))
    c = encode(plan_all(FleetView.build(hosts[1::2] + hosts[::2], holds[::2] + holds[1::2], pins), NOW_MS, CFG))
    assert a == b == c


def test_outputs_have_a_canonical_json_form():
    import json

    state = {"hosts": [], "holdings": [], "pins": [], "intents": [], "overrides": [], "revoked": []}
    assert json.loads(_everything(state, []).split(b"\n")[0]) == [
        {"duty": d, "primary": None, "standbys": []} for d in ("custodian", "notifier", "public_swarm_face", "reaper", "research")
    ]

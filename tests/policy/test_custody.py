"""Custody: counting, repairs, trims, leases, partitions, and the incremental planner."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.policy import (
    CustodyConfig,
    CustodyPlanner,
    DropCopy,
    FetchCopy,
    FleetView,
    HoldingView,
    HostView,
    IntentView,
    Override,
    PinView,
    StartRepair,
    StartResearch,
    actions_for,
    assign_duties,
    plan_all,
    plan_pin,
)
from agent.policy.actions import refused_intents
from agent.policy.classes import ALIVE, LIVE, PORTABLE, STORAGE
from tests.policy.strategies import GB, INFOHASHES, NOW_MS, PEERS, holding_st, host_st, state_st
from tva.errors import InvalidInput

IH = INFOHASHES[0]
CFG = CustodyConfig(lease_ms=60_000, reserve_bytes=1 * GB)


def _host(i: int, cls: str = "server", liveness: str = "alive", disk: int | None = 1000 * GB, **kw) -> HostView:
    return HostView(PEERS[i], f"h{i}", cls, liveness, disk_free_bytes=disk, uptime_score=0.8, **kw)


def _hold(i: int, complete: bool = True, content: str = "film", size: int = 10 * GB, **kw) -> HoldingView:
    return HoldingView(PEERS[i], content, IH, size, complete, **kw)


def _plan(hosts, holds, pin, intents=(), now=NOW_MS, **kw):
    view = FleetView.build(hosts, holds, [pin], intents, **kw)
    return plan_pin(view, pin, now, CFG), view


# --- examples ------------------------------------------------------------------------------------


def test_repairs_target_only_eligible_hosts():
    hosts = [
        _host(0),  # the holder
        _host(1, revoked=True),
        _host(2, disk=10 * GB),  # full: 10 GB free < 10 GB + 1 GB reserve
        _host(3, "portable", services=frozenset({"storage", "seed"})),  # a laptop offering storage
        _host(4),  # already holds an incomplete copy
        _host(5, liveness="suspect"),
        _host(6, disk=None),  # disk unknown
        _host(7, services=frozenset({"seed"})),  # no storage service
        _host(8),  # override: custodian never
        _host(9, "nas"), _host(10, "desktop"),  # the only good ones
        _host(11, liveness="asleep"), _host(12, liveness="dead"),
    ]
    holds = [_hold(0), _hold(4, complete=False)]
    plan, _ = _plan(hosts, holds, PinView("film", 5), overrides=[Override(PEERS[8], duty_prefs={"custodian": "never"})])
    assert plan.status == "under" and plan.copies == 1 and plan.baton == PEERS[0]
    assert [r.target for r in plan.repairs] == [PEERS[9], PEERS[10]]  # nas (tier 0) before desktop
    assert all(r.sources == (PEERS[0],) and r.lease_ms == 60_000 for r in plan.repairs)
    assert plan.notes and "only 2 eligible targets" in plan.notes[0]


def test_asleep_portable_and_dead_copies_are_listed_but_not_counted():
    hosts = [_host(0), _host(1, liveness="asleep"), _host(2, "portable"), _host(3, liveness="dead"), _host(4), _host(5)]
    holds = [_hold(0), _hold(1), _hold(2), _hold(3)]
    plan, _ = _plan(hosts, holds, PinView("film", 2, 2))
    assert plan.copies == 1 and plan.holders == (PEERS[0],)
    assert set(plan.other_holders) == {PEERS[1], PEERS[2], PEERS[3]}
    assert plan.status == "under" and len(plan.repairs) == 1
    assert set(plan.repairs[0].sources) == {PEERS[0], PEERS[2]}  # the awake laptop is a source
    assert plan.repairs[0].sources[0] == PEERS[0]  # counted holders before portable ones


def test_a_laptop_alone_is_the_baton_not_lost():
    plan, _ = _plan([_host(0, "portable"), _host(1)], [_hold(0)], PinView("film", 1))
    assert plan.status == "under" and plan.baton == PEERS[0] and plan.repairs[0].target == PEERS[1]


def test_lost_asks_the_research_duty_and_respects_the_items_policy():
    hosts = [_host(0, liveness="dead"), _host(1), _host(2, "nas", services=frozenset({"storage", "search"}))]
    plan, view = _plan(hosts, [_hold(0)], PinView("film", 1))
    assert plan.status == "lost" and plan.baton is None and plan.repairs == ()
    assert plan.research is not None and plan.research.scope == "public" and plan.research.infohash == IH
    plan, _ = _plan(hosts, [_hold(0, source="private_tracker", policy="public")], PinView("film", 1))
    assert plan.research is not None and plan.research.scope == "friends"
    # Nobody ever held it: still lost, research by the content key.
    plan, _ = _plan(hosts, [], PinView(IH, 1))
    assert plan.status == "lost" and plan.research is not None and plan.research.infohash == IH
    # The research duty's primary is told.
    duties = assign_duties(view)
    researcher = next(a.primary for a in duties if a.duty == "research")
    assert StartResearch("film", IH, "public") in actions_for(researcher, [plan_pin(view, view.pins["film"], NOW_MS)],
                                                            duties, view, NOW_MS)


def test_trims_remove_only_custody_copies_never_below_min_and_wait_for_healing():
    hosts = [_host(i) for i in range(6)]
    holds = [_hold(i, custody=True) for i in range(6)]
    plan, _ = _plan(hosts, holds, PinView("film", 2, 3))
    assert plan.status == "over" and len(plan.trims) == 3 and plan.baton not in plan.trims
    assert list(plan.trims) == list(reversed(plan.holders))[:3]
    # A suspect holder means the view may be partitioned: no trim yet.
    hosts[2] = _host(2, liveness="suspect")
    plan, _ = _plan(hosts, holds, PinView("film", 2, 3))
    assert plan.status == "over" and plan.trims == () and plan.notes


def test_a_users_own_copy_is_never_chosen_for_a_trim():
    hosts = [_host(i) for i in range(6)]
    order = _plan(hosts, [_hold(i) for i in range(6)], PinView("film", 1, 5))[0].holders
    # Only the two hosts earliest in rendezvous order hold custody copies: those are trimmed,
    # the baton (first) last of all, although users' copies sit at the end of the order.
    made = set(order[:2])
    holds = [_hold(i, custody=PEERS[i] in made) for i in range(6)]
    plan, _ = _plan(hosts, holds, PinView("film", 1, 4))
    assert plan.trims == (order[1], order[0]) and plan.baton == order[0]
    plan, _ = _plan(hosts, holds, PinView("film", 1, 5))
    assert plan.trims == (order[1],)
    # More excess than custody copies: the users' copies stay and the plan says so.
    plan, _ = _plan(hosts, holds, PinView("film", 1, 1))
    assert plan.status == "over" and set(plan.trims) == made and "users' own" in plan.notes[0]
    plan, _ = _plan(hosts, [_hold(i) for i in range(6)], PinView("film", 1, 1))
    assert plan.trims == () and plan.notes == ("5 extra copies are users' own: never trimmed",)


def test_only_the_batons_intents_count_and_only_until_their_lease_ends():
    hosts = [_host(i) for i in range(5)]
    pin = PinView("film", 3)
    baton = _plan(hosts, [_hold(0)], pin)[0].baton
    assert baton == PEERS[0]
    intent = IntentView("film", baton, PEERS[1], NOW_MS + 1)
    plan, _ = _plan(hosts, [_hold(0)], pin, [intent])
    assert plan.pending == (PEERS[1],) and len(plan.repairs) == 1 and plan.repairs[0].target != PEERS[1]
    plan, _ = _plan(hosts, [_hold(0)], pin, [intent], now=NOW_MS + 1)  # lease over
    assert plan.pending == () and len(plan.repairs) == 2
    # An intent is moot when its target died, holds it already, or its baton was revoked.
    for hosts2, holds2, revoked in (
        ([*hosts[:1], _host(1, liveness="dead"), *hosts[2:]], [_hold(0)], ()),
        (hosts, [_hold(0), _hold(1)], ()),
        (hosts, [_hold(0)], (PEERS[0],)),
    ):
        plan, _ = _plan(hosts2, holds2, pin, [intent], revoked=revoked)
        assert plan.pending == ()
    # Another member's intent (not the baton) and a lease past the maximum are ignored: the
    # target is not pending, it is told to fetch nothing, and it sees them as refused.
    for bad in (IntentView("film", PEERS[3], PEERS[1], NOW_MS + 1000),
                IntentView("film", baton, PEERS[1], NOW_MS + CFG.lease_ms_max + 1)):
        plan, view = _plan(hosts, [_hold(0)], pin, [bad])
        assert plan.pending == () and len(plan.repairs) == 2
        assert not any(isinstance(a, FetchCopy) for a in actions_for(PEERS[1], [plan], (), view, NOW_MS))
        (refused,) = refused_intents(PEERS[1], [plan], view, NOW_MS, lease_ms_max=CFG.lease_ms_max)
        assert refused.author == bad.baton_peer and ("baton" in refused.reason or "maximum" in refused.reason)
    # An honoured intent is not a refusal, nor is one for someone else.
    plan, view = _plan(hosts, [_hold(0)], pin, [intent])
    assert refused_intents(PEERS[1], [plan], view, NOW_MS) == ()
    assert refused_intents(PEERS[2], [plan], view, NOW_MS) == ()


def test_recording_the_batons_repairs_as_intents_stops_further_repairs():
    hosts = [_host(i) for i in range(6)]
    plan, view = _plan(hosts, [_hold(0)], PinView("film", 3))
    duties = assign_duties(view)
    acts = actions_for(PEERS[0], [plan], duties, view, NOW_MS)
    starts = [a for a in acts if isinstance(a, StartRepair)]
    assert len(starts) == 2 and all(a.sources == (PEERS[0],) for a in starts)
    assert not any(isinstance(a, StartRepair) for p in PEERS[1:6] for a in actions_for(p, [plan], duties, view, NOW_MS))
    intents = [IntentView("film", PEERS[0], a.target, a.lease_until_ms) for a in starts]
    plan2, view2 = _plan(hosts, [_hold(0)], PinView("film", 3), intents, now=NOW_MS + 10)
    assert plan2.status == "under" and plan2.repairs == () and set(plan2.pending) == {a.target for a in starts}
    fetch = actions_for(starts[0].target, [plan2], duties, view2, NOW_MS + 10)
    assert fetch == (FetchCopy("film", IH, PEERS[0], (PEERS[0],), starts[0].lease_until_ms),)


def test_the_trimmed_host_is_told_to_drop_its_copy():
    hosts = [_host(i) for i in range(4)]
    plan, view = _plan(hosts, [_hold(i, custody=True) for i in range(4)], PinView("film", 1, 3))
    (victim,) = plan.trims
    assert actions_for(victim, [plan], assign_duties(view), view, NOW_MS) == (DropCopy("film", IH),)
    revoked_view = FleetView.build(hosts, revoked=[victim])
    assert actions_for(victim, [plan], (), revoked_view, NOW_MS) == ()


def test_a_partition_over_replicates_then_the_healed_view_trims_back_to_max():
    pin = PinView("film", 2, 2)
    side1, side2 = {0, 2, 3}, {1, 4, 5}

    def seen_from(side):
        return [_host(i) if i in side else _host(i, liveness="dead") for i in range(6)]

    holds = [_hold(0), _hold(1)]
    new_copies = []
    for side in (side1, side2):
        plan, _ = _plan(seen_from(side), holds, pin)
        assert plan.status == "under" and plan.copies == 1 and len(plan.repairs) == 1  # each side reaches N alone
        assert PEERS.index(plan.repairs[0].target) in side
        new_copies.append(PEERS.index(plan.repairs[0].target))
    healed, _ = _plan([_host(i) for i in range(6)], holds + [_hold(i, custody=True) for i in new_copies], pin)
    assert healed.status == "over" and healed.copies == 4 and len(healed.trims) == 2
    # The two copies the sides made are the ones trimmed; the users' copies stay.
    assert healed.copies - len(healed.trims) == 2 and set(healed.trims) == {PEERS[i] for i in new_copies}


def test_pins_match_holdings_by_content_id_or_infohash():
    hosts = [_host(i) for i in range(3)]
    holds = [_hold(0, content="film"), _hold(1, content="film-4k")]  # same infohash, two content ids
    plan, _ = _plan(hosts, holds, PinView(IH.upper(), 2))
    assert plan.content == IH and plan.copies == 2 and plan.status == "ok"
    plan, _ = _plan(hosts, holds, PinView("film", 2))
    assert plan.copies == 1


# --- properties ----------------------------------------------------------------------------------


def _eligible_targets(view: FleetView, plan) -> set[str]:
    """Independent restatement of who may receive a new copy."""
    holds = view.holdings_for(plan.content)
    return {
        p for p, h in view.hosts.items()
        if h.liveness == ALIVE and not h.revoked and h.host_class != PORTABLE and STORAGE in h.services
        and h.disk_free_bytes is not None and h.disk_free_bytes >= (plan.size_bytes or 0) + CFG.reserve_bytes
        and p not in holds and p not in plan.pending and view.duty_prefs.get(p, {}).get("custodian") != "never"
    }


def _check_plan_rules(view: FleetView, plan, now_ms: int) -> None:
    holds = view.holdings_for(plan.content)
    live_holders = [p for p, h in holds.items() if h.complete and view.is_live(p)]
    for r in plan.repairs:
        t = view.hosts[r.target]
        assert not t.revoked and t.liveness == ALIVE and t.host_class != PORTABLE and STORAGE in t.services
        assert t.disk_free_bytes is not None and t.disk_free_bytes >= (plan.size_bytes or 0) + CFG.reserve_bytes
        assert r.target not in holds and r.target not in plan.pending
        assert view.duty_prefs.get(r.target, {}).get("custodian") != "never"
        assert r.lease_ms == CFG.lease_ms
    assert len({r.target for r in plan.repairs}) == len(plan.repairs)
    assert plan.copies == len(plan.holders)
    for p in plan.holders:
        assert view.is_live(p) and view.hosts[p].host_class != PORTABLE and holds[p].complete
    if plan.baton is not None:
        assert plan.baton in live_holders and plan.baton == (plan.holders or (plan.baton,))[0]
    assert (plan.status == "lost") == (not live_holders)
    if plan.status == "under":
        # Exactly as many repairs as missing copies, unless the eligible targets run out first.
        eligible = _eligible_targets(view, plan)
        need = max(0, plan.min_copies - plan.copies - len(plan.pending))
        assert {r.target for r in plan.repairs} <= eligible
        assert len(plan.repairs) == min(need, len(eligible))
    else:
        assert plan.repairs == ()
    assert not plan.trims or plan.copies - len(plan.trims) >= plan.min_copies
    assert set(plan.trims) <= {p for p in plan.holders if holds[p].custody}  # never a user's own copy
    for p in plan.trims:
        assert view.hosts[p].liveness == ALIVE
    if plan.trims:
        assert plan.max_copies is not None and plan.copies - len(plan.trims) >= plan.max_copies
        made = sum(1 for p in plan.holders if holds[p].custody)
        assert len(plan.trims) == min(made, plan.copies - plan.max_copies)
        if plan.baton in plan.trims:  # the baton goes only when no other custody copy is left
            assert len(plan.trims) == made
    # Pending copies come only from the baton's own intents.
    for target in plan.pending:
        assert any(i.target_peer == target and i.baton_peer == plan.baton for i in view.intents_for(plan.content))


@given(state_st())
def test_every_plan_follows_the_rules(state):
    view = FleetView.build(**state)
    for plan in plan_all(view, NOW_MS, CFG):
        _check_plan_rules(view, plan, NOW_MS)


@given(state_st(n_min=2, n_max=10), st.data())
def test_a_partition_may_over_replicate_but_each_side_never_plans_below_min(state, data):
    hosts = state["hosts"]
    side_a = set(data.draw(st.sets(st.sampled_from([h.peer_id for h in hosts]), min_size=1)))

    def seen_from(side: set[str]) -> list[HostView]:
        # The other side looks dead (after suspicion ran out) from here.
        return [h if h.peer_id in side or h.liveness not in LIVE else dataclasses.replace(h, liveness="dead")
                for h in hosts]

    for side in (side_a, {h.peer_id for h in hosts} - side_a):
        view = FleetView.build(**{**state, "hosts": seen_from(side), "pins": ()})
        for pin in state["pins"]:  # every pin, even one this side alone could never satisfy
            plan = plan_pin(view, pin, NOW_MS, CFG)
            _check_plan_rules(view, plan, NOW_MS)
            if plan.status == "under":
                # It reaches min, or it used every eligible target this side has.
                planned = plan.copies + len(plan.pending) + len(plan.repairs)
                assert planned >= plan.min_copies or not _eligible_targets(view, plan) - {r.target for r in plan.repairs}


# --- the incremental planner ------------------------------------------------------------------


@given(state_st(n_min=1, n_max=8, holdings_max=25), st.data())
def test_incremental_planning_equals_a_full_recompute(state, data):
    view = FleetView.build(**state)
    planner = CustodyPlanner(view, NOW_MS, CFG)
    hosts = {h.peer_id: h for h in state["hosts"]}
    holds = {(h.peer_id, h.content_id): h for h in state["holdings"]}
    intents = list(state["intents"])
    now = NOW_MS
    ids = list(hosts)
    for step in range(data.draw(st.integers(1, 12))):
        op = data.draw(st.sampled_from(["put", "drop", "host", "soft", "drop_host", "now", "intents"]))
        if op == "put":
            h = data.draw(holding_st(ids))
            holds[(h.peer_id, h.content_id)] = h
            planner.put_holding(h)
        elif op == "drop" and holds:
            key = data.draw(st.sampled_from(sorted(holds)))
            del holds[key]
            planner.drop_holding(*key)
        elif op == "host":
            pid = data.draw(st.sampled_from(ids))
            h = data.draw(host_st(pid, ids.index(pid)))
            hosts[pid] = h
            planner.put_host(h)
        elif op == "soft" and hosts:
            # Soft state only (the planner's cheap path): disk free and uptime.
            pid = data.draw(st.sampled_from(sorted(hosts)))
            h = dataclasses.replace(hosts[pid], disk_free_bytes=data.draw(st.one_of(st.none(), st.integers(0, 300 * GB))))
            if data.draw(st.booleans()):
                h = dataclasses.replace(h, uptime_score=data.draw(st.floats(0, 1)))
            hosts[pid] = h
            planner.put_host(h)
        elif op == "drop_host":
            pid = data.draw(st.sampled_from(ids))
            hosts.pop(pid, None)
            planner.drop_host(pid)
        elif op == "now":
            now += data.draw(st.integers(0, 90_000))
            planner.set_now(now)
        elif op == "intents" and state["pins"]:
            content = data.draw(st.sampled_from([p.content for p in state["pins"]]))
            new = [IntentView(content, data.draw(st.sampled_from(ids)), data.draw(st.sampled_from(ids)),
                              now + data.draw(st.integers(-1000, 120_000))) for _ in range(data.draw(st.integers(0, 2)))]
            intents = [i for i in intents if i.content != content] + new
            planner.set_intents(content, new)
        # The planner keeps a pin even when hosts later leave (it reports it under); build it
        # without pins so the fresh side does not reject it either, then plan the same pins.
        fresh = FleetView.build(list(hosts.values()), list(holds.values()), (), intents,
                                state["overrides"], state["revoked"])
        expected = tuple(plan_pin(fresh, planner.view.pins[c], now, CFG) for c in sorted(planner.view.pins))
        assert planner.plans() == expected, f"diverged after step {step} ({op})"


def test_soft_state_changes_move_targets_exactly_like_a_full_recompute():
    hosts = [_host(i, "nas") for i in range(6)]
    pin = PinView("film", 3)
    planner = CustodyPlanner(FleetView.build(hosts, [_hold(0)], [pin]), NOW_MS, CFG)
    first, second = (r.target for r in planner.plan("film").repairs)
    steps = [
        dataclasses.replace(hosts[PEERS.index(first)], disk_free_bytes=5 * GB),  # now too full
        dataclasses.replace(hosts[PEERS.index(first)], disk_free_bytes=500 * GB),  # room again
        dataclasses.replace(hosts[PEERS.index(second)], disk_free_bytes=900 * GB),  # no effect
        dataclasses.replace(hosts[PEERS.index(second)], uptime_score=0.0),  # lower weight
        dataclasses.replace(hosts[PEERS.index(second)], liveness="suspect"),
    ]
    current = {h.peer_id: h for h in hosts}
    for h in steps:
        current[h.peer_id] = h
        planner.put_host(h)
        expected = plan_all(FleetView.build(list(current.values()), [_hold(0)], [pin]), NOW_MS, CFG)
        assert planner.plans() == expected
    assert first in {r.target for r in planner.plan("film").repairs}


def test_a_planner_on_a_copy_leaves_the_original_view_alone():
    view = FleetView.build([_host(i) for i in range(3)], [_hold(0)], [PinView("film", 2)])
    before = plan_all(view, NOW_MS, CFG)
    planner = CustodyPlanner(view.copy(), NOW_MS, CFG)
    planner.put_holding(_hold(1))
    assert planner.plan("film").status == "ok" and plan_all(view, NOW_MS, CFG) == before


def test_the_planner_reports_only_changed_plans():
    hosts = [_host(i) for i in range(4)]
    pins = [PinView("film", 2), PinView("other", 1)]
    planner = CustodyPlanner(FleetView.build(hosts, [_hold(0), _hold(1, content="other")], pins), NOW_MS, CFG)
    changed = planner.put_holding(_hold(2))
    assert [p.content for p in changed] == ["film"] and changed[0].status == "ok"
    assert planner.put_holding(_hold(2)) == ()  # same fact again: nothing changes
    assert [p.content for p in planner.drop_holding(PEERS[1], "other")] == ["other"]
    assert planner.plan("other").status == "lost"
    assert planner.drop_holding(PEERS[3], "nothing") == ()
    with pytest.raises(InvalidInput):
        planner.put_pin(PinView("third", 9))  # more copies than the fleet has hosts
    assert planner.drop_pin("film") and planner.plan("film") is None


def test_custody_inputs_are_validated():
    view = FleetView.build([_host(0)])
    with pytest.raises(InvalidInput):
        plan_pin(view, PinView("film", 1), -5)
    with pytest.raises(InvalidInput):
        plan_all(view, NOW_MS, "fast")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        CustodyConfig(lease_ms=0)
    with pytest.raises(InvalidInput):
        CustodyConfig(reserve_bytes=-1)
    with pytest.raises(InvalidInput, match="usable hosts"):
        FleetView.build([_host(0), _host(1, "portable")], pins=[PinView("film", 2)])
    lenient = FleetView.build([_host(0)], pins=[PinView("film", 2), PinView("ok", 1)], strict=False)
    assert list(lenient.pins) == ["ok"] and lenient.rejected_pins[0][0].content == "film"

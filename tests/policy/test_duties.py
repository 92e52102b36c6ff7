"""Duties: invariants and minimal movement over random fleets, plus the class/override rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.policy import FleetView, HostView, Override, assign_duties, duty_ranking
from agent.policy.classes import DUTIES, LIVE, PORTABLE
from agent.policy.duties import DUTY_SPECS, eligible
from tests.policy.strategies import PEERS, host_st, hosts_st, state_st
from tva.errors import InvalidInput


def _host(i: int, cls: str, liveness: str = "alive", **kw) -> HostView:
    return HostView(PEERS[i], f"h{i}", cls, liveness, **kw)


@given(state_st())
def test_every_duty_with_an_eligible_live_host_has_exactly_one_live_eligible_primary(state):
    view = FleetView.build(**state)
    assignments = assign_duties(view, standbys_max=3)
    assert [a.duty for a in assignments] == sorted(DUTIES)
    for a in assignments:
        elig = eligible(view, a.duty)
        if not elig:
            assert a.primary is None and a.standbys == ()
            continue
        assert a.primary in elig
        h = view.hosts[a.primary]
        assert h.liveness in LIVE and not h.revoked
        assert a.primary not in a.standbys and len(set(a.standbys)) == len(a.standbys)
        assert set(a.standbys) <= set(elig)
        assert len(a.standbys) == min(3, len(elig) - 1)
        if a.duty == "custodian":
            assert h.host_class != PORTABLE


@given(hosts_st(n_min=1, n_max=12), st.data())
def test_adding_a_host_moves_only_the_duties_it_wins(hosts, data):
    newcomer_id = data.draw(st.sampled_from([p for p in PEERS if p not in {h.peer_id for h in hosts}]))
    newcomer = data.draw(host_st(newcomer_id, 40))
    before = FleetView.build(hosts)
    after = FleetView.build([*hosts, newcomer])
    for duty in DUTIES:
        old, new = duty_ranking(before, duty), duty_ranking(after, duty)
        # The others keep their relative order: the newcomer is only inserted.
        assert [p for p in new if p != newcomer_id] == old
        if old and new[0] != old[0]:
            assert new[0] == newcomer_id


@given(hosts_st(n_min=1, n_max=12), st.data())
def test_removing_a_host_moves_only_the_duties_it_held(hosts, data):
    gone = data.draw(st.sampled_from(hosts))
    before = FleetView.build(hosts)
    after = FleetView.build([h for h in hosts if h is not gone])
    for duty in DUTIES:
        old, new = duty_ranking(before, duty), duty_ranking(after, duty)
        assert new == [p for p in old if p != gone.peer_id]
        if old and old[0] != gone.peer_id:
            assert new[0] == old[0]


def test_public_swarm_face_prefers_a_seedbox_and_custodian_is_never_portable():
    hosts = [_host(i, c, uptime_score=1.0) for i, c in enumerate(["server", "nas", "desktop", "seedbox"])]
    hosts.append(_host(4, "portable", services=frozenset({"storage", "seed", "search"})))
    view = FleetView.build(hosts)
    duties = {a.duty: a for a in assign_duties(view)}
    assert duties["public_swarm_face"].primary == PEERS[3]
    assert PEERS[4] not in duty_ranking(view, "custodian")
    assert PEERS[4] not in duty_ranking(view, "public_swarm_face")
    assert duty_ranking(view, "research")[-1] == PEERS[4]  # eligible, but behind every non-portable


def test_only_live_unrevoked_hosts_with_the_service_are_eligible():
    hosts = [
        _host(0, "server", "dead"), _host(1, "server", "asleep"), _host(2, "server", "left"),
        _host(3, "server", revoked=True), _host(4, "nas", services=frozenset({"seed"})),
        _host(5, "nas", "suspect"),
    ]
    view = FleetView.build(hosts)
    assert duty_ranking(view, "custodian") == [PEERS[5]]
    assert set(duty_ranking(view, "reaper")) == {PEERS[4], PEERS[5]}
    assert FleetView.build(hosts[:4]).hosts and assign_duties(FleetView.build(hosts[:4]))[0].primary is None


def test_overrides_win_over_the_card():
    hosts = [_host(i, "server", uptime_score=0.5) for i in range(6)]
    base = duty_ranking(FleetView.build(hosts), "research")
    last, first = base[-1], base[0]
    view = FleetView.build(hosts, overrides=[
        Override(last, duty_prefs=(("research", "prefer"),)),
        Override(first, duty_prefs=(("research", "never"),)),
    ])
    ranked = duty_ranking(view, "research")
    assert ranked[0] == last and first not in ranked
    # A class override turns a server into a portable: no longer a custodian.
    view = FleetView.build(hosts, overrides=[Override(first, host_class="portable")])
    assert first not in duty_ranking(view, "custodian")
    assert view.hosts[first].services == frozenset({"play", "search"})
    # "avoid" puts it behind everyone else.
    view = FleetView.build(hosts, overrides=[Override(first, duty_prefs={"custodian": "avoid"})])
    assert duty_ranking(view, "custodian")[-1] == first


def test_weights_favour_always_on_classes_statistically():
    # Over many duty-like keys a server (weight 4) should win clearly more often than a desktop (2).
    from agent.policy import rendezvous

    wins = {"s": 0, "d": 0}
    for k in range(2000):
        key = rendezvous.key_bytes("test", str(k))
        order = rendezvous.rank(key, [(PEERS[0], 4.0), (PEERS[1], 2.0)])
        wins["s" if order[0] == PEERS[0] else "d"] += 1
    assert 0.6 < wins["s"] / 2000 < 0.73  # expected 4 / 6 ≈ 0.667


def test_duty_inputs_are_validated():
    view = FleetView.build([_host(0, "server")])
    with pytest.raises(InvalidInput):
        duty_ranking(view, "janitor")
    with pytest.raises(InvalidInput):
        assign_duties(view, standbys_max=-1)
    with pytest.raises(InvalidInput):
        assign_duties("not a view")  # type: ignore[arg-type]
    assert set(DUTY_SPECS) == set(DUTIES)

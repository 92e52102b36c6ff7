"""A seedbox joining a household fleet (issue 15 item 5): whatever the fleet, it becomes the
public-swarm face and a first-tier custodian, and peers_for tags its copies ``seedbox``."""

from __future__ import annotations

from hypothesis import given

from agent.policy import (
    FleetView,
    HoldingView,
    HostView,
    PinView,
    assign_duties,
    duty_ranking,
    peers_for,
    plan_pin,
)
from agent.policy.classes import SERVICE_PRESETS
from tests.policy.strategies import INFOHASHES, NOW_MS, PEERS, hosts_st

SEEDBOX_PEER = PEERS[-1]
GB = 1024**3


def _seedbox(disk: int = 4000 * GB) -> HostView:
    return HostView(SEEDBOX_PEER, "rented", "seedbox", "alive", services=SERVICE_PRESETS["seedbox"],
                    disk_free_bytes=disk, uptime_score=1.0, overlay_ipv4="10.77.0.200", torrent_port=51413)


def _household(hosts: list[HostView]) -> list[HostView]:
    # the fleet before the rented box: anything but another seedbox
    return [h for h in hosts if h.host_class != "seedbox" and h.peer_id != SEEDBOX_PEER]


@given(hosts_st(n_min=0, n_max=12))
def test_a_joining_seedbox_is_the_public_swarm_face_of_any_household_fleet(hosts):
    view = FleetView.build([*_household(hosts), _seedbox()])
    duties = {a.duty: a for a in assign_duties(view)}
    assert duties["public_swarm_face"].primary == SEEDBOX_PEER
    # custodian: first tier with servers and NASes, ahead of every desktop and portable
    ranking = duty_ranking(view, "custodian")
    first_tier = {p for p in ranking if view.hosts[p].host_class in ("server", "nas", "seedbox")}
    assert SEEDBOX_PEER in ranking[: len(first_tier)]
    if not any(view.hosts[p].host_class in ("server", "nas") for p in ranking):
        assert duties["custodian"].primary == SEEDBOX_PEER


@given(hosts_st(n_min=0, n_max=12))
def test_a_seedbox_is_a_first_choice_repair_target_and_peers_for_tags_it(hosts):
    household = [h for h in _household(hosts) if h.host_class not in ("server", "nas")]
    ih = INFOHASHES[0]
    holder = HostView(PEERS[-2], "desk", "desktop", "alive", services=SERVICE_PRESETS["desktop"],
                      disk_free_bytes=GB, overlay_ipv4="10.77.0.201", torrent_port=6881)
    household = [h for h in household if h.peer_id != holder.peer_id]
    view = FleetView.build([*household, holder, _seedbox()],
                           holdings=[HoldingView(holder.peer_id, "movie", ih, GB, True, "public", "public")],
                           pins=[PinView("movie", 2)])
    plan = plan_pin(view, view.pins["movie"], NOW_MS)
    assert [r.target for r in plan.repairs] == [SEEDBOX_PEER]  # the only first-tier storage host
    view = FleetView.build([*household, holder, _seedbox()],
                           holdings=[HoldingView(holder.peer_id, "movie", ih, GB, True, "public", "public"),
                                     HoldingView(SEEDBOX_PEER, "movie", ih, GB, True, "public", "public")])
    answer = peers_for(view, ih)
    by_peer = {p.peer_id: p.source for p in answer.peers}
    assert by_peer[SEEDBOX_PEER] == "seedbox" and by_peer[holder.peer_id] == "fleet"
    assert answer.peers[0].source == "fleet"  # the household's own first, then the box

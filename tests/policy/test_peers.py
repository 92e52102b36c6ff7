"""peers_for / custodians_of: provenance, dedup, revocation, and the policy gates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.policy import (
    ExternalPeer,
    FleetView,
    FriendPeer,
    HoldingView,
    HostView,
    custodians_of,
    effective_policy,
    item_policy,
    peers_for,
)
from agent.policy.classes import POLICIES
from tests.policy.strategies import INFOHASHES, PEERS, friend_peers_st, state_st
from tva.errors import InvalidInput

IH = INFOHASHES[0]
LINKED = ("fleet-a", "fleet-b")  # fleet-x shows up in the strategies but is not linked


def _host(i, cls="server", liveness="alive", torrent_port=6881, **kw):
    return HostView(PEERS[i], f"h{i}", cls, liveness, overlay_ipv4=f"10.77.0.{i + 1}", overlay_ipv6=f"fd00::{i + 1:x}",
                    torrent_port=torrent_port, **kw)


def _hold(i, complete=True, policy=None, source="public", ih=IH):
    return HoldingView(PEERS[i], f"c-{ih[:6]}", ih, 1000, complete, policy, source)


external_st = st.lists(st.builds(ExternalPeer, st.sampled_from(["1.2.3.4", "5.6.7.8", "10.77.0.1", "10.99.0.1"]),
                                 st.integers(1024, 1030), st.sampled_from(["dht", "tracker"])), max_size=6)


def test_sources_are_tagged_deduplicated_and_ordered_by_trust():
    hosts = [_host(0), _host(1, "seedbox"), _host(2, liveness="dead"), _host(3, "desktop", torrent_port=None)]
    view = FleetView.build(hosts, [_hold(0), _hold(1, complete=False), _hold(2), _hold(3)])
    friends = [FriendPeer("fleet-a", PEERS[9], "10.99.0.1", 7000, IH), FriendPeer("fleet-a", PEERS[9], "10.99.0.1", 7000, INFOHASHES[1])]
    ext = [ExternalPeer("1.2.3.4", 51413, "dht"), ExternalPeer("1.2.3.4", 51413, "tracker"),
           ExternalPeer("10.77.0.1", 6881, "dht")]  # the DHT also knows our own holder
    ans = peers_for(view, IH.upper(), friends=friends, friend_fleets=["fleet-a"], external=ext)
    assert ans.policy == "public" and ans.infohash == IH
    got = [(p.source, p.addr, p.port, p.peer_id) for p in ans.peers]
    assert got == [
        ("fleet", "10.77.0.1", 6881, PEERS[0]), ("fleet", "fd00::1", 6881, PEERS[0]),
        ("seedbox", "10.77.0.2", 6881, PEERS[1]), ("seedbox", "fd00::2", 6881, PEERS[1]),
        ("friend", "10.99.0.1", 7000, PEERS[9]),
        ("tracker", "1.2.3.4", 51413, None),
    ]
    assert peers_for(view, IH, exclude_peer=PEERS[0]).peers[0].peer_id == PEERS[1]
    assert len(peers_for(view, IH, peers_max=1).peers) == 1


def test_mesh_only_hosts_are_offered_at_their_underlay_addresses_only_without_tva0():
    lan = HostView(PEERS[4], "lan", "nas", "alive", torrent_port=6882, underlay_addrs=("192.168.7.20", "192.168.7.20"))
    both = HostView(PEERS[5], "both", "nas", "alive", overlay_ipv4="10.77.0.6", torrent_port=6883,
                    underlay_addrs=("192.168.7.21",))
    view = FleetView.build([lan, both], [_hold(4), _hold(5)])
    got = sorted((p.peer_id, p.addr, p.port) for p in peers_for(view, IH).peers)
    # The mesh-only host at its LAN address (deduplicated); the tva0 host only at its overlay address.
    assert got == sorted([(PEERS[4], "192.168.7.20", 6882), (PEERS[5], "10.77.0.6", 6883)])
    with pytest.raises(InvalidInput):
        HostView(PEERS[4], "lan", "nas", "alive", underlay_addrs=("not-an-ip",))


def test_revoked_hosts_never_appear_under_any_source():
    hosts = [_host(0), _host(1, revoked=True), _host(2)]
    view = FleetView.build(hosts, [_hold(0), _hold(1), _hold(2)], revoked=[PEERS[2]])
    ext = [ExternalPeer("10.77.0.2", 6881, "dht"), ExternalPeer("fd00::3", 6881, "tracker")]
    friends = [FriendPeer("fleet-a", PEERS[1], "10.99.0.9", 7000, IH)]
    ans = peers_for(view, IH, friends=friends, friend_fleets=["fleet-a"], external=ext)
    assert {p.peer_id for p in ans.peers} == {PEERS[0]}
    assert {p.addr for p in ans.peers} == {"10.77.0.1", "fd00::1"}
    assert {p.peer_id for p in custodians_of(view, IH).peers} == {PEERS[0]}


def test_private_tracker_content_is_never_public_and_private_sources_start_closed():
    assert effective_policy(None, "private_tracker") == "search_only"
    assert effective_policy("public", "private_tracker") == "f2f_only"
    assert effective_policy("f2f_only", "private_tracker") == "f2f_only"
    assert effective_policy(None, "private") == "search_only"
    assert effective_policy("public", "private") == "public"  # a private source, explicitly opened
    assert effective_policy(None, "public") == "public"
    view = FleetView.build([_host(0), _host(1)], [_hold(0, policy="public"), _hold(1, source="private_tracker", policy="f2f_only")])
    ext = [ExternalPeer("1.2.3.4", 6881, "dht")]
    # No override opens it, even one asking for public.
    for override in (None, "public"):
        ans = peers_for(view, IH, external=ext, policy_override=override)
        assert ans.policy == "f2f_only" and {p.source for p in ans.peers} == {"fleet"}
    assert item_policy(view, IH, policy_override="search_only") == "search_only"
    assert peers_for(view, IH, policy_override="search_only").peers == ()


def test_views_that_disagree_take_the_most_closed_policy():
    view = FleetView.build([_host(0), _host(1)], [_hold(0, policy="public"), _hold(1, policy="search_only")])
    assert peers_for(view, IH, external=[ExternalPeer("1.2.3.4", 1, "dht")]).peers == ()
    friends = [FriendPeer("fleet-a", PEERS[5], "10.99.0.1", 7000, IH, policy="f2f_only")]
    view = FleetView.build([_host(0)], [_hold(0)])
    ans = peers_for(view, IH, friends=friends, friend_fleets=LINKED, external=[ExternalPeer("1.2.3.4", 1, "dht")])
    assert ans.policy == "f2f_only" and {p.source for p in ans.peers} == {"fleet", "friend"}
    # Nobody knows the item: public unless overridden.
    assert item_policy(view, INFOHASHES[5]) == "public"
    assert item_policy(view, INFOHASHES[5], policy_override="f2f_only") == "f2f_only"


@given(state_st(), friend_peers_st(), external_st, st.sampled_from(INFOHASHES[:4]),
       st.one_of(st.none(), st.sampled_from(POLICIES)))
def test_gates_hold_over_random_states(state, friends, external, infohash, override):
    view = FleetView.build(**state)
    ans = peers_for(view, infohash, friends=friends, friend_fleets=LINKED, external=external,
                    policy_override=override)
    holds = [h for h in state["holdings"] if h.infohash == infohash]
    private_tracker = any(h.source == "private_tracker" for h in holds)
    sources = {p.source for p in ans.peers}
    if private_tracker:
        assert ans.policy in ("f2f_only", "search_only")
    if ans.policy == "search_only":
        assert ans.peers == ()
    if ans.policy in ("f2f_only", "search_only") or private_tracker:
        assert not sources & {"dht", "tracker"}
        for p in ans.peers:
            if p.source == "friend":
                assert p.host in LINKED  # never a peer of a fleet we are not linked with
            else:
                assert p.peer_id in view.hosts  # a fleet member
    # Whatever the policy: no revoked host, no unlinked friend, no duplicates, dead holders left out.
    revoked_addrs = {a for p in view.revoked_peers if p in view.hosts
                     for a in (view.hosts[p].overlay_ipv4, view.hosts[p].overlay_ipv6)}
    for p in ans.peers:
        assert p.peer_id not in view.revoked_peers and p.addr not in revoked_addrs
        if p.source in ("fleet", "seedbox"):
            assert view.is_live(p.peer_id)
        if p.source == "friend":
            assert p.host in LINKED
    keys = [(p.addr, p.port) for p in ans.peers]
    assert len(keys) == len(set(keys))


def test_peers_for_validates_its_inputs():
    view = FleetView.build([_host(0)])
    for bad in ("xyz", "g" * 40, 42, None):
        with pytest.raises(InvalidInput):
            peers_for(view, bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        peers_for(view, IH, policy_override="open-sesame")
    with pytest.raises(InvalidInput):
        peers_for(view, IH, external=["1.2.3.4:5"])  # type: ignore[list-item]
    with pytest.raises(InvalidInput):
        peers_for(view, IH, friend_fleets="fleet-a")
    with pytest.raises(InvalidInput):
        peers_for(view, IH, peers_max=-1)
    with pytest.raises(InvalidInput):
        custodians_of(view, "")

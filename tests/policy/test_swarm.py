"""BEP 27's pure half (agent.policy.swarm): which torrents may meet the public swarm, and where the
torrent engine listens."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from agent.policy.swarm import swarm_public, torrent_listen_ips

POLICY_ST = st.sampled_from(["public", "f2f_only", "search_only"])
OVERLAY = ["10.77.0.1", "fd00::1", "fd00:0:0::1"]
UNDERLAY = ["192.168.1.5", "2001:db8::5", "0.0.0.0", "::", "224.0.0.1", "not-an-ip", "10.77.0.1"]


@given(st.one_of(st.none(), POLICY_ST, st.text(max_size=8)), POLICY_ST, st.booleans())
def test_only_a_public_item_without_the_private_flag_meets_the_public_swarm(entry, item, private):
    opened = swarm_public(entry, item, private)
    assert opened == (entry == "public" and item == "public" and not private)


@given(st.lists(st.sampled_from(OVERLAY), max_size=3), st.lists(st.sampled_from(UNDERLAY), max_size=5),
       st.booleans(), st.booleans())
def test_the_engine_never_binds_a_wildcard_and_the_underlay_only_when_needed(overlay, underlay, face, friends):
    ips = torrent_listen_ips(overlay=overlay, underlay=underlay, public_face=face, friends=friends)
    parsed = [ipaddress.ip_address(a) for a in ips]
    assert not any(ip.is_unspecified or ip.is_multicast for ip in parsed)
    assert len(set(ips)) == len(ips)
    ov = {ipaddress.ip_address(a).compressed for a in overlay}
    un = {a for a in ips if a not in ov}
    assert ov <= set(ips)  # the fleet's own addresses always
    if ov and not (face or friends):
        assert un == set()  # a fabric host that nothing outside must reach: tva0 only
    concrete = {ipaddress.ip_address(u).compressed for u in underlay if u in ("192.168.1.5", "2001:db8::5", "10.77.0.1")}
    assert un <= concrete  # only this host's concrete underlay addresses, nothing made up

"""Swarm flags → libtorrent settings: nothing goes outside unless the duty and the flags say so."""

from __future__ import annotations

import libtorrent as lt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.lt_settings import SwarmFlags, build_settings, effective_features, sends_outside_traffic
from tva.errors import InvalidInput


def test_defaults_send_nothing_outside():
    s = build_settings(SwarmFlags())
    assert not sends_outside_traffic(s)
    assert s["enable_dht"] is False and s["enable_lsd"] is False
    assert s["enable_upnp"] is False and s["enable_natpmp"] is False
    # libtorrent's own default would contact dht.libtorrent.org: it must be overridden.
    assert s["dht_bootstrap_nodes"] == ""
    assert s["listen_interfaces"] == "127.0.0.1:0"


@given(
    dht=st.booleans(), lsd=st.booleans(), upnp=st.booleans(), natpmp=st.booleans(),
    local=st.booleans(), nodes=st.lists(st.tuples(st.sampled_from(["10.1.2.3", "router.example"]),
                                                  st.integers(1, 65535)), max_size=3),
)
def test_without_the_public_swarm_face_duty_no_flag_opens_anything(dht, lsd, upnp, natpmp, local, nodes):
    flags = SwarmFlags(public_swarm_face=False, dht=dht, lsd=lsd, upnp=upnp, natpmp=natpmp,
                       local_dht=local, dht_bootstrap_nodes=tuple(nodes))
    s = build_settings(flags)
    assert not sends_outside_traffic(s)
    assert not any(effective_features(flags).values())


@given(dht=st.booleans(), lsd=st.booleans(), upnp=st.booleans(), natpmp=st.booleans())
def test_with_the_duty_each_feature_follows_its_flag(dht, lsd, upnp, natpmp):
    s = build_settings(SwarmFlags(public_swarm_face=True, dht=dht, lsd=lsd, upnp=upnp, natpmp=natpmp))
    assert (s["enable_dht"], s["enable_lsd"], s["enable_upnp"], s["enable_natpmp"]) == (dht, lsd, upnp, natpmp)
    assert s["dht_bootstrap_nodes"] == ""  # bootstrap only when listed, even with the duty


def test_bootstrap_nodes_only_when_listed_and_dht_on():
    flags = SwarmFlags(public_swarm_face=True, dht_bootstrap_nodes=(("router.example", 6881), ("::1", 7)))
    assert build_settings(flags)["dht_bootstrap_nodes"] == "router.example:6881,[::1]:7"


def test_listen_interfaces_cover_overlay_and_lan_addresses():
    s = build_settings(SwarmFlags(listen_addresses=("10.77.0.5", "fd00::5"), listen_port=51413))
    assert s["listen_interfaces"] == "10.77.0.5:51413,[fd00::5]:51413"
    assert build_settings(SwarmFlags(listen_addresses=()))["listen_interfaces"] == ""


@pytest.mark.parametrize(
    "flags",
    [
        SwarmFlags(listen_addresses=("eth0",)),
        SwarmFlags(listen_addresses=("10.0.0.1,0.0.0.0",)),
        SwarmFlags(listen_port=70000),
        SwarmFlags(listen_port=-1),
        SwarmFlags(upload_rate_limit_bps=-5),
        SwarmFlags(public_swarm_face=True, dht_bootstrap_nodes=(("a,b", 1),)),
        SwarmFlags(public_swarm_face=True, dht_bootstrap_nodes=(("ok.example", 0x10000),)),
    ],
)
def test_bad_flags_are_refused(flags):
    with pytest.raises(InvalidInput):
        build_settings(flags)


@given(st.text(max_size=40))
def test_garbage_listen_addresses_give_invalid_input_or_a_valid_endpoint(text):
    try:
        s = build_settings(SwarmFlags(listen_addresses=(text,)))
    except InvalidInput:
        return
    assert "," not in s["listen_interfaces"]


def test_every_key_is_a_real_libtorrent_setting():
    # A misspelt key would be silently ignored by libtorrent: check against the real session.
    flags = SwarmFlags(public_swarm_face=True, local_dht=True)
    known = lt.default_settings()
    unknown = [k for k in build_settings(flags) if k not in known]
    assert not unknown, unknown

"""Hypothesis strategies and small builders shared by the wg tests."""

from __future__ import annotations

from hypothesis import strategies as st

from wg.plan.desired import DesiredInterface, DesiredPeer, sort_cidrs
from wg.plan.diff import ActualInterface, ActualPeer
from wg.plan.keys import WgKey

KEYS = [WgKey(bytes([i + 1]) * 32).public_b64 for i in range(8)]
PRIVATE = [WgKey(bytes([i + 100]) * 32).private_b64 for i in range(2)]
CIDRS = [f"10.77.3.{i}/32" for i in range(1, 9)] + [f"fd00:77::{i}/128" for i in range(1, 9)]
ADDRS = ["10.77.3.1/24", "10.77.3.2/24", "fd00:77::1/64", "fd00:77::2/64", "fe80::1/64"]
ENDPOINTS = [None, "198.51.100.1:51820", "198.51.100.2:51820", "[2001:db8::1]:51820"]
keepalives = st.sampled_from([None, 25, 10])


@st.composite
def peer_sets(draw, cls):
    keys = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=len(KEYS)))
    pool = draw(st.permutations(CIDRS))
    out = []
    for i, key in enumerate(keys):
        n = draw(st.integers(0, 2))
        ips = sort_cidrs(pool[2 * i: 2 * i + n])
        if cls is DesiredPeer:
            out.append(DesiredPeer(key, draw(st.sampled_from(ENDPOINTS)), ips, draw(keepalives)))
        else:
            out.append(ActualPeer(
                key, draw(st.sampled_from(ENDPOINTS)), ips, draw(keepalives),
                draw(st.one_of(st.none(), st.integers(1_000, 2_000))),
            ))
    return tuple(out)


@st.composite
def desired_interfaces(draw):
    return DesiredInterface(
        private_key=draw(st.sampled_from(PRIVATE)),
        listen_port=draw(st.sampled_from([51820, 51821])),
        addresses=sort_cidrs(draw(st.lists(st.sampled_from(ADDRS[:4]), unique=True))),
        peers=tuple(sorted(draw(peer_sets(DesiredPeer)), key=lambda p: p.public_key)),
    )


@st.composite
def actual_interfaces(draw):
    exists = draw(st.booleans())
    if not exists:
        return ActualInterface()
    return ActualInterface(
        exists=True,
        up=draw(st.booleans()),
        private_key=draw(st.one_of(st.none(), st.sampled_from(PRIVATE))),
        listen_port=draw(st.one_of(st.none(), st.sampled_from([51820, 40000]))),
        addresses=sort_cidrs(draw(st.lists(st.sampled_from(ADDRS), unique=True))),
        peers=draw(peer_sets(ActualPeer)),
    )

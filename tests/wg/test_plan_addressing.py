"""Overlay addressing: ULA from the fleet id, host IPv6 from the key, IPv4 /24 candidates and claims."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tva.errors import InvalidInput
from wg.plan.addressing import (
    AVOIDED_IPV4,
    IPV4_HOSTS_MAX,
    Ipv4Claim,
    claim_ipv4,
    host_ipv6,
    ipv4_candidates,
    overlay_prefix64,
    preferred_ipv4,
    resolve_claims,
    ula_prefix48,
)

SUBNET = IPv4Network("10.77.3.0/24")
fleet_ids = st.binary(min_size=1, max_size=32)
peers = st.text(alphabet="123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz", min_size=1, max_size=12)


@given(fleet_ids)
def test_ula_is_rfc4193_and_deterministic(fleet):
    p48 = ula_prefix48(fleet)
    assert p48.prefixlen == 48 and p48.subnet_of(IPv6Network("fd00::/8"))
    assert ula_prefix48(fleet) == p48
    p64 = overlay_prefix64(fleet)
    assert p64.prefixlen == 64 and p64.subnet_of(p48)


def test_different_fleets_get_different_prefixes():
    prefixes = {ula_prefix48(f"fleet-{i}") for i in range(200)}
    assert len(prefixes) == 200


@given(fleet_ids, st.binary(min_size=32, max_size=32))
def test_host_ipv6_inside_prefix_and_stable(fleet, key):
    p64 = overlay_prefix64(fleet)
    addr = host_ipv6(p64, key)
    assert addr in p64 and addr != p64.network_address
    assert host_ipv6(p64, key) == addr


def test_host_ipv6_differs_per_key():
    p64 = overlay_prefix64(b"f")
    assert len({host_ipv6(p64, bytes([i]) * 32) for i in range(256)}) == 256


@given(fleet_ids)
def test_candidates_avoid_common_ranges(fleet):
    cands = ipv4_candidates(fleet, 32)
    assert len(cands) == 32 and len(set(cands)) == 32
    assert cands == ipv4_candidates(fleet, 32)  # deterministic
    for net in cands:
        assert net.prefixlen == 24 and net.subnet_of(IPv4Network("10.0.0.0/8"))
        assert not any(net.overlaps(a) for a in AVOIDED_IPV4), net
        # The seed fleet's other overlay lives in 10.9.0.x: never offered.
        assert not net.overlaps(IPv4Network("10.9.0.0/24"))
    assert ipv4_candidates(fleet, 4) == cands[:4]  # a prefix of the longer list


def test_candidate_order_depends_on_fleet():
    assert ipv4_candidates(b"a", 8) != ipv4_candidates(b"b", 8)


@pytest.mark.parametrize("bad", [0, 257])
def test_candidate_count_checked(bad):
    with pytest.raises(InvalidInput):
        ipv4_candidates(b"a", bad)


def test_preferred_is_a_host_address():
    for i in range(500):
        addr = preferred_ipv4(SUBNET, f"peer{i}")
        assert addr in SUBNET and 1 <= int(addr) - int(SUBNET.network_address) <= 253


def test_claim_avoids_taken_and_reports_full():
    taken = [SUBNET.network_address + o for o in range(1, 254)]
    assert claim_ipv4(SUBNET, "x", taken) is None
    free = taken.pop(100)
    assert claim_ipv4(SUBNET, "x", taken) == free


def test_subnet_must_be_a_24():
    with pytest.raises(InvalidInput):
        resolve_claims([], IPv4Network("10.77.0.0/16"))


# --- resolve_claims properties ------------------------------------------------------------------

octets = st.integers(min_value=0, max_value=255)
claims_st = st.lists(
    st.tuples(peers, st.one_of(st.none(), octets.map(lambda o: SUBNET.network_address + o)),
              st.integers(min_value=0, max_value=50)),
    max_size=60,
    unique_by=lambda c: c[0],
)


@given(claims_st, st.randoms(use_true_random=False))
def test_resolution_is_order_independent_and_clash_free(claims, rnd):
    a = resolve_claims(claims, SUBNET)
    shuffled = list(claims)
    rnd.shuffle(shuffled)
    assert resolve_claims(shuffled, SUBNET) == a
    assert len(set(a.values())) == len(a) == len(claims)
    for addr in a.values():
        assert addr in SUBNET and 1 <= int(addr) - int(SUBNET.network_address) <= 253


@given(claims_st)
def test_earlier_admission_keeps_a_clashing_address(claims):
    a = resolve_claims(claims, SUBNET)
    order = sorted(claims, key=lambda c: (c[2], c[0]))
    valid_first: dict[IPv4Address, str] = {}
    for peer, ipv4, _ in order:
        if ipv4 is not None and 1 <= int(ipv4) - int(SUBNET.network_address) <= 253:
            valid_first.setdefault(ipv4, peer)
    # The first (by admission) valid claimant of an address is never moved off it, unless an even
    # earlier host was reassigned onto it (then that earlier host's move wins, as it came first).
    for addr, peer in valid_first.items():
        if a[peer] != addr:
            holder = next(p for p, v in a.items() if v == addr)
            holder_claim = next(c for c in claims if c[0] == holder)
            assert (holder_claim[2], holder) < (next(c for c in claims if c[0] == peer)[2], peer)


@given(st.lists(peers, min_size=1, max_size=40, unique=True), st.lists(peers, max_size=20, unique=True))
def test_stable_when_hosts_are_added_later(first, later):
    later = [p for p in later if p not in first]
    base = [Ipv4Claim(p, preferred_ipv4(SUBNET, p), i) for i, p in enumerate(first)]
    a = resolve_claims(base, SUBNET)
    more = base + [Ipv4Claim(p, preferred_ipv4(SUBNET, p), 1000 + i) for i, p in enumerate(later)]
    b = resolve_claims(more, SUBNET)
    assert {p: b[p] for p in a} == a


def test_250_hosts_fit_without_clash_and_survive_restart():
    # Worst case: everyone claims the same address, all admitted at the same instant.
    claims = [(f"peer-{i:03d}", SUBNET.network_address + 7, 0) for i in range(250)]
    a = resolve_claims(claims, SUBNET)
    assert len(a) == 250 and len(set(a.values())) == 250
    # "Restart": each host now claims what it was given; nothing moves.
    again = [(p, a[p], 0) for p, _, _ in claims]
    assert resolve_claims(again, SUBNET) == a


def test_hosts_beyond_capacity_are_left_ipv6_only():
    claims = [(f"p{i:03d}", None, i) for i in range(IPV4_HOSTS_MAX + 5)]
    a = resolve_claims(claims, SUBNET)
    assert len(a) == IPV4_HOSTS_MAX
    assert all(f"p{i:03d}" in a for i in range(IPV4_HOSTS_MAX))  # the earliest admitted


def test_duplicate_peer_counts_once_with_earliest_admission():
    a = resolve_claims([("x", SUBNET.network_address + 9, 5), ("x", SUBNET.network_address + 8, 1),
                        ("y", SUBNET.network_address + 8, 3)], SUBNET)
    assert a["x"] == SUBNET.network_address + 8 and a["y"] != a["x"]

"""render_desired: members not revoked, own /32 + /128 only, keepalive rules, bad cards skipped."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tva.errors import DecodeError, InvalidInput
from wg.plan.addressing import Ipv4Claim, host_ipv6, overlay_prefix64, preferred_ipv4, resolve_claims
from wg.plan.desired import PeerCard, parse_endpoint, render_desired
from wg.plan.keys import WgKey

FLEET = b"fleet-under-test"
P64 = overlay_prefix64(FLEET)
SUBNET = IPv4Network("10.77.3.0/24")
KEYS = {f"peer{i}": WgKey(bytes([i + 1]) * 32) for i in range(6)}


def _cards(**overrides):
    cards = {p: PeerCard(p, k.public_b64, (f"198.51.100.{i + 1}:51820",)) for i, (p, k) in
             enumerate(KEYS.items())}
    cards.update(overrides)
    return cards


def _assigned():
    return resolve_claims([Ipv4Claim(p, preferred_ipv4(SUBNET, p), i) for i, p in enumerate(KEYS)], SUBNET)


def _render(members=tuple(KEYS), revoked=(), cards=None, subnet=SUBNET, me="peer0"):
    return render_desired(
        self_peer=me, private_key=KEYS[me].private, members=members, revoked=set(revoked),
        cards=cards if cards is not None else _cards(), prefix64=P64, ipv4_subnet=subnet,
        ipv4_assigned=_assigned(),
    )


def test_members_except_self_and_revoked_become_peers():
    r = _render(revoked={"peer3"})
    keys = {p.public_key for p in r.interface.peers}
    assert keys == {KEYS[p].public_b64 for p in ("peer1", "peer2", "peer4", "peer5")}
    assert r.skipped == ()


def test_allowed_ips_are_exactly_own_32_and_128():
    r = _render()
    assigned = _assigned()
    by_key = {p.public_key: p for p in r.interface.peers}
    for name, key in KEYS.items():
        if name == "peer0":
            continue
        ips = by_key[key.public_b64].allowed_ips
        assert set(ips) == {f"{assigned[name]}/32", f"{host_ipv6(P64, key.public)}/128"}
        for cidr in ips:
            net = ip_network(cidr)
            assert net.prefixlen == net.max_prefixlen  # never a default route or a LAN prefix
    assert set(r.interface.addresses) == {f"{assigned['peer0']}/24", f"{host_ipv6(P64, KEYS['peer0'].public)}/64"}


def test_ipv6_only_when_no_subnet():
    r = _render(subnet=None)
    assert all(":" in c for p in r.interface.peers for c in p.allowed_ips)
    assert all(":" in a for a in r.interface.addresses)


def test_keepalive_for_nat_and_portable_only():
    cards = _cards(peer1=PeerCard("peer1", KEYS["peer1"].public_b64, (), "portable"),
                   peer2=PeerCard("peer2", KEYS["peer2"].public_b64, (), "server", behind_nat=True))
    by_key = {p.public_key: p for p in _render(cards=cards).interface.peers}
    assert by_key[KEYS["peer1"].public_b64].keepalive_s == 25
    assert by_key[KEYS["peer2"].public_b64].keepalive_s == 25
    assert by_key[KEYS["peer3"].public_b64].keepalive_s is None


def test_a_portable_node_keeps_all_its_peers_alive():
    cards = _cards(peer0=PeerCard("peer0", KEYS["peer0"].public_b64, (), "portable"))
    assert all(p.keepalive_s == 25 for p in _render(cards=cards).interface.peers)


def test_bad_cards_skip_only_that_peer():
    cards = _cards(
        peer1=PeerCard("peer1", "not-a-key", ()),
        peer2=PeerCard("peer2", KEYS["peer3"].public_b64, ()),  # publishes peer3's key
        peer4=PeerCard("peer4", KEYS["peer4"].public_b64, ("evil.example:1", "nonsense", "198.51.100.9:7")),
        peer5=PeerCard("peer5", KEYS["peer0"].public_b64, ()),  # claims my key
    )
    r = _render(cards=cards, members=[*KEYS, "ghost"])
    skipped = dict(r.skipped)
    # A key published twice is ambiguous: neither publisher gets a peer entry.
    assert set(skipped) == {"peer1", "peer2", "peer3", "peer5", "ghost"}
    (only,) = r.interface.peers
    assert only.public_key == KEYS["peer4"].public_b64 and only.endpoint == "198.51.100.9:7"


def test_revoked_key_cannot_return_under_another_name():
    cards = _cards(peer2=PeerCard("peer2", KEYS["peer3"].public_b64, ()))
    del cards["peer3"]
    cards["peer3"] = PeerCard("peer3", KEYS["peer3"].public_b64, ())
    r = _render(cards=cards, revoked={"peer3"})
    assert KEYS["peer3"].public_b64 not in {p.public_key for p in r.interface.peers}


def test_duplicate_ipv4_in_assignment_is_not_routed_twice():
    assigned = dict(_assigned())
    assigned["peer2"] = assigned["peer1"]
    r = render_desired(self_peer="peer0", private_key=KEYS["peer0"].private, members=KEYS, revoked=set(),
                       cards=_cards(), prefix64=P64, ipv4_subnet=SUBNET, ipv4_assigned=assigned)
    v4 = [c for p in r.interface.peers for c in p.allowed_ips if "." in c]
    assert len(v4) == len(set(v4)) == 4


def test_output_is_independent_of_input_order():
    a = _render(members=list(KEYS))
    b = _render(members=list(reversed(KEYS)))
    assert a == b


def test_listen_port_checked():
    with pytest.raises(InvalidInput):
        render_desired(self_peer="peer0", private_key=KEYS["peer0"].private, members=(), revoked=set(),
                       cards={}, prefix64=P64, ipv4_subnet=None, ipv4_assigned={}, listen_port=0)


@pytest.mark.parametrize("text,canon", [
    ("198.51.100.1:51820", "198.51.100.1:51820"),
    ("[2001:db8:0::1]:1", "[2001:db8::1]:1"),
])
def test_endpoint_canonical(text, canon):
    assert parse_endpoint(text) == canon


@pytest.mark.parametrize("bad", ["", "1.2.3.4", "1.2.3.4:0", "1.2.3.4:65536", "host:80", "2001:db8::1:80",
                                 "[1.2.3.4]:80", "[fe80::1%eth0]:80", "1.2.3.4:+80", "1.2.3.4:８０"])
def test_endpoint_refused(bad):
    with pytest.raises(DecodeError):
        parse_endpoint(bad)


@given(st.one_of(st.text(max_size=80), st.integers(), st.none(), st.binary(max_size=10)))
def test_endpoint_garbage_is_decode_error(text):
    try:
        out = parse_endpoint(text)
    except DecodeError:
        return
    assert parse_endpoint(out) == out


anything = st.one_of(st.none(), st.integers(), st.binary(max_size=8), st.lists(st.integers(), max_size=2))
card_st = st.builds(
    PeerCard,
    peer_id=st.sampled_from(list(KEYS)),
    wg_public_key=st.one_of(st.sampled_from([k.public_b64 for k in KEYS.values()]), st.text(max_size=50),
                            anything),
    endpoints=st.one_of(st.lists(st.one_of(st.text(max_size=30), anything), max_size=3).map(tuple), anything),
    host_class=st.one_of(st.sampled_from(["", "portable", "server", "x" * 100]), anything),
    behind_nat=st.one_of(st.booleans(), anything),
)


@given(st.dictionaries(st.sampled_from(list(KEYS)), card_st), st.sets(st.sampled_from(list(KEYS))))
def test_garbage_cards_never_crash_and_never_widen_allowed_ips(cards, revoked):
    r = _render(cards=cards, revoked=revoked)
    seen: set[str] = set()
    for p in r.interface.peers:
        for cidr in p.allowed_ips:
            net = ip_network(cidr)
            assert net.prefixlen == net.max_prefixlen
            assert (net.subnet_of(P64) if net.version == 6 else net.subnet_of(SUBNET))
            assert cidr not in seen
            seen.add(cidr)
    assert IPv4Address("10.77.3.0") not in [ip_network(c).network_address for c in seen]
    # No key a revoked host published is ever a peer, whoever else publishes it.
    revoked_keys = {cards[n].wg_public_key for n in revoked if n in cards
                    if isinstance(cards[n].wg_public_key, str)}
    assert not revoked_keys & {p.public_key for p in r.interface.peers}
    assert len({p.public_key for p in r.interface.peers}) == len(r.interface.peers)

"""diff(actual, desired): minimal, ordered ops; applying them reaches the desired state."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from tests.wg.strategies import KEYS, PRIVATE, actual_interfaces, desired_interfaces
from wg.plan.desired import DesiredInterface, DesiredPeer
from wg.plan.diff import (
    ActualInterface,
    ActualPeer,
    AddAddress,
    AddPeer,
    LinkUp,
    RemoveAddress,
    RemovePeer,
    SetDevice,
    UpdatePeer,
    apply_ops,
    diff,
)

now_s = st.one_of(st.none(), st.integers(1_000, 3_000))


@given(actual_interfaces(), desired_interfaces(), now_s)
def test_apply_then_diff_is_empty(actual, desired, now):
    ops = diff(actual, desired, now_unix_s=now)
    after = apply_ops(actual, ops)
    assert diff(after, desired, now_unix_s=now) == []
    # The parts we own now match exactly.
    assert after.private_key == desired.private_key and after.listen_port == desired.listen_port
    assert {a for a in after.addresses if not a.startswith("fe80")} == set(desired.addresses)
    assert {p.public_key: set(p.allowed_ips) for p in after.peers} == {
        p.public_key: set(p.allowed_ips) for p in desired.peers
    }
    assert after.up


@given(desired_interfaces(), now_s)
def test_desired_applied_to_nothing_is_a_fixed_point(desired, now):
    after = apply_ops(ActualInterface(exists=True), diff(ActualInterface(exists=True), desired))
    assert diff(after, desired, now_unix_s=now) == []


@given(actual_interfaces(), desired_interfaces())
def test_ops_are_minimal(actual, desired):
    ops = diff(actual, desired)
    have = {p.public_key: p for p in actual.peers}
    for op in ops:
        if isinstance(op, AddPeer):
            assert op.peer.public_key not in have
        if isinstance(op, RemovePeer):
            assert op.public_key not in {p.public_key for p in desired.peers}
        if isinstance(op, UpdatePeer):
            h = have[op.peer.public_key]
            assert (op.set_endpoint or set(h.allowed_ips) != set(op.peer.allowed_ips)
                    or (h.keepalive_s or None) != op.peer.keepalive_s)
        if isinstance(op, AddAddress):
            assert op.cidr not in actual.addresses
        if isinstance(op, RemoveAddress):
            assert op.cidr not in desired.addresses and not op.cidr.startswith("fe80")
    # Removals before additions: an allowed IP never sits on two peers at once.
    kinds = [type(op) for op in ops]
    if RemovePeer in kinds and AddPeer in kinds:
        assert max(i for i, k in enumerate(kinds) if k is RemovePeer) < kinds.index(AddPeer)
    if RemoveAddress in kinds and AddAddress in kinds:
        assert max(i for i, k in enumerate(kinds) if k is RemoveAddress) < kinds.index(AddAddress)


def _peer(i, endpoint="198.51.100.1:51820", ips=("10.77.3.1/32",), keepalive=None):
    return DesiredPeer(KEYS[i], endpoint, ips, keepalive)


def _iface(*peers):
    return DesiredInterface(PRIVATE[0], 51820, ("10.77.3.9/24",), tuple(peers))


def test_fresh_handshake_keeps_the_roamed_endpoint_stale_one_follows_the_mesh():
    desired = _iface(_peer(0, endpoint="198.51.100.1:51820"))
    actual = apply_ops(ActualInterface(exists=True), diff(ActualInterface(exists=True), desired))
    roamed = replace(actual, peers=(replace(actual.peers[0], endpoint="203.0.113.7:4000",
                                            last_handshake_unix_s=1_000),))
    assert diff(roamed, desired, now_unix_s=1_100) == []  # handshake 100 s old: leave it
    ops = diff(roamed, desired, now_unix_s=1_500)  # stale: push the mesh's endpoint
    assert ops == [UpdatePeer(desired.peers[0], set_endpoint=True)]


def test_endpoint_change_in_mesh_is_applied_when_no_handshake():
    desired = _iface(_peer(0, endpoint="198.51.100.1:51820"))
    actual = apply_ops(ActualInterface(exists=True), diff(ActualInterface(exists=True), desired))
    moved = _iface(_peer(0, endpoint="198.51.100.5:51820"))
    assert diff(actual, moved) == [UpdatePeer(moved.peers[0], set_endpoint=True)]


def test_revoked_peer_is_removed_and_nothing_else_changes():
    full = _iface(_peer(0), _peer(1, ips=("10.77.3.2/32",)))
    actual = apply_ops(ActualInterface(exists=True), diff(ActualInterface(exists=True), full))
    assert diff(actual, _iface(_peer(0))) == [RemovePeer(KEYS[1])]


def test_new_interface_gets_device_address_peer_and_link_up():
    desired = _iface(_peer(0))
    ops = diff(ActualInterface(exists=True, listen_port=40000), desired)
    assert ops == [SetDevice(PRIVATE[0], 51820), AddAddress("10.77.3.9/24"), AddPeer(desired.peers[0]),
                   LinkUp()]


def test_link_local_is_left_alone():
    desired = _iface()
    actual = ActualInterface(True, True, PRIVATE[0], 51820, ("10.77.3.9/24", "fe80::1/64"), ())
    assert diff(actual, desired) == []


def test_allowed_ip_moving_between_peers():
    desired = _iface(_peer(0, ips=()), _peer(1, ips=("10.77.3.1/32",)))
    actual = ActualInterface(True, True, PRIVATE[0], 51820, ("10.77.3.9/24",), (
        ActualPeer(KEYS[0], "198.51.100.1:51820", ("10.77.3.1/32",)),
        ActualPeer(KEYS[1], "198.51.100.1:51820", ()),
    ))
    after = apply_ops(actual, diff(actual, desired))
    assert {p.public_key: p.allowed_ips for p in after.peers} == {KEYS[0]: (), KEYS[1]: ("10.77.3.1/32",)}

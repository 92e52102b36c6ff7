"""Backend choice and the WgFabric shell over the in-memory backend (reconcile, status, mesh-only)."""

from __future__ import annotations

import logging
from dataclasses import replace
from ipaddress import IPv4Network

import pytest

from tva.errors import ConfigError, WgBackendError
from wg.backend import MemoryBackend
from wg.fabric import WgFabric
from wg.kernel import kernel_module_reason
from wg.plan.addressing import Ipv4Claim, overlay_prefix64, preferred_ipv4, resolve_claims
from wg.plan.desired import PeerCard, render_desired
from wg.plan.diff import AddPeer, RemovePeer, UpdatePeer
from wg.plan.keys import WgKey
from wg.select import Facts, choose, select_backend
from wg.userspace import UserspaceBackend

ALL = Facts(root=True, kernel_reason=None, wireguard_go="/usr/bin/wireguard-go", tun=True)
NO_KMOD = Facts(root=True, kernel_reason="no module", wireguard_go="/usr/bin/wireguard-go", tun=True)


def test_auto_prefers_kernel_then_userspace():
    assert choose("auto", ALL).kind == "kernel"
    assert choose("auto", NO_KMOD).kind == "userspace"
    assert choose("userspace", ALL).kind == "userspace"


@pytest.mark.parametrize("facts,pref,words", [
    (Facts(False, None, "/x", True), "auto", "not running as root"),
    (Facts(True, "no module", None, True), "auto", "wireguard-go not installed"),
    (Facts(True, "no module", "/x", False), "auto", "/dev/net/tun missing"),
    (NO_KMOD, "kernel", "no module"),
    (ALL, "none", "disabled"),
])
def test_mesh_only_with_a_reason(facts, pref, words):
    c = choose(pref, facts)
    assert c.kind is None and words in c.reason and "mesh-only" in c.reason


def test_unknown_preference_is_config_error():
    with pytest.raises(ConfigError):
        choose("wireguard-rs", ALL)


def test_this_kernel_is_detected_without_side_effects(tmp_path):
    assert kernel_module_reason(tmp_path / "absent") is not None
    assert kernel_module_reason(tmp_path) is None
    backend, reason = select_backend("auto", facts=NO_KMOD)
    assert backend is not None and backend.kind == "userspace" and "wireguard-go" in reason


# --- WgFabric over the memory backend -----------------------------------------------------------

SUBNET = IPv4Network("10.77.3.0/24")
P64 = overlay_prefix64(b"fleet")
KEYS = {f"n{i}": WgKey(bytes([i + 1]) * 32) for i in range(60)}


def _desired(members, revoked=(), endpoints=None, me="n0"):
    cards = {p: PeerCard(p, k.public_b64, ((endpoints or {}).get(p, f"198.51.100.{i % 250 + 1}:51820"),))
             for i, (p, k) in enumerate(KEYS.items())}
    assigned = resolve_claims([Ipv4Claim(p, preferred_ipv4(SUBNET, p), i) for i, p in enumerate(KEYS)], SUBNET)
    return render_desired(self_peer=me, private_key=KEYS[me].private, members=members, revoked=set(revoked),
                          cards=cards, prefix64=P64, ipv4_subnet=SUBNET, ipv4_assigned=assigned).interface


def test_reconcile_is_idempotent_and_follows_changes():
    fabric = WgFabric(MemoryBackend(), clock_s=lambda: 10_000.0)
    members = list(KEYS)[:10]
    first = fabric.reconcile(_desired(members))
    assert first.applied and sum(isinstance(o, AddPeer) for o in first.ops) == 9
    again = fabric.reconcile(_desired(members))
    assert again.applied and again.ops == () and not again.changed
    revoked = fabric.reconcile(_desired(members, revoked={"n3"}))
    assert revoked.ops == (RemovePeer(KEYS["n3"].public_b64),)
    moved = fabric.reconcile(_desired(members, revoked={"n3"}, endpoints={"n4": "198.51.100.200:1"}))
    assert [type(o) for o in moved.ops] == [UpdatePeer] and moved.ops[0].set_endpoint
    status = {s.public_key: s for s in fabric.status()}
    assert len(status) == 8 and status[KEYS["n4"].public_b64].endpoint == "198.51.100.200:1"
    assert all(s.handshake_age_s is None for s in status.values())
    fabric.close()
    assert fabric.status() == []


def test_backend_error_is_reported_not_raised_and_logged_once(caplog):
    backend = MemoryBackend()
    fabric = WgFabric(backend)
    with caplog.at_level(logging.WARNING, logger="tva.wg"):
        for _ in range(3):
            backend.fail_next_apply = "wireguard-go refused"
            report = fabric.reconcile(_desired(["n0", "n1"]))
            assert not report.applied and report.error == "wireguard-go refused" and report.ops
    assert sum("wireguard-go refused" in r.message for r in caplog.records) == 1
    assert fabric.interface_status().error == "wireguard-go refused"
    assert backend.state.peers == ()  # nothing half-applied
    assert fabric.reconcile(_desired(["n0", "n1"])).applied
    assert fabric.interface_status().error is None


def test_mesh_only_says_why_once(caplog):
    with caplog.at_level(logging.WARNING, logger="tva.wg"):
        fabric = WgFabric(None, reason="not running as root: cannot create tva0, mesh-only")
        for _ in range(3):
            r = fabric.reconcile(_desired(["n0", "n1"]))
            assert not r.applied and r.mesh_only_reason and "root" in r.mesh_only_reason
    assert sum("root" in rec.message for rec in caplog.records) == 1
    st = fabric.interface_status()
    assert st.backend is None and "root" in st.reason and st.peers == ()
    fabric.close()  # harmless


def test_status_handshake_age_from_the_clock():
    backend = MemoryBackend()
    now = [5_000.0]
    fabric = WgFabric(backend, clock_s=lambda: now[0])
    fabric.reconcile(_desired(["n0", "n1"]))
    backend.state = replace(backend.state, peers=tuple(
        replace(p, last_handshake_unix_s=4_990, rx_bytes=7) for p in backend.state.peers))
    (s,) = fabric.status()
    assert s.handshake_age_s == 10 and s.rx_bytes == 7


def test_userspace_command_lines(tmp_path):
    plain = UserspaceBackend()
    assert plain._command() == ["wireguard-go", "-f", "tva0"]
    assert str(plain.sock_path) == "/var/run/wireguard/tva0.sock"
    in_ns = UserspaceBackend(netns="tvat-x", sock_dir=tmp_path / "wg")
    cmd = in_ns._command()
    assert cmd[:4] == ["ip", "netns", "exec", "tvat-x"] and cmd[-4:] == [
        str(tmp_path / "wg"), "/var/run/wireguard", "wireguard-go", "tva0"]
    assert in_ns.sock_path == tmp_path / "wg" / "tva0.sock"
    private = UserspaceBackend(sock_dir=tmp_path / "wg2")._command()
    assert private[:4] == ["unshare", "--mount", "--propagation", "private"]


def test_netns_without_private_socket_dir_is_refused():
    with pytest.raises(WgBackendError):
        UserspaceBackend(netns="tvat-x")

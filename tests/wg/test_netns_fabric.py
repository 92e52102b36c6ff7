"""tva0 for real: three namespaces, wireguard-go in each, brought up and changed by WgFabric.

Root + wireguard-go + ip + ping (skipped with the reason when not root). Every namespace, process
and socket file is removed afterwards, and that is asserted.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import require_root
from tests.wg.fleet import LabFleet
from tests.wg.netns import NetnsLab, sh
from tests.wg.strategies import desired_interfaces
from wg.fabric import WgFabric
from wg.plan.addressing import ipv4_candidates
from wg.plan.diff import RemovePeer, diff, is_link_local
from wg.probe import choose_ipv4_subnet, probe
from wg.userspace import UserspaceBackend

pytestmark = pytest.mark.root
NAMES = ("alpha", "beta", "gamma")


def _fabrics(lab: NetnsLab) -> list[WgFabric]:
    return [WgFabric(UserspaceBackend(netns=lab.ns(i), sock_dir=lab.sock_dir(i)))
            for i in range(len(lab.nodes))]


def test_three_nodes_ping_over_tva0_and_revocation_cuts_one_off():
    require_root("wireguard-go", "ip", "ping")
    lab = NetnsLab(3)
    fabrics: list[WgFabric] = []
    pids: list[int] = []
    try:
        lab.open()
        # The fleet's /24 as init would choose it: first candidate free inside node 0's namespace.
        fleet_id = b"tvat-fleet-" + lab.run_id.encode()
        subnet, _ = choose_ipv4_subnet(ipv4_candidates(fleet_id), lambda n: probe(n, netns=lab.ns(0)))
        assert subnet is not None
        fleet = LabFleet(fleet_id, NAMES, [lab.underlay_ip(i) for i in range(3)], subnet)
        fabrics = _fabrics(lab)
        for i, fabric in enumerate(fabrics):
            report = fabric.reconcile(fleet.desired(NAMES[i]))
            assert report.applied and report.error is None, report
            pid = fabric.backend.pid  # type: ignore[union-attr]
            assert pid is not None
            pids.append(pid)
            lab.pids.append(pid)

        for i in range(3):
            for j in range(3):
                if i != j:
                    assert lab.wait_ping(i, str(fleet.ipv4(NAMES[j])), timeout_s=5) is not None, (i, j, "v4")
                    assert lab.wait_ping(i, str(fleet.ipv6(NAMES[j])), timeout_s=5) is not None, (i, j, "v6")

        # Idempotent: a second reconcile with the same input changes nothing.
        for i, fabric in enumerate(fabrics):
            assert fabric.reconcile(fleet.desired(NAMES[i])).ops == ()

        # Status: handshakes happened and bytes moved; allowed IPs are the peers' own addresses only.
        status = {s.public_key: s for s in fabrics[0].status()}
        beta = status[fleet.keys["beta"].public_b64]
        assert beta.handshake_age_s is not None and beta.handshake_age_s < 30
        assert beta.rx_bytes > 0 and beta.tx_bytes > 0
        assert set(beta.allowed_ips) == {f"{fleet.ipv4('beta')}/32", f"{fleet.ipv6('beta')}/128"}
        assert beta.endpoint == f"{lab.underlay_ip(1)}:51820"
        iface = fabrics[0].interface_status()
        assert iface.up and iface.backend == "userspace"
        assert f"{fleet.ipv4('alpha')}/{subnet.prefixlen}" in iface.addresses

        # Revoke gamma: alpha and beta drop its peer; traffic to it stops; alpha↔beta still flows.
        start = time.monotonic()
        for i in (0, 1):
            report = fabrics[i].reconcile(fleet.desired(NAMES[i], revoked={"gamma"}))
            assert report.ops == (RemovePeer(fleet.keys["gamma"].public_b64),)
        removal_s = time.monotonic() - start
        assert removal_s < 1.0
        for i in (0, 1):
            keys = {s.public_key for s in fabrics[i].status()}
            assert fleet.keys["gamma"].public_b64 not in keys
            assert not lab.ping(i, str(fleet.ipv4("gamma")), wait_s=0.5)
            assert not lab.ping(i, str(fleet.ipv6("gamma")), wait_s=0.5)
        assert lab.ping(0, str(fleet.ipv4("beta")))
        assert lab.ping(1, str(fleet.ipv6("alpha")))

        # Beta's endpoint changes in the mesh (a new underlay address). While alpha's handshake
        # with beta is fresh, WireGuard's own roaming is trusted and nothing is pushed; once it is
        # stale (clock moved past the threshold), reconcile sets the mesh's endpoint.
        lab.run(1, "ip", "addr", "add", "198.51.100.60/24", "dev", "u0")
        fleet.underlay = [lab.underlay_ip(0), "198.51.100.60", lab.underlay_ip(2)]
        assert fabrics[0].reconcile(fleet.desired("alpha", revoked={"gamma"})).ops == ()
        later = WgFabric(fabrics[0].backend, clock_s=lambda: time.time() + 1_000)
        report = later.reconcile(fleet.desired("alpha", revoked={"gamma"}))
        assert [type(o).__name__ for o in report.ops] == ["UpdatePeer"] and report.ops[0].set_endpoint
        assert later.reconcile(fleet.desired("alpha", revoked={"gamma"})).ops == ()
        by_key = {s.public_key: s for s in later.status()}
        assert by_key[fleet.keys["beta"].public_b64].endpoint == "198.51.100.60:51820"
        assert lab.ping(0, str(fleet.ipv4("beta")), wait_s=2)
    finally:
        for fabric in fabrics:
            with contextlib.suppress(Exception):  # leaks are caught by the leftovers check below
                fabric.close()
        lab.close()
    # Tear-down leaves nothing behind.
    assert lab.leftovers() == []
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split(")")[-1][:3]
    for i in range(3):
        assert not lab.sock_dir(i).exists()
    assert not [n for n in sh("ip", "netns", "list").stdout.split() if n.startswith(lab.prefix)]


def test_down_stops_wireguard_go_and_removes_the_interface():
    require_root("wireguard-go", "ip")
    with NetnsLab(1) as lab:
        fleet = LabFleet(b"f", ["solo"], [lab.underlay_ip(0)], IPv4Network("10.77.9.0/24"))
        backend = UserspaceBackend(netns=lab.ns(0), sock_dir=lab.sock_dir(0))
        fabric = WgFabric(backend)
        assert fabric.reconcile(fleet.desired("solo")).applied
        pid = backend.pid
        assert pid is not None and backend.sock_path.exists()
        assert "tva0" in lab.run(0, "ip", "-o", "link").stdout
        fabric.down()
        assert backend.pid is None and not backend.sock_path.exists()
        assert "tva0" not in lab.run(0, "ip", "-o", "link").stdout
        assert not os.path.exists(f"/proc/{pid}/cmdline") or not open(f"/proc/{pid}/cmdline").read()
        fabric.down()  # idempotent
        # And up again from scratch: reconcile restarts it.
        assert fabric.reconcile(fleet.desired("solo")).applied
        assert backend.pid is not None and backend.pid != pid
        fabric.close()
    assert lab.leftovers() == []


def test_probe_refuses_overlaps_in_a_namespace_and_accepts_a_free_subnet():
    require_root("ip")
    with NetnsLab(1) as lab:
        ns = lab.ns(0)
        # A dummy interface where the kernel has the module; this kernel lacks it, so a bridge
        # (any local interface with an address is what matters to the probe).
        if lab.run(0, "ip", "link", "add", "dummy7", "type", "dummy", check=False).returncode:
            lab.run(0, "ip", "link", "add", "dummy7", "type", "bridge")
        lab.run(0, "ip", "addr", "add", "10.77.5.1/24", "dev", "dummy7")
        lab.run(0, "ip", "link", "set", "dummy7", "up")
        lab.run(0, "ip", "route", "add", "10.88.0.0/16", "dev", "dummy7", "table", "100")

        hits = probe("10.77.5.0/24", netns=ns)
        assert any(c.kind == "address" and c.ifname == "dummy7" and c.prefix == "10.77.5.1/24" for c in hits)
        assert "dummy7" in hits[0].describe()
        hits = probe("10.88.3.0/24", netns=ns)  # only in table 100, not main
        assert [c.describe() for c in hits] == ["route 10.88.0.0/16 dev dummy7 table 100"]
        assert probe("10.77.5.128/25", netns=ns)  # partial overlap counts too
        assert probe("10.99.1.0/24", netns=ns) == []
        assert probe("198.51.100.0/24", netns=ns)  # the lab's own underlay
        assert probe("10.99.1.0/24", netns=ns, ignore_ifname="dummy7") == []
        assert probe("10.77.5.0/24", netns=ns, ignore_ifname="dummy7") == []

        chosen, refused = choose_ipv4_subnet(
            [IPv4Network("10.77.5.0/24"), IPv4Network("10.88.1.0/24"), IPv4Network("10.99.1.0/24")],
            lambda n: probe(n, netns=ns),
        )
        assert chosen == IPv4Network("10.99.1.0/24")
        assert [n for n, _ in refused] == [IPv4Network("10.77.5.0/24"), IPv4Network("10.88.1.0/24")]
    assert lab.leftovers() == []


def test_restarted_agent_adopts_the_running_wireguard_go_and_can_still_tear_it_down():
    require_root("wireguard-go", "ip")
    with NetnsLab(1) as lab:
        fleet = LabFleet(b"f", ["solo"], [lab.underlay_ip(0)], IPv4Network("10.77.9.0/24"))
        first = UserspaceBackend(netns=lab.ns(0), sock_dir=lab.sock_dir(0))
        assert WgFabric(first).reconcile(fleet.desired("solo")).applied
        pid = first.pid
        assert pid is not None
        lab.pids.append(pid)
        # "Restart": a new backend object finds the live socket, adopts it, starts nothing new.
        second = UserspaceBackend(netns=lab.ns(0), sock_dir=lab.sock_dir(0))
        fabric = WgFabric(second)
        assert fabric.reconcile(fleet.desired("solo")).ops == ()
        assert second.pid is None
        fabric.down()  # not our child: deleting the link makes wireguard-go exit
        first._proc.wait(3)  # type: ignore[union-attr]  # reap it (the first agent's child)
        assert not second.sock_path.exists()
        assert "tva0" not in lab.run(0, "ip", "-o", "link").stdout
        first.down()  # idempotent on an already-exited process
    assert lab.leftovers() == []


def test_kernel_backend_works_or_fails_cleanly():
    """With the module: a real reconcile. Without it (this project's kernels): a clear error, no crash."""
    require_root("ip")
    from wg.kernel import KernelBackend, kernel_module_reason

    with NetnsLab(1) as lab:
        fleet = LabFleet(b"f", ["solo", "peer"], [lab.underlay_ip(0), "198.51.100.99"],
                         IPv4Network("10.77.9.0/24"))
        fabric = WgFabric(KernelBackend(netns=lab.ns(0)))
        report = fabric.reconcile(fleet.desired("solo"))
        if kernel_module_reason() is None:
            assert report.applied and report.error is None
            assert fabric.reconcile(fleet.desired("solo")).ops == ()
            assert [s.public_key for s in fabric.status()] == [fleet.keys["peer"].public_b64]
        else:
            assert not report.applied and "kernel WireGuard" in (report.error or "")
            assert fabric.interface_status().error == report.error
        fabric.close()
        assert "tva0" not in lab.run(0, "ip", "-o", "link").stdout
    assert lab.leftovers() == []


def test_real_wireguard_go_reaches_any_sequence_of_desired_configs():
    """Encode/parse fidelity against the real thing: after each reconcile, what wireguard-go and
    netlink report is exactly the desired config (nothing left to diff)."""
    require_root("wireguard-go", "ip")
    with NetnsLab(1) as lab:
        backend = UserspaceBackend(netns=lab.ns(0), sock_dir=lab.sock_dir(0))
        fabric = WgFabric(backend)

        # One IPv4 address at most, as render_desired makes: removing a primary IPv4 address takes
        # same-subnet secondaries with it, which only a second reconcile would repair.
        one_v4 = desired_interfaces().filter(lambda d: sum("." in a for a in d.addresses) <= 1)

        @settings(max_examples=15, deadline=None)
        @given(st.lists(one_v4, min_size=1, max_size=4))
        def run(configs):
            for desired in configs:
                report = fabric.reconcile(desired)
                assert report.applied, report.error
                actual = backend.actual()
                assert diff(actual, desired) == []
                assert {p.public_key: (p.allowed_ips, p.keepalive_s) for p in actual.peers} == {
                    p.public_key: (p.allowed_ips, p.keepalive_s) for p in desired.peers}
                for want in desired.peers:
                    got = next(p for p in actual.peers if p.public_key == want.public_key)
                    assert want.endpoint is None or got.endpoint == want.endpoint
                assert {a for a in actual.addresses if not is_link_local(a)} == set(desired.addresses)

        try:
            run()
        finally:
            fabric.close()
    assert lab.leftovers() == []


def test_daemon_style_node_inside_a_namespace_uses_a_private_mount_namespace():
    """The agent runs inside its namespace and passes no ``netns``: wireguard-go gets its socket
    directory through ``unshare --mount``; the host's /var/run/wireguard stays untouched."""
    require_root("wireguard-go", "ip", "ping", "unshare")
    names = ("alpha", "beta")
    with NetnsLab(2) as lab:
        underlays = [lab.underlay_ip(0), lab.underlay_ip(1)]
        fleet = LabFleet(b"inner", names, underlays, IPv4Network("10.77.9.0/24"))
        outer = WgFabric(UserspaceBackend(netns=lab.ns(0), sock_dir=lab.sock_dir(0)))
        args = ["inner", "beta", str(lab.sock_dir(1)), ",".join(names), ",".join(underlays), "10.77.9.0/24"]
        child = subprocess.Popen(
            ["ip", "netns", "exec", lab.ns(1), sys.executable, "-m", "tests.wg.inner_node", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2],
        )
        lab.pids.append(child.pid)
        try:
            assert outer.reconcile(fleet.desired("alpha")).applied
            first = child.stdout.readline().split()  # type: ignore[union-attr]
            assert first[0] == "ready", first
            lab.pids.append(int(first[1]))  # the child's wireguard-go
            assert lab.wait_ping(0, str(fleet.ipv4("beta"))) is not None
            assert lab.wait_ping(1, str(fleet.ipv6("alpha"))) is not None
            assert not Path("/var/run/wireguard/tva0.sock").exists()
            child.stdin.write("\n")  # type: ignore[union-attr]
            child.stdin.flush()  # type: ignore[union-attr]
            assert child.stdout.readline().strip() == "down"  # type: ignore[union-attr]
            assert child.wait(10) == 0
            assert not (lab.sock_dir(1) / "tva0.sock").exists()
        finally:
            outer.close()
            if child.poll() is None:
                child.kill()
                child.wait()
    assert lab.leftovers() == []

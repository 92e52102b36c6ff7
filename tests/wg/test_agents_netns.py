"""Three real agents, each in its own network namespace, joined by invites: tva0 by itself.

Founder + 2 joiners on a veth underlay (198.51.100.0/24); each daemon runs wireguard-go with its
socket in a private mount namespace (TVA_WG_SOCKET_DIR). Checked: tva0 comes up on all three
without any wg command; IPv4 and IPv6 pings across the overlay; peers_for answered over the
overlay address with the bearer token (and refused without it); a revocation removes the peer
from the other two within the reconcile interval and traffic to it stops; tear-down leaves no
namespace, interface, socket file or process behind.
"""

from __future__ import annotations

import json
import signal

import pytest

from tests.agent.procs import AgentProc, wait_until
from tests.conftest import require_root
from tests.wg.netns import NetnsLab

IH = "5eed" + "0" * 36
P2P_PORT = 4810


def _http(lab: NetnsLab, i: int, url: str, token: str | None) -> tuple[int, dict]:
    code = (
        "import json,sys,urllib.request,urllib.error\n"
        "req=urllib.request.Request(sys.argv[1])\n"
        "if sys.argv[2]: req.add_header('Authorization','Bearer '+sys.argv[2])\n"
        "try:\n r=urllib.request.urlopen(req,timeout=5); print(r.status); print(r.read().decode())\n"
        "except urllib.error.HTTPError as e: print(e.code); print(e.read().decode())\n")
    import sys

    out = lab.run(i, sys.executable, "-c", code, url, token or "", timeout_s=20).stdout.splitlines()
    return int(out[0]), json.loads(out[1])


@pytest.fixture
def lab():
    require_root("wireguard-go", "ip", "ping")
    with NetnsLab(3) as lab:
        yield lab
    assert lab.leftovers() == []


def test_three_agents_bring_up_tva0_and_revocation_cuts_one_off(lab, tmp_path):
    agents = []
    for i, name in enumerate(("founder", "alpha", "beta")):
        sock_dir = lab.sock_dir(i)
        sock_dir.mkdir(parents=True, exist_ok=True)
        agents.append(AgentProc(
            tmp_path, name, prefix=("ip", "netns", "exec", lab.ns(i)),
            listen=f"/ip4/{lab.underlay_ip(i)}/tcp/{P2P_PORT}",
            env={"TVA_WG_BACKEND": "userspace", "TVA_WG_SOCKET_DIR": str(sock_dir), "TVA_TICK_INTERVAL_MS": "500"}))
    founder, alpha, beta = agents
    try:
        assert founder.cli("init", "--name", "netns", "--json")["ipv4_subnet"]
        founder.start()
        for joiner in (alpha, beta):
            joiner.start_join(founder.cli("invite", "--json")["invite"])
            lab.pids.append(joiner.proc.pid)
        lab.pids.append(founder.proc.pid)

        # tva0 comes up everywhere, with both other hosts as peers, without any wg command.
        for a in agents:
            wait_until(lambda a=a: a.cli("wg", "status", "--json")["interface"]["mode"] == "up"
                       and len(a.cli("wg", "status", "--json")["peers"]) == 2, 60, f"{a.name}'s tva0 with 2 peers")
        def overlay_hosts() -> dict:
            hosts = {h["name"]: h for h in founder.cli("hosts", "--json")}
            complete = all(hosts.get(n, {}).get("overlay_ipv4") and hosts[n].get("overlay_ipv6") for n in
                           ("founder", "alpha", "beta"))
            return hosts if complete else {}

        hosts = wait_until(overlay_hosts, 20, "every host's overlay addresses")
        for i, a in enumerate(agents):
            for other in agents:
                if other is a:
                    continue
                for family in ("overlay_ipv4", "overlay_ipv6"):
                    addr = hosts[other.name][family]
                    assert lab.wait_ping(i, addr, timeout_s=15) is not None, f"{a.name} → {other.name} {addr}"

        # AllowedIPs: only each peer's own /32 and /128, never a default route.
        for p in founder.cli("wg", "status", "--json")["peers"]:
            assert sorted(ip.split("/")[1] for ip in p["allowed_ips"]) == ["128", "32"], p

        # peers_for over alpha's overlay address from beta's namespace: token required.
        alpha.cli("holdings", "add", "film", "--infohash", IH, "--size", "1000")
        port = int(alpha.daemon_info()["api"].rsplit(":", 1)[1])
        url = f"http://{hosts['alpha']['overlay_ipv4']}:{port}/peers_for/{IH}"
        wait_until(lambda: _http(lab, 2, url, None)[0] == 401, 20, "the overlay API to answer")
        status, body = _http(lab, 2, url, alpha.daemon_info()["token"])
        assert status == 200 and body["infohash"] == IH, body
        url6 = f"http://[{hosts['alpha']['overlay_ipv6']}]:{port}/peers_for/{IH}"
        status, body = _http(lab, 2, url6, alpha.daemon_info()["token"])
        assert status == 200 and body["infohash"] == IH, body

        # Revoke beta: the other two drop its peer within the reconcile interval; traffic stops.
        beta_key = beta.cli("wg", "status", "--json")["interface"]["public_key"]
        founder.cli("revoke", "beta")
        for i, a in enumerate((founder, alpha)):
            wait_until(lambda a=a: all(p["public_key"] != beta_key for p in a.cli("wg", "status", "--json")["peers"]),
                       20, f"{a.name} to drop beta's peer")
            assert not lab.ping(i, hosts["beta"]["overlay_ipv4"], wait_s=1.0)
            assert not lab.ping(i, hosts["beta"]["overlay_ipv6"], wait_s=1.0)
        assert lab.ping(0, hosts["alpha"]["overlay_ipv4"], wait_s=2.0)  # the others still talk
    finally:
        for a in agents:
            a.kill(signal.SIGTERM)
    # wireguard-go was each agent's child: a clean stop leaves no socket file behind.
    for i in range(3):
        assert not list(lab.sock_dir(i).glob("*.sock")), f"socket left in {lab.sock_dir(i)}"

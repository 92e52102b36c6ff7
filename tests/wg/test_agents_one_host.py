"""Several agents on one host, as root, with the default config (issue 13 item 2).

One network namespace is the host (with its own wireguard-go run directory, standing in for
/var/run/wireguard). Three agents with their own state dirs and no flags — default listen port,
API port, ``wg_interface`` and WireGuard backend — found and join one fleet by invites. All stay
up; holdings spread; the first owns tva0, the other two run mesh-only and say whose tva0 it is;
one of them, given its own ``wg_interface`` and port, brings up its own interface.
"""

from __future__ import annotations

import signal

from tests.agent.procs import AgentProc, wait_until
from tests.wg.conftest import one_host_env

IH = "0e" * 20


def test_three_agents_with_the_default_config_share_one_host(host, tmp_path):
    prefix, env = one_host_env(host, TVA_TORRENT_ENGINE="libtorrent")
    agents = [AgentProc(tmp_path, name, prefix=prefix, listen=None, api=None, env=env)
              for name in ("first", "second", "third")]
    first, second, third = agents
    try:
        first.cli("init", "--name", "onehost")
        first.start()
        host.pids.append(first.proc.pid)
        for joiner in (second, third):
            joiner.start_join(first.cli("invite", "--json")["invite"])
            host.pids.append(joiner.proc.pid)
        wait_until(lambda: all(len(a.cli("hosts", "--json")) == 3 for a in agents), 60, "three hosts everywhere")

        # The first owns tva0; the others say whose it is, and run mesh-only.
        wait_until(lambda: first.cli("wg", "status", "--json")["interface"]["mode"] == "up", 60, "first's tva0")
        assert first.cli("wg", "status", "--json")["interface"]["ifname"] == "tva0"
        for other in (second, third):
            wg = other.cli("wg", "status", "--json")["interface"]
            assert wg["mode"] == "mesh-only", wg
            assert f"state dir {first.state_dir}, pid {first.proc.pid}" in wg["reason"] and "wg_interface" in wg["reason"]
        # Default ports: each got one (the first the defaults, the others free ones), none failed.
        apis = {a.daemon_info()["api"] for a in agents}
        assert len(apis) == 3 and first.daemon_info()["api"].endswith(":4811")

        # Holdings spread to every agent; nothing is restarting; all three still run.
        for i, a in enumerate(agents):
            a.cli("holdings", "add", f"item-{i}", "--infohash", IH, "--size", "10")
        for a in agents:
            wait_until(lambda a=a: {h["content"] for h in a.cli("holdings", "list", "--json")}
                       == {"item-0", "item-1", "item-2"}, 30, f"{a.name} to see every holding")
            components = a.cli("status", "--json")["components"]
            assert not [n for n, c in components.items() if c["state"] == "restarting"], components
            assert a.proc.poll() is None

        # Given its own interface name (and port), the third brings up its own: tva1.
        assert third.stop() == 0
        third.env.update({"TVA_WG_INTERFACE": "tva1", "TVA_WG_LISTEN_PORT": "51821"})
        third.start()
        host.pids.append(third.proc.pid)
        # ipv6-only is right here: the fleet /24 is already on this host (first's tva0), and the
        # collision probe never lets a second route shadow it.
        wait_until(lambda: third.cli("wg", "status", "--json")["interface"]["mode"] in ("up", "ipv6-only"), 60,
                   "third's tva1")
        wg = third.cli("wg", "status", "--json")["interface"]
        assert wg["ifname"] == "tva1" and wg["backend"] == "userspace", wg
        assert host.run(0, "ip", "link", "show", "tva1").returncode == 0
        assert first.cli("wg", "status", "--json")["interface"]["mode"] == "up"
        assert all(a.proc.poll() is None for a in agents)
    finally:
        for a in agents:
            a.kill(signal.SIGTERM)
    assert not list(host.sock_dir(0).glob("*.sock")), "a wireguard-go outlived its agent"

"""One machine in three fleets (issue 15 item 4): the default agent and two `--fleet NAME` agents,
as root in one network namespace standing in for the host, with no listen/API/interface flags at
all. Each brings up its own WireGuard interface (tva0, tva1, tva2) and its own ports; `--fleet`
selects each agent for every command; nothing of one fleet shows in another."""

from __future__ import annotations

import signal
import subprocess

from tests.agent.procs import BIN, AgentProc, wait_until
from tests.wg.conftest import one_host_env

IH = "0f" * 20


class FleetAgent(AgentProc):
    """An agent addressed as `tva-agent --fleet NAME …` (None: the machine's default agent)."""

    def __init__(self, root, fleet, **kw) -> None:
        super().__init__(root, fleet or "default", listen=None, api=None, **kw)
        self.fleet = fleet
        self.env["TVA_FLEETS_DIR"] = str(root / "fleets")
        self.env["TVA_STATE_DIR"] = str(root / "default")
        if fleet:
            self.state_dir = root / "fleets" / fleet

    def _where(self) -> list[str]:
        return ["--fleet", self.fleet] if self.fleet else []

    def run_cli(self, *args, timeout_s: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix, BIN, *self._where(), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout_s)

    def _spawn(self, *args: str) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen([*self.prefix, BIN, *self._where(), *args], env=self.env, stdout=out,
                                     stderr=subprocess.STDOUT)


def test_three_fleets_on_one_machine_each_with_its_own_interface_and_ports(host, tmp_path):
    prefix, env = one_host_env(host)
    agents = [FleetAgent(tmp_path, fleet, prefix=prefix, env=env) for fleet in (None, "family", "friends")]
    default, family, _friends = agents
    try:
        for a in agents:
            a.cli("init", "--name", f"fleet-{a.name}")
            a.start()
            host.pids.append(a.proc.pid)
        for a in agents:
            wait_until(lambda a=a: a.cli("wg", "status", "--json")["interface"]["mode"] == "up", 60,
                       f"{a.name}'s interface")
        ifnames = [a.cli("wg", "status", "--json")["interface"]["ifname"] for a in agents]
        assert ifnames == ["tva0", "tva1", "tva2"]
        for name in ifnames:
            assert host.run(0, "ip", "link", "show", name).returncode == 0
        apis = [a.daemon_info()["api"] for a in agents]
        assert apis == ["127.0.0.1:4811", "127.0.0.1:4821", "127.0.0.1:4831"]
        # --fleet selects each agent: its own fleet, its own holdings
        for a in agents:
            status = a.cli("status", "--json")
            assert status["fleet_name"] == f"fleet-{a.name}" and status["daemon"] is True
            a.cli("holdings", "add", f"only-{a.name}", "--infohash", IH, "--size", "10")
        for a in agents:
            assert [h["content"] for h in a.cli("holdings", "list", "--json")] == [f"only-{a.name}"]
        rows = {r["name"]: r for r in default.cli("fleets", "--json")}
        assert sorted(rows) == ["family", "friends"] and all(r["running"] for r in rows.values())
        assert [rows[n]["wg_interface"] for n in ("family", "friends")] == ["tva1", "tva2"]
        # a restart keeps the slot: same interface, same API port
        assert family.stop() == 0
        family.start()
        host.pids.append(family.proc.pid)
        wait_until(lambda: family.cli("wg", "status", "--json")["interface"]["mode"] == "up", 60, "family again")
        assert family.daemon_info()["api"] == "127.0.0.1:4821"
        assert family.cli("wg", "status", "--json")["interface"]["ifname"] == "tva1"
        for a in agents:
            components = a.cli("status", "--json")["components"]
            assert not [n for n, c in components.items() if c["state"] == "restarting"], (a.name, components)
            assert a.proc.poll() is None
    finally:
        for a in agents:
            a.kill(signal.SIGTERM)
    assert not list(host.sock_dir(0).glob("*.sock")), "a wireguard-go outlived its agent"

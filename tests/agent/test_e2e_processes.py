"""The product as people meet it: five `tva-agent` processes on loopback, joined by invites.

One scenario (processes are expensive to start), checked step by step: a holding spreads to
every peers-for answer, a pin shows the same plan everywhere, a killed agent is declared dead
and custody reacts, a restart keeps identity and state, a revocation removes a host everywhere
(and the revoked host, told so, stops taking part without crashing), and a used invite is refused.
"""

from __future__ import annotations

import signal

import pytest

from tests.agent.procs import AgentProc, wait_until

INFOHASH = "c0ffee" + "0" * 34


@pytest.fixture
def fleet(tmp_path):
    # No embedded engine here (tests/agent/test_repair_e2e.py runs libtorrent): each host declares the
    # port of an external torrent client, which is what peers-for answers with.
    procs = [AgentProc(tmp_path, name, env={"TVA_TORRENT_PORT": str(6881 + i)})
             for i, name in enumerate(("founder", "alpha", "beta", "gamma", "epsilon"))]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()


def test_founder_and_four_agents(fleet):
    founder, alpha, beta, gamma, epsilon = fleet
    founder.cli("init", "--name", "home")
    founder.start()
    tokens = []
    for joiner in (alpha, beta, gamma, epsilon):
        token = founder.cli("invite", "--json")["invite"]
        tokens.append(token)
        joiner.start_join(token)
    ids = {p.name: p.peer_id for p in fleet}
    assert len(set(ids.values())) == 5
    assert all(p.cli("status", "--json")["fleet_id"] == founder.cli("status", "--json")["fleet_id"] for p in fleet)

    # Every agent sees all five hosts alive.
    for p in fleet:
        wait_until(lambda p=p: sorted(h["state"] for h in p.cli("hosts", "--json")) == ["alive"] * 5,
                   30, f"{p.name} to see five live hosts")
    # The daemon shows where its gossip went, by item kind, and its rumour queues.
    gossip = founder.cli("status", "--json")["gossip"]
    assert gossip["item_bytes_sent"]["presence"] > 0 and gossip["item_bytes_sent"]["delta"] > 0, gossip
    assert set(gossip["queues"]) == {"records", "deltas"} and gossip["retransmit_limit"] >= 1

    # Changes on several nodes at once: holdings on alpha and epsilon. Alpha's appears in peers-for
    # on every other agent within seconds; epsilon's in everyone's holdings list.
    alpha.cli("holdings", "add", "film-1", "--infohash", INFOHASH, "--size", "1000000")
    epsilon.cli("holdings", "add", "show-9", "--infohash", "9" * 40, "--size", "5")
    for p in fleet:
        wait_until(lambda p=p: any(h["content"] == "show-9" and h["peer_id"] == ids["epsilon"]
                                   for h in p.cli("holdings", "list", "--json")), 15, f"{p.name} to see show-9")
    for p in (founder, beta, gamma, epsilon):
        wait_until(lambda p=p: any(peer.get("peer_id") == ids["alpha"] and peer["source"] == "fleet"
                                   for peer in p.cli("peers-for", INFOHASH, "--json")["peers"]),
                   15, f"{p.name} to learn alpha's holding")

    # pin --copies 2: the same plan everywhere (alpha holds it, one repair is planned).
    beta.cli("pin", "film-1", "--copies", "2")

    def plan_of(p: AgentProc) -> dict:
        rows = [r for r in p.cli("custody", "--json") if r["content"] == "film-1"]
        assert rows, f"{p.name} has no plan for film-1 yet"
        r = rows[0]
        return {k: r[k] for k in ("content", "min", "max", "copies", "status", "baton", "holders")} | {
            "targets": sorted(x["target"] for x in r["repairs"])}

    for p in fleet:
        wait_until(lambda p=p: plan_of(p), 15, f"{p.name} to see the pin")
    wait_until(lambda: len({repr(plan_of(p)) for p in fleet}) == 1, 15, "identical custody plans")
    plan = plan_of(founder)
    assert plan["status"] == "under" and plan["copies"] == 1 and plan["baton"] == ids["alpha"], plan

    # gamma also holds it: the pin is satisfied everywhere.
    gamma.cli("holdings", "add", "film-1", "--infohash", INFOHASH, "--size", "1000000")
    for p in fleet:
        wait_until(lambda p=p: plan_of(p)["status"] == "ok" and plan_of(p)["copies"] == 2, 15,
                   f"{p.name} to count two copies")

    # Kill gamma: the others declare it dead and custody goes back to under.
    gamma.kill(signal.SIGKILL)
    for p in (founder, alpha, beta, epsilon):
        wait_until(lambda p=p: {h["peer_id"]: h["state"] for h in p.cli("hosts", "--json")}[ids["gamma"]] == "dead",
                   45, f"{p.name} to declare gamma dead")
        wait_until(lambda p=p: plan_of(p)["status"] == "under", 15, f"{p.name}'s custody to react")

    # Restart gamma: same identity, its holding survived, and it is alive again everywhere.
    gamma.start()
    assert gamma.peer_id == ids["gamma"]
    assert any(h["content"] == "film-1" and h["peer_id"] == ids["gamma"] for h in gamma.cli("holdings", "list", "--json"))
    for p in (founder, alpha, beta, epsilon):
        wait_until(lambda p=p: {h["peer_id"]: h["state"] for h in p.cli("hosts", "--json")}[ids["gamma"]] == "alive",
                   45, f"{p.name} to see gamma alive again")
        wait_until(lambda p=p: plan_of(p)["status"] == "ok", 15, f"{p.name}'s custody to recover")

    # Revoke alpha (by name, from the founder): it disappears from every answer.
    founder.cli("revoke", "alpha")
    for p in (founder, beta, gamma, epsilon):
        wait_until(lambda p=p: all(peer.get("peer_id") != ids["alpha"]
                                   for peer in p.cli("peers-for", INFOHASH, "--json")["peers"]),
                   20, f"{p.name} to drop alpha from peers-for")
        wait_until(lambda p=p: ids["alpha"] not in plan_of(p)["holders"], 20, f"{p.name} to drop alpha from custody")
        wait_until(lambda p=p: {h["peer_id"]: h["state"] for h in p.cli("hosts", "--json")}[ids["alpha"]] == "revoked",
                   20, f"{p.name} to show alpha revoked")

    # Alpha learns it was revoked (the founder tells it, signed): it stops taking part, says so,
    # keeps its data and keeps answering; it never crashes, and `run` on its state dir refuses.
    status = wait_until(lambda: (s := alpha.cli("status", "--json"))["revoked"] and s, 30,
                        "alpha to learn it was revoked")
    assert status["revocation"]["by"] == ids["founder"] and status["revocation"]["by_name"] == "founder"
    assert status["components"]["mesh"]["state"] == "off" and status["components"]["api"]["state"] == "ok"
    assert any(h["content"] == "film-1" for h in alpha.cli("holdings", "list", "--json"))
    res = alpha.run_cli("holdings", "add", "x", "--infohash", "1" * 40, "--size", "1")
    assert res.returncode == 2 and "revoked" in res.stderr, res
    assert alpha.stop() == 0
    assert alpha.log.read_text().count("was revoked from fleet") == 1
    assert "Traceback" not in alpha.log.read_text() and "internal error" not in alpha.log.read_text()
    res = alpha.run_cli("run", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0")
    assert res.returncode == 4 and "revoked" in res.stderr and "hint:" in res.stderr, res
    assert alpha.cli("status", "--json")["revoked"] is True  # the state dir still loads, offline

    # A used invite is refused, with a clear message and a non-zero exit, and changes nothing.
    res = AgentProc(founder.state_dir.parent, "delta").run_cli(
        "join", tokens[0], "--listen", "/ip4/127.0.0.1/tcp/0")
    assert res.returncode != 0
    assert "redeemed" in res.stderr, res.stderr
    assert not (founder.state_dir.parent / "delta" / "fleet").exists()
    # … and `join --run` (one trio run for the join and the daemon) refuses the same way.
    res = AgentProc(founder.state_dir.parent, "omega").run_cli(
        "join", tokens[0], "--run", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0")
    assert res.returncode == 1 and "redeemed" in res.stderr and "hint:" in res.stderr, res
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not (founder.state_dir.parent / "omega" / "fleet").exists()

    # A clean stop (SIGTERM) leaves the daemon file removed and the state loadable.
    assert beta.stop() == 0
    assert not (beta.state_dir / "daemon.json").exists()
    assert beta.cli("status", "--json")["daemon"] is False

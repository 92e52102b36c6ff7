"""Custody repair that moves data: real `tva-agent` processes with embedded libtorrent, loopback only.

A file seeded on one agent (`torrent add PATH`) is published as a holding by itself; `pin
--copies 2` makes the baton record a repair intent; the target adds the torrent by infohash,
dials the fleet holders, gets the metadata and the data from them, publishes progress as a
partial holding, and, once complete, its holding brings custody back to ok. The copy is checked
byte for byte. Killing the holder mid-copy and restarting it resumes the copy.
"""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import pytest

from tests.agent.procs import AgentProc, wait_until

TORRENT_ENV = {"TVA_TORRENT_ENGINE": "libtorrent"}
MIB = 1024 * 1024


def write_payload(path: Path, size_bytes: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size_bytes)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def sha256_of(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def plan_of(p: AgentProc, content: str) -> dict:
    rows = [r for r in p.cli("custody", "--json") if r["content"] == content]
    assert rows, f"{p.name} has no plan for {content}"
    return rows[0]


def holding_of(p: AgentProc, peer_id: str, content: str) -> dict | None:
    rows = [h for h in p.cli("holdings", "list", "--json") if h["peer_id"] == peer_id and h["content"] == content]
    return rows[0] if rows else None


@pytest.fixture
def procs(tmp_path):
    made: list[AgentProc] = []

    def make(name: str, **env: str) -> AgentProc:
        p = AgentProc(tmp_path, name, env={**TORRENT_ENV, **env})
        made.append(p)
        return p

    try:
        yield make
    finally:
        for p in made:
            p.kill()


def start_fleet(founder: AgentProc, *joiners: AgentProc) -> dict[str, str]:
    founder.cli("init", "--name", "home")
    founder.start()
    for j in joiners:
        j.start_join(founder.cli("invite", "--json")["invite"])
    everyone = (founder, *joiners)
    for p in everyone:
        wait_until(lambda p=p: sorted(h["state"] for h in p.cli("hosts", "--json")) == ["alive"] * len(everyone),
                   30, f"{p.name} to see every host alive")
    return {p.name: p.peer_id for p in everyone}


def seed(p: AgentProc, name: str, size_bytes: int) -> tuple[str, str, str]:
    digest = write_payload(p.state_dir / "media" / name, size_bytes)
    job = p.cli("torrent", "add", str(p.state_dir / "media" / name), "--json")  # the finished job
    added = job["result"]
    assert job["state"] == "done" and added["kind"] == "seed" and len(added["infohash"]) == 40, job
    return added["content"], added["infohash"], digest


def test_pin_copies_the_data_to_a_second_agent(procs):
    alpha, beta = procs("alpha"), procs("beta")
    ids = start_fleet(alpha, beta)
    content, infohash, digest = seed(alpha, "film.bin", 6 * MIB)

    # The seed became a complete holding by itself, seen fleet-wide.
    wait_until(lambda: (holding_of(beta, ids["alpha"], content) or {}).get("state") == "complete", 15,
               "beta to learn alpha's holding")
    assert alpha.cli("torrent", "list", "--json")[0]["infohash"] == infohash

    beta.cli("pin", content, "--copies", "2")
    plan = wait_until(lambda: plan_of(alpha, content), 10, "the pin to reach alpha")
    assert plan["status"] in ("under", "ok")  # under until the copy lands (it may be quick)

    for p in (alpha, beta):
        wait_until(lambda p=p: plan_of(p, content)["status"] == "ok" and plan_of(p, content)["copies"] == 2, 60,
                   f"{p.name}'s custody to reach ok with two copies")
    assert sha256_of(beta.state_dir / "media" / "film.bin") == digest
    h = holding_of(alpha, ids["beta"], content)
    assert h["state"] == "complete" and h["bytes_done"] == h["size_bytes"] == 6 * MIB and h["infohash"] == infohash
    rows = {r["infohash"]: r for r in beta.cli("torrent", "list", "--json")}
    assert rows[infohash]["state"] == "seeding" and rows[infohash]["content"] == content


def test_holder_killed_mid_copy_and_restarted_the_copy_resumes(procs):
    # The holder uploads at 1 MiB/s so the 8 MiB copy is still under way when it is killed.
    alpha = procs("alpha", TVA_TORRENT_UPLOAD_RATE_BPS=str(MIB))
    beta, gamma = procs("beta"), procs("gamma")
    ids = start_fleet(alpha, beta, gamma)
    content, _infohash, digest = seed(alpha, "show.bin", 8 * MIB)
    wait_until(lambda: all((holding_of(p, ids["alpha"], content) or {}).get("state") == "complete"
                           for p in (beta, gamma)), 15, "everyone to learn alpha's holding")
    gamma.cli("pin", content, "--copies", "2")

    # Progress is visible in custody: the target publishes bytes done while it copies.
    def partial_transfer():
        plan = plan_of(gamma, content)
        moving = [t for t in plan.get("transfers", []) if 0 < t["bytes_done"] < t["size_bytes"]]
        return (plan["pending"][0], moving[0]) if plan["pending"] and moving else None

    target, transfer = wait_until(partial_transfer, 60, "a partial copy to show in custody")
    assert target in (ids["beta"], ids["gamma"]) and transfer["size_bytes"] == 8 * MIB
    target_proc = beta if target == ids["beta"] else gamma

    alpha.kill(signal.SIGKILL)
    done_at_kill = holding_of(target_proc, target, content)["bytes_done"]
    assert done_at_kill < 8 * MIB
    alpha.start()  # same state dir: it re-adds its seed, re-checks it, publishes its new port

    for p in (alpha, beta, gamma):
        wait_until(lambda p=p: plan_of(p, content)["status"] == "ok" and plan_of(p, content)["copies"] == 2, 90,
                   f"{p.name}'s custody to be ok again")
    assert sha256_of(target_proc.state_dir / "media" / "show.bin") == digest
    other = gamma if target_proc is beta else beta
    assert sha256_of(other.state_dir / "media" / "show.bin") is None  # one copy made, not two


def test_torrent_and_reaper_commands_and_bad_input(procs):
    alpha = procs("alpha")
    alpha.cli("init", "--name", "home")
    # No daemon: a clear refusal, exit 3.
    res = alpha.run_cli("torrent", "list")
    assert res.returncode == 3 and "daemon" in res.stderr
    alpha.start()
    outside = alpha.state_dir.parent / "outside.bin"
    outside.write_bytes(b"x" * 40000)
    for arg, words in ((str(outside), "outside the media root"), ("magnet:?xt=urn:btih:zz", "magnet"),
                       ("no-such-file", "does not exist")):
        res = alpha.run_cli("torrent", "add", arg)
        assert res.returncode == 2 and words in res.stderr, (arg, res.stderr)
    bad = alpha.state_dir.parent / "bad.torrent"
    bad.write_bytes(b"d4:infod4:name3:abcee")
    res = alpha.run_cli("torrent", "add", str(bad))
    assert res.returncode != 0 and "torrent" in res.stderr and "Traceback" not in res.stderr
    assert alpha.cli("torrent", "list", "--json") == []  # nothing was added
    assert alpha.proc.poll() is None  # and the daemon is still there
    # The reaper over HTTP: a fresh seed is healthy, and --apply has nothing to nudge.
    _content, infohash, _ = seed(alpha, "ok.bin", 100_000)
    wait_until(lambda: [v["state"] for v in alpha.cli("reaper", "--json")] == ["healthy"], 10, "a verdict")
    applied = alpha.cli("reaper", "--apply", "--json")
    assert applied["applied"] == [] and applied["verdicts"][0]["infohash"] == infohash
    assert "healthy" in alpha.cli("reaper")
    assert "seeding" in alpha.cli("torrent", "list") and infohash in alpha.cli("torrent", "list")


def test_three_copies_then_max_two_drops_one_custody_copy_and_keeps_the_users_own(procs):
    alpha, beta, gamma = procs("alpha"), procs("beta"), procs("gamma")
    ids = start_fleet(alpha, beta, gamma)
    content, infohash, digest = seed(alpha, "film.bin", 4 * MIB)  # the user's own file, on alpha
    wait_until(lambda: all((holding_of(p, ids["alpha"], content) or {}).get("state") == "complete"
                           for p in (beta, gamma)), 15, "everyone to learn alpha's holding")

    alpha.cli("pin", content, "--copies", "3")
    for p in (alpha, beta, gamma):
        wait_until(lambda p=p: plan_of(p, content)["status"] == "ok" and plan_of(p, content)["copies"] == 3, 90,
                   f"{p.name}'s custody to reach three copies")
    for p in (beta, gamma):
        assert sha256_of(p.state_dir / "media" / "film.bin") == digest
        h = holding_of(alpha, ids[p.name], content)
        assert h["state"] == "complete" and h["custody"] is True  # made by custody, and says so
    assert holding_of(beta, ids["alpha"], content)["custody"] is False

    alpha.cli("pin", content, "--copies", "2", "--max", "2")
    for p in (alpha, beta, gamma):
        wait_until(lambda p=p: plan_of(p, content)["status"] == "ok" and plan_of(p, content)["copies"] == 2, 60,
                   f"{p.name}'s custody to trim back to two copies")
    holders = set(plan_of(alpha, content)["holders"])
    assert ids["alpha"] in holders  # the user's own copy is never the one dropped
    (trimmed,) = {"beta", "gamma"} - {n for n in ("beta", "gamma") if ids[n] in holders}
    kept = "gamma" if trimmed == "beta" else "beta"
    gone, stays = (beta, gamma) if trimmed == "beta" else (gamma, beta)
    wait_until(lambda: sha256_of(gone.state_dir / "media" / "film.bin") is None, 30, "the files to be deleted")
    for p in (alpha, beta, gamma):  # the holding is gone fleet-wide, the others stay
        wait_until(lambda p=p: holding_of(p, ids[trimmed], content) is None, 30, f"{p.name} to see the trim")
        assert holding_of(p, ids[kept], content)["state"] == "complete"
    assert infohash not in {r["infohash"] for r in gone.cli("torrent", "list", "--json")}
    assert sha256_of(stays.state_dir / "media" / "film.bin") == digest
    assert sha256_of(alpha.state_dir / "media" / "film.bin") == digest
    assert gone.cli("status", "--json")["custody"]["trims_done"] == 1

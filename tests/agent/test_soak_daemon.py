"""Opt-in soak (TVA_SOAK=1; TVA_SOAK_S seconds, default 1800): random component faults and random
CLI writes against a real daemon with a peer. The daemon never exits and no write is lost: every
write the CLI reported done is in the daemon's state, in its peer's, and on disk after it stops.

Replay: the seed is printed first; ``TVA_SOAK_SEED=<seed>`` runs the same sequence of choices.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from tests.agent.procs import AgentProc, wait_until
from tests.conftest import require_soak

COMPONENTS = ("mesh", "torrents", "presence", "fabric", "policy", "housekeeping", "persistence", "jobs", "api",
              "overlay_api")


@pytest.fixture
def pair(tmp_path):
    env = {"TVA_FAULT_INJECTION": "1"}
    procs = [AgentProc(tmp_path, "soaked", env=env), AgentProc(tmp_path, "peer", env=env)]
    yield procs
    for p in procs:
        p.kill()


def write(agent: AgentProc, *args: str) -> bool:
    """Run a write until the daemon confirms it (exit 3 = it did not answer: try again)."""
    for _ in range(20):
        res = agent.run_cli(*args)
        if res.returncode == 0:
            return True
        if res.returncode == 2 and ("holds no" in res.stderr or "is not pinned" in res.stderr):
            return True  # an earlier attempt that did not answer had done it
        assert res.returncode == 3, (args, res.returncode, res.stderr)
        time.sleep(0.5)
    raise AssertionError(f"{args} never went through")


def test_soak_faults_and_writes(pair):
    require_soak()
    duration_s = float(os.environ.get("TVA_SOAK_S", "1800"))
    seed = int(os.environ.get("TVA_SOAK_SEED", str(int.from_bytes(os.urandom(4), "big"))))
    print(f"soak: seed={seed} duration_s={duration_s} (replay: TVA_SOAK=1 TVA_SOAK_SEED={seed})")
    rng = random.Random(seed)
    soaked, peer = pair
    soaked.cli("init", "--name", "soak")
    soaked.start()
    peer.start_join(soaked.cli("invite", "--json")["invite"])
    from cli.client import call

    held: set[str] = set()
    pins: set[str] = set()
    faults = writes = 0
    end = time.monotonic() + duration_s
    while time.monotonic() < end:
        assert soaked.proc.poll() is None, f"the daemon exited: {soaked.log.read_text()[-3000:]}"
        if rng.random() < 0.3:
            try:
                call(soaked.daemon_info(), "POST", "/debug/faults",
                     {"component": rng.choice(COMPONENTS), "kind": rng.choice(("error", "base"))}, timeout_s=5)
                faults += 1
            except Exception:  # an injected api fault may cut this very answer off
                faults += 1
        content = f"item-{rng.randrange(40)}"
        action = rng.choice(("add", "add", "rm", "pin", "unpin"))
        if action == "add":
            write(soaked, "holdings", "add", content, "--infohash", f"{rng.randrange(1 << 60):040x}", "--size", "9")
            held.add(content)
        elif action == "rm" and held:
            content = rng.choice(sorted(held))
            write(soaked, "holdings", "rm", content)
            held.discard(content)
        elif action == "pin":
            write(soaked, "pin", content, "--copies", "1")
            pins.add(content)
        elif action == "unpin" and pins:
            content = rng.choice(sorted(pins))
            write(soaked, "unpin", content)
            pins.discard(content)
        writes += 1
        time.sleep(rng.uniform(0.05, 1.0))
    print(f"soak: {faults} faults, {writes} writes")

    def contents(agent: AgentProc) -> set[str]:
        me = agent.cli("status", "--json")["peer_id"]
        return {h["content"] for h in agent.cli("holdings", "list", "--json") if h["peer_id"] == soaked_id or
                (agent is soaked and h["peer_id"] == me)}

    soaked_id = soaked.cli("status", "--json")["peer_id"]
    wait_until(lambda: contents(soaked) == held, 30, "the daemon to hold exactly what was written")
    wait_until(lambda: contents(peer) == held, 60, "the peer to have the same")
    assert {r["content"] for r in soaked.cli("custody", "--json")} == pins
    assert soaked.proc.poll() is None
    assert soaked.stop() == 0
    assert contents(soaked) == held  # on disk, read offline

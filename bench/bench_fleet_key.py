"""Fleet key rotation with real agents (issue 12): revoke → every live member on the new key.

Run: .venv/bin/python bench/bench_fleet_key.py [--rounds 3]

Four agent processes on loopback (owner, two members, and one more member to revoke each round,
joined fresh). Per round it measures, from the `revoke` command:
* the baseline — an ordinary decision (a pin made just before) reaching every live member, i.e.
  how fast the decisions spread;
* the rotation held by every live member (it is a decision too) and every live member *switched*
  to the new key (the fixed switch delay, `agent.secrets.SWITCH_DELAY_MS`, plus restarting the
  libp2p host on the new key);
* the mesh healthy again: every live member sees the others alive on the new key.
The 100-node simulated figure is `bench/bench_decisions.py` (item 4).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.secrets import SWITCH_DELAY_MS  # noqa: E402
from tests.agent.procs import AgentProc, wait_until  # noqa: E402


def _until(check, timeout_s: float = 120, interval_s: float = 0.05) -> float:
    t0 = time.perf_counter()
    wait_until(check, timeout_s, "bench condition", interval_s=interval_s)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"bench_fleet_key: rounds={args.rounds} switch_delay_ms={SWITCH_DELAY_MS}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        owner, a, b = AgentProc(root, "owner"), AgentProc(root, "alpha"), AgentProc(root, "beta")
        live = (owner, a, b)
        procs = list(live)
        try:
            owner.start()
            for p in (a, b):
                p.start_join(owner.cli("invite", "--json")["invite"])
            for r in range(args.rounds):
                victim = AgentProc(root, f"victim{r}")
                procs.append(victim)
                victim.start_join(owner.cli("invite", "--json")["invite"])
                _until(lambda: all(len([h for h in p.cli("hosts", "--json") if h["state"] == "alive"]) == 4
                                   for p in live))
                epoch = owner.cli("status", "--json")["fleet_key"]["epoch"]
                owner.cli("pin", f"item-{r}", "--copies", "1", "--json")
                t0 = time.perf_counter()
                _until(lambda r=r: all(any(c["content"] == f"item-{r}" for c in p.cli("custody", "--json"))
                                       for p in live))
                decision_s = time.perf_counter() - t0
                victim.kill()
                t0 = time.perf_counter()
                owner.cli("revoke", victim.name, "--json")
                _until(lambda e=epoch: all((p.cli("status", "--json")["fleet_key"]["next_epoch"] or 0) > e
                                           or p.cli("status", "--json")["fleet_key"]["epoch"] > e for p in live))
                held_s = time.perf_counter() - t0
                _until(lambda e=epoch: all(p.cli("status", "--json")["fleet_key"]["epoch"] > e for p in live))
                switched_s = time.perf_counter() - t0
                ids = {p.peer_id for p in live}
                _until(lambda ids=ids: all(all(h["state"] == "alive" for h in p.cli("hosts", "--json")
                                               if h["peer_id"] in ids) for p in live))
                healthy_s = time.perf_counter() - t0
                rows.append((decision_s, held_s, switched_s, healthy_s))
                print(f"round {r}: decision to all {decision_s:.2f} s | rotation held by all {held_s:.2f} s | "
                      f"all switched {switched_s:.2f} s | mesh healthy {healthy_s:.2f} s")
        finally:
            for p in procs:
                p.kill()
    med = [statistics.median(col) for col in zip(*rows, strict=True)]
    print(f"median of {len(rows)}: a decision reaches 3 live members in {med[0]:.2f} s (baseline); the rotation "
          f"is held by all in {med[1]:.2f} s, all on the new key in {med[2]:.2f} s "
          f"({med[2] - SWITCH_DELAY_MS / 1000:+.2f} s past the switch delay), mesh healthy in {med[3]:.2f} s")


if __name__ == "__main__":
    main()

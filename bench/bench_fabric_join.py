"""tva0 figure (issue 6): time from `tva-agent join` to the first ping over tva0 (root).

Run: sudo .venv/bin/python bench/bench_fabric_join.py [--rounds 5]

Two network namespaces on a veth underlay; a founder agent runs in the first; the second runs
`tva-agent join TOKEN --run`. The clock starts when the join command starts (process start,
libp2p, admission, sync, tva0 bring-up, WireGuard handshake) and stops at the first ping reply
from the founder's overlay IPv4; the phases printed per round are the join's "admitted" line and
the daemon's daemon.json. Baseline in the same run: the first ping over the underlay.

The project's bytecode is compiled first: Python caches it on a module's first import, so any
installed or once-run copy has it, but a fresh checkout on a machine with PYTHONDONTWRITEBYTECODE=1
(like this one) would compile every module from source in every process — 0.3-1 s of the
figure that no real host pays.
"""

from __future__ import annotations

import argparse
import compileall
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.agent.procs import AgentProc, wait_until  # noqa: E402
from tests.wg.netns import NetnsLab  # noqa: E402

POLL_S = 0.1  # one ping (and a look at the joiner's log) per this period


def one_round(tmp: Path, tick_env: dict[str, str]) -> tuple[float, float]:
    with NetnsLab(2) as lab:
        agents = []
        for i, name in enumerate(("founder", "joiner")):
            sock_dir = lab.sock_dir(i)
            sock_dir.mkdir(parents=True, exist_ok=True)
            agents.append(AgentProc(tmp, f"{name}-{lab.run_id}", prefix=("ip", "netns", "exec", lab.ns(i)),
                                    listen=f"/ip4/{lab.underlay_ip(i)}/tcp/4810",
                                    env={"TVA_WG_BACKEND": "userspace", "TVA_WG_SOCKET_DIR": str(sock_dir),
                                         **tick_env}))
        founder, joiner = agents
        try:
            founder.cli("init", "--name", "bench")
            founder.start()
            lab.pids.append(founder.proc.pid)
            target = wait_until(lambda: founder.cli("wg", "status", "--json")["interface"].get("overlay_ipv4"),
                                30, "the founder's overlay address")
            underlay_s = lab.wait_ping(1, lab.underlay_ip(0), timeout_s=10)
            token = founder.cli("invite", "--json")["invite"]
            start = time.monotonic()
            joiner._spawn("join", token, "--run")
            lab.pids.append(joiner.proc.pid)
            phases: dict[str, float] = {}
            while True:
                polled = time.monotonic()
                if lab.ping(1, target, wait_s=POLL_S):
                    break
                now = time.monotonic() - start
                if "admitted" not in phases and "admitted:" in joiner.log.read_text(errors="replace"):
                    phases["admitted"] = now
                if "daemon" not in phases and (joiner.state_dir / "daemon.json").exists():
                    phases["daemon"] = now
                if now > 60:
                    raise AssertionError("no ping over tva0 within 60 s")
                # Until the joiner has a route to the overlay, ping fails at once: without this pause
                # the loop spawned pings back to back and took a core from the joiner it measures.
                time.sleep(max(0.0, POLL_S - (time.monotonic() - polled)))
            total = time.monotonic() - start
            print("    phases (polled every ~0.1 s): " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items())
                  + f", ping {total:.2f} s", flush=True)
            return total, underlay_s or float("nan")
        finally:
            for a in agents:
                a.kill(signal.SIGTERM)  # a clean stop takes tva0 and wireguard-go down with it


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tick-interval-ms", type=int, default=None,
                    help="the agents' policy tick (also the fabric's reconcile interval); default: the daemon's")
    args = ap.parse_args()
    tick_env = {} if args.tick_interval_ms is None else {"TVA_TICK_INTERVAL_MS": str(args.tick_interval_ms)}
    if os.geteuid() != 0:
        raise SystemExit("bench_fabric_join needs root (network namespaces, wireguard-go)")
    for package in ("agent", "cli", "crdt", "mesh", "media", "tva", "wg"):
        compileall.compile_dir(ROOT / package, quiet=1)
    print(f"bench_fabric_join: rounds={args.rounds} tick_interval_ms={args.tick_interval_ms or 'default'} "
          f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f}")
    joins, underlays = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            j, u = one_round(Path(tmp), tick_env)
            joins.append(j)
            underlays.append(u)
            print(f"  join → first ping over tva0: {j:.2f} s (first underlay ping: {u * 1000:.0f} ms)")
    print(f"median join → first ping over tva0: {statistics.median(joins):.2f} s of {len(joins)} "
          f"(min {min(joins):.2f}, max {max(joins):.2f}; goal ≤ 3 s); "
          f"baseline first underlay ping: {statistics.median(underlays) * 1000:.0f} ms")


if __name__ == "__main__":
    main()

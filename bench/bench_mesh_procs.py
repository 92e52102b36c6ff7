"""Mesh figures with one real `tva-agent` process per node (issue 4, the 30-node size).

Run: .venv/bin/python bench/bench_mesh_procs.py [--nodes 30] [--changes 10] [--idle-s 20]

N daemons on loopback (real libp2p, Noise + PSK), joined by invites. Measured: time from one
holding added on one agent to every agent listing it (median, and the highest percentile the
number of changes supports: bench/tails.py) beside Serf's model; bytes
sent per node per second when idle (the transport's own counters, target ≤ 1 KB/s at 30 nodes)
and per change; CPU per node when idle; resident memory per agent process.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tails import tail  # noqa: E402

from cli.client import call  # noqa: E402
from tests.agent.procs import AgentProc, wait_until  # noqa: E402

SERF_MODEL_S = {10: 1.5, 30: 1.8, 100: 2.1}
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def _rss_mb(pid: int) -> float:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=30)
    ap.add_argument("--changes", type=int, default=10)
    ap.add_argument("--idle-s", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    n = args.nodes
    print(f"bench_mesh_procs: nodes={n} changes={args.changes} idle_s={args.idle_s} seed={args.seed} "
          f"(one agent process per node, gossip 200 ms, probe 1 s) cpus={os.cpu_count()}")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=n) as pool:
        agents = [AgentProc(Path(tmp), f"n{i:02d}", env={"TVA_TORRENT_PORT": str(20000 + i)}) for i in range(n)]
        try:
            agents[0].cli("init", "--name", "bench")
            agents[0].start()
            t0 = time.perf_counter()
            tokens = [agents[0].cli("invite", "--json")["invite"] for _ in agents[1:]]
            list(pool.map(lambda at: at[0].start_join(at[1]), zip(agents[1:], tokens, strict=True)))
            infos = [a.daemon_info() for a in agents]
            alive = lambda info: sum(h["state"] == "alive" for h in call(info, "GET", "/hosts"))  # noqa: E731
            wait_until(lambda: all(v == n for v in pool.map(alive, infos)), 300, "every agent to see all alive")
            print(f"fleet formed (joins + every agent sees {n} alive): {time.perf_counter() - t0:.1f} s")
            time.sleep(5)

            def out_bytes(info) -> int:
                return call(info, "GET", "/status")["transport"]["bytes_out"]

            pids = [a.proc.pid for a in agents]
            b0, c0, w0 = sum(pool.map(out_bytes, infos)), sum(map(_cpu_s, pids)), time.perf_counter()
            time.sleep(args.idle_s)
            window = time.perf_counter() - w0
            idle_b = (sum(pool.map(out_bytes, infos)) - b0) / n / window
            idle_cpu = (sum(map(_cpu_s, pids)) - c0) / n / window

            lat, per_change = [], []
            for k in range(args.changes):
                i = rng.randrange(n)
                content, ih = f"bench-{k}", f"{k + 1:040x}"
                b1 = sum(pool.map(out_bytes, infos))
                start = time.perf_counter()
                call(infos[i], "POST", "/holdings", {"content": content, "infohash": ih, "size_bytes": 1})

                def has(info, content=content) -> bool:
                    return bool(call(info, "GET", f"/custodians_of/{content}")["holders"])

                while not all(pool.map(has, infos)):
                    pass
                took = time.perf_counter() - start
                lat.append(took)
                per_change.append(max(0.0, sum(pool.map(out_bytes, infos)) - b1 - idle_b * n * took))
                time.sleep(0.5)
            rss = [_rss_mb(p) for p in pids]
            tail_label, tail_s = tail(lat)
            tail_text = f"{tail_label}: {tail_s:.3f}"
            print(f"{'nodes':>5} {'p50 s':>7} {'tail s':>18} {'Serf s':>7} {'idle B/node/s':>14} "
                  f"{'idle CPU %/node':>16} {'B/change':>9} {'RSS MB/agent':>13}")
            print(f"{n:>5} {statistics.median(lat):>7.3f} {tail_text:>18} "
                  f"{SERF_MODEL_S.get(n, '-'):>7} {idle_b:>14.0f} {100 * idle_cpu:>16.2f} "
                  f"{statistics.median(per_change):>9.0f} {statistics.median(rss):>13.0f}")
            print("(latency polls every agent's HTTP API in parallel, so it includes that polling's cost)")
        finally:
            for a in agents:
                a.kill()


if __name__ == "__main__":
    main()

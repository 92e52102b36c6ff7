"""Mesh figures (issue 4): the real protocol over real libp2p on loopback, N nodes in one process.

Run: .venv/bin/python bench/bench_mesh.py [--nodes 10 30] [--changes 20] [--idle-s 10]

For each size: time from one change to every node holding it (median, and the highest percentile
the number of changes supports, e.g. "p95 of 20": bench/tails.py) beside Serf's
published convergence model at the same settings (200 ms gossip interval, fanout 3); bytes sent
per node per second when idle (target ≤ 1 KB/s at 30 nodes) and per change; CPU per node when
idle. Then the resident memory of one real `tva-agent run` process. All nodes share one process
and two cores here, so latency includes their CPU contention; a real fleet has a core per node.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tails import tail  # noqa: E402

from crdt import records  # noqa: E402
from mesh.core import types as t  # noqa: E402
from tests.agent.procs import AgentProc, wait_until  # noqa: E402
from tests.mesh import test_mesh_libp2p as harness  # noqa: E402

SERF_MODEL_S = {10: 1.5, 30: 1.8, 100: 2.1, 1000: 2.4, 10000: 2.6}  # 99.99% reach, 200 ms / fanout 3


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _bytes_out(peers) -> int:
    return sum(p.transport.stats()["bytes_out"] for p in peers)


async def measure(n: int, changes: int, idle_s: float, seed: int) -> dict:
    harness.N = n
    peers = harness._fleet()
    rng = random.Random(seed)
    async with trio.open_nursery() as nursery:
        await nursery.start(harness._run_peer, peers[0], [])
        bootstrap = peers[0].transport.listen_addrs()
        for p in peers[1:]:
            await nursery.start(harness._run_peer, p, bootstrap)
        t0 = time.perf_counter()
        await harness._wait(lambda: all(len(records.cards(p.feeds)) == n for p in peers), 300, "cards")
        join_s = time.perf_counter() - t0
        await trio.sleep(3)  # let connection set-up traffic settle
        b0, c0, w0 = _bytes_out(peers), _cpu_s(), time.perf_counter()
        await trio.sleep(idle_s)
        idle_bytes = (_bytes_out(peers) - b0) / n / (time.perf_counter() - w0)
        idle_cpu = (_cpu_s() - c0) / n / (time.perf_counter() - w0)
        latencies, per_change = [], []
        for k in range(changes):
            i = rng.randrange(n)
            h = records.Holding(f"c{k}", f"{k + 1:040x}", 1, "complete", "public", "local", 1)
            want = (peers[i].key.peer_id, h.content_id)
            b1 = _bytes_out(peers)
            start = time.perf_counter()
            peers[i].own.put(records.holding_key(h.content_id), records.encode_holding(h))
            peers[i].driver.submit(t.LocalChanged(delta=peers[i].own.commit(harness.NOW + 100 + k)))
            while not all(want in p.holdings() for p in peers):
                await trio.sleep(0.005)
            took = time.perf_counter() - start
            latencies.append(took)
            per_change.append(max(0.0, _bytes_out(peers) - b1 - idle_bytes * n * took))
            await trio.sleep(0.3)
        nursery.cancel_scope.cancel()
    tail_label, tail_s = tail(latencies)
    return {"nodes": n, "mesh_formed_s": round(join_s, 2), "p50_s": round(statistics.median(latencies), 3),
            "tail": tail_label, "tail_s": round(tail_s, 3),
            "idle_bytes_per_node_s": round(idle_bytes), "idle_cpu_per_node_pct": round(100 * idle_cpu, 2),
            "bytes_per_change": round(statistics.median(per_change))}


def agent_rss_mb() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        agent = AgentProc(Path(tmp), "rss", env={"TVA_TORRENT_ENGINE": "libtorrent"})
        agent.cli("init", "--name", "rss")
        agent.start()
        try:
            time.sleep(5)
            status = Path(f"/proc/{agent.proc.pid}/status").read_text()
            kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
            wait_until(lambda: agent.cli("status", "--json")["daemon"], 10, "status")
            return kb / 1024
        finally:
            agent.kill()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, nargs="+", default=[10, 30])
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--idle-s", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(f"bench_mesh: nodes={args.nodes} changes={args.changes} idle_s={args.idle_s} seed={args.seed} "
          f"gossip_interval_ms={harness.CONFIG.gossip_interval_ms} fanout={harness.CONFIG.fanout_max} "
          f"cpus={os.cpu_count()} (all nodes in one process)")
    head = f"{'nodes':>5} {'formed s':>9} {'p50 s':>7} {'tail s':>18} {'Serf s':>7} {'idle B/node/s':>14} " \
           f"{'idle CPU %/node':>16} {'B/change':>9}"
    print(head)
    for n in args.nodes:
        r = trio.run(measure, n, args.changes, args.idle_s, args.seed)
        tail_text = f"{r['tail']}: {r['tail_s']}"
        print(f"{n:>5} {r['mesh_formed_s']:>9} {r['p50_s']:>7} {tail_text:>18} {SERF_MODEL_S.get(n, '-'):>7} "
              f"{r['idle_bytes_per_node_s']:>14} {r['idle_cpu_per_node_pct']:>16} {r['bytes_per_change']:>9}")
    print("(Serf's figure is its model's 99.99 % reach time; a tail of a few changes is not its p99)")
    print(f"one `tva-agent run` process (libtorrent on, libp2p loaded): RSS {agent_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()

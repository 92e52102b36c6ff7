"""Agent figures (issue 5): join → fully synced, and peers_for over HTTP vs a plain /health route.

Run: .venv/bin/python bench/bench_agent.py [--holdings 2000] [--seconds 5] [--connections 10]

Real processes on loopback: a founder daemon with N holdings, a joiner that runs `join --run`;
then a load client (a separate process, keep-alive connections) measures p50/p99 latency and
requests/s of `/peers_for/{infohash}` against `/health` — the baseline measured in the same run.
The daemon is one process (one core for the server); the client runs in another.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.agent.procs import AgentProc, wait_until  # noqa: E402


def _load(api: str, token: str, path: str, seconds: float, out: mp.Queue) -> None:
    host, port = api.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    # Every route but /health needs the token, loopback included (agent.door): both carry it, so the
    # baseline pays for the same header.
    req = f"GET {path} HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    lat, end = [], time.perf_counter() + seconds
    buf = b""
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        sock.sendall(req)
        while True:
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if sep:
                length = int(next(h for h in head.split(b"\r\n")
                                  if h.lower().startswith(b"content-length")).split(b":")[1])
                if len(rest) >= length:
                    buf = rest[length:]
                    break
            buf += sock.recv(65536)
        lat.append(time.perf_counter() - t0)
    sock.close()
    out.put(lat)


def measure(api: str, token: str, path: str, seconds: float, connections: int) -> dict:
    q: mp.Queue = mp.Queue()
    procs = [mp.Process(target=_load, args=(api, token, path, seconds, q)) for _ in range(connections)]
    for p in procs:
        p.start()
    lat = [x for _ in procs for x in q.get()]
    for p in procs:
        p.join()
    lat.sort()
    return {"requests_per_s": round(len(lat) / seconds), "p50_ms": round(statistics.median(lat) * 1000, 2),
            "p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--holdings", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=10)
    args = ap.parse_args()
    print(f"bench_agent: holdings={args.holdings} seconds={args.seconds} connections={args.connections} "
          f"cpus={os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        founder, joiner = AgentProc(root, "founder"), AgentProc(root, "joiner")
        try:
            founder.cli("init", "--name", "bench")
            # Holdings written offline in one go (one commit), then the daemon starts.
            script = (
                "import sys; from agent.store import StateStore; from agent.state import NodeState; "
                "from crdt import records\n"
                f"s = NodeState.load(StateStore(__import__('pathlib').Path({str(founder.state_dir)!r})))\n"
                f"for i in range({args.holdings}):\n"
                "    h = records.Holding(f'item-{i}', f'{i:040x}', 1000 + i, 'complete', 'public', 'local', 1000 + i)\n"
                "    s.own.put(records.holding_key(h.content_id), records.encode_holding(h))\n"
                "s.own.commit(2_000_000_000_000); s.save()\n")
            subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)
            founder.start()
            token = founder.cli("invite", "--json")["invite"]
            t0 = time.perf_counter()
            joiner.start_join(token)
            wait_until(lambda: len(joiner.cli("holdings", "list", "--json")) == args.holdings, 120, "sync")
            join_s = time.perf_counter() - t0
            print(f"join → fully synced ({args.holdings} holdings, incl. process start): {join_s:.2f} s")
            info = json.loads((joiner.state_dir / "daemon.json").read_text())
            api, api_token = info["api"], info["token"]
            t0 = time.perf_counter()
            subprocess.run([str(ROOT / ".venv/bin/tva-agent"), "--state-dir", str(joiner.state_dir), "status"],
                           env=joiner.env, check=True, capture_output=True)
            print(f"`tva-agent status` against the daemon: {time.perf_counter() - t0:.3f} s (whole process)")
            base = measure(api, api_token, "/health", args.seconds, args.connections)
            peers = measure(api, api_token, f"/peers_for/{7:040x}", args.seconds, args.connections)
            print(f"{'route':<28}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}")
            print(f"{'/health (baseline)':<28}{base['requests_per_s']:>8}{base['p50_ms']:>9}{base['p99_ms']:>9}")
            print(f"{'/peers_for/{infohash}':<28}{peers['requests_per_s']:>8}{peers['p50_ms']:>9}{peers['p99_ms']:>9}")
            print(f"peers_for throughput = {peers['requests_per_s'] / max(1, base['requests_per_s']):.0%} of /health")
        finally:
            founder.kill()
            joiner.kill()


if __name__ == "__main__":
    main()

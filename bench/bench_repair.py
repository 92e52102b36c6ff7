"""Custody repair figures (issue 8), real `tva-agent` processes with embedded libtorrent on loopback.

    python bench/bench_repair.py [--size-mib 64] [--rounds 2]

1. Repair copy throughput: alpha seeds a generated file (`torrent add PATH`), beta runs
   `pin --copies 2`; the copy time runs from the moment beta's engine has the torrent (the
   repair began: intent seen, magnet added, holders dialled) to beta holding every verified
   byte (polled through beta's HTTP API every 20 ms). The file is hash-checked afterwards.
   Baseline in the same run: the same transfer between two bare libtorrent sessions
   (bench_torrent.plain_round). Target: repair throughput ≥ 80% of the baseline's.
2. Time from holder loss to ok: three agents, the item held by two (pin --copies 2, ok); one
   holder is SIGKILLed; the clock runs until the survivor's custody says ok again (failure
   detection → under → intent → copy to the third agent → its holding is seen). Phases printed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_torrent import make_file, plain_round

from cli.client import call
from tests.agent.procs import AgentProc, wait_until

ENV = {"TVA_TORRENT_ENGINE": "libtorrent"}
POLL_S = 0.05


def api(p: AgentProc, method: str, path: str, body: dict | None = None):
    return call(p.daemon_info(), method, path, body)


def start_fleet(founder: AgentProc, *joiners: AgentProc) -> None:
    founder.cli("init", "--name", "bench")
    founder.start()
    for j in joiners:
        j.start_join(founder.cli("invite", "--json")["invite"])
    n = 1 + len(joiners)
    for p in (founder, *joiners):
        wait_until(lambda p=p: [h["state"] for h in api(p, "GET", "/hosts")].count("alive") == n, 60,
                   f"{p.name} to see {n} live hosts")


def seed(p: AgentProc, size_bytes: int) -> tuple[str, str, str]:
    path = p.state_dir / "media" / "payload.bin"
    digest = make_file(path, size_bytes)
    job = api(p, "POST", "/torrents", {"source": str(path)})["job"]  # 202: hashing runs as a job
    added = wait_until(lambda: (j := api(p, "GET", f"/jobs/{job['id']}"))["state"] == "done" and j["result"], 60,
                       "the seed's job")
    wait_until(lambda: any(h["content"] == added["content"] and h["state"] == "complete"
                           for h in api(p, "GET", "/holdings")), 30, "the seed's holding")
    return added["content"], added["infohash"], digest


def custody(p: AgentProc, content: str) -> dict:
    rows = [r for r in api(p, "GET", "/custody") if r["content"] == content]
    return rows[0] if rows else {}


def repair_round(work: Path, size_bytes: int) -> float:
    alpha, beta = AgentProc(work, "alpha", env=ENV), AgentProc(work, "beta", env=ENV)
    try:
        start_fleet(alpha, beta)
        content, ih, digest = seed(alpha, size_bytes)
        wait_until(lambda: any(h["content"] == content for h in api(beta, "GET", "/holdings")), 30, "sync")
        api(beta, "POST", "/pins", {"content": content, "copies": 2})
        deadline = time.monotonic() + 120
        t0 = None
        while time.monotonic() < deadline:
            rows = {r["infohash"]: r for r in api(beta, "GET", "/torrents")}
            row = rows.get(ih)
            if row is not None and t0 is None:
                t0 = time.perf_counter()
            if row is not None and row["state"] == "seeding" and row["progress"] >= 1.0:
                elapsed = time.perf_counter() - t0
                break
            time.sleep(POLL_S)
        else:
            raise TimeoutError("repair copy did not finish")
        got = hashlib.sha256((beta.state_dir / "media" / "payload.bin").read_bytes()).hexdigest()
        assert got == digest, "repair copy differs"
        wait_until(lambda: custody(alpha, content).get("status") == "ok", 30, "custody ok")
        return elapsed
    finally:
        for p in (alpha, beta):
            p.kill()


def loss_round(work: Path, size_bytes: int) -> dict[str, float]:
    alpha, beta, gamma = (AgentProc(work, n, env=ENV) for n in ("alpha", "beta", "gamma"))
    try:
        start_fleet(alpha, beta, gamma)
        content, _ih, _digest = seed(alpha, size_bytes)
        for p in (beta, gamma):
            wait_until(lambda p=p: any(h["content"] == content for h in api(p, "GET", "/holdings")), 30, "sync")
        api(alpha, "POST", "/pins", {"content": content, "copies": 2})
        wait_until(lambda: custody(alpha, content).get("status") == "ok", 120, "the first repair")
        holder = next(h for h in custody(alpha, content)["holders"] if h != api(alpha, "GET", "/status")["peer_id"])
        victim = beta if api(beta, "GET", "/status")["peer_id"] == holder else gamma
        victim.kill(signal.SIGKILL)
        t0 = time.perf_counter()
        wait_until(lambda: custody(alpha, content).get("status") == "under", 60, "under", interval_s=POLL_S)
        t_under = time.perf_counter() - t0
        wait_until(lambda: custody(alpha, content).get("pending"), 60, "intent", interval_s=POLL_S)
        t_intent = time.perf_counter() - t0
        wait_until(lambda: custody(alpha, content).get("status") == "ok", 120, "ok again", interval_s=POLL_S)
        return {"under": t_under, "intent": t_intent, "ok": time.perf_counter() - t0}
    finally:
        for p in (alpha, beta, gamma):
            p.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    size = args.size_mib * 1024 * 1024
    repair, plain, losses = [], [], []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="tva-bench-repair-") as tmp:
            work = Path(tmp)
            (work / "plain").mkdir()
            repair.append(repair_round(work / "r", size))
            plain.append(plain_round(work / "plain", size))
            losses.append(loss_round(work / "l", size))
        print(f"round {r + 1}: repair copy {repair[-1]:.2f} s, plain {plain[-1]:.2f} s, "
              f"holder loss → ok {losses[-1]['ok']:.1f} s", flush=True)
    e, p = statistics.median(repair), statistics.median(plain)
    mib = args.size_mib
    print(f"\n{mib} MiB over loopback, median of {args.rounds} (cores: {os.cpu_count()})")
    print(f"  repair copy, agent → agent:               {e:6.2f} s  {mib / e:7.1f} MiB/s")
    print(f"  plain libtorrent → libtorrent (baseline): {p:6.2f} s  {mib / p:7.1f} MiB/s")
    print(f"  repair throughput / baseline: {p / e:.0%} (target ≥ 80%)")
    for k in ("under", "intent", "ok"):
        print(f"  holder loss → {k:6s} {statistics.median(x[k] for x in losses):6.1f} s (median)")


if __name__ == "__main__":
    main()

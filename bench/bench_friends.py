"""Friend fleet figures (issue 15), real `tva-agent` processes on loopback.

    python bench/bench_friends.py [--rounds 3] [--size-mib 64] [--sync-ms 10000]

1. Time from `friend add` to the first `friend` answer in peers_for. Fleet alpha (a1) and fleet
   beta (b1, b2); b2 holds a public item. The clock starts when b1's admin redeems alpha's friend
   invite (POST /friends, what `tva-agent friend add` sends) and stops when a1's peers_for lists b2
   with source `friend` (polled through a1's HTTP API every 20 ms). Then, the link standing, a new
   item held by b2: time until a1 answers it as `friend` (steady state: bounded by the sync
   interval). Baseline in the same run: a new item held by b2 reaching b1's peers_for as `fleet`
   (in-fleet gossip).
2. A friend copy's throughput. alpha (a1) seeds a generated file and pins it `--copies 2
   --friends`; beta (b1) offers `friend_custody_bytes`. The copy time runs from the moment b1's
   engine has the torrent (the ask seen, the magnet added, alpha's holder dialled) to b1 holding
   every verified byte (polled every 20 ms); the file is hash-checked. Also: pin → alpha's custody
   counts the copy (end to end). Baselines in the same run: the same transfer between two bare
   libtorrent sessions (bench_torrent.plain_round), and an in-fleet custody repair measured the
   same way (bench_repair.repair_round).

The agents run with the tests' short gossip/probe periods (tests.agent.procs.FAST_ENV) and the
given friend sync interval (the default, 10 s, unless --sync-ms says otherwise).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_repair import api, custody, repair_round, seed, start_fleet
from bench_torrent import plain_round

from tests.agent.procs import AgentProc, wait_until

POLL_S = 0.02
MIB = 1024 * 1024


def sources(p: AgentProc, infohash: str) -> set[str]:
    return {x["source"] for x in api(p, "GET", f"/peers_for/{infohash}")["peers"]}


def timed(check, timeout_s: float, what: str) -> float:
    t0 = time.perf_counter()
    wait_until(check, timeout_s, what, interval_s=POLL_S)
    return time.perf_counter() - t0


def hold(p: AgentProc, content: str, infohash: str) -> None:
    api(p, "POST", "/holdings", {"content": content, "infohash": infohash, "size_bytes": 1000, "policy": "public"})


def link_round(work: Path, rnd: int, sync_ms: int) -> dict[str, float]:
    env = {"TVA_FRIEND_SYNC_INTERVAL_MS": str(sync_ms)}
    a1 = AgentProc(work, "a1", env={**env, "TVA_TORRENT_PORT": "17101"})
    b1 = AgentProc(work, "b1", env={**env, "TVA_TORRENT_PORT": "17102"})
    b2 = AgentProc(work, "b2", env={**env, "TVA_TORRENT_PORT": "17103"})
    try:
        start_fleet(a1, name="alpha")
        start_fleet(b1, b2, name="beta")
        ih0, ih1, ih2 = (f"{rnd:02x}{i:02x}" * 10 for i in range(3))
        hold(b2, "first", ih0)
        baseline = timed(lambda: "fleet" in sources(b1, ih0), 30, "b1 to see b2's item (baseline)")
        token = api(a1, "POST", "/invites", {"role": "friend"})["invite"]
        t0 = time.perf_counter()
        api(b1, "POST", "/friends", {"invite": token})
        wait_until(lambda: "friend" in sources(a1, ih0), 60, "a1 to answer b2 as a friend", interval_s=POLL_S)
        first = time.perf_counter() - t0
        hold(b2, "second", ih1)
        steady = timed(lambda: "friend" in sources(a1, ih1), 3 * sync_ms / 1000 + 30, "a1 to see b2's next item")
        hold(b2, "third", ih2)
        fleet2 = timed(lambda: "fleet" in sources(b1, ih2), 30, "b1 to see b2's third item (baseline)")
        return {"add_to_first": first, "new_item_friend": steady, "new_item_fleet": (baseline + fleet2) / 2}
    finally:
        for p in (a1, b1, b2):
            p.kill()


def copy_round(work: Path, size_bytes: int, sync_ms: int) -> dict[str, float]:
    env = {"TVA_TORRENT_ENGINE": "libtorrent", "TVA_FRIEND_SYNC_INTERVAL_MS": str(sync_ms)}
    a1, b1 = AgentProc(work, "a1", env=env), AgentProc(work, "b1", env=env)
    try:
        start_fleet(a1, name="alpha")
        start_fleet(b1, name="beta")
        content, ih, digest = seed(a1, size_bytes)
        token = api(a1, "POST", "/invites", {"role": "friend"})["invite"]
        api(b1, "POST", "/friends", {"invite": token, "custody_bytes": 4 * size_bytes})
        wait_until(lambda: any(r.get("custody_bytes_offered_to_us") for r in api(a1, "GET", "/friends")), 60,
                   "a1 to see beta's offer")
        t_pin = time.perf_counter()
        api(a1, "POST", "/pins", {"content": content, "copies": 2, "friends": True})
        t0 = None
        deadline = time.monotonic() + 3 * sync_ms / 1000 + 120
        while time.monotonic() < deadline:
            row = {r["infohash"]: r for r in api(b1, "GET", "/torrents")}.get(ih)
            if row is not None and t0 is None:
                t0 = time.perf_counter()
            if row is not None and row["state"] == "seeding" and row["progress"] >= 1.0:
                copy_s = time.perf_counter() - t0
                break
            time.sleep(POLL_S)
        else:
            raise TimeoutError("the friend copy did not finish")
        got = hashlib.sha256((b1.state_dir / "media" / "payload.bin").read_bytes()).hexdigest()
        assert got == digest, "the friend copy differs"
        wait_until(lambda: custody(a1, content).get("status") == "ok", 3 * sync_ms / 1000 + 30,
                   "alpha's custody to count beta's copy", interval_s=POLL_S)
        return {"copy": copy_s, "pin_to_counted": time.perf_counter() - t_pin}
    finally:
        for p in (a1, b1):
            p.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--sync-ms", type=int, default=10_000, help="friend_sync_interval_ms of every agent")
    args = ap.parse_args()
    size = args.size_mib * MIB
    print(f"bench_friends: rounds={args.rounds} size={args.size_mib} MiB friend_sync_interval_ms={args.sync_ms} "
          f"cores={os.cpu_count()}", flush=True)
    links, copies, plain, repairs = [], [], [], []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="tva-bench-friends-") as tmp:
            work = Path(tmp)
            (work / "plain").mkdir()
            links.append(link_round(work / "l", r, args.sync_ms))
            copies.append(copy_round(work / "c", size, args.sync_ms))
            plain.append(plain_round(work / "plain", size))
            repairs.append(repair_round(work / "r", size))
        lk, cp = links[-1], copies[-1]
        print(f"round {r + 1}: friend add → first friend answer {lk['add_to_first']:.2f} s; new item: friend "
              f"{lk['new_item_friend']:.2f} s, fleet {lk['new_item_fleet']:.2f} s; friend copy {cp['copy']:.2f} s, "
              f"plain {plain[-1]:.2f} s, fleet repair {repairs[-1]:.2f} s, pin → counted {cp['pin_to_counted']:.2f} s", flush=True)

    def med(rows, key):
        return statistics.median(x[key] for x in rows)

    mib = args.size_mib
    c, p = statistics.median(x["copy"] for x in copies), statistics.median(plain)
    print(f"\nmedian of {args.rounds} rounds")
    print(f"  friend add → first `friend` answer in peers_for:   {med(links, 'add_to_first'):6.2f} s")
    print(f"  new item on a friend's host → `friend` answer:    {med(links, 'new_item_friend'):6.2f} s "
          f"(sync interval {args.sync_ms / 1000:.1f} s)")
    print(f"  new item on a fleet host → `fleet` (baseline):     {med(links, 'new_item_fleet'):6.2f} s")
    print(f"  friend copy, {mib} MiB, agent → friend agent:     {c:6.2f} s  {mib / c:7.1f} MiB/s")
    print(f"  plain libtorrent → libtorrent (baseline):          {p:6.2f} s  {mib / p:7.1f} MiB/s")
    r = statistics.median(repairs)
    print(f"  in-fleet repair copy (baseline):                   {r:6.2f} s  {mib / r:7.1f} MiB/s")
    print(f"  friend copy throughput / plain: {p / c:.0%}; / in-fleet repair: {r / c:.0%}")
    print(f"  pin --friends → alpha's custody counts the copy:  {med(copies, 'pin_to_counted'):6.2f} s")


if __name__ == "__main__":
    main()

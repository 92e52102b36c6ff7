"""Custody repair figures (issue 8), real `tva-agent` processes with embedded libtorrent on loopback.

    python bench/bench_repair.py [--size-mib 64] [--rounds 6] [--loss-rounds 3]

1. Repair copy throughput: alpha seeds a generated file (`torrent add PATH`), beta runs
   `pin --copies 2`; the copy time runs from the first poll that finds the torrent in beta's
   engine (the repair began: intent seen, torrent added, holders dialled) to the first poll that
   finds beta holding every verified byte. The file is hash-checked afterwards.
   Baseline in the same run: the same transfer between two bare libtorrent sessions, one per
   process like the agents, created with exactly the agents' session settings (the agent's config
   → ``media.lt_engine.session_settings``: uTP, rate limits, alert mask alike), timed by the same
   poll loop at the same interval (over a pipe instead of HTTP). The order alternates every round
   (even rounds repair first), so neither side always follows the other's page cache and process
   churn; the holder-loss rounds run after all of them. Target: repair throughput ≥ 80% of the
   baseline's; reported with n and the spread, per-round ratios included.
2. Time from holder loss to ok: three agents, the item held by two (pin --copies 2, ok); one
   holder is SIGKILLed; the clock runs until the survivor's custody says ok again (failure
   detection → under → intent → copy to the third agent → its holding is seen). Phases printed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_torrent import make_file, sha256
from tails import spread

from cli.client import call
from tests.agent.procs import AgentProc, wait_until

ENV = {"TVA_TORRENT_ENGINE": "libtorrent"}
POLL_S = 0.02  # both sides: the copy clocks start and stop on polls at this interval
COPY_TIMEOUT_S = 120


def api(p: AgentProc, method: str, path: str, body: dict | None = None):
    return call(p.daemon_info(), method, path, body)


def start_fleet(founder: AgentProc, *joiners: AgentProc, name: str = "bench") -> None:
    founder.cli("init", "--name", name)
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


def time_copy(poll: Callable[[], tuple[str, float] | None]) -> float:
    """The one clock of both sides: from the first poll that finds the torrent at the receiver
    to the first that finds it seeding with every byte. ``poll`` → None (not there yet) or
    (state, progress)."""
    deadline = time.monotonic() + COPY_TIMEOUT_S
    t0 = None
    while time.monotonic() < deadline:
        row = poll()
        now = time.perf_counter()
        if row is not None:
            t0 = now if t0 is None else t0
            if row[0] == "seeding" and row[1] >= 1.0:
                return now - t0
        time.sleep(POLL_S)
    raise TimeoutError("the copy did not finish")


def agent_flags(agent: AgentProc) -> dict:
    """The swarm flags an agent's engine runs with (agent.torrents: the config's tuning; loopback)."""
    from agent.config import load_config
    from agent.torrent_index import tuning_from_config

    cfg = load_config(env=agent.env, flags={"state_dir": str(agent.state_dir)})
    flags = replace(tuning_from_config(cfg).swarm, listen_addresses=("127.0.0.1",), listen_port=0,
                    public_swarm_face=False)
    return asdict(flags)


def repair_round(work: Path, size_bytes: int) -> float:
    alpha, beta = AgentProc(work, "alpha", env=ENV), AgentProc(work, "beta", env=ENV)
    try:
        start_fleet(alpha, beta)
        content, ih, digest = seed(alpha, size_bytes)
        wait_until(lambda: any(h["content"] == content for h in api(beta, "GET", "/holdings")), 30, "sync")
        api(beta, "POST", "/pins", {"content": content, "copies": 2})

        def poll():
            row = {r["infohash"]: r for r in api(beta, "GET", "/torrents")}.get(ih)
            return None if row is None else (row["state"], row["progress"])

        try:
            elapsed = time_copy(poll)
        except TimeoutError:
            print(f"repair round timed out; beta's log ends:\n{beta.log.read_text()[-4000:]}", file=sys.stderr)
            raise
        assert sha256(beta.state_dir / "media" / "payload.bin") == digest, "repair copy differs"
        wait_until(lambda: custody(alpha, content).get("status") == "ok", 30, "custody ok")
        return elapsed
    finally:
        for p in (alpha, beta):
            p.kill()


# --- the baseline: one bare libtorrent session per process, driven over a pipe ----------------------

def plain_peer(role: str, directory: str, torrent: str, flags_json: str) -> None:
    """A bare session (``--plain-peer``): the seeder prints its port; the leecher answers
    ``add PORT`` (add the torrent, dial the seeder) and ``poll`` (state and progress) on stdin."""
    import libtorrent as lt

    from media.lt_engine import apply_peer_classes, session_settings
    from media.lt_settings import SwarmFlags

    raw = json.loads(flags_json)
    flags = SwarmFlags(**{k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
                          for k, v in raw.items()})
    ses = lt.session(session_settings(flags))
    apply_peer_classes(ses, flags)
    while ses.listen_port() == 0:
        time.sleep(0.01)
    params = lt.add_torrent_params()
    params.ti, params.save_path = lt.torrent_info(Path(torrent).read_bytes()), directory
    params.flags &= ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
    handle = None
    if role == "seed":
        params.flags |= lt.torrent_flags.seed_mode
        handle = ses.add_torrent(params)
        print(f"port {ses.listen_port()}", flush=True)
    else:
        print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[:1] == ["add"]:
            handle = ses.add_torrent(params)
            handle.connect_peer(("127.0.0.1", int(cmd[1])))
            print("added", flush=True)
        elif cmd[:1] == ["poll"]:
            st = handle.status() if handle is not None else None
            print("none" if st is None else f"{str(st.state).rsplit('.', 1)[-1]} {st.progress}", flush=True)
        else:
            break
    del ses


class PlainPeer:
    def __init__(self, role: str, directory: Path, torrent: Path, flags: dict) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--plain-peer", role, str(directory), str(torrent),
                                      json.dumps(flags)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, line: str | None = None) -> str:
        if line is not None:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if not answer:
            raise RuntimeError(f"the plain peer ended (exit {self.proc.poll()})")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def plain_round(work: Path, size_bytes: int, flags: dict) -> float:
    from media.torrent_make import make_torrent_v1

    a, b = work / "plain-a", work / "plain-b"
    a.mkdir(parents=True)
    b.mkdir()
    digest = make_file(a / "payload.bin", size_bytes)
    torrent = work / "payload.torrent"
    torrent.write_bytes(make_torrent_v1(str(a / "payload.bin")))
    seeder = PlainPeer("seed", a, torrent, flags)
    leecher = PlainPeer("leech", b, torrent, flags)
    try:
        port = int(seeder.ask().split()[1])
        assert leecher.ask() == "ready"
        assert leecher.ask(f"add {port}") == "added"

        def poll():
            answer = leecher.ask("poll")
            if answer == "none":
                return None
            state, progress = answer.split()
            return state, float(progress)

        elapsed = time_copy(poll)
    finally:
        seeder.close()
        leecher.close()
    assert sha256(b / "payload.bin") == digest, "plain copy differs"
    return elapsed


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
    if sys.argv[1:2] == ["--plain-peer"]:
        plain_peer(*sys.argv[2:6])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=6, help="copy rounds (even: each order equally often)")
    ap.add_argument("--loss-rounds", type=int, default=3)
    args = ap.parse_args()
    size = args.size_mib * 1024 * 1024
    print(f"bench_repair: size_mib={args.size_mib} rounds={args.rounds} loss_rounds={args.loss_rounds} "
          f"poll_s={POLL_S} cores={os.cpu_count()} load={os.getloadavg()[0]:.2f}", flush=True)
    repair, plain = [], []
    with tempfile.TemporaryDirectory(prefix="tva-bench-repair-") as tmp:
        flags = agent_flags(AgentProc(Path(tmp), "beta", env=ENV))  # what beta's engine will run with
    from media.lt_engine import session_settings
    from media.lt_settings import SwarmFlags

    shown = {k: v for k, v in session_settings(SwarmFlags(**{k: tuple(v) if isinstance(v, list) else v
                                                          for k, v in flags.items()})).items()
             if k.startswith(("enable_", "upload_rate", "download_rate", "listen"))}
    print(f"libtorrent session settings on both sides: {json.dumps(shown)}", flush=True)
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="tva-bench-repair-") as tmp:
            work = Path(tmp)
            if r % 2 == 0:
                repair.append(repair_round(work / "r", size))
                plain.append(plain_round(work / "p", size, flags))
            else:
                plain.append(plain_round(work / "p", size, flags))
                repair.append(repair_round(work / "r", size))
        print(f"round {r + 1} ({'repair first' if r % 2 == 0 else 'plain first'}): repair copy {repair[-1]:.2f} s, "
              f"plain {plain[-1]:.2f} s, ratio {plain[-1] / repair[-1]:.0%}", flush=True)
    losses = []
    for r in range(args.loss_rounds):
        with tempfile.TemporaryDirectory(prefix="tva-bench-repair-") as tmp:
            losses.append(loss_round(Path(tmp), size))
        print(f"loss round {r + 1}: holder loss → ok {losses[-1]['ok']:.1f} s", flush=True)
    mib = args.size_mib
    print(f"\n{mib} MiB over loopback, {args.rounds} rounds, order alternating (cores: {os.cpu_count()}, "
          f"load now {os.getloadavg()[0]:.2f})")
    if repair:  # --rounds 0: the holder-loss rounds only
        e, p = statistics.median(repair), statistics.median(plain)
        ratios = [b / a for a, b in zip(repair, plain, strict=True)]
        print(f"  repair copy, agent → agent:               {spread(repair)} s  {mib / e:7.1f} MiB/s at the median")
        print(f"  plain libtorrent → libtorrent (baseline): {spread(plain)} s  {mib / p:7.1f} MiB/s at the median")
        print(f"  repair throughput / baseline, per round:  {spread(ratios, '{:.0%}')} (target ≥ 80%)")
    if losses:
        for k in ("under", "intent", "ok"):
            print(f"  holder loss → {k:6s} {spread([x[k] for x in losses], '{:.1f}')} s")


if __name__ == "__main__":
    main()

"""Daemon figures (issue 13): event-loop stalls while saving, and component restart times.

    python bench/bench_daemon.py [--holdings 100000] [--rounds 5]

1. **Longest event-loop stall during a save** of a state holding ``--holdings`` holdings (spread
   over hosts of at most 25,000 each, the feed limit). A ticker task sleeps 1 ms in a loop and
   records how late it wakes; the longest lateness while one save runs is the stall. Baseline,
   measured in the same run on the same state: wave 1's save, ``NodeState.save()`` called on the
   event loop (encode every file and write it with its fsyncs, in the trio thread). Now: the
   ``persistence`` component's save (a detached snapshot on the loop, encoding and writing in a
   worker thread). Each variant saves after one changed holding, ``--rounds`` times.
2. **Component restart time**: a real agent (libp2p transport, loopback API) gets a fault
   injected into each component; the time from the fault to the component being back to its
   state before is measured, and shown without the supervisor's first back-off delay too (what the
   component's own start-up costs).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.persistence import Persistence
from agent.state import NodeState
from agent.store import StateStore
from crdt import records
from crdt.feedset import FeedSet, OwnFeed
from crdt.identity import NodeKey

NOW = 1_700_000_000_000
PER_HOST = 25_000


def build_state(root: Path, holdings: int) -> NodeState:
    state = NodeState.found(StateStore(root), fleet_name="bench",
                            card=records.HostCard(name="me", host_class="server"), now_ms=NOW)
    hosts = max(1, -(-holdings // PER_HOST))
    keys = [NodeKey(bytes([h + 1]) * 32) for h in range(hosts)]
    for k in keys:
        state.doc.admit(k.peer_id, f"h{k.peer_id[-4:]}", "member", None, state.peer_id, NOW)
    state.refresh_membership()
    left = holdings
    for h, k in enumerate(keys):
        n = min(PER_HOST, left)
        left -= n
        src = FeedSet()
        own = OwnFeed(k, src)
        for i in range(n):
            cid = f"tmdb:{h:02d}{i:06d}"
            own.put(records.holding_key(cid), records.encode_holding(
                records.Holding(cid, f"{h:02x}{i:038x}", 1_000_000_000 + i, "complete", "public", "local",
                                1_000_000_000 + i)))
        state.feeds.apply_delta(own.commit(NOW))
    state.save()
    return state


def touch(state: NodeState, n: int) -> None:
    h = records.Holding(f"mine{n}", f"{n:040x}", n, "complete", "public", "local", n)
    state.own.put(records.holding_key(h.content_id), records.encode_holding(h))
    state.own.commit(NOW + n)


async def longest_stall_ms(save) -> float:
    """Run ``save`` (async) while a ticker measures how late 1 ms sleeps wake; the worst, in ms."""
    worst = 0.0
    done = trio.Event()

    async def ticker():
        nonlocal worst
        while not done.is_set():
            t0 = trio.current_time()
            await trio.sleep(0.001)
            worst = max(worst, (trio.current_time() - t0 - 0.001) * 1000)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await trio.sleep(0.05)
        await save()
        await trio.sleep(0.01)
        done.set()
    return worst


async def stalls(state: NodeState, rounds: int) -> dict[str, list[float]]:
    persistence = Persistence(state, save_interval_ms=2000, clock_ms=lambda: NOW)
    await persistence.save()  # the first save writes every file; the rounds measure steady saves
    out: dict[str, list[float]] = {"wave 1: NodeState.save() on the loop": [], "now: persistence component": []}
    for r in range(rounds):
        touch(state, 2 * r)

        async def old() -> None:
            state.save()

        out["wave 1: NodeState.save() on the loop"].append(await longest_stall_ms(old))
        touch(state, 2 * r + 1)
        out["now: persistence component"].append(await longest_stall_ms(persistence.save))
    return out


async def restart_times(root: Path) -> dict[str, tuple[float, float]]:
    from agent.config import Config
    from agent.runtime import Agent
    from agent.supervisor import FaultInjected, Supervisor
    from mesh.libp2p_transport import Libp2pTransport

    logging.getLogger("tva").setLevel(logging.CRITICAL)  # the injected failures' tracebacks
    state = NodeState.found(StateStore(root), fleet_name="r", card=records.HostCard(name="r", host_class="server"),
                            now_ms=NOW)
    cfg = Config(state_dir=root, host_name="r", api="127.0.0.1:0", wg_backend="off", torrent_engine="off")
    sup = Supervisor(clock_ms=lambda: time.time_ns() // 1_000_000)

    def transport():  # the real one: a mesh restart starts a new libp2p host
        return Libp2pTransport(state.key.seed, state.fleet.psk, listen_addrs=("/ip4/127.0.0.1/tcp/0",))

    agent = Agent(cfg, state, transport(), new_transport=transport, supervisor=sup)
    out = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        for name in sorted(sup.components):
            h = sup.health(name)
            before, restarts = (h.state, h.reason), h.restarts
            t0 = trio.current_time()
            sup.inject(name, FaultInjected("bench"))
            while sup.health(name).restarts == restarts or (sup.health(name).state, sup.health(name).reason) != before:
                await trio.sleep(0.001)
            took = (trio.current_time() - t0) * 1000
            out[name] = (took, took - sup.restart_delay_ms_min)
            await trio.sleep(0.2)
        agent.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--holdings", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"bench_daemon: holdings={args.holdings} rounds={args.rounds} cpus={os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        state = build_state(Path(tmp) / "s", args.holdings)
        size = sum(f.stat().st_size for f in (Path(tmp) / "s").iterdir() if f.is_file() and "." not in f.name)
        print(f"state built in {time.perf_counter() - t0:.1f} s: {size / 2**20:.1f} MiB on disk")
        result = trio.run(stalls, state, args.rounds)
        print(f"\n{'longest event-loop stall during one save':<44}{'median ms':>11}{'max ms':>9}")
        for name, values in result.items():
            print(f"{name:<44}{statistics.median(values):>11.1f}{max(values):>9.1f}")
        base = statistics.median(result["wave 1: NodeState.save() on the loop"])
        now = statistics.median(result["now: persistence component"])
        print(f"stall now = {now / base:.1%} of wave 1's")
        times = trio.run(restart_times, Path(tmp) / "r")
        print(f"\n{'component restart (fault → back)':<36}{'total ms':>10}{'minus first back-off':>22}")
        for name, (total, own) in times.items():
            print(f"{name:<36}{total:>10.0f}{own:>22.0f}")


if __name__ == "__main__":
    main()

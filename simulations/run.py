"""Runs one scenario end to end and returns a JSON-able result.

The result's ``deterministic`` part (params, trace digest, metrics, checks) is a function of
the parameters alone; wall-clock cost is reported apart, under ``cost``, because it is the one
thing that differs between two runs with one seed.
"""

from __future__ import annotations

import gc
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from simulations.metrics import percentile
from simulations.network import LAN, LOSSY_WAN, WAN
from simulations.nodes import CoreConfig, NodeFactory
from simulations.scenarios import SETUP, Params, finish_faults, host_classes
from simulations.seeds import derive_rng
from simulations.sim import Simulation
from simulations.world import Trace

LINKS = {"lan": LAN, "wan": WAN, "lossy": LOSSY_WAN}
TRACK_AFTER_MS = 3000  # changes before this are the start-up storm, not "one change"
POLL_MS = 250
# A planner cannot know of a revocation or a full disk before the news reaches it: repairs onto
# such a host count as violations only once the fact is this old (many dissemination rounds).
KNOWLEDGE_GRACE_MS = 10_000


def build(p: Params, trace_out: IO[str] | None = None) -> tuple[Simulation, int]:
    factory = NodeFactory(p.seed, p.core, CoreConfig(p.interval_ms, p.fanout, p.anti_entropy), p.nodes,
                          p.fleets)
    classes = host_classes(p, derive_rng(p.seed, "classes"))
    sim = Simulation(seed=p.seed, n_nodes=p.nodes, classes=classes, factory=factory,
                     link=LINKS[p.link], interval_ms=p.interval_ms, track_after_ms=TRACK_AFTER_MS,
                     revocation_grace_ms=KNOWLEDGE_GRACE_MS, trace=Trace(trace_out))
    heal_ms = p.heal_ms()
    SETUP[p.scenario](sim, p, derive_rng(p.seed, "scenario", p.scenario), heal_ms)
    finish_faults(sim, heal_ms)
    return sim, heal_ms


def _r(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(float(x), nd)


PROGRESS_EVERY_MS = 5000
STEADY_FROM_MS = 5000


# The cyclic collector at its default thresholds (700, 10, 10) walks a run's young objects every
# 700 allocations and its whole heap (a thousand nodes' member tables, presence and feeds: millions
# of objects) whenever it grew by a quarter: 18 % of a 1000-node churn run's CPU (31 of 172 s).
# Nearly all the run's garbage is freed by reference counting; what needs the collector (a crashed
# node's state, whose parts refer to each other) waits a little longer: young objects are looked
# at every 50,000 allocations, the whole heap still whenever it grew by a quarter. Measured at
# 1000 nodes: (50000, 20, 1) 15 s of collector CPU, peak RSS +2-4 %; (50000, 20, 10) 8 s, +6 %
# (a full collection never came); (20000, 10, 1) 22 s, +1 %.
GC_THRESHOLDS = (50_000, 10, 1)


@contextmanager
def collector_tuned() -> Iterator[None]:
    """The run's collector thresholds (``GC_THRESHOLDS``), the caller's restored afterwards."""
    before = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def run_scenario(p: Params, trace_out: IO[str] | None = None, progress: bool = False) -> dict:
    with collector_tuned():
        return _run_scenario(p, trace_out, progress)


def _run_scenario(p: Params, trace_out: IO[str] | None, progress: bool) -> dict:
    wall0 = time.perf_counter()  # the simulator's own cost only; the world never sees it
    cpu0 = time.process_time()
    sim, heal_ms = build(p, trace_out)
    # Steady-state traffic is measured between the end of the start-up (everyone announcing its
    # presence at once) and the healing point.
    steady_from_ms = min(STEADY_FROM_MS, heal_ms // 2)
    every_ms = max(PROGRESS_EVERY_MS, heal_ms // 100)  # a month of virtual time: 100 lines, not 500,000
    marks = sorted({steady_from_ms, *(range(every_ms, heal_ms, every_ms) if progress else ())})
    steady0 = (0, 0)
    for t in marks:
        sim.world.run(t)
        if t == steady_from_ms:
            steady0 = (sim.net.stats.bytes_sent, sim.net.stats.frames_sent)
        if progress:
            print(f"  … t={t / 1000:.0f}s events={sim.world.trace.events} wall={time.perf_counter() - wall0:.1f}s "
                  f"cpu={time.process_time() - cpu0:.1f}s", file=sys.stderr, flush=True)
    sim.world.run(heal_ms)
    window_s = max((heal_ms - steady_from_ms) / 1000.0, 1e-9)
    steady_bytes = (sim.net.stats.bytes_sent - steady0[0]) / p.nodes / window_s
    steady_msgs = (sim.net.stats.frames_sent - steady0[1]) / p.nodes / window_s
    bound_ms = heal_ms + int(p.bound_s * 1000)
    settled_ms = None
    status: dict[str, tuple[bool, str]] = {}
    # Liveness is polled often enough to time settling, but a vector comparison over a
    # thousand nodes is costly, so big fleets poll less.
    poll_ms = POLL_MS * max(1, p.nodes // 100)
    t = heal_ms
    while True:
        status = {
            "converged": sim.checker.converged(),
            "pins_restored": sim.checker.pins_restored(),
            "duties_agree": sim.checker.duties_agree(),
            **{name: check() for name, check in sim.liveness_checks.items()},
        }
        if sim.friend_world is not None:
            status["friends_settled"] = sim.friend_world.settled()
        if all(ok for ok, _ in status.values()):
            settled_ms = t - heal_ms
            break
        if t >= bound_ms:
            break
        t = min(t + poll_ms, bound_ms)
        sim.world.run(t)
    end_ms = t
    sim.metrics.close(end_ms)
    wall_s = time.perf_counter() - wall0
    cpu_s = time.process_time() - cpu0

    m = sim.metrics
    n_nodes = p.nodes
    secs = max(end_ms / 1000.0, 1e-9)
    stats = sim.net.stats
    conv = m.convergence_ms
    gossip = sim.gossip_totals()
    restore = m.restore_ms
    metrics = {
        "changes_tracked": len(conv) + m.pending_count(),
        "changes_converged": len(conv),
        "convergence_ms_p50": _r(percentile(conv, 50)),
        "convergence_ms_p99": _r(percentile(conv, 99)),
        "convergence_ms_max": _r(max(conv) if conv else None),
        "settle_ms_after_heal": settled_ms,
        "messages_per_node_s": _r(stats.frames_sent / n_nodes / secs, 2),
        "bytes_per_node_s": _r(stats.bytes_sent / n_nodes / secs, 1),
        "steady_messages_per_node_s": _r(steady_msgs, 2),
        "steady_bytes_per_node_s": _r(steady_bytes, 1),
        "frames_lost": stats.frames_lost,
        "frames_blocked": stats.frames_blocked,
        "frames_duplicated": stats.frames_duplicated,
        "frames_dropped_bulk_queue": stats.frames_dropped_bulk_queue,
        "pin_under_n_ms_total": sum(m.pin_under_ms.values()),
        "pin_under_n_ms_max": max(m.pin_under_ms.values(), default=0),
        "restore_ms_p50": _r(percentile(restore, 50)),
        "restore_ms_max": _r(max(restore) if restore else None),
        "repairs_started": m.repairs_started,
        "repairs_done": m.repairs_done,
        "trims": m.trims,
        "dead_declarations": m.declared_dead,
        "false_dead_declarations": m.false_dead,
        "dead_declarations_across_partition": m.dead_while_partitioned,
        # where the bytes went, by frame kind (real cores only): bytes per node per second
        "bytes_per_node_s_by_kind": {k: _r(v / n_nodes / secs, 1) for k, v in sorted(stats.bytes_by_kind.items())},
        # ... and by what the frames carry (real cores only): membership and presence records, feed
        # deltas (rumoured), document sync messages; then how the rumour queues behaved
        "bytes_per_node_s_by_item": {k: _r(v / n_nodes / secs, 1) for k, v in gossip.item_bytes.items()},
        "rumour_transmits_per_node_s": _r(gossip.counts.get("transmits", 0) / n_nodes / secs, 2),
        "rumour_transmits_max": gossip.transmits_max,
        "rumour_retransmit_limit": gossip.limit_max,
        "rumour_queue_depth_max": gossip.depth_max,
        "rumours_evicted": gossip.counts.get("evicted", 0),
        "rumours_dropped_for_size": gossip.counts.get("dropped_for_size", 0),
        "rumour_items_skipped_for_size": gossip.counts.get("skipped_for_size", 0),
    }
    for source in sim.metric_sources:
        metrics.update(source())
    if sim.friend_world is not None:  # [friends] links, views that crossed, copies kept for friends
        metrics["friends"] = dict(sim.friend_world.stats)
    checks = {
        "safety": {"ok": sim.checker.count == 0, "violations": sim.checker.count,
                   "first": [f"t={v.at_ms}ms {v.rule}: {v.detail}" for v in sim.checker.violations[:10]]},
        "liveness": {name: {"ok": ok, "detail": detail} for name, (ok, detail) in status.items()},
    }
    ok = checks["safety"]["ok"] and all(v["ok"] for v in checks["liveness"].values())
    events = sim.world.trace.events
    return {
        "seed": p.seed,
        "scenario": p.scenario,
        "params": p.as_dict(),
        "core": sim.factory.core,
        "core_note": sim.factory.core_note,
        "virtual_s": round(end_ms / 1000.0, 3),
        "events": events,
        "trace_sha256": sim.world.trace.digest(),
        "metrics": metrics,
        "checks": checks,
        "ok": ok,
        "replay": p.replay_command(),
        "cost": {
            "wall_s": round(wall_s, 3),
            "cpu_s": round(cpu_s, 3),
            "cpu_us_per_node_s": round(1e6 * cpu_s / (n_nodes * secs), 1),
            "wall_us_per_node_s": round(1e6 * wall_s / (n_nodes * secs), 1),
            "events_per_wall_s": round(events / max(wall_s, 1e-9)),
            # the whole process's (every simulated node's) peak resident memory so far
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        },
    }


def deterministic_part(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "cost"}

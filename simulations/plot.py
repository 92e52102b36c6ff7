"""Sweeps a scenario over fleet sizes and draws a PNG for people: convergence of one change vs.
fleet size (beside Serf's published model) and traffic per node. matplotlib is imported only here,
only when a plot is asked for (``pip install tva-agent[plot]``).
"""

from __future__ import annotations

import math
from dataclasses import replace

from simulations.run import LINKS, run_scenario
from simulations.scenarios import Params
from tva.errors import ConfigError

# Serf's convergence model (serf.io "gossip convergence simulator", website/source/assets/javascripts/
# simulator.js): a logistic infection curve with contact rate fanout/n x (1 - packet loss) x 1/2
# per gossip round, read at the first whole round that reaches 99.99% of the nodes. At a 200 ms
# interval and fanout 3 that is the published 1.8 s for 30 nodes and 2.6 s for 10,000; at 10 %
# loss, 2.4 s for 1000 nodes.
SERF_TARGET = 0.9999


def serf_convergence_ms(n_nodes: int, loss: float = 0.0, interval_ms: int = 200, fanout: int = 3) -> float:
    contact = fanout / n_nodes * (1 - loss) * 0.5
    rounds = 0
    while rounds < 100:
        reached = 1 / (1 + (n_nodes + 1) * math.exp(-contact * n_nodes * rounds))
        if reached >= SERF_TARGET:
            break
        rounds += 1
    return float(rounds * interval_ms)


def sweep(params: Params, sizes: list[int], echo: bool = False) -> list[dict]:
    rows = []
    for n in sizes:
        r = run_scenario(replace(params, nodes=n))
        m = r["metrics"]
        row = {
            "nodes": n, "seed": params.seed, "scenario": params.scenario, "core": r["core"],
            "convergence_ms_p50": m["convergence_ms_p50"], "convergence_ms_p99": m["convergence_ms_p99"],
            "serf_model_ms": round(serf_convergence_ms(n, LINKS[params.link].loss, params.interval_ms,
                                                       params.fanout)),
            "link": params.link,
            "bytes_per_node_s": m["bytes_per_node_s"], "messages_per_node_s": m["messages_per_node_s"],
            "steady_bytes_per_node_s": m["steady_bytes_per_node_s"],
            "steady_messages_per_node_s": m["steady_messages_per_node_s"],
            "bytes_per_node_s_by_kind": m["bytes_per_node_s_by_kind"],
            "bytes_per_node_s_by_item": m["bytes_per_node_s_by_item"],
            "rumour_transmits_max": m["rumour_transmits_max"], "rumour_retransmit_limit": m["rumour_retransmit_limit"],
            "false_dead_declarations": m["false_dead_declarations"],
            "restore_ms_max": m["restore_ms_max"], "wall_s": r["cost"]["wall_s"], "cpu_s": r["cost"]["cpu_s"],
            "wall_us_per_node_s": r["cost"]["wall_us_per_node_s"],
            "cpu_us_per_node_s": r["cost"]["cpu_us_per_node_s"], "ok": r["ok"], "replay": r["replay"],
        }
        rows.append(row)
        if echo:
            print(" ".join(f"{k}={v}" for k, v in row.items() if k != "replay"), flush=True)
    return rows


def sweep_and_plot(params: Params, sizes: list[int], path: str, echo: bool = False) -> list[dict]:
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only: never open a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--plot needs matplotlib", hint="pip install 'tva-agent[plot]'") from None
    rows = sweep(params, sizes, echo)
    xs = [r["nodes"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    a.plot(xs, [r["convergence_ms_p50"] for r in rows], "o-", label="tva p50")
    a.plot(xs, [r["convergence_ms_p99"] for r in rows], "s-", label="tva p99 (100% of live nodes)")
    grid = sorted({*xs, 30, 10_000})
    loss = LINKS[params.link].loss
    a.plot(grid, [serf_convergence_ms(n, loss, params.interval_ms, params.fanout) for n in grid], "k--",
           label=f"Serf model (99.99%, {loss:.0%} loss)")
    a.set_xscale("log")
    a.set_xlabel("fleet size (nodes)")
    a.set_ylabel("convergence of one change (ms)")
    a.set_title(f"{params.scenario}: {params.interval_ms} ms interval, fanout {params.fanout}")
    a.legend()
    b.plot(xs, [r["steady_bytes_per_node_s"] for r in rows], "o-", label="steady state (after 5 s)")
    b.plot(xs, [r["bytes_per_node_s"] for r in rows], "x:", label="whole run")
    b.set_xscale("log")
    b.set_xlabel("fleet size (nodes)")
    b.set_ylabel("bytes sent per node per second")
    b.set_title(f"traffic per node (seed {params.seed})")
    b.legend()
    for ax, key in ((a, "convergence_ms_p99"), (b, "steady_bytes_per_node_s")):
        for r in rows:  # say which core produced each point: auto runs the stand-in for big fleets
            if r[key] is not None:
                ax.annotate(r["core"], (r["nodes"], r[key]), textcoords="offset points", xytext=(4, 6),
                            fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return rows

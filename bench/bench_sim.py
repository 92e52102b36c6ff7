"""Fleet-simulation figures, each printed beside its baseline from the same run.

1. Convergence of one change vs. fleet size at a 200 ms interval and fanout 3, on a LAN
   (``steady``) and on a lossy WAN (``lossy-wan``: 10 % loss, 2 % duplication, 5 % reordering,
   60 ms base latency) — beside Serf's convergence model for the same loss (serf.io's
   simulator: 1.8 s to 99.99% of 30 nodes, 2.6 s for 10k; 2.4 s for 1000 nodes at 10 % loss).
   Ours is measured to 100% of live nodes, a stricter target. Pass = at/below Serf.
2. Bytes (and messages) per node per second at steady state, with where they go (gossip frames
   by item kind), and the lossy WAN's figure against the LAN's at the same size (bound: 2x).
3. Time to restore N copies after a holder dies (holder-loss scenario) vs. fleet size.
4. The simulator's own cost: wall and CPU seconds per run.

    python bench/bench_sim.py                       # sizes 10,100,1000, seed 1
    python bench/bench_sim.py --sizes 10,100 --json
    python bench/bench_sim.py --no-restore          # convergence and traffic only
    python bench/bench_sim.py --plot bench/sim.png

Which core ran each row is printed: "auto" runs the real cores up to
simulations.nodes.AUTO_REAL_NODES_MAX nodes and the stand-in above (see the report).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulations.plot import sweep, sweep_and_plot
from simulations.run import run_scenario
from simulations.scenarios import params_for

LOSSY_OVER_LAN_MAX = 2.0  # issue 19: never more than twice the LAN's bytes at the same size


def restore_bound_s(n: int) -> float:
    """The liveness bound for holder-loss at n nodes. Restoring starts only once the dead holder is
    declared dead (Lifeguard's suspicion grows with log n: 12-72 s at 1000 nodes) and baton and
    target each act on their next policy round (the simulator plans every 10 ms x n, at most 10 s),
    so the scenario's 30 s default is too tight past a few hundred nodes."""
    return 30.0 if n <= 200 else 90.0


def restore_rows(sizes: list[int], seed: int, core: str, duration_s: float) -> list[dict]:
    rows = []
    for n in sizes:
        r = run_scenario(params_for("holder-loss", nodes=n, seed=seed, core=core, duration_s=duration_s,
                                    bound_s=restore_bound_s(n)))
        m = r["metrics"]
        rows.append({"nodes": n, "core": r["core"], "restore_ms_p50": m["restore_ms_p50"],
                     "restore_ms_max": m["restore_ms_max"], "repairs_done": m["repairs_done"],
                     "pin_under_n_ms_max": m["pin_under_n_ms_max"], "ok": r["ok"],
                     "cpu_us_per_node_s": r["cost"]["cpu_us_per_node_s"], "replay": r["replay"]})
        print(f"  holder-loss n={n} core={r['core']} bound_s={restore_bound_s(n)} restore p50={m['restore_ms_p50']} ms "
              f"max={m['restore_ms_max']} ms repairs={m['repairs_done']} ok={r['ok']}", flush=True)
    return rows


def _items(row: dict) -> str:
    by = row["bytes_per_node_s_by_item"]
    return " / ".join(f"{by.get(k, 0):.0f}" for k in ("membership", "presence", "delta", "doc"))


def print_convergence(lan: list[dict], lossy: list[dict]) -> tuple[bool, bool]:
    print("\n| link | nodes | core | conv p50 ms | conv p99 ms | Serf model ms | p99 / Serf | steady bytes/node/s "
          "| lossy / LAN | of which gossip | gossip items: membership / presence / delta / doc "
          "| most sends of one rumour (limit) | false dead | wall s | CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    below = bounded = True
    lan_bytes = {r["nodes"]: r["steady_bytes_per_node_s"] for r in lan}
    for r in [*lan, *lossy]:
        p99, serf = r["convergence_ms_p99"], r["serf_model_ms"]
        ok = p99 is not None and p99 <= serf
        below &= ok
        ratio = f"{p99 / serf:.2f}" if p99 is not None else "-"
        vs_lan = "-"
        if r["link"] != "lan" and lan_bytes.get(r["nodes"]):
            x = r["steady_bytes_per_node_s"] / lan_bytes[r["nodes"]]
            bounded &= x <= LOSSY_OVER_LAN_MAX
            vs_lan = f"{x:.2f}"
        print(f"| {r['link']} | {r['nodes']} | {r['core']} | {r['convergence_ms_p50']} | {p99} | {serf} "
              f"| {ratio}{'' if ok else ' NO'} | {r['steady_bytes_per_node_s']} | {vs_lan} "
              f"| {r['bytes_per_node_s_by_kind'].get('gossip', '-')} | {_items(r)} "
              f"| {r['rumour_transmits_max']} ({r['rumour_retransmit_limit']}) | {r['false_dead_declarations']} "
              f"| {r['wall_s']} | {r['cpu_s']} |")
    return below, bounded


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--core", default="auto", choices=("auto", "standin", "real"))
    ap.add_argument("--duration-s", type=float, default=20.0)
    ap.add_argument("--no-restore", action="store_true", help="skip the holder-loss rows")
    ap.add_argument("--plot", metavar="PNG")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    common = {"seed": args.seed, "core": args.core, "duration_s": args.duration_s, "interval_ms": 200, "fanout": 3}
    print(f"# bench_sim: seed={args.seed} sizes={sizes} core={args.core} duration_s={args.duration_s} "
          f"interval_ms=200 fanout=3", flush=True)
    runs = {}
    for scenario in ("steady", "lossy-wan"):
        print(f"## {scenario}: convergence of one change, traffic, simulator cost", flush=True)
        params = params_for(scenario, nodes=sizes[0], **common)
        plot = f"{Path(args.plot).with_suffix('')}-{scenario}.png" if args.plot else None
        runs[scenario] = sweep_and_plot(params, sizes, plot, echo=True) if plot else sweep(params, sizes, echo=True)
    restore = []
    if not args.no_restore:
        print("## holder-loss: time to restore N copies after a holder dies", flush=True)
        restore = restore_rows(sizes, args.seed, args.core, args.duration_s)

    below, bounded = print_convergence(runs["steady"], runs["lossy-wan"])
    if restore:
        print("\n| nodes | core | restore p50 / max ms | repairs | CPU µs per node-s |")
        print("|---|---|---|---|---|")
        for r in restore:
            print(f"| {r['nodes']} | {r['core']} | {r['restore_ms_p50']} / {r['restore_ms_max']} | {r['repairs_done']} "
                  f"| {r['cpu_us_per_node_s']} |")
    ok = all(x["ok"] for x in runs["steady"] + runs["lossy-wan"] + restore)
    print(f"\np99 convergence at or below Serf's model (same loss) at every size: {'yes' if below else 'NO'}; "
          f"lossy WAN bytes within {LOSSY_OVER_LAN_MAX}x the LAN's at every size: {'yes' if bounded else 'NO'}; "
          f"all checkers passed: {'yes' if ok else 'NO'}")
    if args.json:
        print(json.dumps({"steady": runs["steady"], "lossy_wan": runs["lossy-wan"], "holder_loss": restore},
                         indent=1, sort_keys=True))
    return 0 if ok and below and bounded else 1


if __name__ == "__main__":
    raise SystemExit(main())

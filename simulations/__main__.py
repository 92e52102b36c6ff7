"""``python -m simulations`` — run a named scenario; print the seed and parameters first.

Exit codes: 0 all checkers passed, 1 a checker failed (the replay command is printed),
2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields

from simulations.scenarios import SCENARIOS, Params, params_for
from tva.errors import LocalError


def _parse_set(items: list[str]) -> dict[str, object]:
    types = {f.name: f.type for f in fields(Params)}
    out: dict[str, object] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or name not in types or name in ("scenario", "nodes", "seed"):
            raise LocalError(f"bad --set {item!r}",
                             hint="NAME=VALUE with NAME one of " + ", ".join(sorted(types)))
        kind = types[name]
        try:
            if kind in ("bool", bool):
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(raw)
                out[name] = raw.lower() in ("true", "1")
            elif kind in ("int", int):
                out[name] = int(raw)
            elif kind in ("float", float):
                out[name] = float(raw)
            else:
                out[name] = raw
        except ValueError:
            raise LocalError(f"--set {name}: {raw!r} is not a {kind}", hint="e.g. --set bound_s=30") from None
    return out


def _print_human(r: dict) -> None:
    m = r["metrics"]
    print(f"  core={r['core']}{' (' + r['core_note'] + ')' if r['core_note'] else ''}")
    print(f"  virtual {r['virtual_s']} s, {r['events']} events, trace sha256 {r['trace_sha256'][:16]}")
    for k, v in m.items():
        if isinstance(v, dict):
            v = " ".join(f"{kk}={vv}" for kk, vv in v.items()) or "-"
        print(f"  {k:38s} {v}")
    s = r["checks"]["safety"]
    print(f"  safety: {'ok' if s['ok'] else 'FAILED'} ({s['violations']} violations)")
    for line in s["first"]:
        print(f"    {line}")
    for name, v in r["checks"]["liveness"].items():
        print(f"  liveness {name}: {'ok' if v['ok'] else 'FAILED'} — {v['detail']}")
    c = r["cost"]
    print(f"  cost: {c['wall_s']} s wall ({c['cpu_s']} s CPU), {c['wall_us_per_node_s']} µs wall "
          f"({c['cpu_us_per_node_s']} µs CPU) per simulated node-second, peak RSS {c['peak_rss_mb']} MB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulations", description=__doc__)
    ap.add_argument("--scenario", choices=SCENARIOS, default="steady")
    ap.add_argument("--nodes", type=int, default=None, help="all fleets' nodes (default 30; friends: 150)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override a parameter, e.g. --set duration_s=60 --set link=lossy")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument("--progress", action="store_true", help="print virtual time and cost every 5 s to stderr")
    ap.add_argument("--trace", metavar="PATH", help="write the event trace, one line per event")
    ap.add_argument("--plot", metavar="PNG", help="sweep fleet sizes and draw convergence and traffic")
    ap.add_argument("--sizes", default="10,100,1000", help="fleet sizes for --plot")
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage and the error (or the help)
        return int(exc.code or 0)
    try:
        sized = {} if args.nodes is None else {"nodes": args.nodes}
        params = params_for(args.scenario, seed=args.seed, **sized, **_parse_set(args.set))
        if args.plot:
            from simulations.plot import sweep_and_plot
            sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
            rows = sweep_and_plot(params, sizes, args.plot, echo=not args.json)
            if args.json:
                print(json.dumps(rows, indent=1, sort_keys=True))
            return 0 if all(r["ok"] for r in rows) else 1
        if not args.json:
            print(f"seed={params.seed} scenario={params.scenario}")
            print("params " + " ".join(f"{k}={v}" for k, v in params.as_dict().items()), flush=True)
        trace_out = open(args.trace, "w") if args.trace else None
        try:
            from simulations.run import run_scenario
            result = run_scenario(params, trace_out, progress=args.progress)
        finally:
            if trace_out is not None:
                trace_out.close()
    except LocalError as exc:
        print(f"error: {exc.message}" + (f" (hint: {exc.hint})" if exc.hint else ""), file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=1))  # insertion order: seed and params first
    else:
        _print_human(result)
        print("PASS" if result["ok"] else f"FAIL — replay: {result['replay']}")
    return 0 if result["ok"] else 1


def exit_now(code: int) -> None:
    """Exit without tearing the heap down: a 1000-node run leaves millions of objects that refer to
    each other, which the interpreter's exit would collect and free one by one (~5 s at 1000
    nodes); the OS takes the memory back at once. Output is flushed first; the trace file is
    closed by ``main``. Under a profiler or a tracer (cProfile, coverage), which write their
    results at exit, the exit is the ordinary one."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        raise SystemExit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())

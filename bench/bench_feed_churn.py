"""Feed bytes under holdings churn on one host: 1,000,000 changes (issue 14, "feeds in steady state").

    python bench/bench_feed_churn.py [--changes 1000000] [--live 2000] [--batch 50] [--seed 1]

One host's own feed (crdt.feedset.OwnFeed) with holdings that come and go: while it holds fewer
than ``--live`` items a change adds a new one (a new content id, as a new torrent would), else it
removes a random one; ``--batch`` changes per commit (an agent tick), one commit per simulated
second. Three variants, run on the same churn in this run:

* ``before``  — the feed as it was: tombstones are never collected, so the feed fills with them
  and a put is refused at the entry limit (the baseline: where it stopped).
* ``commit``  — no periodic collection: only a commit that would overflow collects the older
  tombstones (a sawtooth up to the limit, never a refused write).
* ``agent``   — what the running agent does: also ``agent.feed_upkeep.collect_garbage`` every
  ``GC_INTERVAL_MS`` of simulated time (TTL + never more tombstones than live entries). A
  replica follows through ``deltas_since`` and must end byte-identical.

Printed: changes done, peak and final feed bytes (keys + values as the feed accounts them) and
entries, the full-snapshot size, and µs per change. Target: ``agent`` bounded by its live entries.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent import feed_upkeep
from crdt.feed import FEED_ENTRIES_MAX, encode_delta, entry_bytes, tombstone_horizon
from crdt.feedset import FeedSet, OwnFeed
from crdt.identity import NodeKey
from crdt.records import Holding, encode_holding, holding_key
from tva.errors import InvalidInput

T0_MS = 1_700_000_000_000
KEY = NodeKey(b"\x07" * 32)


class BeforeOwnFeed(OwnFeed):
    """The writer as it was before tombstone collection: tombstones count against the room."""

    def _tombstone_room(self, f):
        return 0, 0


def churn(seed: int, changes: int, live_target: int):
    """Yield ("put", key, value) / ("delete", key): a host's holdings coming and going."""
    rng = random.Random(seed)
    live: list[str] = []
    for n in range(changes):
        if len(live) < live_target or rng.random() < 0.02:
            cid = f"item-{n}"
            h = Holding(cid, f"{n:040x}"[-40:], 1_000_000_000 + n, "complete", "public", "local", 1_000_000_000 + n)
            live.append(cid)
            yield "put", holding_key(cid), encode_holding(h)
        else:
            i = rng.randrange(len(live))
            live[i], live[-1] = live[-1], live[i]
            yield "delete", holding_key(live.pop()), None


def run(variant: str, args) -> dict:
    fs = FeedSet()
    own = (BeforeOwnFeed if variant == "before" else OwnFeed)(KEY, fs)
    replica = FeedSet() if variant == "agent" else None
    now, last_gc = T0_MS, T0_MS
    peak_bytes = peak_entries = done = 0
    refused_at = None
    started = time.perf_counter()
    pending = 0
    for op, key, value in churn(args.seed, args.changes, args.live):
        try:
            if op == "put":
                own.put(key, value)
            else:
                own.delete(key)
        except InvalidInput:
            refused_at = done
            break
        done += 1
        pending += 1
        if pending == args.batch:
            pending = 0
            now += 1000
            own.commit(now)
            if variant == "agent" and now - last_gc >= feed_upkeep.GC_INTERVAL_MS:
                last_gc = now
                own.collect_tombstones(tombstone_horizon(own.feed, now, ttl_ms=feed_upkeep.TOMBSTONE_TTL_MS,
                                                         tombstones_floor=feed_upkeep.TOMBSTONES_FLOOR))
                for data in fs.deltas_since(replica.version_vector()):
                    replica.apply_delta(data)
            f = own.feed
            peak_bytes, peak_entries = max(peak_bytes, f.size_bytes), max(peak_entries, f.entry_count)
    own.commit(now + 1000)
    elapsed = time.perf_counter() - started
    f = own.feed
    out = {"variant": variant, "changes": done, "refused_at": refused_at, "peak_bytes": peak_bytes,
           "peak_entries": peak_entries, "final_bytes": f.size_bytes, "final_entries": f.entry_count,
           "tombstones": len(f.tombstone_keys()), "snapshot_bytes": len(encode_delta(f.delta_since(-1))),
           "live_bytes": sum(entry_bytes(k, v) for k, v in f.live_items()),
           "us_per_change": elapsed / max(1, done) * 1e6}
    if replica is not None:
        for data in fs.deltas_since(replica.version_vector()):
            replica.apply_delta(data)
        out["replica_identical"] = replica.state_key() == fs.state_key()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=1_000_000)
    ap.add_argument("--live", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(f"churn: {args.changes} holding changes, ~{args.live} live, {args.batch} per commit, seed {args.seed}; "
          f"entry limit {FEED_ENTRIES_MAX}")
    rows = [run(v, args) for v in ("before", "commit", "agent")]
    for r in rows:
        stop = f"refused at change {r['refused_at']}" if r["refused_at"] is not None else "no write refused"
        print(f"  {r['variant']:7s} {r['changes']:>9,} changes ({stop}); peak {r['peak_bytes'] / 1024:8.1f} KiB "
              f"/ {r['peak_entries']:>6} entries; final {r['final_bytes'] / 1024:8.1f} KiB / {r['final_entries']:>6} "
              f"entries ({r['tombstones']} tombstones); snapshot {r['snapshot_bytes'] / 1024:8.1f} KiB; "
              f"{r['us_per_change']:.1f} µs/change" + (f"; replica identical: {r['replica_identical']}"
                                                         if "replica_identical" in r else ""))
    agent = rows[2]
    print(f"agent / before peak bytes: {agent['peak_bytes'] / max(1, rows[0]['peak_bytes']):.2f}; "
          f"agent peak bytes / live bytes: {agent['peak_bytes'] / max(1, agent['live_bytes']):.2f} "
          f"(target: bounded by the live entries, ≤ ~2 + one GC interval of churn)")


if __name__ == "__main__":
    main()

"""Figures for the host feeds (issue 2), beside the plain automerge encoding of the same data.

    python bench/bench_state.py [--holdings 100000] [--hosts 50]

Data: ``--holdings`` holdings spread over ``--hosts`` hosts (content ids overlap between hosts, as
replicas do), each a Holding record (infohash, size, state, policy, source, bytes done).
Variants:
* ``feeds``     — crdt.feedset: one signed single-writer feed per host (this package).
* ``automerge`` — automerge 1.0.0rc1, map host → map content id → map of the 6 fields, each
  host writing with its own actor id (the "plain" encoding a CRDT-document design would use).
Every phase of every variant runs in a fresh subprocess, so RSS figures do not pollute each other:
build (+ save), load (time, RSS of the loaded state over the interpreter's baseline), the wire bytes
to bring a synced pair up to date after one changed holding (at two totals, to show it does not
depend on the total), and 100k overwrites of one host's entries (state bytes and RSS growth).
Targets: load ≤ 1 s, RSS ≤ 150 MB, one-holding delta ≤ 300 B independent of the total, no growth
under overwrites beyond the entries themselves.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crdt.records import Holding, encode_holding, holding_key

T0_MS = 1_700_000_000_000
OVERWRITES = 100_000
OVERWRITE_BATCH = 100  # overwrites per commit / transaction


class Stopwatch:
    """Wall and CPU seconds: the machine may be shared, and CPU time shows the work itself."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self, name: str) -> dict:
        return {name: time.perf_counter() - self.wall, name.replace("_s", "_cpu_s"): time.process_time() - self.cpu}


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            k, v = line.split(":")
            fields[k] = int(v.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def dataset(holdings: int, hosts: int):
    """host index → list of Holding; deterministic."""
    per = holdings // hosts
    out = {}
    for h in range(hosts):
        items = []
        for i in range(per):
            n = (h * per + i * 7) % (holdings * 3 // 5)  # ~40% of ids are held by two hosts
            cid = f"tmdb:{n:07d}"
            size = 1_000_000_000 + n * 4099
            done = size if i % 5 else size // 2
            items.append(Holding(cid, hashlib.sha1(cid.encode()).hexdigest(), size,
                                 "complete" if done == size else "partial",
                                 ("public", "f2f_only", "search_only")[i % 3], "local", done))
        # ids may collide within a host when the modulus wraps: keep one per id.
        out[h] = list({x.content_id: x for x in items}.values())
    return out


# --- variant: signed feeds ------------------------------------------------------------------------

def _feed_keys(hosts: int):
    from crdt.identity import NodeKey
    return [NodeKey(hashlib.sha256(b"bench-host-%d" % h).digest()) for h in range(hosts)]


def feeds_build(holdings: int, hosts: int, path: Path) -> dict:
    from crdt.feedset import FeedSet, OwnFeed
    data, keys = dataset(holdings, hosts), _feed_keys(hosts)
    t = Stopwatch()
    fs = FeedSet()
    deltas = []
    for h, items in data.items():
        own = OwnFeed(keys[h], fs)
        for x in items:
            own.put(holding_key(x.content_id), encode_holding(x))
        deltas.append(own.commit(T0_MS))
    build_s = t.stop("build_s")
    t = Stopwatch()
    replica = FeedSet()
    for d in deltas:
        replica.apply_delta(d)  # what a brand-new peer pays to verify a full sync
    ingest_s = t.stop("ingest_verified_s")
    assert replica.state_key() == fs.state_key()
    t = Stopwatch()
    blob = fs.to_bytes()
    path.write_bytes(blob)
    save_s = t.stop("save_s")
    return {**build_s, **ingest_s, **save_s, "state_bytes": len(blob),
            "full_sync_bytes": sum(map(len, deltas))}


def feeds_load(path: Path) -> dict:
    from crdt.feedset import FeedSet
    blob = path.read_bytes()
    base, _ = rss_mb()
    t = Stopwatch()
    fs = FeedSet.from_bytes(blob)
    load_s = t.stop("load_s")
    del blob
    rss, peak = rss_mb()
    t = Stopwatch()
    FeedSet.from_bytes(path.read_bytes(), verify=True)
    verify_s = t.stop("load_verified_s")
    n = sum(fs.feed(o).entry_count for o in fs.owners())
    return {**load_s, **verify_s, "rss_mb": rss, "state_rss_mb": rss - base,
            "peak_rss_mb": peak, "entries": n}


def _changed(items):
    x = items[7]
    return Holding(x.content_id, x.infohash, x.size_bytes, "partial", x.policy, x.source, x.bytes_done // 3)


def feeds_delta(holdings: int, hosts: int, path: Path) -> dict:
    from crdt.feedset import FeedSet, OwnFeed
    data, keys = dataset(holdings, hosts), _feed_keys(hosts)
    owner_side = FeedSet.from_bytes(path.read_bytes())
    other_side = FeedSet.from_bytes(path.read_bytes())  # a synced pair
    own = OwnFeed(keys[0], owner_side)
    x = _changed(data[0])
    own.put(holding_key(x.content_id), encode_holding(x))
    pushed = own.commit(T0_MS + 1)
    pulled = owner_side.deltas_since(other_side.version_vector())
    for d in pulled:
        other_side.apply_delta(d)
    assert other_side.state_key() == owner_side.state_key()
    return {"delta_bytes": len(pushed), "pull_bytes": sum(map(len, pulled))}


def feeds_overwrite(path: Path) -> dict:
    from crdt.feedset import FeedSet, OwnFeed
    fs = FeedSet.from_bytes(path.read_bytes())
    before_bytes = len(fs.to_bytes())
    rss0, _ = rss_mb()
    owner = fs.owners()[0]
    key = next(k for k in _feed_keys(256) if k.public == owner)
    own = OwnFeed(key, fs)
    keys = sorted(k for k, _ in fs.feed(owner).live_items())
    t = Stopwatch()
    for n in range(OVERWRITES):
        k = keys[n % len(keys)]
        own.put(k, fs.feed(owner).get(k)[:-1] + bytes([n % 251]))  # bytes_done's last byte changes
        if (n + 1) % OVERWRITE_BATCH == 0:
            own.commit(T0_MS + n)
    secs = t.stop("overwrite_s")
    rss1, _ = rss_mb()
    return {**secs, "state_bytes_before": before_bytes, "state_bytes_after": len(fs.to_bytes()),
            "rss_growth_mb": rss1 - rss0}


# --- variant: plain automerge ---------------------------------------------------------------------

def _am():
    from automerge import core
    return core


def _put_holding(core, tx, parent, x: Holding) -> None:
    m = tx.put_object(parent, x.content_id, core.ObjType.Map)
    tx.put(m, "infohash", core.ScalarType.Str, x.infohash)
    tx.put(m, "size_bytes", core.ScalarType.Int, x.size_bytes)
    tx.put(m, "state", core.ScalarType.Str, x.state)
    tx.put(m, "policy", core.ScalarType.Str, x.policy)
    tx.put(m, "source", core.ScalarType.Str, x.source)
    tx.put(m, "bytes_done", core.ScalarType.Int, x.bytes_done)


def _actor(h: int) -> bytes:
    return hashlib.sha256(b"bench-actor-%d" % h).digest()[:16]


def am_build(holdings: int, hosts: int, path: Path) -> dict:
    core = _am()
    data = dataset(holdings, hosts)
    t = Stopwatch()
    doc = core.Document(_actor(999))
    with doc.transaction() as tx:
        root = tx.put_object(core.ROOT, "hosts", core.ObjType.Map)
        for h in data:
            tx.put_object(root, f"host-{h}", core.ObjType.Map)
    for h, items in data.items():
        doc.set_actor(_actor(h))
        host = doc.get(root, f"host-{h}")[1]
        with doc.transaction() as tx:
            for x in items:
                _put_holding(core, tx, host, x)
    build_s = t.stop("build_s")
    t = Stopwatch()
    blob = doc.save()
    path.write_bytes(blob)
    save_s = t.stop("save_s")
    return {**build_s, **save_s, "state_bytes": len(blob)}


def am_load(path: Path) -> dict:
    core = _am()
    blob = path.read_bytes()
    base, _ = rss_mb()
    t = Stopwatch()
    doc = core.Document.load(blob)
    load_s = t.stop("load_s")
    del blob
    rss, peak = rss_mb()
    hosts = doc.get(core.ROOT, "hosts")[1]
    n = sum(doc.length(doc.get(hosts, h)[1]) for h in doc.keys(hosts))
    return {**load_s, "rss_mb": rss, "state_rss_mb": rss - base, "peak_rss_mb": peak, "entries": n}


def _sync_until_quiet(core, a, b, sa, sb) -> int:
    """Run the sync protocol both ways until neither side has anything to say; returns bytes sent."""
    sent = 0
    for _ in range(20):
        quiet = True
        for src, dst, s_src, s_dst in ((a, b, sa, sb), (b, a, sb, sa)):
            msg = src.generate_sync_message(s_src)
            if msg is not None:
                data = msg.encode()
                sent += len(data)
                dst.receive_sync_message(s_dst, core.Message.decode(data))
                quiet = False
        if quiet:
            break
    return sent


def am_delta(holdings: int, hosts: int, path: Path) -> dict:
    core = _am()
    data = dataset(holdings, hosts)
    a = core.Document.load(path.read_bytes())
    b = core.Document.load(path.read_bytes())
    a.set_actor(_actor(0))
    sa, sb = core.SyncState(), core.SyncState()
    _sync_until_quiet(core, a, b, sa, sb)  # a synced pair with warm sync states
    heads = a.get_heads()
    x = _changed(data[0])
    host = a.get(a.get(core.ROOT, "hosts")[1], "host-0")[1]
    rec = a.get(host, x.content_id)[1]
    with a.transaction() as tx:
        tx.put(rec, "state", core.ScalarType.Str, x.state)
        tx.put(rec, "bytes_done", core.ScalarType.Int, x.bytes_done)
    change_bytes = sum(len(c.raw_bytes) for c in a.get_changes(heads))
    sync_bytes = _sync_until_quiet(core, a, b, sa, sb)
    assert a.get_heads() == b.get_heads()
    return {"delta_bytes": change_bytes, "pull_bytes": sync_bytes}


def am_overwrite(path: Path) -> dict:
    core = _am()
    doc = core.Document.load(path.read_bytes())
    doc.set_actor(_actor(0))
    before_bytes = len(doc.save())
    rss0, _ = rss_mb()
    host = doc.get(doc.get(core.ROOT, "hosts")[1], "host-0")[1]
    recs = [doc.get(host, k)[1] for k in sorted(doc.keys(host))]
    t = Stopwatch()
    for start in range(0, OVERWRITES, OVERWRITE_BATCH):
        with doc.transaction() as tx:
            for n in range(start, start + OVERWRITE_BATCH):
                tx.put(recs[n % len(recs)], "bytes_done", core.ScalarType.Int, n)
    secs = t.stop("overwrite_s")
    rss1, _ = rss_mb()
    return {**secs, "state_bytes_before": before_bytes, "state_bytes_after": len(doc.save()),
            "rss_growth_mb": rss1 - rss0}


PHASES = {
    ("feeds", "build"): lambda a, p: feeds_build(a.holdings, a.hosts, p),
    ("feeds", "load"): lambda a, p: feeds_load(p),
    ("feeds", "delta"): lambda a, p: feeds_delta(a.holdings, a.hosts, p),
    ("feeds", "overwrite"): lambda a, p: feeds_overwrite(p),
    ("automerge", "build"): lambda a, p: am_build(a.holdings, a.hosts, p),
    ("automerge", "load"): lambda a, p: am_load(p),
    ("automerge", "delta"): lambda a, p: am_delta(a.holdings, a.hosts, p),
    ("automerge", "overwrite"): lambda a, p: am_overwrite(p),
}


def run_phase(variant: str, phase: str, holdings: int, hosts: int, path: Path) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, "--variant", variant, "--holdings", str(holdings),
           "--hosts", str(hosts), "--file", str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{variant}/{phase} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--holdings", type=int, default=100_000)
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--small", type=int, default=2_000, help="the smaller total for the delta figure")
    ap.add_argument("--phase")
    ap.add_argument("--variant")
    ap.add_argument("--file")
    a = ap.parse_args()
    if a.phase:
        print(json.dumps(PHASES[(a.variant, a.phase)](a, Path(a.file))))
        return
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("feeds", "automerge"):
            big, small = Path(tmp, f"{variant}.big"), Path(tmp, f"{variant}.small")
            r = run_phase(variant, "build", a.holdings, a.hosts, big)
            r |= run_phase(variant, "load", a.holdings, a.hosts, big)
            r |= run_phase(variant, "delta", a.holdings, a.hosts, big)
            run_phase(variant, "build", a.small, a.hosts, small)
            r |= {f"small_{k}": v for k, v in run_phase(variant, "delta", a.small, a.hosts, small).items()}
            r |= run_phase(variant, "overwrite", a.holdings, a.hosts, big)
            results[variant] = r
    f, m = results["feeds"], results["automerge"]
    rows = [
        ("entries loaded", "{:.0f}", "entries", ""),
        ("build (s)", "{:.2f}", "build_s", ""),
        ("  replica ingest, verified (s)", "{:.2f}", "ingest_verified_s", ""),
        ("save (s)", "{:.2f}", "save_s", ""),
        ("state file (MB)", "{:.1f}", "state_bytes", "mb"),
        ("load (s)  [target <= 1]", "{:.2f}", "load_s", ""),
        ("  load with full re-verify (s)", "{:.2f}", "load_verified_s", ""),
        ("RSS after load (MB)  [target <= 150]", "{:.0f}", "rss_mb", ""),
        ("  of which the state (MB)", "{:.0f}", "state_rss_mb", ""),
        (f"1-holding delta (B), total {a.holdings}  [<= 300]", "{:.0f}", "delta_bytes", ""),
        (f"  wire to resync pair (B), total {a.holdings}", "{:.0f}", "pull_bytes", ""),
        (f"1-holding delta (B), total {a.small // a.hosts * a.hosts}", "{:.0f}", "small_delta_bytes", ""),
        (f"  wire to resync pair (B), total {a.small // a.hosts * a.hosts}", "{:.0f}", "small_pull_bytes", ""),
        (f"{OVERWRITES // 1000}k overwrites of one host (s)", "{:.2f}", "overwrite_s", ""),
        ("  state bytes before (MB)", "{:.2f}", "state_bytes_before", "mb"),
        ("  state bytes after (MB)", "{:.2f}", "state_bytes_after", "mb"),
        ("  RSS growth (MB)", "{:.1f}", "rss_growth_mb", ""),
    ]
    print(f"{a.holdings} holdings across {a.hosts} hosts; each phase in a fresh process\n")
    print("times are 'wall / CPU' seconds (CPU time is what the work costs on a shared machine)\n")
    print(f"{'figure':<52} {'signed feeds':>14} {'automerge':>14}")
    for label, fmt, key, unit in rows:
        cells = []
        for r in (f, m):
            v = r.get(key)
            if v is None:
                cells.append("-")
            elif key.endswith("_s"):
                cells.append(f"{v:.2f} / {r[key.replace('_s', '_cpu_s')]:.2f}")
            else:
                cells.append(fmt.format(v / 1e6 if unit == "mb" else v))
        print(f"{label:<52} {cells[0]:>14} {cells[1]:>14}")
    print("\nfeeds: 'delta' is the eager push after commit; 'wire to resync' is a pull by version vector.")
    print("automerge: 'delta' is the raw change bytes; 'wire to resync' sums the sync-protocol messages"
          " exchanged until both sides are quiet.")


if __name__ == "__main__":
    main()

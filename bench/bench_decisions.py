"""Figures for the signed decision log (issue 12), beside automerge in the same run.

Run: .venv/bin/python bench/bench_decisions.py [--members 1000] [--changes 200] [--sim-nodes 100]

1. The spike: the cost to receive, verify and apply one authorized decision change (a member's
   pin) on a replica holding ``--members`` admissions — the signed log's sync message (signature,
   causal-past rights check, fold) vs automerge 1.0.0rc1's ``receive_sync_message`` on a fork (what
   the old wrapper did for every message; it checked nothing). Medians over ``--changes`` changes.
2. Load (every op verified again) and size on disk, per op.
3. A fleet key rotation: sealing to every member, and the op's size.
4. Rotation → every live member holds the new key: the mesh core over a simulated LAN of
   ``--sim-nodes`` nodes with real replicas (time until the last replica holds the rotation, plus
   the fixed switch delay). The 3-process figure is measured by
   tests/agent/test_fleet_key_rotation.py's scenario; run it with ``--processes``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent import secrets  # noqa: E402
from crdt.fleetdoc import FleetDoc  # noqa: E402
from crdt.identity import NodeKey  # noqa: E402


def _fleet(members: int) -> tuple[FleetDoc, list[NodeKey]]:
    keys = [NodeKey(os.urandom(32)) for _ in range(members)]
    doc = FleetDoc.genesis("bench", keys[0], "h0", 1, os.urandom(16))
    for i, k in enumerate(keys[1:], 1):
        doc.admit(k.peer_id, f"h{i}", "member", None, 1 + i * 2_000)  # within the per-author rate
    return doc, keys


def spike_signed(members: int, changes: int) -> dict:
    owner, keys = _fleet(members)
    member = owner.clone(keys[1])
    receiver = owner.clone(keys[2])
    peer = keys[1].peer_id
    for _ in range(3):  # one hello each way: from then on a change travels in one message
        for src, dst, to, frm in ((member, receiver, keys[2].peer_id, peer), (receiver, member, peer, keys[2].peer_id)):
            m = src.sync_message_for(to)
            if m is not None:
                dst.receive_sync_message(frm, m)
    times = []
    for i in range(changes):
        member.pin(f"item-{i}", 1, None, 10**11 + i)
        msg = member.sync_message_for(keys[2].peer_id)
        # the receiver's reply tells the member what it holds; only the change's message is timed
        t0 = time.perf_counter()
        assert receiver.receive_sync_message(peer, msg)
        times.append(time.perf_counter() - t0)
        back = receiver.sync_message_for(peer)
        if back is not None:
            member.receive_sync_message(keys[2].peer_id, back)
    return {"median_us": statistics.median(times) * 1e6, "p90_us": _pct(times, 0.9) * 1e6,
            "message_bytes": len(msg)}


def spike_automerge(members: int, changes: int) -> dict:
    from automerge import core

    doc = core.Document(b"owner-actor-0001")
    with doc.transaction() as tx:
        adm = tx.put_object(core.ROOT, "admissions", core.ObjType.Map)
        pins = tx.put_object(core.ROOT, "pins", core.ObjType.Map)
        for i in range(members):
            rec = tx.put_object(adm, f"peer-{i:05d}", core.ObjType.Map)
            tx.put(rec, "role", core.ScalarType.Str, "member")
            tx.put(rec, "at_ms", core.ScalarType.Int, i)
    member = doc.fork()
    member.set_actor(b"member-actor-001")
    receiver = doc.fork()
    receiver.set_actor(b"recvr-actor-0001")
    s_m, s_r = core.SyncState(), core.SyncState()
    _am_sync(member, receiver, s_m, s_r)
    times = []
    for i in range(changes):
        with member.transaction() as tx:
            rec = tx.put_object(pins, f"item-{i}", core.ObjType.Map)
            tx.put(rec, "min", core.ScalarType.Int, 1)
            tx.put(rec, "at_ms", core.ScalarType.Int, i)
        msg = member.generate_sync_message(s_m)
        data = msg.encode()
        t0 = time.perf_counter()
        work = receiver.fork()  # the old wrapper applied every message to a fork, then swapped
        work.set_actor(b"recvr-actor-0001")
        work.receive_sync_message(s_r, core.Message.decode(data))
        receiver = work
        times.append(time.perf_counter() - t0)
        _am_sync(member, receiver, s_m, s_r)
    return {"median_us": statistics.median(times) * 1e6, "p90_us": _pct(times, 0.9) * 1e6,
            "message_bytes": len(data)}


def _am_sync(a, b, sa, sb) -> None:
    for _ in range(6):
        quiet = True
        for src, dst, s_src, s_dst in ((a, b, sa, sb), (b, a, sb, sa)):
            m = src.generate_sync_message(s_src)
            if m is not None:
                quiet = False
                dst.receive_sync_message(s_dst, m)
        if quiet:
            return


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def load_and_size(members: int) -> dict:
    doc, keys = _fleet(members)
    data = doc.save()
    t0 = time.perf_counter()
    FleetDoc.load(data, keys[1])
    return {"ops": members, "load_s": time.perf_counter() - t0, "bytes_per_op": len(data) / members}


def rotation(members: int) -> dict:
    doc, keys = _fleet(members)
    t0 = time.perf_counter()
    sealed = secrets.seal_for_members(secrets.new_psk(), doc.members())
    seal_s = time.perf_counter() - t0
    doc.rotate_psk(1, sealed, 10**11)
    op = doc.ops()[-1]
    t0 = time.perf_counter()
    secrets.current_key(doc, keys[members // 2])
    return {"members": members, "seal_ms": seal_s * 1000, "op_bytes": op.size,
            "open_ms": (time.perf_counter() - t0) * 1000}


def rotation_in_mesh(nodes: int, seed: int) -> dict:
    """Simulated LAN (the mesh-core test harness, real replicas): revoke + rotation made on node 0
    → the time until every remaining replica holds the rotation, and when all will have switched."""
    from mesh.core import LocalChanged, MembersChanged, MeshConfig, MeshNode
    from tests.mesh.harness import Harness, Net

    owner, keys = _fleet(nodes)
    ids = [k.peer_id for k in keys]
    h = Harness(nodes, seed=seed, names=ids, net=Net(loss=0.0, dup=0.0, delay_ms_max=5))
    docs = {k.peer_id: owner.clone(k) for k in keys}
    feeds = {p: _NoFeeds() for p in ids}
    for i, p in enumerate(ids):
        h.nodes[p] = MeshNode(p, MeshConfig(), feeds[p], docs[p], random.Random(seed + i))
        h.handle(p, MembersChanged(frozenset(ids)))
    h.run_until(3_000)
    revoked = ids[-1]
    start = h.now
    docs[ids[0]].revoke(revoked, "bench", 10**11)
    sealed = secrets.seal_for_members(secrets.new_psk(), docs[ids[0]].members())
    docs[ids[0]].rotate_psk(1, sealed, 10**11)
    h.handle(ids[0], LocalChanged(doc_changed=True))
    holders = [p for p in ids if p != revoked]
    while h.now < start + 30_000:
        h.run_until(h.now + 50)
        if all(docs[p].psk_rotation() is not None for p in holders):
            break
    spread_ms = h.now - start
    return {"nodes": nodes, "spread_ms": spread_ms, "all_switched_ms": max(spread_ms, secrets.SWITCH_DELAY_MS)}


class _NoFeeds:
    def version_vector(self) -> dict:
        return {}

    def deltas_since(self, vv, bytes_max):
        return []

    def apply_delta(self, data):
        raise AssertionError("no feeds in this bench")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--sim-nodes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(f"bench_decisions: members={args.members} changes={args.changes} sim_nodes={args.sim_nodes} "
          f"seed={args.seed} cpus={os.cpu_count()}")
    signed, am = spike_signed(args.members, args.changes), spike_automerge(args.members, args.changes)
    print(f"\n1. receive + verify + apply one member's pin, {args.members} admitted hosts")
    print(f"{'':<34}{'median µs':>11}{'p90 µs':>10}{'message B':>11}")
    print(f"{'signed log (rights checked)':<34}{signed['median_us']:>11.0f}{signed['p90_us']:>10.0f}"
          f"{signed['message_bytes']:>11}")
    print(f"{'automerge rc1, fork + receive':<34}{am['median_us']:>11.0f}{am['p90_us']:>10.0f}{am['message_bytes']:>11}")
    print(f"signed log = {signed['median_us'] / am['median_us']:.0%} of automerge's time (and it checks rights)")
    print("\n2. load with every op verified again")
    for n in (1_000, 10_000):
        r = load_and_size(n)
        print(f"  {n:>6} ops: {r['load_s']:.2f} s, {r['bytes_per_op']:.0f} B/op on disk")
    print("\n3. fleet key rotation")
    for n in (100, 1_000):
        r = rotation(n)
        print(f"  {n:>5} members: seal {r['seal_ms']:.0f} ms, op {r['op_bytes'] / 1024:.0f} KiB, "
              f"open one {r['open_ms']:.2f} ms")
    r = rotation_in_mesh(args.sim_nodes, args.seed)
    print(f"\n4. rotation → held by every live member, {r['nodes']} simulated nodes (LAN): {r['spread_ms']} ms; "
          f"all switched at the fixed {secrets.SWITCH_DELAY_MS} ms delay: {r['all_switched_ms']} ms")


if __name__ == "__main__":
    main()

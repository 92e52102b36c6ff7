"""What signed liveness and presence cost in CPU (issue 12, item 3).

    python bench/bench_signing.py [--nodes 30] [--seconds 300]

1. Ed25519 sign / verify / cache hit, in µs (``crdt.identity``, ``mesh.core.signing``).
2. The same fleet run twice in this process (the deterministic core harness: every node, its
   timers, a lossy network), once with real signatures and once with a null signer that checks
   nothing — the baseline. Every node changes its soft state every 20 s on average, far more
   than a real fleet (disk free moving by >1 %). Prints CPU per node per simulated second for
   both, the overhead, and how many signatures each node made and checked per minute.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crdt.identity import NodeKey, verify
from mesh.core import MembersChanged, MeshConfig, MeshNode, SetSoftState
from mesh.core.signing import CachingVerifier
from tests.mesh.harness import Harness, Net, named_key


def micro() -> None:
    k = NodeKey(bytes(range(32)))
    msg = b"tva/mesh-presence/2\0" + bytes(120)
    sig = k.sign(msg)
    n = 2000
    t = time.perf_counter()
    for _ in range(n):
        k.sign(msg)
    sign_us = (time.perf_counter() - t) / n * 1e6
    t = time.perf_counter()
    for _ in range(n):
        verify(k.public, sig, msg)
    verify_us = (time.perf_counter() - t) / n * 1e6
    cache = CachingVerifier(lambda p, s, m: verify(k.public, s, m))
    cache(k.peer_id, sig, msg)
    t = time.perf_counter()
    for _ in range(n):
        cache(k.peer_id, sig, msg)
    hit_us = (time.perf_counter() - t) / n * 1e6
    print(f"Ed25519: sign {sign_us:.0f} µs, verify {verify_us:.0f} µs, cached verdict {hit_us:.1f} µs")


class NullKey:
    """The baseline: signs nothing, and its verifier accepts everything."""

    def __init__(self, peer_id: str) -> None:
        self.peer_id = peer_id

    def sign(self, message: bytes) -> bytes:
        return b"\0" * 64


class Counting:
    def __init__(self, inner) -> None:
        self.inner, self.n = inner, 0

    def __call__(self, *args):
        self.n += 1
        return self.inner(*args)


def run(nodes: int, seconds: int, *, real: bool) -> tuple[float, int, int]:
    h = Harness(nodes, seed=7, config=MeshConfig(), net=Net(loss=0.02, delay_ms_max=20))
    # real: every check is a real Ed25519 verification (no cache shared between the nodes)
    checks = Counting((lambda p, s, m: verify(named_key(p).key.public, s, m)) if real else (lambda p, s, m: True))
    signers = {}
    for i, p in enumerate(h.ids):
        signer = named_key(p) if real else NullKey(p)
        signers[p] = Counting(signer.sign)
        wrapped = type("S", (), {"peer_id": p, "sign": staticmethod(signers[p])})()
        h.nodes[p] = MeshNode(p, h.config, h.feeds[p], h.docs[p], random.Random(i), signer=wrapped, verify=checks)
        h.handle(p, MembersChanged(frozenset(h.ids)))
        h.handle(p, SetSoftState(10**12 + i, 0.5, (), "desktop"))
    rng = random.Random(1)
    for t in range(0, seconds * 1000, 1000):  # soft-state changes, ~1 per node per 20 s
        for p in h.ids:
            if rng.random() < 1 / 20:
                h.at(t, p, SetSoftState(10**12 + rng.randrange(10**9), 0.5, (), "desktop"))
    cpu = time.process_time()
    h.run_until(seconds * 1000)
    cpu = time.process_time() - cpu
    return cpu, sum(s.n for s in signers.values()), checks.n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=30)
    ap.add_argument("--seconds", type=int, default=300)
    args = ap.parse_args()
    micro()
    base_cpu, _, _ = run(args.nodes, args.seconds, real=False)
    cpu, signs, checks = run(args.nodes, args.seconds, real=True)
    per = 1e3 / (args.nodes * args.seconds)
    minutes = args.seconds / 60
    print(f"{args.nodes} nodes, {args.seconds} s simulated, a soft-state change per node per ~20 s:")
    print(f"  null signer (baseline) {base_cpu * per:6.2f} ms CPU per node-second")
    print(f"  Ed25519 signed         {cpu * per:6.2f} ms CPU per node-second "
          f"(+{(cpu - base_cpu) * per:.2f} ms, +{(cpu / base_cpu - 1) * 100:.0f} %)")
    print(f"  per node per minute: {signs / args.nodes / minutes:.1f} signatures made, "
          f"{checks / args.nodes / minutes:.1f} checked")


if __name__ == "__main__":
    main()

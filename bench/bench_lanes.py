"""Ping round-trip while a 4 MiB delta is in flight, against idle (issue 14, item 7).

    python bench/bench_lanes.py [--rounds 20] [--bulk-mib 4]

Two OS processes on loopback over real libp2p (Noise + PSK): this one sends, an echo process
answers every small frame at once and swallows bulk ones. Measured in the same run:
  idle       ping round-trip with nothing else on the wire
  lanes      the same while a ``--bulk-mib`` frame is in flight on the bulk lane (how the mesh
             sends deltas now: ``Send.bulk`` → ``/tva/bulk/2``)
  one lane   baseline: the big frame on the same stream as the ping (how deltas travelled before:
             one FIFO stream per peer), so the ping waits behind it
Prints median / p90 / max in ms for each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mesh.libp2p_transport import Libp2pTransport  # noqa: E402
from mesh.transport import MiB, TransportLimits  # noqa: E402

LIMITS = TransportLimits(dial_timeout_ms=20_000, send_timeout_ms=60_000)
PING_BYTES = 40  # about a mesh ping with a small piggyback


async def echo(seed: bytes, psk: bytes) -> None:
    t = Libp2pTransport(seed, psk, limits=LIMITS)
    async with trio.open_nursery() as nursery:
        await nursery.start(t.run)
        print(json.dumps({"peer": t.local_peer, "addrs": t.listen_addrs()}), flush=True)
        async for peer, frame in t.incoming():
            if len(frame) <= PING_BYTES:
                await t.send(peer, frame)


async def measure(rounds: int, bulk_mib: int) -> None:
    psk = os.urandom(32)
    proc = subprocess.Popen([sys.executable, __file__, "--echo", os.urandom(32).hex(), psk.hex()],
                            stdout=subprocess.PIPE, cwd=ROOT)
    try:
        hello = json.loads(proc.stdout.readline())
        a = Libp2pTransport(os.urandom(32), psk, limits=LIMITS)
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run)
            peer = hello["peer"]
            a.add_peer_addrs(peer, hello["addrs"])
            replies = a.incoming()
            seq = 0

            async def ping() -> float:
                nonlocal seq
                seq += 1
                token = b"ping %d" % seq
                t0 = time.perf_counter()
                assert await a.send(peer, token)
                while (await replies.receive())[1] != token:
                    pass
                return (time.perf_counter() - t0) * 1000

            big = os.urandom(bulk_mib * MiB)
            for _ in range(5):  # warm up: dial, both lanes' streams and hellos
                await ping()
                await a.send(peer, big[:1000], bulk=True)
                await a.send(peer, big[:1000] + b"x" * PING_BYTES)

            async def with_big_frame_in_flight(bulk: bool) -> float:
                async with trio.open_nursery() as inner:
                    inner.start_soon(lambda: a.send(peer, big, bulk=bulk))
                    await trio.sleep(0.005)  # the big write has started
                    return await ping()

            results = {"idle": [], "lanes": [], "one lane": []}
            for _ in range(rounds):  # interleaved, so load on the machine hits all three alike
                results["idle"].append(await ping())
                results["lanes"].append(await with_big_frame_in_flight(bulk=True))
                results["one lane"].append(await with_big_frame_in_flight(bulk=False))
                await trio.sleep(0.2)  # let the echo side swallow the big frames
            print(f"ping round-trip over libp2p on loopback, {rounds} rounds, a {bulk_mib} MiB frame in flight:")
            for name, xs in results.items():
                xs.sort()
                print(f"  {name:9s} median {statistics.median(xs):7.1f} ms   p90 {xs[int(0.9 * (len(xs) - 1))]:7.1f} ms"
                      f"   max {xs[-1]:7.1f} ms")
            idle, lanes, fifo = (statistics.median(results[k]) for k in ("idle", "lanes", "one lane"))
            print(f"  lanes vs idle: {lanes / idle:.1f}x; one lane vs idle: {fifo / idle:.1f}x; "
                  f"the bulk lane saves {fifo - lanes:.0f} ms a ping (median)")
            nursery.cancel_scope.cancel()
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--echo":
        trio.run(echo, bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--bulk-mib", type=int, default=4)
    args = ap.parse_args()
    trio.run(measure, args.rounds, args.bulk_mib)


if __name__ == "__main__":
    main()

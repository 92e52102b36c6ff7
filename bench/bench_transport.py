"""Figures for the mesh transports (issue 4). Loopback only; no root needed.

    python bench/bench_transport.py [--frames N] [--requests N]

1. One-way frame throughput a→b (1 KiB frames): Libp2pTransport's persistent stream, against a
   baseline in the same run of one new libp2p stream per frame (what a naive shell would do),
   and the MemoryTransport for scale.
2. Round-trip latency of a small query: Libp2pTransport.request (a stream per request), against
   a baseline in the same run of an echo over one persistent stream.
3. Time to first frame to a new peer (dial + Noise + PSK + stream).
Prints medians / rates.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crdt.identity import NodeKey
from mesh.framing import FrameDecoder, encode_frame
from mesh.libp2p_transport import FRAMES_PROTOCOL, Libp2pTransport
from mesh.memory_transport import MemoryNetwork

FRAME = os.urandom(1024)


async def drain(node, n: int) -> None:
    for _ in range(n):
        await node.incoming().receive()


async def libp2p_pair(nursery):
    psk = os.urandom(32)
    a, b = Libp2pTransport(os.urandom(32), psk), Libp2pTransport(os.urandom(32), psk)
    await nursery.start(a.run)
    await nursery.start(b.run)
    a.add_peer_addrs(b.local_peer, b.listen_addrs())
    return a, b


async def bench(frames: int, requests: int) -> None:
    async with trio.open_nursery() as nursery:
        a, b = await libp2p_pair(nursery)
        t0 = time.perf_counter()
        assert await a.send(b.local_peer, FRAME)
        await b.incoming().receive()
        print(f"first frame to a new peer (dial+noise+psk+stream): {(time.perf_counter() - t0) * 1e3:.0f} ms")

        async def timed_sends(frame: bytes, n: int) -> float:
            t = time.perf_counter()
            async with trio.open_nursery() as inner:
                inner.start_soon(drain, b, n)
                for _ in range(n):
                    assert await a.send(b.local_peer, frame)
            return time.perf_counter() - t

        dt = await timed_sends(FRAME, frames)
        print(f"libp2p persistent stream: {frames / dt:,.0f} frames/s ({frames * 1024 / dt / 1e6:.1f} MB/s)")
        big, n_big = os.urandom(64 * 1024), max(frames // 10, 20)
        dt = await timed_sends(big, n_big)
        print(f"libp2p persistent stream, 64 KiB frames: {n_big * len(big) / dt / 1e6:.1f} MB/s")

        # Baseline: a new stream per frame, through the same host and the same reader.
        host, pid = a._host, b._host.get_id()
        t = time.perf_counter()
        async with trio.open_nursery() as inner:
            n_base = max(frames // 10, 50)
            inner.start_soon(drain, b, n_base)
            for _ in range(n_base):
                s = await host.new_stream(pid, [FRAMES_PROTOCOL])
                await s.write(encode_frame(FRAME, 1 << 22))
                await s.close()
        dt_base = time.perf_counter() - t
        print(f"baseline, new stream per frame: {n_base / dt_base:,.0f} frames/s")

        async def status(peer: str, payload: bytes) -> bytes:
            return b"ok:" + payload

        b.set_request_handler(status)
        rtts = []
        for _ in range(requests):
            t = time.perf_counter()
            await b_request(a, b)
            rtts.append(time.perf_counter() - t)
        print(f"request (stream per request): median {statistics.median(rtts) * 1e3:.2f} ms, "
              f"p95 {sorted(rtts)[int(len(rtts) * 0.95)] * 1e3:.2f} ms")

        # Baseline: echo over one persistent stream (the floor for a round trip here).
        async def echo(stream) -> None:
            try:
                while True:
                    await stream.write(await stream.read(65536))
            except Exception:
                return

        b._host.set_stream_handler("/bench/echo/1", echo)
        s = await host.new_stream(pid, ["/bench/echo/1"])
        echo_rtts = []
        dec = FrameDecoder(1 << 20)
        for _ in range(requests):
            t = time.perf_counter()
            await s.write(encode_frame(b"status", 1 << 20))
            while not dec.feed(await s.read(65536)):
                pass
            echo_rtts.append(time.perf_counter() - t)
        print(f"baseline, echo on a persistent stream: median {statistics.median(echo_rtts) * 1e3:.2f} ms")
        nursery.cancel_scope.cancel()

    net = MemoryNetwork()
    m_a, m_b = net.transport(NodeKey(os.urandom(32)).peer_id), net.transport(NodeKey(os.urandom(32)).peer_id)
    async with trio.open_nursery() as nursery:
        await nursery.start(m_a.run)
        await nursery.start(m_b.run)
        m_a.add_peer_addrs(m_b.local_peer, m_b.listen_addrs())
        n_mem = frames * 10
        t = time.perf_counter()
        async with trio.open_nursery() as inner:
            inner.start_soon(drain, m_b, n_mem)
            for _ in range(n_mem):
                await m_a.send(m_b.local_peer, FRAME)
                await trio.lowlevel.checkpoint()
        print(f"memory transport: {n_mem / (time.perf_counter() - t):,.0f} frames/s")
        nursery.cancel_scope.cancel()


async def b_request(a, b) -> bytes:
    return await a.request(b.local_peer, b"status", timeout_ms=5_000)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    trio.run(bench, args.frames, args.requests)

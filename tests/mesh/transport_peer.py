"""A Libp2pTransport in its own OS process, driven by JSON lines on stdin (used by the tests).

    python -m tests.mesh.transport_peer --seed HEX --psk HEX [--port N]

Prints ``{"event": "listening", "peer": ..., "addrs": [...]}`` once up, then one JSON line per
event. Commands (one JSON object per line on stdin):
  {"cmd": "peers", "peers": {peer: [addrs]}}        learn addresses
  {"cmd": "broadcast", "data": str}                 a frame and a status query to every known peer
  {"cmd": "send", "to": peer, "data": str}          one frame
  {"cmd": "stats"}                                  the transport's counters
  {"cmd": "quit"} (or end of input)                 clean shutdown, exit status 0
Every received frame is printed as {"event": "frame", "from": peer, "data": str}.
"""

from __future__ import annotations

import argparse
import json
import sys

import trio

from mesh.libp2p_transport import Libp2pTransport
from mesh.transport import TransportLimits

LIMITS = TransportLimits(dial_timeout_ms=3_000, backoff_initial_ms=200, backoff_max_ms=1_000)
RETRY_FOR_S = 40  # generous: CI machines are small and busy


def emit(**event: object) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


async def main(seed: bytes, psk: bytes, port: int) -> None:
    t = Libp2pTransport(seed, psk, limits=LIMITS, listen_addrs=(f"/ip4/127.0.0.1/tcp/{port}",))
    known: set[str] = set()

    async def status(peer: str, payload: bytes) -> bytes:
        return b"status:" + t.local_peer.encode() + b":" + payload

    t.set_request_handler(status)

    async def print_frames() -> None:
        async for peer, frame in t.incoming():
            emit(event="frame", **{"from": peer}, data=frame.decode())

    async def greet(peer: str, data: str, results: dict) -> None:
        with trio.move_on_after(RETRY_FOR_S):
            while not await t.send(peer, data.encode()):
                await trio.sleep(0.2)
            results["sent"][peer] = True
            while True:
                try:
                    reply = await t.request(peer, b"status", timeout_ms=3_000)
                except Exception as exc:  # report, retry: the test decides what is acceptable
                    results["errors"].append(repr(exc))
                    await trio.sleep(0.2)
                    continue
                results["replies"][peer] = reply.decode()
                return

    async with trio.open_nursery() as nursery:
        await nursery.start(t.run)
        nursery.start_soon(print_frames)
        emit(event="listening", peer=t.local_peer, addrs=t.listen_addrs())
        stdin = trio.wrap_file(sys.stdin)
        async for line in stdin:
            cmd = json.loads(line)
            if cmd["cmd"] == "peers":
                for peer, addrs in cmd["peers"].items():
                    if peer != t.local_peer:
                        t.add_peer_addrs(peer, addrs)
                        known.add(peer)
            elif cmd["cmd"] == "broadcast":
                results: dict = {"sent": {}, "replies": {}, "errors": []}
                async with trio.open_nursery() as greeters:
                    for peer in sorted(known):
                        greeters.start_soon(greet, peer, cmd["data"], results)
                emit(event="broadcast_done", **results)
            elif cmd["cmd"] == "send":
                emit(event="sent", to=cmd["to"], ok=await t.send(cmd["to"], cmd["data"].encode()))
            elif cmd["cmd"] == "stats":
                emit(event="stats", stats=t.stats())
            elif cmd["cmd"] == "quit":
                break
        nursery.cancel_scope.cancel()
    emit(event="bye")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", required=True)
    ap.add_argument("--psk", required=True)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    trio.run(main, bytes.fromhex(args.seed), bytes.fromhex(args.psk), args.port)

"""Real libp2p between separate OS processes on loopback, including a SIGKILL and a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import trio

from mesh.libp2p_transport import Libp2pTransport
from mesh.transport import TransportLimits
from tests.conftest import require_soak

ROOT = Path(__file__).resolve().parents[2]
STARTUP_S = 60
LIMITS = TransportLimits(dial_timeout_ms=3_000, backoff_initial_ms=200, backoff_max_ms=1_000)


class Peer:
    """One ``tests.mesh.transport_peer`` process and a line reader over its stdout."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self._buf = b""
        self.peer = ""
        self.addrs: list[str] = []

    @classmethod
    async def start(cls, seed: bytes, psk: bytes, port: int = 0) -> Peer:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "tests.mesh.transport_peer", "--seed", seed.hex(), "--psk", psk.hex(),
             "--port", str(port)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        p = cls(proc)
        try:
            # Generous: ~1 s of imports per process, much longer on a loaded 2-core CI box.
            hello = await p.expect("listening", timeout_s=STARTUP_S)
        except BaseException:
            p.kill()
            raise
        p.peer, p.addrs = hello["peer"], hello["addrs"]
        return p

    async def command(self, **cmd: object) -> None:
        await self.proc.stdin.send_all((json.dumps(cmd) + "\n").encode())

    async def event(self) -> dict:
        while b"\n" not in self._buf:
            chunk = await self.proc.stdout.receive_some(65536)
            if not chunk:
                raise EOFError("peer process closed its stdout")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    async def expect(self, kind: str, timeout_s: float = 20, seen: list | None = None) -> dict:
        with trio.fail_after(timeout_s):
            while True:
                ev = await self.event()
                if ev["event"] == kind:
                    return ev
                if seen is not None:
                    seen.append(ev)

    async def quit(self) -> int:
        await self.command(cmd="quit")
        await self.expect("bye", timeout_s=10)
        with trio.fail_after(10):
            return await self.proc.wait()

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)


async def test_five_processes_exchange_frames_and_queries():
    psk = os.urandom(32)
    peers: list[Peer] = []
    try:
        async with trio.open_nursery() as nursery:
            async def launch():
                peers.append(await Peer.start(os.urandom(32), psk))

            for _ in range(5):
                nursery.start_soon(launch)
        book = {p.peer: p.addrs for p in peers}
        for p in peers:
            await p.command(cmd="peers", peers=book)
            await p.command(cmd="broadcast", data=f"hello from {p.peer}")
        for p in peers:
            frames: list[dict] = []
            done = await p.expect("broadcast_done", timeout_s=STARTUP_S, seen=frames)
            others = {q.peer for q in peers if q is not p}
            assert set(done["sent"]) == others
            assert done["replies"] == {q: f"status:{q}:status" for q in others}
            p.frames = frames  # type: ignore[attr-defined]
        for p in peers:
            frames = p.frames  # type: ignore[attr-defined]
            while len(frames) < 4:
                frames.append(await p.expect("frame", timeout_s=10))
            assert {(f["from"], f["data"]) for f in frames if f["event"] == "frame"} == {
                (q.peer, f"hello from {q.peer}") for q in peers if q is not p
            }
        codes: list[int] = []

        async def quit_one(p: Peer) -> None:
            codes.append(await p.quit())

        async with trio.open_nursery() as nursery:
            for p in peers:
                nursery.start_soon(quit_one, p)
        assert codes == [0] * 5
    finally:
        for p in peers:
            p.kill()


async def test_killed_process_is_detected_and_its_restart_reconnects():
    psk, b_seed = os.urandom(32), os.urandom(32)
    a = Libp2pTransport(os.urandom(32), psk, limits=LIMITS)
    b = None
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        try:
            b = await Peer.start(b_seed, psk)
            port = int(b.addrs[0].split("/tcp/")[1].split("/")[0])
            a.add_peer_addrs(b.peer, b.addrs)
            await b.command(cmd="peers", peers={a.local_peer: a.listen_addrs()})
            assert await a.send(b.peer, b"before")
            assert (await b.expect("frame"))["data"] == "before"

            b.kill()  # SIGKILL: no goodbye, the kernel just closes its sockets
            await b.proc.wait()
            with trio.fail_after(10):
                while await a.send(b.peer, b"into the void"):
                    await trio.sleep(0.05)
            assert not a.is_connected(b.peer)

            b = await Peer.start(b_seed, psk, port=port)  # same identity, same address
            await b.command(cmd="peers", peers={a.local_peer: a.listen_addrs()})
            with trio.fail_after(10):
                while not await a.send(b.peer, b"after"):
                    await trio.sleep(0.1)
            assert (await b.expect("frame"))["data"] == "after"
            # And the restarted node reaches us on its own.
            await b.command(cmd="send", to=a.local_peer, data="back again")
            assert (await b.expect("sent"))["ok"] is True
            with trio.fail_after(10):
                assert await a.incoming().receive() == (b.peer, b"back again")
            assert await b.quit() == 0
        finally:
            if b is not None:
                b.kill()
        nursery.cancel_scope.cancel()


async def test_soak_repeated_kills_and_restarts():
    require_soak()
    psk, b_seed = os.urandom(32), os.urandom(32)
    a = Libp2pTransport(os.urandom(32), psk, limits=LIMITS)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        port = 0
        for round_ in range(10):
            b = await Peer.start(b_seed, psk, port=port)
            try:
                port = int(b.addrs[0].split("/tcp/")[1].split("/")[0])
                a.add_peer_addrs(b.peer, b.addrs)
                with trio.fail_after(10):
                    while not await a.send(b.peer, b"round %d" % round_):
                        await trio.sleep(0.1)
                assert (await b.expect("frame"))["data"] == f"round {round_}"
            finally:
                b.kill()
                await b.proc.wait()
        nursery.cancel_scope.cancel()

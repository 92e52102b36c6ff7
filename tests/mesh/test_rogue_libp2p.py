"""A rogue member over real libp2p, against honest nodes in their own OS processes (issue 12).

Three honest ``tests.mesh.mesh_peer`` processes (real MeshNode, MeshDriver, Noise + PSK libp2p on
loopback) and one rogue in this process, built from the project's own modules: it was admitted
like any member, runs a real MeshNode so it answers probes, and also sends frames it built with
``mesh.core.frames``: a forged LEFT about an honest host at the maximum incarnation, forged and
frozen presence for it, and a flood of 4 MiB frames on both lanes plus a stream announcing a
frame far over the limit. Afterwards every honest node still holds every honest host alive —
never suspected, dead or left — with the presence its owner issued, and has counted the refusals.
Then the rogue claims the victim dead with the victim's real statement (within the rules): that is
its suspicion only; the victim refutes and no honest node ever holds it dead.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import trio

from agent.mesh_driver import MeshDriver
from crdt.feedset import FeedSet
from crdt.fleetdoc import FleetDoc
from crdt.identity import NodeKey
from mesh.core import MembersChanged, MeshNode, encode_frame
from mesh.core.frames import INCARNATION_MAX, Deltas, Gossip, MemberRecord, Ping, PresenceRecord, Records
from mesh.core.signing import member_message, presence_message
from mesh.core.types import Liveness
from mesh.framing import encode_frame as frame_bytes
from mesh.framing import encode_uvarint
from mesh.libp2p_transport import FRAMES_PROTOCOL, Libp2pTransport
from mesh.transport import HELLO_BYTES_MAX, WireVersions, encode_hello
from tests.mesh.mesh_peer import CONFIG, LIMITS

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000_000
STARTUP_S = 90  # ~1 s of imports per process, much more on a loaded 2-core CI box
DISKS = (11 * 10**11, 22 * 10**11, 33 * 10**11)


class Proc:
    def __init__(self, proc: trio.Process) -> None:
        self.proc, self._buf = proc, b""
        self.peer, self.addrs = "", []
        self.events: list[dict] = []  # liveness changes, in order

    async def line(self) -> dict:
        while b"\n" not in self._buf:
            chunk = await self.proc.stdout.receive_some(65536)
            if not chunk:
                raise EOFError("mesh peer closed its stdout")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\n", 1)
        return json.loads(raw)

    async def expect(self, kind: str, timeout_s: float = 30) -> dict:
        with trio.fail_after(timeout_s):
            while True:
                ev = await self.line()
                if ev["event"] == "liveness":
                    self.events.append(ev)
                if ev["event"] == kind:
                    return ev

    async def command(self, **cmd: object) -> None:
        await self.proc.stdin.send_all((json.dumps(cmd) + "\n").encode())

    async def report(self) -> dict:
        await self.command(cmd="report")
        return await self.expect("report")

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)


async def _start(key: NodeKey, psk: bytes, genesis: Path, disk: int, fleet_id: str) -> Proc:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.mesh.mesh_peer", "--seed", key.seed.hex(), "--psk", psk.hex(),
         "--genesis", str(genesis), "--fleet-id", fleet_id, "--disk", str(disk)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    p = Proc(proc)
    try:
        hello = await p.expect("listening", timeout_s=STARTUP_S)
    except BaseException:
        p.kill()
        raise
    p.peer, p.addrs = hello["peer"], hello["addrs"]
    return p


def _forgeries(rogue: NodeKey, victim: str, victim_presence: list[int]) -> list:
    inc, pseq, _ = victim_presence
    left_at_max = MemberRecord(Liveness.LEFT, victim, INCARNATION_MAX, "", Liveness.LEFT,
                               rogue.sign(member_message(victim, INCARNATION_MAX, Liveness.LEFT.rank)))
    dead_unsigned = MemberRecord(Liveness.DEAD, victim, INCARNATION_MAX - 1, rogue.peer_id, Liveness.ALIVE, b"\0" * 64)

    def presence(pinc: int, seq: int) -> PresenceRecord:  # "disk full, asleep", signed by the rogue
        body = __import__("msgpack").packb([victim, pinc, seq, 0, 0.0, [], "portable", True])
        return PresenceRecord(victim, pinc, seq, 0, 0.0, (), "portable", True,
                              rogue.sign(presence_message(body)), body, 10**9)

    frozen, frozen_max = presence(inc, 2**62), presence(INCARNATION_MAX, 2**64 - 1)
    newer = presence(inc, pseq + 1)
    return [Gossip((left_at_max,)), Gossip((dead_unsigned,)), Gossip((frozen,)), Records((frozen_max,)),
            Ping(1, newer), Gossip((left_at_max, frozen, newer))]


async def _flood(t: Libp2pTransport, targets: list[str], frames_per_lane: int) -> None:
    junk = Deltas((os.urandom(4 * 1024 * 1024 - 256),))
    data = encode_frame(junk)
    for _ in range(frames_per_lane):
        for peer in targets:
            await t.send(peer, data, bulk=True)
            await t.send(peer, data, bulk=False)  # big frames on the priority lane: queued as bulk
    from libp2p.peer.id import ID

    for peer in targets:  # a stream that announces a 100 MiB frame after a proper hello
        stream = await t._host.new_stream(ID.from_base58(peer), [FRAMES_PROTOCOL])
        try:
            await stream.write(frame_bytes(encode_hello(WireVersions()), HELLO_BYTES_MAX) + encode_uvarint(100 * 2**20))
            await stream.write(b"\0" * 65536)
        except Exception:  # the honest side resets the stream as soon as it reads the length
            pass


async def _collect_events(procs: list[Proc]) -> None:
    """Every liveness change the processes logged meanwhile, into their ``events``."""
    for p in procs:
        with trio.move_on_after(0.5):
            while True:
                ev = await p.line()
                if ev["event"] == "liveness":
                    p.events.append(ev)


async def test_a_rogue_member_over_real_libp2p_changes_no_honest_nodes_liveness_or_presence(tmp_path):
    psk = os.urandom(32)
    honest_keys = [NodeKey(os.urandom(32)) for _ in range(3)]
    rogue_key = NodeKey(os.urandom(32))
    doc = FleetDoc.genesis("rogue-test", honest_keys[0], "host-0", NOW, os.urandom(16))
    fleet_id = doc.fleet_id
    for i, k in enumerate([*honest_keys[1:], rogue_key]):
        doc.admit(k.peer_id, f"host-{i}", "member", None, NOW + i)
    genesis = tmp_path / "genesis"
    genesis.write_bytes(doc.save())

    procs: list[Proc] = []
    try:
        with trio.fail_after(STARTUP_S * 2):
            async with trio.open_nursery() as starting:
                async def start(i: int) -> None:
                    procs.append(await _start(honest_keys[i], psk, genesis, DISKS[i], fleet_id))
                for i in range(3):
                    starting.start_soon(start, i)
        procs.sort(key=lambda p: [k.peer_id for k in honest_keys].index(p.peer))

        rogue = Libp2pTransport(rogue_key.seed, psk, limits=LIMITS)
        rdoc = FleetDoc.load(genesis.read_bytes(), rogue_key, expected_fleet_id=fleet_id)
        rnode = MeshNode(rogue_key.peer_id, CONFIG, FeedSet(), rdoc, random.Random(5), signer=rogue_key)
        rdriver = MeshDriver(rnode, rogue)
        async with trio.open_nursery() as nursery:
            await nursery.start(rogue.run)
            await nursery.start(rdriver.run)
            addrs = {p.peer: p.addrs for p in procs} | {rogue.local_peer: rogue.listen_addrs()}
            for peer, a in addrs.items():
                if peer != rogue.local_peer:
                    rogue.add_peer_addrs(peer, a)
            for p in procs:
                await p.command(cmd="peers", peers=addrs)
            members = rdoc.members()
            rdriver.submit(MembersChanged(members, {m: "server" for m in members}))

            honest = [p.peer for p in procs]

            async def settled() -> list[dict]:
                reports = [await p.report() for p in procs]
                ok = all(all(r["liveness"].get(q) == "alive" for q in honest if q != p.peer)
                         and all(q in r["presence"] for q in honest) for p, r in zip(procs, reports, strict=True))
                return reports if ok else []

            with trio.fail_after(60):
                while not (before := await settled()):
                    await trio.sleep(0.5)
            for p in procs:
                p.events.clear()  # from here on, any liveness change is the rogue's doing
            victim, observers = procs[1], [procs[0], procs[2]]
            victim_presence = before[0]["presence"][victim.peer]

            # --- the attack -----------------------------------------------------------------------
            for frame in _forgeries(rogue_key, victim.peer, victim_presence):
                for o in observers:
                    assert await rogue.send(o.peer, encode_frame(frame))
            await _flood(rogue, [o.peer for o in observers], frames_per_lane=6)
            await trio.sleep(15)  # several probe rounds and sync intervals, and past the suspicion time-out

            after = [await p.report() for p in procs]
            await _collect_events(procs)

            # --- then a death claimed with the victim's real statement: within the rules, it is
            # the rogue's suspicion, nothing more; the victim refutes and nobody holds it dead.
            claimed = [p.events[:] for p in procs]
            claim = rnode.swim.members[victim.peer].claim(Liveness.DEAD, rogue_key.peer_id)
            for o in observers:
                assert await rogue.send(o.peer, encode_frame(Gossip((claim,))))
            await trio.sleep(5)
            after_claim = [await p.report() for p in procs]
            await _collect_events(procs)
            nursery.cancel_scope.cancel()
    finally:
        for p in procs:
            p.kill()

    for p, r, before_claim in zip(procs, after_claim, claimed, strict=True):
        about_victim = [e["state"] for e in p.events[len(before_claim):] if e["peer"] == victim.peer]
        assert "dead" not in about_victim, f"{p.peer[:12]} held the victim dead: {about_victim}"
        assert r["liveness"].get(victim.peer, "alive") == "alive"  # (the victim holds no record of itself)
        if p is not victim:
            assert r["core"].get("dead_claims_taken_as_suspicion", 0) >= 1, r["core"]
        p.events[:] = before_claim
    for p, r in zip(procs, after, strict=True):
        changed = [e for e in p.events if e["peer"] in honest]
        assert changed == [], f"{p.peer[:12]} saw honest hosts change liveness: {changed}"
        assert all(r["liveness"][q] == "alive" for q in honest if q != p.peer)
        assert r["presence"][victim.peer] == victim_presence if p is not victim else True
        assert r["presence"][victim.peer][2] == DISKS[1]  # the disk its owner said, not "full"
    assert after[1]["incarnation"] == before[1]["incarnation"]  # the victim never had to refute
    for o in (after[0], after[2]):
        core, transport = o["core"], o["transport"]
        assert core.get("member_records_forged", 0) >= 2, core
        assert core.get("presence_forged", 0) >= 2, core
        refused = sum(v for k, v in core.items() if k.startswith("deltas_refused_"))
        assert refused + transport.get("incoming_drops", 0) >= 6, (sorted(core.items()), transport)
        assert transport.get("priority_frames_demoted", 0) >= 1, transport
        assert transport.get("decode_errors", 0) >= 1, transport  # the 100 MiB announcement

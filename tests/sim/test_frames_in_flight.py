"""Big frames in flight are held once: nodes encode a frame afresh for every peer and round, and a
flooded uplink keeps them queued for minutes (the byzantine scenario once held 8 GB of copies of
fewer than ten distinct frames at 100 nodes). Receivers get the same bytes, and a frame is let go
after its last delivery."""

from __future__ import annotations

from simulations.adapter import Send
from simulations.run import build
from simulations.scenarios import params_for
from simulations.sim import SHARED_FRAME_BYTES_MIN


def test_equal_big_frames_are_held_once_and_let_go_after_delivery():
    sim, _ = build(params_for("steady", nodes=6, seed=3, core="standin", duration_s=5))
    sim.world.run(3_000)
    src, a, b, c = sim.by_index[:4]
    assert {src, a, b, c} <= set(sim.nodes)
    got: list[tuple[str, bytes]] = []
    for peer in (a, b, c):
        sim.nodes[peer].receive = lambda s, frame, now, peer=peer: got.append((peer, frame)) or []
    big, small = b"\x01" * (4 * SHARED_FRAME_BYTES_MIN), b"\x02" * 64
    sim.net.block(src, c)  # a frame the network drops is not held either
    now = sim.world.now_ms

    def copy(frame: bytes) -> bytes:  # an equal frame in an object of its own, as each encode makes
        return bytes(bytearray(frame))
    sim._run(src, [Send(a, copy(big), bulk=True), Send(b, copy(big), bulk=True), Send(c, copy(big), bulk=True),
                   Send(a, copy(small)), Send(b, copy(small))], now)
    assert sim.in_flight.bytes_held == len(big)
    sim.world.run(now + 5_000)
    bigs = [f for _, f in got if len(f) == len(big)]
    smalls = [f for _, f in got if len(f) == len(small)]
    assert sorted(p for p, f in got if f is bigs[0]) == sorted([a, b]) and bigs[0] == big
    assert len(smalls) == 2 and smalls[0] is not smalls[1]  # small frames are left alone
    assert sim.in_flight.bytes_held == 0 and sim.in_flight.bytes_held_max == len(big)

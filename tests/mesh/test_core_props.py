"""Properties of the mesh core over the harness; hypothesis chooses loss, duplication, delays
(reordering), timing and who does what. Budget: the whole file runs in well under a minute."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.core import (
    AnnounceSleep,
    FrameReceived,
    Leave,
    Liveness,
    LocalChanged,
    MembersChanged,
    MeshConfig,
    PeerUnreachable,
    Send,
    SetSoftState,
    Tick,
    Wake,
)
from mesh.core.frames import decode_frame, encode_frame
from tests.mesh.harness import Harness, MemDoc, MemFeeds, Net, make_node
from tests.mesh.test_core_frames import frame_strategy

ALIVE, SUSPECT, DEAD, LEFT = Liveness.ALIVE, Liveness.SUSPECT, Liveness.DEAD, Liveness.LEFT
seeds = st.integers(0, 2**32 - 1)


@settings(max_examples=40)
@given(
    seed=seeds, n=st.integers(2, 6), loss=st.floats(0.0, 0.35), dup=st.floats(0.0, 0.3),
    delay_ms_max=st.integers(1, 400),
    changes=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 8000), st.booleans()), min_size=1, max_size=8),
)
def test_all_live_nodes_converge_under_loss_duplication_and_reordering(seed, n, loss, dup, delay_ms_max, changes):
    h = Harness(n, seed=seed, net=Net(loss=loss, dup=dup, delay_ms_max=delay_ms_max))
    for i, (who, t, is_doc) in enumerate(sorted(changes, key=lambda c: c[1])):
        h.run_until(t)
        node = h.ids[who % n]
        if is_doc:
            h.doc_add(node, b"pin-%d" % i)
        else:
            h.change(node, b"state-%d" % i)
    h.run_until(10_000)
    h.net = Net(dup=dup, delay_ms_max=100)  # the loss stops; duplication and reordering go on
    done = h.run_until_true(h.converged, 70_000, 100)
    assert done is not None, "replicas did not converge"
    h.run_until(max(done, 40_000) + 20_000)
    # and every false suspicion from the lossy phase was refuted
    assert all(s is ALIVE for p in h.ids for s in h.nodes[p].liveness().values())


@settings(max_examples=25)
@given(seed=seeds, n=st.integers(4, 10), start=st.integers(3000, 6000), outage_ms=st.integers(300, 2000))
def test_a_briefly_unreachable_node_refutes_and_is_never_declared_dead(seed, n, start, outage_ms):
    h = Harness(n, seed=seed)
    x = h.ids[seed % n]
    h.blocked = lambda s, d, t: x in (s, d) and start <= t < start + outage_ms
    h.run_until(40_000)
    assert not h.ever(x, DEAD)
    assert all(h.view(p, x) is ALIVE for p in h.ids if p != x)
    if h.ever(x, SUSPECT):
        assert h.nodes[x].incarnation() >= 1  # it was alive, heard it, and refuted


@settings(max_examples=20)
@given(seed=seeds, n=st.integers(3, 12), delay_ms_max=st.integers(1, 60))
def test_a_silent_node_is_dead_everywhere_within_the_bound_and_nobody_else_is(seed, n, delay_ms_max):
    h = Harness(n, seed=seed, net=Net(delay_ms_max=delay_ms_max))
    h.run_until(3000 + seed % 2000)
    x = h.ids[seed % n]
    h.stop(x)
    t0, bound = h.now, h.config.dead_bound_ms(n)
    done = h.run_until_true(lambda: all(h.view(p, x) is DEAD for p in h.live()), t0 + bound, 100)
    assert done is not None
    assert not any(s in (SUSPECT, DEAD) for _, _, p, s, _ in h.liveness_log if p != x)


@settings(max_examples=20)
@given(seed=seeds, n=st.integers(3, 8), loss=st.floats(0.0, 0.3))
def test_a_node_that_leaves_gracefully_ends_left_everywhere(seed, n, loss):
    h = Harness(n, seed=seed, net=Net(loss=loss))
    h.run_until(3000)
    x = h.ids[seed % n]
    h.handle(x, Leave())
    h.run_until(4000)  # the shell keeps the leaver running briefly, as MeshNode's Leave asks
    h.stop(x)
    h.run_until(120_000)
    assert all(h.view(p, x) is LEFT for p in h.live())


def _fresh_node():
    node = make_node("me", MeshConfig(), MemFeeds(b"me"), MemDoc(), random.Random(0))
    node.handle(MembersChanged(frozenset({"me", "p1", "p2", "p3"})), 0)
    return node


# peer ids inside frames: mostly this node and its members, so the logic behind the decoder is hit
near_peers = st.one_of(st.sampled_from(["me", "p1", "p2", "p3", "stranger"]), st.text(min_size=1, max_size=64))


local_events = st.one_of(
    st.builds(Tick), st.builds(AnnounceSleep), st.builds(Wake), st.builds(Leave),
    st.builds(PeerUnreachable, st.sampled_from(["p1", "p2", "p3", "stranger"])),
    st.builds(SetSoftState, st.integers(0, 2**64 - 1), st.floats(0, 1), st.just(("/ip4/10.0.0.1/tcp/1",)),
              st.sampled_from(["", "portable", "seedbox"])),
    st.builds(MembersChanged, st.frozensets(st.sampled_from(["me", "p1", "p2", "p3", "p4"]))),
    st.builds(LocalChanged, st.one_of(st.none(), st.binary(max_size=50)), st.booleans()),
)


@settings(max_examples=150)
@given(st.lists(st.one_of(
    st.tuples(st.sampled_from(["p1", "p2", "p3", "stranger"]),
              st.one_of(frame_strategy(near_peers).map(encode_frame), st.binary(max_size=300))),
    local_events,
), max_size=25), st.lists(st.integers(0, 3000), min_size=25, max_size=25))
def test_no_event_sequence_crashes_a_node_and_every_frame_it_sends_decodes(inputs, gaps_ms):
    node = _fresh_node()
    now = frames_in = 0
    for x, gap in zip(inputs, gaps_ms, strict=False):
        now += gap
        event = FrameReceived(*x) if isinstance(x, tuple) else x
        frames_in += isinstance(event, FrameReceived)
        effects = node.handle(event, now)
        due = node.next_deadline_ms()
        assert due is None or due >= now or not isinstance(event, Tick)  # no busy loop after a tick
        for e in effects:
            if isinstance(e, Send):
                decode_frame(e.data, node.cfg.frame_bytes_max)  # raises if we ever emit a bad frame
    assert node.stats.get("frames_received", 0) == frames_in

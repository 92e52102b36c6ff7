"""The simulator's own machinery: event order, seeds, the network model."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulations.network import LinkProfile, Network
from simulations.seeds import derive_bytes, derive_rng, derive_seed
from simulations.world import Trace, World
from tva.errors import InvalidInput


@given(st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=60))
def test_events_pop_in_time_then_schedule_order(times):
    w = World()
    seen = []
    w.on("e", lambda now, target, data: seen.append((now, data)))
    for i, t in enumerate(times):
        w.schedule(t, "e", "x", i)
    w.run(10_000)
    expected = sorted(((t, i) for i, t in enumerate(times)))
    assert seen == expected


def test_events_scheduled_while_running_keep_order_and_trace_is_stable():
    def one_run() -> tuple[list, str]:
        w = World()
        seen = []

        def handler(now, target, data):
            seen.append((now, target))
            if data < 3:
                w.schedule(now + 5, "e", target + "'", data + 1)
                w.schedule(now + 5, "e", target + '"', data + 1)
        w.on("e", handler)
        w.schedule(0, "e", "a", 0)
        w.schedule(0, "e", "b", 0)
        w.run(100)
        return seen, w.trace.digest()

    a, b = one_run(), one_run()
    assert a == b
    assert a[0][:2] == [(0, "a"), (0, "b")]


def test_world_refuses_the_past_and_unknown_kinds():
    w = World()
    w.on("e", lambda *_: None)
    w.schedule(10, "e")
    w.run(10)
    with pytest.raises(InvalidInput):
        w.schedule(5, "e")
    with pytest.raises(InvalidInput):
        w.schedule(20, "nope")


def test_trace_differs_when_one_event_differs():
    t1, t2 = Trace(), Trace()
    for t in (t1, t2):
        t.record("0 1 tick a -")
    t1.record("5 2 deliver b 10:00000000")
    t2.record("5 2 deliver b 10:00000001")
    assert t1.digest() != t2.digest()


def test_seeds_are_stable_per_label_and_independent():
    assert derive_seed(1, "node", 3) == derive_seed(1, "node", 3)
    assert derive_seed(1, "node", 3) != derive_seed(1, "node", 4)
    assert derive_seed(1, "node", 3) != derive_seed(2, "node", 3)
    assert derive_rng(7, "x").random() == derive_rng(7, "x").random()
    assert len(derive_bytes(1, "k", n_bytes=32)) == 32


@pytest.mark.parametrize("bad", [
    {"loss": 1.5}, {"duplicate": -0.1}, {"reorder": 2.0}, {"latency_ms_base": -1.0},
    {"uplink_bytes_per_s": 0.0},
])
def test_link_profile_refuses_nonsense(bad):
    with pytest.raises(InvalidInput):
        LinkProfile(**bad)


def test_loss_rate_is_close_to_the_profile():
    net = Network(random.Random(5), LinkProfile(loss=0.2, jitter_ms_median=0.0))
    delivered = sum(bool(net.send("a", "b", 100, i)) for i in range(5000))
    assert 0.77 < delivered / 5000 < 0.83
    assert net.stats.frames_lost == 5000 - delivered


def test_duplication_and_reordering():
    net = Network(random.Random(2), LinkProfile(duplicate=1.0, jitter_ms_median=0.0,
                                                uplink_bytes_per_s=1e12))
    assert len(net.send("a", "b", 10, 0)) == 2
    net = Network(random.Random(2), LinkProfile(reorder=1.0, reorder_delay_ms=100, jitter_ms_median=0.0,
                                                uplink_bytes_per_s=1e12))
    assert net.send("a", "b", 10, 0)[0] >= 100


def test_uplink_bandwidth_queues_frames():
    net = Network(random.Random(1), LinkProfile(latency_ms_base=0, jitter_ms_median=0,
                                                uplink_bytes_per_s=1000.0))
    first = net.send("a", "b", 1000, 0)[0]  # one second on the wire
    second = net.send("a", "c", 1000, 0)[0]  # queued behind the first
    other = net.send("z", "b", 1000, 0)[0]  # another sender's uplink is free
    assert first >= 1000 and second >= 2000 and other < 1100


def test_partitions_symmetric_asymmetric_and_heal():
    net = Network(random.Random(1))
    net.split([["a", "b"], ["c"]])
    assert net.reachable("a", "b") and not net.reachable("a", "c") and not net.reachable("c", "a")
    assert net.send("a", "c", 10, 0) == [] and net.stats.frames_blocked == 1
    net.heal()
    net.block("a", "c")
    assert not net.reachable("a", "c") and net.reachable("c", "a")
    net.heal()
    assert net.reachable("a", "c") and not net.partitioned()

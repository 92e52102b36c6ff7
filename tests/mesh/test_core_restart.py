"""A node restarted at an equal or LOWER incarnation is taken again (issue 14, item 4).

The agent seeds the incarnation from the wall clock, which does not always grow: a restart
within the same second, a clock stepped back by NTP, a board without a real-time clock. Each test
restarts a real ``MeshNode`` from the state it kept (its feeds and document; its presence and
incarnation are gone) with an incarnation at or below the one its peers hold, and checks that its
new soft state reaches every peer and that nobody ever took it for dead.
"""

from __future__ import annotations

import random

import pytest

from mesh.core import Liveness, MembersChanged, SetSoftState
from tests.mesh.harness import Harness, Net, make_node

DISK_BEFORE, DISK_AFTER = 10**9, 7 * 10**9


def _running_fleet(n: int, seed: int, start_incarnation: int) -> Harness:
    h = Harness(n, seed=seed, net=Net(delay_ms_min=1, delay_ms_max=15))
    for i, p in enumerate(h.ids):  # every node as the agent starts it: a clock-seeded incarnation
        h.nodes[p] = make_node(p, h.config, h.feeds[p], h.docs[p], random.Random(seed * 31 + i),
                               incarnation=start_incarnation)
        h.handle(p, MembersChanged(frozenset(h.ids), {}))
        h.handle(p, SetSoftState(DISK_BEFORE + i, 0.5, (), "desktop"))
    assert h.run_until_true(lambda: all(len(h.nodes[p].presence()) == n for p in h.ids), 60_000) is not None
    return h


def _restart(h: Harness, victim: str, incarnation: int, *, down_ms: int) -> None:
    h.stop(victim)
    h.run_until(h.now + down_ms)
    h.nodes[victim] = make_node(victim, h.config, h.feeds[victim], h.docs[victim], random.Random(4242),
                                incarnation=incarnation)
    h.down.discard(victim)
    h.handle(victim, MembersChanged(frozenset(h.ids), {}))
    h.handle(victim, SetSoftState(DISK_AFTER, 0.9, (), "server"))


def _everyone_sees_the_new_state(h: Harness, victim: str) -> bool:
    return all((p := h.nodes[q].presence().get(victim)) is not None and p.disk_free_bytes == DISK_AFTER
               for q in h.ids if q != victim)


@pytest.mark.parametrize("case, step", [
    ("same second, nothing refuted before", 0),
    ("same second, after two refutations in its old life", 0),
    ("clock stepped back an hour", -3600),
    ("no real-time clock: incarnation 0 again", None),
])
def test_a_restart_at_an_equal_or_lower_incarnation_is_taken_once_its_owner_refutes(case, step):
    start = 1_000_000
    h = _running_fleet(8, seed=3, start_incarnation=start)
    victim = h.ids[5]
    if "refutations" in case:
        # its old life ran above its start: short outages got it suspected, and it refuted
        while h.nodes[victim].incarnation() < start + 2:
            t = h.now
            h.blocked = lambda s, d, now, t=t: victim in (s, d) and now < t + 3000
            h.run_until(t + 8000)
        h.blocked = lambda s, d, now: False
    before = max(h.nodes[q].swim.members[victim].incarnation for q in h.ids if q != victim)
    new_incarnation = 0 if step is None else start + step
    assert new_incarnation <= before
    _restart(h, victim, new_incarnation, down_ms=400)  # far below any suspicion time-out
    t0 = h.now
    done = h.run_until_true(lambda: _everyone_sees_the_new_state(h, victim), t0 + 10_000, 10)
    assert done is not None, f"{case}: peers still hold the old presence after 10 s"
    # it refuted above what its peers held, by exactly one step
    assert h.nodes[victim].incarnation() == before + 1
    assert h.run_until_true(lambda: all(h.nodes[q].swim.members[victim].incarnation == before + 1
                                        for q in h.ids if q != victim), h.now + 5_000) is not None
    # and was never declared dead, nor did anyone else suffer
    assert not any(s is Liveness.DEAD for _, _, _, s, _ in h.liveness_log)
    # the restarted node has everyone's presence back too
    assert h.run_until_true(lambda: len(h.nodes[victim].presence()) == 8, h.now + 10_000) is not None


def test_a_restart_at_a_lower_incarnation_after_it_was_declared_dead_comes_back_alive():
    start = 500_000
    h = _running_fleet(6, seed=9, start_incarnation=start)
    victim = h.ids[2]
    h.stop(victim)
    bound = h.config.dead_bound_ms(6)
    assert h.run_until_true(lambda: all(h.view(q, victim) is Liveness.DEAD for q in h.live()),
                            h.now + bound, 50) is not None
    held = max(h.nodes[q].swim.members[victim].incarnation for q in h.live())
    _restart(h, victim, start - 100, down_ms=0)  # its clock went back, too
    done = h.run_until_true(lambda: all(h.view(q, victim) is Liveness.ALIVE for q in h.ids if q != victim)
                            and _everyone_sees_the_new_state(h, victim), h.now + 30_000, 20)
    assert done is not None
    assert h.nodes[victim].incarnation() == held + 1

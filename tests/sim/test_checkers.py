"""Each safety rule, fed the effect that breaks it, must fire (and stay quiet for the safe twin)."""

from __future__ import annotations

import pytest

from simulations.adapter import Announce, PeerAnswer, RepairStart, Trimmed
from simulations.metrics import Metrics, percentile
from simulations.run import build
from simulations.scenarios import params_for
from simulations.sim import Item


@pytest.fixture
def sim():
    s, _ = build(params_for("steady", nodes=6, seed=3, core="standin", duration_s=5))
    s.items["pub"] = Item("pub", 10, "public")
    s.items["priv"] = Item("priv", 10, "f2f_only")
    s.items["closed"] = Item("closed", 10, "search_only")
    s.friends.append("fleet-linked")
    return s


def rules(sim) -> list[str]:
    return [v.rule for v in sim.checker.violations]


def test_announcing_a_private_item_is_caught(sim):
    sim.checker.announced(Announce("pub", "dht", sim.by_index[0]), 10)
    assert rules(sim) == []
    sim.checker.announced(Announce("priv", "dht", sim.by_index[0]), 11)
    sim.checker.announced(Announce("closed", "tracker", sim.by_index[0]), 12)
    assert rules(sim) == ["private-announced", "private-announced"]


def test_peers_for_gate_violations_are_caught(sim):
    ok = [PeerAnswer("a", "fleet"), PeerAnswer("b", "friend", "fleet-linked")]
    sim.checker.peers_for_answered("priv", ok, 1)
    sim.checker.peers_for_answered("pub", [PeerAnswer("1.2.3.4", "dht")], 1)
    assert rules(sim) == []
    sim.checker.peers_for_answered("priv", [PeerAnswer("198.51.100.1", "dht")], 2)
    sim.checker.peers_for_answered("pub", [PeerAnswer("x", "friend", "fleet-stranger")], 3)
    sim.checker.peers_for_answered("closed", [PeerAnswer("a", "fleet")], 4)
    assert rules(sim) == ["private-provenance", "non-friend", "private-revealed"]


def test_repairs_onto_portable_revoked_or_full_hosts_are_caught(sim):
    laptop = next(p for p in sim.by_index if sim.hosts[p].host_class == "portable")
    server = sim.by_index[1]
    sim.checker.repair_started(RepairStart("pub", server, sim.by_index[0]), 100)
    assert rules(sim) == []
    sim.checker.repair_started(RepairStart("pub", laptop, sim.by_index[0]), 100)
    grace = sim.checker.grace_ms
    sim.revoked[server] = 0
    sim.checker.repair_started(RepairStart("pub", server, sim.by_index[0]), grace // 2)  # within grace
    sim.checker.repair_started(RepairStart("pub", server, sim.by_index[0]), grace + 1)
    other = sim.by_index[2]
    sim.checker.disk_full_changed(other, True, 0)
    sim.checker.repair_started(RepairStart("pub", other, sim.by_index[0]), grace + 1)
    assert rules(sim) == ["repair-portable", "repair-revoked", "repair-full"]


def test_trim_below_n_is_caught(sim):
    a, b, c = sim.by_index[:3]
    sim.pins["pub"] = (2, 3)
    for h in (a, b):
        sim._disk_add(h, "pub", 10)
    sim.checker.trimmed(Trimmed("pub", c), 1)  # c held nothing: still two copies
    assert rules(sim) == []
    sim._disk_remove(b, "pub")
    sim.checker.trimmed(Trimmed("pub", b), 2)
    assert rules(sim) == ["trim-below-n"]


def test_false_dead_counts_once_per_incarnation_and_not_across_partitions(sim):
    from simulations.checkers import FALSE_DEAD_WINDOW_MS as W
    for i in range(4):
        sim.start(i, 0, [])
    a, b, c, d = sim.by_index[:4]
    sim.checker.declared_dead(a, b, 0, W + 5)
    sim.checker.declared_dead(c, b, 0, W + 6)  # the same death, held by another node
    sim.crash(d, W + 7)
    sim.checker.declared_dead(a, d, 0, W + 8)  # really down: a true verdict
    sim.restart(d, W + 9)
    sim.checker.declared_dead(a, d, 1, W + 10)  # about the process that just died: not false
    sim.net.split([[a, b], [c]])
    sim.checker.declared_dead(a, c, 0, W + 11)
    sim.net.heal(W + 12)
    sim.checker.declared_dead(b, c, 1, W + 13)  # suspicion from the partition: not false either
    m = sim.metrics
    assert (m.declared_dead, m.false_dead, m.dead_while_partitioned) == (5, 1, 2)


def test_percentile_is_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([5], 99) == 5
    assert percentile(list(range(1, 101)), 50) == 50
    assert percentile(list(range(1, 101)), 99) == 99


def test_convergence_counts_a_change_when_every_live_node_has_a_later_version():
    m = Metrics(track_after_ms=0)
    up = {"a": 1, "b": 1, "c": 1}
    m.applied("a", "a", 5, 100, up)  # a commits v5
    m.applied("b", "a", 5, 150, up)
    assert m.convergence_ms == []
    m.applied("c", "a", 9, 400, up)  # c got a snapshot at v9: it holds v5 too
    assert m.convergence_ms == [300]
    m.applied("a", "a", 10, 500, up)
    m.recheck_pending(600, {"a": 1})  # b and c went down: a alone is the fleet
    assert m.convergence_ms == [300, 100]

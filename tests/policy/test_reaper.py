"""Reaper: classification of recorded sample sequences (table), nudges, mesh-first recovery."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.policy import (
    Custodians,
    Peer,
    PeerAnswer,
    ReaperThresholds,
    TorrentSample,
    reap,
)
from tests.policy.strategies import INFOHASHES, PEERS
from tva.errors import InvalidInput

IH = INFOHASHES[0]
MIN = 60_000
T = ReaperThresholds(stalled_after_ms=30 * MIN, dead_after_ms=120 * MIN, rate_floor_bps=1024, peers_presence_min=0.5)


def series(rows: list[tuple], step_ms: int = 10 * MIN) -> list[TorrentSample]:
    """Rows of (progress, peers[, down_rate_bps[, error[, availability]]]) one step apart."""
    out = []
    for i, row in enumerate(rows):
        progress, peers, *rest = row
        rate = rest[0] if rest else 0
        error = rest[1] if len(rest) > 1 else None
        avail = rest[2] if len(rest) > 2 else None
        out.append(TorrentSample(at_ms=i * step_ms, progress=progress, peers=peers, down_rate_bps=rate,
                                 error=error, availability=avail))
    return out


def flat(n: int, progress: float, peers: list[int]) -> list[tuple]:
    return [(progress, peers[i % len(peers)]) for i in range(n)]


TABLE = [
    # name, rows, expected state, a reason that must appear
    ("complete", [(0.2, 3), (1.0, 0)], "healthy", "complete"),
    ("young, nothing yet", [(0.0, 0), (0.0, 0)], "healthy", "young"),
    ("moving steadily", [(0.1 * i, 4) for i in range(10)], "healthy", "moving"),
    ("moving slowly by rate only", [(0.5, 2, 0)] * 12 + [(0.5, 2, 4096)], "healthy", "moving"),
    ("stopped 40 min, peers there", [(0.1, 3), (0.2, 3), *flat(5, 0.2, [3])], "stalled", "no progress"),
    ("stopped 3 h, peers there but not delivering", [(0.3, 5), *flat(19, 0.3, [5])], "stalled", "not delivering"),
    ("stopped 3 h, no peers", [(0.3, 2), *flat(19, 0.3, [0])], "dead", "no peers"),
    ("flapping peers: 1 in 4 samples", [(0.3, 1), *flat(19, 0.3, [0, 0, 0, 1])], "dead", "flapping"),
    ("flapping peers: 2 samples in 3", [(0.3, 1), *flat(19, 0.3, [0, 2, 2])], "stalled", "not delivering"),
    ("flapping peers: just under half", [(0.3, 1), *flat(19, 0.3, [0, 2])], "dead", "46%"),
    ("flapping peers that deliver a little", [(0.30 + 0.001 * (i % 2 and i), i % 2) for i in range(20)],
     "healthy", "moving"),
    ("peers but no complete copy anywhere", [(0.3, 6, 0, None, 0.7)] * 20, "dead", "no complete copy"),
    ("complete but erroring", [(1.0, 0, 0, "tracker: unregistered torrent")], "stalled", "error"),
    ("erroring briefly", [(0.1 * i, 2, 0, None if i < 8 else "disk full") for i in range(10)], "stalled", "error"),
    ("erroring for hours", [(0.2, 2, 0, "piece hash check failed")] * 14, "dead", "error for"),
]


@pytest.mark.parametrize(("name", "rows", "state", "reason"), TABLE, ids=[t[0] for t in TABLE])
def test_classification_table(name, rows, state, reason):
    samples = series(rows)
    verdict = reap(IH, samples, samples[-1].at_ms, T)
    assert verdict.state == state, verdict.reasons
    assert any(reason in r for r in verdict.reasons), verdict.reasons


def test_complete_but_erroring_is_not_called_complete():
    samples = series([(1.0, 0, 0, "tracker: unregistered torrent")] * 14)
    v = reap(IH, samples, samples[-1].at_ms, T)
    assert v.state == "dead" and v.actions == ("reannounce",)


def test_only_safe_nudges_run_automatically():
    stalled = series([(0.1, 3), (0.2, 3), *flat(5, 0.2, [3])])
    assert reap(IH, stalled, stalled[-1].at_ms, T).actions == ("reannounce",)
    data_error = series([(0.1, 3), (0.2, 3), *[(0.2, 3, 0, "Piece hash failed")] * 5])
    assert reap(IH, data_error, data_error[-1].at_ms, T).actions == ("reannounce", "verify")
    healthy = series([(0.1 * i, 4) for i in range(10)])
    v = reap(IH, healthy, healthy[-1].at_ms, T)
    assert v.actions == () and v.recovery == ()


def test_recovery_is_mesh_first_and_re_searches_publicly_only_for_public_items():
    dead = series([(0.3, 2), *flat(19, 0.3, [0])])
    fleet = Peer(PEERS[0], "nas", "10.77.0.1", 6881, "fleet")
    friend = Peer(PEERS[1], "fleet-a", "10.99.0.1", 7000, "friend")
    dht = Peer(None, None, "1.2.3.4", 6881, "dht")
    mesh = PeerAnswer(IH, "public", (fleet, friend, dht))
    custodians = Custodians("film", IH, (fleet,))
    v = reap(IH, dead, dead[-1].at_ms, T, mesh=mesh, custodians=custodians)
    assert [s.kind for s in v.recovery] == ["connect_peers", "copy_over_fabric", "research"]
    assert v.recovery[0].peers == (fleet, friend) and v.recovery[2].scope == "public"
    closed = reap(IH, dead, dead[-1].at_ms, T, mesh=PeerAnswer(IH, "f2f_only", (fleet,)))
    assert closed.recovery[-1].scope == "friends"
    assert reap(IH, dead, dead[-1].at_ms, T).recovery[-1].scope == "friends"  # policy unknown: stay closed
    stalled = series([(0.1, 3), (0.2, 3), *flat(5, 0.2, [3])])
    assert [s.kind for s in reap(IH, stalled, stalled[-1].at_ms, T, mesh=mesh).recovery] == ["connect_peers"]


def test_time_passing_without_new_samples_moves_the_verdict():
    samples = series([(0.1, 0), (0.2, 0)])
    assert reap(IH, samples, samples[-1].at_ms, T).state == "healthy"
    assert reap(IH, samples, samples[-1].at_ms + 31 * MIN, T).state == "stalled"
    assert reap(IH, samples, samples[-1].at_ms + 121 * MIN, T).state == "dead"


def test_reaper_inputs_are_validated():
    good = series([(0.1, 1), (0.2, 1)])
    cases = [
        lambda: reap(IH, [], 0, T),
        lambda: reap(IH, list(reversed(good)), 10**9, T),
        lambda: reap(IH, [good[0], good[0]], 10**9, T),
        lambda: reap(IH, good, good[-1].at_ms - 1, T),
        lambda: reap("nope", good, 10**9, T),
        lambda: reap(IH, good, 10**9, T, mesh=PeerAnswer(INFOHASHES[1], "public", ())),
        lambda: reap(IH, [(0, 0.5)], 10**9, T),
        lambda: TorrentSample(at_ms=0, progress=1.5),
        lambda: TorrentSample(at_ms=0, progress=50),
        lambda: TorrentSample(at_ms=-1, progress=0.5),
        lambda: TorrentSample(at_ms=0, progress=float("nan")),
        lambda: TorrentSample(at_ms=0, progress=0.5, peers=-1),
        lambda: TorrentSample(at_ms=0, progress=0.5, availability=-0.1),
        lambda: TorrentSample(at_ms=0, progress=0.5, error=""),
        lambda: ReaperThresholds(stalled_after_ms=10, dead_after_ms=5),
        lambda: ReaperThresholds(peers_presence_min=2.0),
    ]
    for case in cases:
        with pytest.raises(InvalidInput):
            case()


sample_st = st.builds(
    TorrentSample,
    at_ms=st.integers(0, 10**7), progress=st.floats(0, 1), peers=st.integers(0, 50), seeds=st.integers(0, 5),
    down_rate_bps=st.integers(0, 10**6), error=st.one_of(st.none(), st.sampled_from(["hash fail", "timeout"])),
    tracker_ok=st.one_of(st.none(), st.booleans()), availability=st.one_of(st.none(), st.floats(0, 3)),
)


@given(st.lists(sample_st, min_size=1, max_size=30, unique_by=lambda s: s.at_ms), st.integers(0, 10**7))
def test_any_valid_sequence_gets_exactly_one_verdict_with_safe_actions(samples, extra_ms):
    samples.sort(key=lambda s: s.at_ms)
    v = reap(IH, samples, samples[-1].at_ms + extra_ms, T)
    assert v.state in ("healthy", "stalled", "dead") and v.reasons
    assert set(v.actions) <= {"reannounce", "verify"}
    assert (v.actions == ()) == (v.state == "healthy")

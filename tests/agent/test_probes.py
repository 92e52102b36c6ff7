from hypothesis import given
from hypothesis import strategies as st

from agent.probes import UPTIME_HALF_LIFE_MS, UptimeScore, disk_free_bytes


def test_running_raises_and_downtime_lowers_the_score():
    s = UptimeScore(0.5, 1_000)
    up = s.sample(1_000 + UPTIME_HALF_LIFE_MS)
    assert abs(up.score - 0.75) < 1e-9  # one half-life spent running: half the gap toward 1
    down = s.after_downtime(1_000 + UPTIME_HALF_LIFE_MS)
    assert abs(down.score - 0.25) < 1e-9


@given(st.floats(0, 1), st.lists(st.tuples(st.integers(1, 10**10), st.booleans()), max_size=30))
def test_score_stays_in_unit_interval_and_time_never_runs_back(start, steps):
    s = UptimeScore(start, 1)
    now = 1
    for gap, running in steps:
        now += gap
        s = s.sample(now, running)
        assert 0.0 <= s.score <= 1.0
        assert s.last_sample_ms == now


def test_disk_free_of_a_missing_dir_uses_its_parent(tmp_path):
    assert disk_free_bytes(tmp_path / "not" / "yet") == disk_free_bytes(tmp_path)
    assert disk_free_bytes(tmp_path) > 0

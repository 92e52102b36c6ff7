import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdt.hlc import (
    LOGICAL_BITS,
    VERSION_MAX,
    WALL_MS_MAX,
    hlc_next,
    hlc_observe,
    hlc_version,
    logical_of,
    wall_ms_of,
)
from tva.errors import InvalidInput

now_ms = st.integers(0, 2**45)


@given(st.lists(now_ms, min_size=1, max_size=50))
def test_versions_strictly_increase_whatever_the_clock_does(clock):
    prev = 0
    for t in clock:
        v = hlc_next(prev, t)
        assert v > prev
        assert wall_ms_of(v) >= t or v == prev + 1
        prev = v


@given(now_ms, st.integers(0, 2**50))
def test_next_is_max_of_wall_and_previous_plus_one(t, prev):
    assert hlc_next(prev, t) == max(t << LOGICAL_BITS, prev + 1)


def test_stalled_clock_counts_logically():
    v1 = hlc_next(0, 5000)
    v2 = hlc_next(v1, 5000)
    v3 = hlc_next(v2, 4000)  # clock stepped back
    assert (wall_ms_of(v1), logical_of(v1)) == (5000, 0)
    assert (wall_ms_of(v2), logical_of(v2)) == (5000, 1)
    assert (wall_ms_of(v3), logical_of(v3)) == (5000, 2)
    assert hlc_version(5000, 2) == v3


@given(now_ms, st.integers(0, 2**50), st.integers(0, 2**50))
def test_observe_stays_ahead_of_both(t, prev, seen):
    v = hlc_observe(prev, seen, t)
    assert v > prev and v > seen


def test_bounds_are_refused():
    with pytest.raises(InvalidInput):
        hlc_next(VERSION_MAX, 0)
    with pytest.raises(InvalidInput):
        hlc_next(-1, 0)
    with pytest.raises(InvalidInput):
        hlc_next(0, -5)
    with pytest.raises(InvalidInput):
        hlc_version(WALL_MS_MAX + 1)
    with pytest.raises(InvalidInput):
        hlc_version(0, 1 << LOGICAL_BITS)
    # A clock far in the future is clamped, never producing a version that breaks uint63.
    assert hlc_next(0, 2**62) <= VERSION_MAX

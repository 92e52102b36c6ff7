"""State store: atomic checksummed files, fallback to the previous generation, identity."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.store import HEADER, StateStore, load_or_create_identity
from crdt.fleetdoc import FleetDoc
from crdt.identity import NodeKey
from tva.errors import InvalidInput, RemoteDataError, StateCorrupt, UnsupportedVersion


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_round_trip_modes_and_generations(tmp_path):
    store = StateStore(tmp_path / "state")
    assert mode(store.state_dir) == 0o700
    assert store.read("feeds") is None
    store.write("feeds", b"one")
    assert store.read("feeds") == b"one"
    store.write("feeds", b"two", secret=True)
    assert store.read("feeds") == b"two"
    assert mode(store.path("feeds")) == 0o600
    # the previous generation is kept, itself a complete state file
    assert (store.state_dir / "feeds.prev").read_bytes()[HEADER.size:] == b"one"
    assert store.last_problem is None
    assert sorted(p.name for p in store.state_dir.iterdir()) == ["feeds", "feeds.prev"]


def test_existing_wide_directory_is_tightened(tmp_path):
    d = tmp_path / "state"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    StateStore(d)
    assert mode(d) == 0o700


def test_corrupt_current_falls_back_to_previous_and_keeps_the_evidence(tmp_path):
    store = StateStore(tmp_path)
    store.write("doc", b"generation-1")
    store.write("doc", b"generation-2")
    raw = store.path("doc").read_bytes()
    store.path("doc").write_bytes(raw[:-3])  # truncated
    assert store.read("doc") == b"generation-1"
    problem = store.last_problem
    assert problem is not None and problem.recovered and "truncated" in problem.reason
    assert problem.moved_to == tmp_path / "doc.corrupt-1"
    assert problem.moved_to.read_bytes() == raw[:-3]  # never overwritten
    # the good generation is current again; the next read is clean
    fresh = StateStore(tmp_path)
    assert fresh.read("doc") == b"generation-1" and fresh.last_problem is None


def test_bit_flip_is_detected(tmp_path):
    store = StateStore(tmp_path)
    store.write("doc", b"a" * 100)
    store.write("doc", b"b" * 100)
    raw = bytearray(store.path("doc").read_bytes())
    raw[HEADER.size + 50] ^= 0x01
    store.path("doc").write_bytes(bytes(raw))
    assert store.read("doc") == b"a" * 100
    assert "checksum" in store.last_problem.reason


def test_corrupt_without_previous_generation_raises_and_leaves_the_file(tmp_path):
    store = StateStore(tmp_path)
    store.write("doc", b"only")
    store.path("doc").write_bytes(b"garbage")
    with pytest.raises(StateCorrupt) as info:
        store.read("doc")
    assert info.value.hint
    assert store.path("doc").read_bytes() == b"garbage"
    assert store.last_problem is not None and not store.last_problem.recovered


def test_writing_over_a_corrupt_file_moves_it_aside_and_keeps_the_good_prev(tmp_path):
    store = StateStore(tmp_path)
    store.write("doc", b"good-1")
    store.write("doc", b"good-2")
    store.path("doc").write_bytes(b"rot")
    store.write("doc", b"good-3")
    assert store.read("doc") == b"good-3"
    assert (tmp_path / "doc.corrupt-1").read_bytes() == b"rot"
    assert (tmp_path / "doc.prev").read_bytes()[HEADER.size:] == b"good-1"


def test_unsupported_version_is_not_mistaken_for_corruption(tmp_path):
    store = StateStore(tmp_path)
    store.write("doc", b"x")
    raw = bytearray(store.path("doc").read_bytes())
    raw[4] = 99
    store.path("doc").write_bytes(bytes(raw))
    with pytest.raises(UnsupportedVersion):
        store.read("doc")


def test_limits_and_names(tmp_path):
    store = StateStore(tmp_path, file_bytes_max=1_000)
    with pytest.raises(InvalidInput):
        store.write("doc", b"x" * 1_001)
    for bad in ("", "../etc", "doc.prev", "Doc", "a/b", ".hidden", "x" * 80):
        with pytest.raises(InvalidInput):
            store.write(bad, b"x")
    StateStore(tmp_path).write("big", b"y" * 5_000)
    with pytest.raises(StateCorrupt):
        store.read("big")  # a file beyond the read bound is never read in full


def test_leftover_temp_files_are_removed_on_open(tmp_path):
    store = StateStore(tmp_path)
    store.write("doc", b"x")
    (tmp_path / ".doc.tmp-123-4").write_bytes(b"half")
    (tmp_path / ".doc.prev-tmp-123-5").write_bytes(b"half")
    (tmp_path / "unrelated.txt").write_bytes(b"keep")
    StateStore(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc", "unrelated.txt"]


def test_fleet_document_survives_a_save_and_load_through_the_store(tmp_path):
    key = NodeKey(b"\x07" * 32)
    doc = FleetDoc.genesis("Home", key, "host", 1, b"\x01" * 16)
    doc.pin("movie:x", 2, None, 2)
    StateStore(tmp_path).write("fleetdoc", doc.save())
    again = FleetDoc.load(StateStore(tmp_path).read("fleetdoc"), key)
    assert again.pins() == doc.pins() and again.heads() == doc.heads()


# --- identity ------------------------------------------------------------------------------------


def test_identity_is_created_once_and_reloaded(tmp_path):
    store = StateStore(tmp_path)
    seeds = iter([b"\x01" * 32, b"\x02" * 32])
    key = load_or_create_identity(store, lambda n: next(seeds))
    assert key == NodeKey(b"\x01" * 32)
    assert load_or_create_identity(StateStore(tmp_path), lambda n: next(seeds)).peer_id == key.peer_id
    assert mode(store.path("identity")) == 0o600


def test_corrupt_identity_is_an_error_never_replaced(tmp_path):
    store = StateStore(tmp_path)
    load_or_create_identity(store, lambda n: b"\x01" * n)
    store.path("identity").write_bytes(b"broken")
    for _ in range(2):
        with pytest.raises(StateCorrupt) as info:
            load_or_create_identity(StateStore(tmp_path), lambda n: b"\x02" * n)
        assert "identity" in info.value.message and "peer id" in info.value.hint
    assert store.path("identity").read_bytes() == b"broken"


def test_identity_with_wrong_payload_or_seed_source(tmp_path):
    store = StateStore(tmp_path)
    store.write("identity", b"\x00" * 45)
    with pytest.raises(StateCorrupt):
        load_or_create_identity(store)
    with pytest.raises(InvalidInput):
        load_or_create_identity(StateStore(tmp_path / "other"), lambda n: b"short")
    assert not (tmp_path / "other" / "identity").exists()


# --- garbage on disk -----------------------------------------------------------------------------

GOOD = [b"first generation", b"second generation"]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(max_size=300), edits=st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=3),
    cut=st.none() | st.integers(0, 120), mutate_real=st.booleans())
def test_garbage_files_never_crash_and_never_read_as_data(tmp_path_factory, garbage, edits, cut,
                                                          mutate_real):
    d = tmp_path_factory.mktemp("g")
    store = StateStore(d)
    for g in GOOD:
        store.write("doc", g)
    raw = bytearray(store.path("doc").read_bytes() if mutate_real else garbage)
    for pos, byte in edits:
        if raw:
            raw[pos % len(raw)] = byte
    store.path("doc").write_bytes(bytes(raw[:cut] if cut is not None else raw))
    try:
        got = StateStore(d).read("doc")
    except RemoteDataError:
        return
    assert got in GOOD  # intact, or the previous generation: never the garbage itself

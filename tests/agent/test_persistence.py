"""Saving off the event loop (agent.persistence): only changed files, nothing lost, never fatal."""

from __future__ import annotations

import errno
import threading

import pytest
import trio

from agent.persistence import Persistence
from agent.state import DOC_FILE, FEEDS_FILE, FLEET_FILE, LOCAL_FILE, NodeState
from agent.store import StateStore
from crdt import records

NOW = 1_700_000_000_000


class CountingStore(StateStore):
    """A real store that records which files it wrote and can fail or pause on purpose."""

    def __init__(self, path, **kw) -> None:
        super().__init__(path, **kw)
        self.written: list[str] = []
        self.fail_with: int | None = None
        self.pause_on: str | None = None
        self.paused = threading.Event()
        self.resume = threading.Event()

    def write(self, name: str, data: bytes, *, secret: bool = False) -> None:
        if self.fail_with is not None:
            raise OSError(self.fail_with, "injected", str(self.state_dir / name))
        if name == self.pause_on:
            self.paused.set()
            self.resume.wait(10)
        super().write(name, data, secret=secret)
        self.written.append(name)


def add_holdings(state: NodeState, n: int, prefix: str = "c") -> None:
    for i in range(n):
        h = records.Holding(f"{prefix}{i}", f"{i:040x}", 1, "complete", "public", "local", 1)
        state.own.put(records.holding_key(h.content_id), records.encode_holding(h))
    state.own.commit(NOW + n)


@pytest.fixture
def state(tmp_path):
    NodeState.found(StateStore(tmp_path / "s"), fleet_name="home",
                            card=records.HostCard(name="box", host_class="server"), now_ms=NOW)
    return NodeState.load(CountingStore(tmp_path / "s"))


def held(state: NodeState) -> set[str]:
    return set(records.holdings(state.feeds).get(state.peer_id, {}))


def reload(state: NodeState) -> NodeState:
    return NodeState.load(StateStore(state.store.state_dir))


async def test_a_save_writes_only_the_files_that_changed(state):
    p = Persistence(state, save_interval_ms=1000, clock_ms=lambda: NOW)
    assert await p.save()
    assert sorted(state.store.written) == sorted([FLEET_FILE, FEEDS_FILE, DOC_FILE, LOCAL_FILE])
    state.store.written.clear()
    assert await p.save()
    assert state.store.written == []  # nothing changed: no write, no fsync
    add_holdings(state, 3)
    assert await p.save()
    assert state.store.written == [FEEDS_FILE]
    assert held(reload(state)) == {f"c{i}" for i in range(3)}


async def test_a_change_made_while_the_file_is_written_is_saved_by_the_next_save(state):
    p = Persistence(state, save_interval_ms=1000, clock_ms=lambda: NOW)
    add_holdings(state, 5, "first")
    state.store.pause_on = FEEDS_FILE
    ticks = 0

    async def other_work():
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_work)
        nursery.start_soon(p.save)
        await trio.to_thread.run_sync(state.store.paused.wait, 10)
        # The write is under way in a worker thread; the event loop runs on, and state changes.
        seen = ticks
        await trio.sleep(0.05)
        assert ticks > seen
        add_holdings(state, 5, "during")
        p.mark_dirty()
        state.store.resume.set()
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    state.store.pause_on = None
    on_disk = held(reload(state))
    assert "first0" in on_disk and "during0" not in on_disk
    assert p.dirty
    assert await p.save()
    assert "during4" in held(reload(state))


async def test_a_failing_save_degrades_and_recovers_without_stopping(state):
    health: list[tuple[str, str | None]] = []
    stopped: list[str] = []
    p = Persistence(state, save_interval_ms=1000, clock_ms=lambda: NOW,
                    on_health=lambda s, r: health.append((s, r)), on_unwritable=stopped.append)
    add_holdings(state, 2)
    state.store.fail_with = errno.ENOSPC
    assert not await p.save() and not await p.save()
    assert p.dirty and "injected" in p.problem and health[-1][0] == "degraded"
    state.store.fail_with = None
    assert await p.save()
    assert health[-1] == ("ok", None) and p.problem is None and not stopped
    assert "c1" in held(reload(state))


@pytest.mark.parametrize(("code", "ends_the_daemon"), [(errno.EROFS, True), (errno.EACCES, True),
                                                        (errno.ENOSPC, False), (errno.EIO, False)])
async def test_only_a_state_dir_unwritable_for_a_while_ends_the_daemon(state, code, ends_the_daemon):
    now = [NOW]
    stopped: list[str] = []
    p = Persistence(state, save_interval_ms=1000, clock_ms=lambda: now[0], on_unwritable=stopped.append,
                    state_unwritable_exit_ms=60_000)
    state.store.fail_with = code
    for _ in range(5):  # 40 s of failures: not yet
        assert not await p.save()
        now[0] += 10_000
    assert not stopped
    for _ in range(3):
        assert not await p.save()
        now[0] += 10_000
    assert bool(stopped) == ends_the_daemon
    if stopped:
        assert str(state.store.state_dir) in stopped[0] and "cannot be written" in stopped[0]

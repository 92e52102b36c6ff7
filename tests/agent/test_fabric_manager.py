"""The daemon's fabric component: worker threads return what they found, the trio thread keeps it;
a kick that arrives while a reconcile runs is not lost."""

from __future__ import annotations

import threading

import trio

from agent.config import Config
from agent.fabric import FabricManager
from agent.state import NodeState
from agent.store import StateStore
from crdt import records
from wg.backend import MemoryBackend
from wg.fabric import WgFabric


class SlowBackend(MemoryBackend):
    """An in-memory backend whose first read of the interface waits until the test lets it go."""

    def __init__(self) -> None:
        super().__init__("tva0")
        self.reads = 0
        self.reading = threading.Event()
        self.go_on = threading.Event()

    def actual(self):
        self.reads += 1
        if self.reads == 1:
            self.reading.set()
            self.go_on.wait(10)
        return super().actual()


class CountingFabric(WgFabric):
    reconciles = 0

    def reconcile(self, desired):
        self.reconciles += 1
        return super().reconcile(desired)


async def test_a_kick_during_a_reconcile_starts_another_one_at_once(tmp_path):
    state = NodeState.found(StateStore(tmp_path / "s"), fleet_name="f",
                            card=records.HostCard(name="a", host_class="server"), now_ms=1)
    cards: list[dict] = []
    manager = FabricManager(Config(state_dir=tmp_path / "s", wg_backend="off"), state, on_card=cards.append,
                            reconcile_interval_ms=60_000)
    backend = SlowBackend()
    fabric = CountingFabric(backend)

    async def open_memory():
        return fabric

    manager._open = open_memory
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        await trio.to_thread.run_sync(backend.reading.wait, 10)  # the first reconcile is under way
        manager.kick()  # e.g. a member joined meanwhile
        assert fabric.reconciles == 1
        backend.go_on.set()
        with trio.fail_after(5):  # not the 60 s interval: the kick started another reconcile
            while fabric.reconciles < 2:
                await trio.sleep(0.01)
        status = manager.status()
        assert status["mode"] in ("up", "ipv6-only") and status["ifname"] == "tva0" and status["backend"] == "memory"
        assert cards and cards[-1]["overlay_ipv6"] == manager.ipv6
        nursery.cancel_scope.cancel()

"""The ``persistence`` component: saves the node state without stalling the event loop.

Wave 1 saved on the event loop every 2 s when dirty: four files, ~8 fsyncs and the encoding of
every feed, while the mesh, the API and planning waited (measured in ``bench/bench_daemon.py``).
Now the trio thread takes a detached snapshot (``NodeState.snapshot``: shallow copies, a few ms
for 100k holdings) and a worker thread encodes the feeds and writes only the files whose bytes
changed; it returns what it wrote, and only the trio thread keeps that. A change made during the
write marks the state dirty again, so the next save carries it.

A failed save never stops the daemon: the component turns ``degraded`` with the reason and retries
every interval. Only a state dir that cannot be written *at all* (read-only, gone, no permission)
for ``state_unwritable_exit_ms`` ends the daemon, with that message (exit code 5).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable

import trio

from agent.state import NodeState, write_snapshot
from tva.errors import TvaError

log = logging.getLogger("tva.persistence")

STATE_UNWRITABLE_EXIT_MS = 60_000
_UNWRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR})


class Persistence:
    def __init__(self, state: NodeState, *, save_interval_ms: int, clock_ms: Callable[[], int],
                 on_health: Callable[[str, str | None], None] = lambda _s, _r: None,
                 on_unwritable: Callable[[str], None] = lambda _why: None,
                 state_unwritable_exit_ms: int = STATE_UNWRITABLE_EXIT_MS) -> None:
        self.state = state
        self.save_interval_ms = save_interval_ms
        self.clock_ms = clock_ms
        self._on_health = on_health
        self._on_unwritable = on_unwritable
        self.state_unwritable_exit_ms = state_unwritable_exit_ms
        self.dirty = False
        self.saves = 0
        self.problem: str | None = None
        self._written: dict[str, bytes] | None = None  # file -> sha256 of what is on disk
        self._unwritable_since_ms: int | None = None
        self._lock = trio.Lock()

    def mark_dirty(self) -> None:
        self.dirty = True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self.save_interval_ms / 1000)
            if self.dirty:
                await self.save()

    async def save(self) -> bool:
        """Write what changed; False (and ``degraded``) when it failed. Never raises for I/O."""
        async with self._lock:
            self.dirty = False
            snap = self.state.snapshot()
            try:
                self._written = await trio.to_thread.run_sync(write_snapshot, self.state.store, snap, self._written)
            except (OSError, TvaError) as exc:
                self.dirty = True
                self._failed(exc)
                return False
            self.saves += 1
            if self.problem is not None:
                log.info("saving state works again")
                self.problem, self._unwritable_since_ms = None, None
                self._on_health("ok", None)
            return True

    def _failed(self, exc: OSError | TvaError) -> None:
        why = exc.message if isinstance(exc, TvaError) else f"{exc.strerror or exc} ({exc.filename or ''})"
        if why != self.problem:
            log.error("could not save state to %s: %s (will retry every %d s)", self.state.store.state_dir, why,
                      self.save_interval_ms // 1000 or 1)
        self.problem = why
        self._on_health("degraded", f"could not save state: {why}")
        if isinstance(exc, OSError) and exc.errno in _UNWRITABLE:
            now = self.clock_ms()
            self._unwritable_since_ms = self._unwritable_since_ms or now
            if now - self._unwritable_since_ms >= self.state_unwritable_exit_ms:
                self._on_unwritable(f"the state dir {self.state.store.state_dir} cannot be written ({why}) "
                                    f"for {(now - self._unwritable_since_ms) // 1000} s")
        else:
            self._unwritable_since_ms = None

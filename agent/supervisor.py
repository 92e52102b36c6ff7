"""Components that never take the daemon down: each runs under a supervisor that restarts it.

A component is ``async def run(*, task_status)``: it calls ``task_status.started()`` once it serves,
and runs until cancelled. The supervisor runs it in its own nursery; an unexpected exception —
any ``BaseException`` but cancellation and ``KeyboardInterrupt``, so a PyO3 ``PanicException``
too — is logged once with its traceback (a repeat of the same failure gets one line), the
component is marked ``restarting`` and started again after a capped exponential back-off
(``restart_delay_ms_min`` doubling up to ``restart_delay_ms_max``; back to the minimum once it has
run ``healthy_after_ms`` without failing). Like tailscaled and syncthing: one failing subsystem is
a line in the log and a state in ``status``, never the end of the process.

Health per component (``status --json`` → ``components``): ``starting``, ``ok``, ``degraded``
(running, but something is wrong: the component says why with ``report``), ``restarting``
(failed; the reason is the exception) or ``off`` (not running: disabled, finished, or stopped on
purpose, e.g. after this host was revoked).

Faults can be injected (``inject``: the exception is raised inside the component's nursery, as if
one of its tasks raised it), which is what the fault-injection tests and the soak use.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

log = logging.getLogger("tva.supervisor")

RESTART_DELAY_MS_MIN = 500
RESTART_DELAY_MS_MAX = 30_000
HEALTHY_AFTER_MS = 30_000
FAULTS_QUEUED_MAX = 8

Component = Callable[..., Awaitable[None]]  # async def run(*, task_status) -> None


@dataclass
class Health:
    name: str
    state: str = "off"
    reason: str | None = None
    since_ms: int = 0
    restarts: int = 0
    last_failure: str | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        return {"state": self.state, "reason": self.reason, "since_ms": self.since_ms, "restarts": self.restarts}


class FaultInjected(Exception):
    """An exception raised on purpose inside a component (tests, soak)."""


class FaultInjectedBase(BaseException):
    """The same, as a BaseException subclass: what a PyO3 PanicException looks like to Python."""


def is_cancellation(exc: BaseException) -> bool:
    """True for trio.Cancelled / KeyboardInterrupt, or a group holding only such (and none else)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_cancellation(e) for e in exc.exceptions) or any(
            isinstance(e, KeyboardInterrupt) for e in _leaves(exc))
    return isinstance(exc, trio.Cancelled | KeyboardInterrupt)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def describe(exc: BaseException) -> str:
    leaves = [e for e in _leaves(exc) if not isinstance(e, trio.Cancelled)] or [exc]
    first = leaves[0]
    text = f"{type(first).__name__}: {first}" if str(first) else type(first).__name__
    return text[:300] + (f" (+{len(leaves) - 1} more)" if len(leaves) > 1 else "")


class Supervisor:
    def __init__(self, *, clock_ms: Callable[[], int], restart_delay_ms_min: int = RESTART_DELAY_MS_MIN,
                 restart_delay_ms_max: int = RESTART_DELAY_MS_MAX, healthy_after_ms: int = HEALTHY_AFTER_MS) -> None:
        self.clock_ms = clock_ms
        self.restart_delay_ms_min = restart_delay_ms_min
        self.restart_delay_ms_max = restart_delay_ms_max
        self.healthy_after_ms = healthy_after_ms
        self.components: dict[str, Health] = {}
        self._scopes: dict[str, trio.CancelScope] = {}
        self._faults: dict[str, tuple[trio.MemorySendChannel, trio.MemoryReceiveChannel]] = {}
        self._logged: set[tuple[str, str]] = set()
        self._running: set[str] = set()  # components whose current run is under way

    # --- what components and the API call ---------------------------------------------------------

    def health(self, name: str) -> Health:
        if name not in self.components:
            self.components[name] = Health(name, since_ms=self.clock_ms())
        return self.components[name]

    def report(self, name: str, state: str, reason: str | None = None) -> None:
        """A running component's own view of itself: ``ok``, ``degraded`` (with why) or ``off``."""
        if name not in self._running:
            return  # not running: a late report from a dying task must not hide the failure
        self._set(self.health(name), state, reason)

    def status(self) -> dict[str, dict]:
        return {name: h.to_json() for name, h in sorted(self.components.items())}

    def stop(self, name: str, reason: str) -> None:
        """Stop a component for good (it is not restarted), e.g. when this host was revoked."""
        scope = self._scopes.get(name)
        if scope is not None:
            scope.cancel()
        self._running.discard(name)
        self._set(self.health(name), "off", reason)

    def inject(self, name: str, exc: BaseException) -> None:
        """Raise ``exc`` inside the running component ``name`` (tests and the soak)."""
        if name not in self._faults:
            raise KeyError(name)
        self._faults[name][0].send_nowait(exc)

    # --- running ------------------------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery, name: str, fn: Component) -> None:
        """Run ``fn`` supervised in ``nursery``; returns once it has started, or failed a first time
        (start-up goes on without it: it is being restarted)."""
        self.health(name)
        self._faults.setdefault(name, trio.open_memory_channel[BaseException](FAULTS_QUEUED_MAX))
        began = trio.current_time()
        await nursery.start(self._supervise, name, fn)
        log.debug("component %s started in %.0f ms", name, (trio.current_time() - began) * 1000)

    async def _supervise(self, name: str, fn: Component, *,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        h = self.health(name)
        delay_ms = self.restart_delay_ms_min
        announced = False
        with trio.CancelScope() as scope:
            self._scopes[name] = scope
            self._set(h, "starting", None)
            while True:
                started_ms: int | None = None
                self._drain_faults(name)  # a fault meant for the previous run is not for this one
                self._running.add(name)
                try:
                    async with trio.open_nursery() as inner:
                        await inner.start(self._body, fn, inner.cancel_scope)
                        started_ms = self.clock_ms()
                        if h.state in ("starting", "restarting"):
                            self._set(h, "ok", None)
                        if not announced:
                            announced = True
                            task_status.started()
                        inner.start_soon(self._fault_listener, name)
                    # The component returned by itself: it has nothing (more) to do.
                    self._running.discard(name)
                    if h.state != "off":
                        self._set(h, "off", h.reason or "finished")
                    break
                except BaseException as exc:
                    self._running.discard(name)
                    if is_cancellation(exc):
                        raise
                    if scope.cancel_called:  # failed while being stopped on purpose: stays stopped
                        log.info("component %s failed while stopping: %s", name, describe(exc))
                        break
                    self._failed(h, exc)
                if not announced:
                    announced = True
                    task_status.started()
                if started_ms is not None and self.clock_ms() - started_ms >= self.healthy_after_ms:
                    delay_ms = self.restart_delay_ms_min
                await trio.sleep(delay_ms / 1000)
                delay_ms = min(self.restart_delay_ms_max, delay_ms * 2)
        if not announced:
            task_status.started()
        self._scopes.pop(name, None)

    @staticmethod
    async def _body(fn: Component, inner: trio.CancelScope, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await fn(task_status=task_status)
        inner.cancel()  # returned normally: end the fault listener too

    def _drain_faults(self, name: str) -> None:
        receive = self._faults[name][1]
        while True:
            try:
                receive.receive_nowait()
            except trio.WouldBlock:
                return

    async def _fault_listener(self, name: str) -> None:
        exc = await self._faults[name][1].receive()
        raise exc

    def _failed(self, h: Health, exc: BaseException) -> None:
        why = describe(exc)
        h.restarts += 1
        key = (h.name, why)
        if key in self._logged:
            log.warning("component %s failed again (%s); restart #%d", h.name, why, h.restarts)
        else:
            self._logged.add(key)
            log.error("component %s failed: %s; restarting it\n%s", h.name, why,
                      "".join(traceback.format_exception(exc)).rstrip())
        h.last_failure = why
        self._set(h, "restarting", why)

    def _set(self, h: Health, state: str, reason: str | None) -> None:
        if (h.state, h.reason) != (state, reason):
            h.state, h.reason, h.since_ms = state, reason, self.clock_ms()

"""The supervisor: a failing component is logged once, restarted with capped back-off, and never
takes its siblings or the daemon down; cancellation and KeyboardInterrupt pass through."""

from __future__ import annotations

import itertools
import logging

import pytest
import trio
import trio.testing

from agent.supervisor import FaultInjected, FaultInjectedBase, Supervisor, is_cancellation


class Panic(BaseException):
    pass


def clock_ms() -> int:
    return int(trio.current_time() * 1000)


class Flaky:
    """A component that fails its first ``failures`` runs (after starting), then serves."""

    def __init__(self, failures: int, exc: type[BaseException] = RuntimeError, before_start: bool = False) -> None:
        self.failures = failures
        self.exc = exc
        self.before_start = before_start
        self.runs = 0
        self.serving = False

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.runs += 1
        if self.before_start and self.runs <= self.failures:
            raise self.exc("broken at start")
        task_status.started()
        if self.runs <= self.failures:
            await trio.sleep(0.1)
            raise self.exc(f"run {self.runs} broke")
        self.serving = True
        try:
            await trio.sleep_forever()
        finally:
            self.serving = False


@pytest.mark.parametrize("exc", [RuntimeError, Panic, FaultInjectedBase, trio.BrokenResourceError])
async def test_a_failing_component_restarts_and_its_sibling_never_notices(autojump_clock, caplog, exc):
    sup = Supervisor(clock_ms=clock_ms)
    flaky, steady = Flaky(3, exc), Flaky(0)
    caplog.set_level(logging.INFO, logger="tva.supervisor")
    async with trio.open_nursery() as nursery:
        await sup.start(nursery, "steady", steady.run)
        await sup.start(nursery, "flaky", flaky.run)
        assert sup.health("flaky").state in ("ok", "restarting")
        seen = set()
        with trio.fail_after(60):
            while not flaky.serving:
                seen.add(sup.health("flaky").state)
                await trio.sleep(0.05)
        assert "restarting" in seen
        assert sup.health("flaky").state == "ok" and sup.health("flaky").restarts == 3
        assert sup.health("steady").state == "ok" and steady.runs == 1 and steady.serving
        nursery.cancel_scope.cancel()
    tracebacks = [r for r in caplog.records if r.levelno == logging.ERROR]
    # Each distinct failure is logged once with its traceback; every failure names the component.
    assert len(tracebacks) == 3 and all("Traceback" in r.getMessage() for r in tracebacks)
    assert all("flaky" in r.getMessage() for r in caplog.records if r.name == "tva.supervisor")


async def test_the_same_failure_again_is_one_line_and_backoff_is_capped(autojump_clock, caplog):
    sup = Supervisor(clock_ms=clock_ms, restart_delay_ms_min=100, restart_delay_ms_max=800)
    starts: list[float] = []

    async def always_broken(*, task_status=trio.TASK_STATUS_IGNORED):
        starts.append(trio.current_time())
        raise ValueError("same every time")

    caplog.set_level(logging.INFO, logger="tva.supervisor")
    async with trio.open_nursery() as nursery:
        await sup.start(nursery, "broken", always_broken)  # returns although it never started
        await trio.sleep(10)
        assert sup.health("broken").state == "restarting" and "same every time" in sup.health("broken").reason
        nursery.cancel_scope.cancel()
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(starts)]
    assert gaps[:5] == [0.1, 0.2, 0.4, 0.8, 0.8]
    assert len([r for r in caplog.records if "Traceback" in r.getMessage()]) == 1
    assert len([r for r in caplog.records if "failed again" in r.getMessage()]) == len(starts) - 1


async def test_a_component_that_serves_long_enough_restarts_quickly_again(autojump_clock):
    sup = Supervisor(clock_ms=clock_ms, restart_delay_ms_min=100, restart_delay_ms_max=10_000,
                     healthy_after_ms=1000)
    starts: list[float] = []

    async def fails_after(*, task_status=trio.TASK_STATUS_IGNORED):
        starts.append(trio.current_time())
        task_status.started()
        await trio.sleep(0.01 if len(starts) < 5 else 5)
        raise RuntimeError("later")

    async with trio.open_nursery() as nursery:
        await sup.start(nursery, "c", fails_after)
        await trio.sleep(30)
        nursery.cancel_scope.cancel()
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(starts)]
    # Four quick failures double the delay; after a healthy 5 s the delay is back at the minimum.
    assert gaps[:4] == [0.11, 0.21, 0.41, 0.81]
    assert gaps[4] == pytest.approx(5.1, abs=0.01)


async def test_injected_faults_and_stop(autojump_clock):
    sup = Supervisor(clock_ms=clock_ms, restart_delay_ms_min=100)
    comp = Flaky(0)
    async with trio.open_nursery() as nursery:
        await sup.start(nursery, "c", comp.run)
        for exc in (FaultInjected("x"), FaultInjectedBase("y")):
            sup.inject("c", exc)
            await trio.sleep(0.01)
            assert sup.health("c").state == "restarting" and not comp.serving
            await trio.sleep(1)
            assert sup.health("c").state == "ok" and comp.serving
        assert sup.health("c").restarts == 2
        sup.stop("c", "not needed")
        await trio.sleep(1)
        assert sup.health("c").to_json()["state"] == "off" and not comp.serving
        with pytest.raises(KeyError):
            sup.inject("nope", FaultInjected("z"))
        nursery.cancel_scope.cancel()


async def test_a_component_reports_its_own_health_and_finishing_is_off(autojump_clock):
    sup = Supervisor(clock_ms=clock_ms)

    async def degraded(*, task_status=trio.TASK_STATUS_IGNORED):
        sup.report("d", "degraded", "disk full")
        task_status.started()
        await trio.sleep_forever()

    async def finishes(*, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()

    async with trio.open_nursery() as nursery:
        await sup.start(nursery, "d", degraded)
        await sup.start(nursery, "f", finishes)
        await trio.sleep(1)
        status = sup.status()
        assert status["d"]["state"] == "degraded" and status["d"]["reason"] == "disk full"
        assert status["f"]["state"] == "off" and status["f"]["restarts"] == 0
        nursery.cancel_scope.cancel()


async def test_cancellation_and_keyboard_interrupt_are_never_swallowed():
    sup = Supervisor(clock_ms=clock_ms)

    async def interrupted(*, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        raise KeyboardInterrupt

    with pytest.raises(BaseExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            await sup.start(nursery, "k", interrupted)
            await trio.sleep(1)
    assert info.group_contains(KeyboardInterrupt)
    with trio.move_on_after(0.2) as scope:
        async with trio.open_nursery() as nursery:
            await sup.start(nursery, "steady", Flaky(0).run)
    assert scope.cancelled_caught and sup.health("steady").restarts == 0
    assert is_cancellation(BaseExceptionGroup("x", [KeyboardInterrupt(), ValueError()]))
    assert not is_cancellation(ExceptionGroup("x", [ValueError()]))

"""Crash safety: a writer SIGKILLed at arbitrary points leaves the old or the new generation.

A child process rewrites one 2 MiB state file generation after generation (crash_writer.py);
the test kills it with SIGKILL at delays spread over a few write durations (a fixed,
reproducible list), then checks that the store reads exactly one complete generation — the last
one the child reported done, or the one it was writing — with no corruption reported and no temp
file left behind once the store is reopened. Most rounds fork the already-imported test process
(fast); a few exec a fresh interpreter, as a restarting daemon would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.store import StateStore
from tests.agent import crash_writer
from tests.agent.crash_writer import NAME, generation_of
from tests.conftest import require_soak

WRITER = Path(crash_writer.__file__)
PAYLOAD_BYTES = 2 * 1024 * 1024
WAIT_S = 20.0


def delays_s(count: int) -> list[float]:
    # Spread over 0..~100 ms in a fixed order (multiplicative stepping, no randomness source):
    # one 2 MiB write with fsync takes ~20-50 ms here, so kills land before, inside and after
    # writes, including during the link/rename steps.
    return [((i * 37) % 101) / 1000 for i in range(count)]


class _Forked:
    """A forked child running crash_writer.run, reporting through a pipe."""

    def __init__(self, state_dir: Path) -> None:
        r, w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # child: never returns into pytest
            try:
                os.close(r)
                crash_writer.run(state_dir, PAYLOAD_BYTES, os.fdopen(w, "w"))
            finally:
                os._exit(1)
        os.close(w)
        self.stdout = os.fdopen(r)

    def kill_and_wait(self) -> bool:
        os.kill(self.pid, signal.SIGKILL)
        _, status = os.waitpid(self.pid, 0)
        return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


class _Execed:
    def __init__(self, state_dir: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, str(WRITER), str(state_dir), str(PAYLOAD_BYTES)],
                                     stdout=subprocess.PIPE, text=True)
        self.stdout = self.proc.stdout

    def kill_and_wait(self) -> bool:
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=WAIT_S) == -signal.SIGKILL


def run_kills(state_dir: Path, delays: list[float], child_kind=_Forked) -> dict[str, int]:
    seen = {"kills": 0, "advanced": 0, "torn_temp_left": 0, "renamed_not_reported": 0}
    expected = 0
    for delay in delays:
        child = child_kind(state_dir)
        line = child.stdout.readline()
        assert line.startswith("ready "), f"writer did not start: {line!r}"
        start_gen = int(line.split()[1])
        assert start_gen == expected
        time.sleep(delay)
        assert child.kill_and_wait(), "the writer was not killed by SIGKILL"
        done = [int(x.split()[1]) for x in child.stdout.read().splitlines() if x.startswith("done ")]
        child.stdout.close()
        last_done = done[-1] if done else start_gen
        # a temp file left behind proves this kill landed inside a write
        seen["torn_temp_left"] += any(p.name.startswith(".") for p in state_dir.iterdir())
        store = StateStore(state_dir)  # what a restarting node does
        data = store.read(NAME)
        got = 0 if data is None else generation_of(data, PAYLOAD_BYTES)
        assert got in (last_done, last_done + 1), f"read generation {got}, writer was at {last_done}"
        assert store.last_problem is None, store.last_problem
        leftovers = [p.name for p in state_dir.iterdir() if p.name.startswith(".")]
        assert not leftovers, leftovers
        if got >= 2:  # the kept previous generation is complete too
            prev = (state_dir / f"{NAME}.prev").read_bytes()
            assert generation_of(prev[-PAYLOAD_BYTES:], PAYLOAD_BYTES) in (got - 1, got)
        seen["kills"] += 1
        seen["advanced"] += got > start_gen
        seen["renamed_not_reported"] += got == last_done + 1
        expected = got
    return seen


def test_sigkill_while_saving_leaves_old_or_new_generation(tmp_path):
    seen = run_kills(tmp_path / "state", delays_s(40))
    # The loop must really have exercised writes, and killed some of them midway.
    assert seen["kills"] == 40 and seen["advanced"] >= 5 and seen["torn_temp_left"] >= 3, seen


def test_sigkill_of_a_fresh_interpreter(tmp_path):
    seen = run_kills(tmp_path / "state", [0.0, 0.03, 0.06, 0.09, 0.12], _Execed)
    assert seen["kills"] == 5


def test_sigkill_soak(tmp_path):
    require_soak()
    seen = run_kills(tmp_path / "state", delays_s(500))
    assert seen["advanced"] >= 100 and seen["torn_temp_left"] >= 40, seen


@pytest.mark.parametrize("gen", [1, 7])
def test_the_checker_rejects_a_torn_payload(gen):
    good = crash_writer.payload(gen, 1024)
    assert generation_of(good, 1024) == gen
    torn = good[:512] + crash_writer.payload(gen + 1, 1024)[512:]
    with pytest.raises(AssertionError):
        generation_of(torn, 1024)

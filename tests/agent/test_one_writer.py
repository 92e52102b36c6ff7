"""One writer per state dir, with real `tva-agent` processes.

A second `run` on a state dir refuses and leaves the first alone; a write given while the daemon
runs reaches the daemon (never the files beside it), whether the state dir is named by
``--state-dir``, ``TVA_STATE_DIR`` or a ``--config`` file; a daemon that holds the lock but does
not answer makes writes fail loudly, writing nothing. Also: faults injected into a live daemon
over its (test-only) fault route, `--version`, and `status` naming the version.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from agent.discovery import StateLock
from tests.agent.procs import BIN, AgentProc, wait_until


@pytest.fixture
def daemon(tmp_path):
    agent = AgentProc(tmp_path, "solo", env={"TVA_FAULT_INJECTION": "1"})
    agent.cli("init", "--name", "solo")
    agent.start()
    yield agent
    agent.kill()


def contents(agent: AgentProc) -> set[str]:
    return {h["content"] for h in agent.cli("holdings", "list", "--json")}


def test_a_second_run_on_the_same_state_dir_refuses_and_the_first_is_unharmed(daemon):
    first = daemon.daemon_info()
    started = time.monotonic()
    res = subprocess.run([BIN, "--state-dir", str(daemon.state_dir), "run", "--listen", "/ip4/127.0.0.1/tcp/0",
                          "--api", "127.0.0.1:0"], env=daemon.env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 5, res
    assert f"pid {first['pid']} (tva-agent run)" in res.stderr and "hint:" in res.stderr
    assert time.monotonic() - started < 20
    assert daemon.daemon_info() == first and daemon.proc.poll() is None
    assert daemon.cli("status", "--json")["daemon"] is True
    # init and join on a state dir in use refuse the same way.
    assert daemon.run_cli("init", "--name", "again").returncode == 5


def test_writes_reach_the_daemon_however_the_state_dir_is_named(daemon, tmp_path):
    ih = "ab" * 20
    env = {k: v for k, v in daemon.env.items() if k != "TVA_STATE_DIR"}
    config = tmp_path / "tva.toml"
    config.write_text(f'state_dir = "{daemon.state_dir}"\n')
    ways = {
        "flag": ([BIN, "--state-dir", str(daemon.state_dir)], env),
        "env": ([BIN], {**env, "TVA_STATE_DIR": str(daemon.state_dir)}),
        "config": ([BIN, "--config", str(config)], env),
    }
    for name, (prefix, how) in ways.items():
        res = subprocess.run([*prefix, "holdings", "add", f"by-{name}", "--infohash", ih, "--size", "1"],
                             env=how, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, (name, res)
        # The daemon has it at once: the command went through its API, not the files.
        info = daemon.daemon_info()
        status = subprocess.run([*prefix, "status", "--json"], env=how, capture_output=True, text=True, timeout=60)
        assert json.loads(status.stdout)["api"] == info["api"], name
    assert contents(daemon) == {"by-flag", "by-env", "by-config"}
    assert daemon.stop() == 0
    # Nothing was lost when the daemon saved and stopped; offline, the same three are there.
    assert daemon.cli("status", "--json")["daemon"] is False
    assert contents(daemon) == {"by-flag", "by-env", "by-config"}


def state_files(agent: AgentProc) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in agent.state_dir.iterdir() if p.is_file() and p.name != "lock"}


def test_a_daemon_that_holds_the_lock_but_does_not_answer_gets_no_write_beside_it(daemon):
    os.kill(daemon.proc.pid, signal.SIGSTOP)
    try:
        before = state_files(daemon)
        res = daemon.run_cli("holdings", "add", "late", "--infohash", "cd" * 20, "--size", "1")
        assert res.returncode == 3 and "did not answer" in res.stderr and "hint:" in res.stderr, res
        assert state_files(daemon) == before  # the command wrote nothing beside the daemon
    finally:
        os.kill(daemon.proc.pid, signal.SIGCONT)
    # The daemon had taken the request: it carries it out once it runs again (routed, not lost).
    wait_until(lambda: "late" in contents(daemon), 20, "the daemon to catch up")
    assert daemon.stop() == 0
    assert "late" in contents(daemon)
    # A lock held with no daemon.json (a daemon still starting, or hung before its API answered):
    # the command waits a little, then refuses, and writes nothing.
    with StateLock(daemon.state_dir) as lock:
        assert lock.try_acquire("run")
        res = daemon.run_cli("holdings", "add", "lost", "--infohash", "cd" * 20, "--size", "1")
    assert res.returncode == 3 and f"pid {os.getpid()} (tva-agent run)" in res.stderr, res
    assert "lost" not in contents(daemon)


def test_faults_injected_into_a_live_daemon_restart_components_and_it_stays_up(daemon):
    from cli.client import call

    info = daemon.daemon_info()
    for component, kind in (("mesh", "base"), ("persistence", "error"), ("policy", "base")):
        call(info, "POST", "/debug/faults", {"component": component, "kind": kind})
        wait_until(lambda c=component: daemon.cli("status", "--json")["components"][c]["restarts"] >= 1, 20,
                   f"{component} to fail")
        wait_until(lambda c=component: daemon.cli("status", "--json")["components"][c]["state"] == "ok", 20,
                   f"{component} to be back")
    daemon.cli("holdings", "add", "after", "--infohash", "ef" * 20, "--size", "1")
    assert "after" in contents(daemon) and daemon.proc.poll() is None
    log = daemon.log.read_text()
    assert log.count("component mesh failed: FaultInjectedBase") == 1 and "Traceback" in log
    assert daemon.stop() == 0


def test_version_is_shown(daemon):
    out = daemon.cli("--version").strip()
    assert out.startswith("tva-agent ") and out.split()[1] == daemon.cli("status", "--json")["version"]

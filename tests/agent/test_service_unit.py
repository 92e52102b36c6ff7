"""`tva-agent service`: the units it writes, checked by systemd's own `systemd-analyze verify` (no
systemd runs in this container, so install/uninstall are exercised with --unit-dir, which leaves
the service manager alone), and the command line they run accepted by the real CLI."""

from __future__ import annotations

import json
import os
import plistlib
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.agent.procs import AgentProc

SYSTEMD_RUNS = Path("/run/systemd/system").is_dir()


def analyze(unit: Path, *, user: bool = False, tmp: Path) -> subprocess.CompletedProcess:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: ./setup.sh test installs Debian's systemd package")
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp)}  # --user looks for a runtime dir
    return subprocess.run(["systemd-analyze", *(["--user"] if user else []), "verify", str(unit)],
                          capture_output=True, text=True, env=env, timeout=60)


def exec_start(unit_text: str) -> list[str]:
    line = next(x for x in unit_text.splitlines() if x.startswith("ExecStart="))
    return [a.replace("%%", "%") for a in shlex.split(line.split("=", 1)[1])]


@pytest.mark.parametrize("user", [False, True])
def test_the_dry_run_unit_passes_systemd_analyze_verify(tmp_path, user):
    agent = AgentProc(tmp_path, "box with space %h")  # quoting: a space and a % in the state dir
    res = agent.run_cli("service", "install", "--dry-run", *(["--user"] if user else []))
    assert res.returncode == 0, res.stderr
    assert "dry run: nothing was changed" in res.stdout and "would: " in res.stderr
    text = res.stdout.split("dry run:")[0]
    unit = tmp_path / "tva-agent.service"
    unit.write_text(text)
    verified = analyze(unit, user=user, tmp=tmp_path)
    # Warnings (an unknown key, a bad value) are printed with exit 0: none may appear.
    assert verified.returncode == 0 and verified.stdout.strip() == "" and verified.stderr.strip() == "", verified
    argv = exec_start(text)
    assert argv[argv.index("--state-dir") + 1] == str(agent.state_dir.absolute())
    assert argv[-1] == "run"
    if user:
        assert "CapabilityBoundingSet" not in text and "WantedBy=default.target" in text
    else:
        assert "CapabilityBoundingSet=CAP_NET_ADMIN CAP_DAC_READ_SEARCH" in text
        assert "RestartPreventExitStatus=4" in text and "ProtectSystem=strict" in text
        escaped = str(agent.state_dir.absolute()).replace("%", "%%")  # systemd's specifiers
        assert f'ReadWritePaths="{escaped}"' in text
    assert not agent.state_dir.exists()  # a dry run changes nothing


def test_install_and_uninstall_into_a_unit_dir_and_the_unit_runs_the_real_cli(tmp_path):
    agent = AgentProc(tmp_path, "box")
    agent.cli("init", "--name", "home")
    units, config = tmp_path / "units", tmp_path / "etc" / "config.toml"
    res = agent.run_cli("--config", str(config), "service", "install", "--unit-dir", str(units), "--json")
    assert res.returncode == 0, res.stderr
    done = json.loads(res.stdout)
    unit = units / "tva-agent.service"
    assert done["path"] == str(unit) and unit.read_text() == done["unit"]
    assert config.exists()  # created, so `--config` in the unit names a file that is there
    assert analyze(unit, tmp=tmp_path).returncode == 0
    # The unit's own command line, with `run` swapped for a read, is accepted by the real CLI and
    # reaches the state dir this command resolved.
    argv = exec_start(unit.read_text())
    out = subprocess.run([*argv[:-1], "status", "--json"], capture_output=True, text=True, env=agent.env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["fleet_name"] == "home"
    status = json.loads(agent.run_cli("service", "status", "--json").stdout)
    assert status["manager"] == "systemd" and "installed" in status
    res = agent.run_cli("service", "uninstall", "--unit-dir", str(units))
    assert res.returncode == 0 and not unit.exists(), res.stderr
    assert agent.state_dir.is_dir()  # the state dir is kept
    again = agent.run_cli("service", "uninstall", "--unit-dir", str(units))
    assert again.returncode == 2 and "no unit" in again.stderr


@pytest.mark.skipif(SYSTEMD_RUNS, reason="systemd runs here: a real install would change this machine")
def test_without_a_running_systemd_install_refuses_before_writing_anything(tmp_path):
    agent = AgentProc(tmp_path, "box")
    res = agent.run_cli("--config", str(tmp_path / "cfg.toml"), "service", "install")
    assert res.returncode == 1 and "systemd is not running" in res.stderr and "--unit-dir" in res.stderr
    assert not (tmp_path / "cfg.toml").exists()
    assert not Path("/etc/systemd/system/tva-agent.service").exists()


def test_the_launchd_plist_runs_the_same_command(tmp_path):
    agent = AgentProc(tmp_path, "box")
    systemd = agent.run_cli("service", "install", "--dry-run").stdout.split("dry run:")[0]
    res = agent.run_cli("service", "install", "--dry-run", "--manager", "launchd")
    assert res.returncode == 0, res.stderr
    plist = plistlib.loads(res.stdout.split("dry run:")[0].encode())
    assert plist["Label"] == "org.tva-agent" and plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["ProgramArguments"] == exec_start(systemd)
    assert "launchctl bootstrap system" in res.stderr

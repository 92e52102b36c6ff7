"""Running real `tva-agent` processes on loopback for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BIN = str(Path(sys.executable).with_name("tva-agent"))
FAST_ENV = {
    # Short periods so liveness and sync settle within seconds in tests.
    "TVA_GOSSIP_INTERVAL_MS": "200",
    "TVA_PROBE_INTERVAL_MS": "1000",
    "TVA_TICK_INTERVAL_MS": "500",
    "TVA_SAVE_INTERVAL_MS": "300",
    "TVA_WG_BACKEND": "off",
    "TVA_TORRENT_ENGINE": "off",
    "TVA_MEDIA_PORT": "0",  # many agents on one machine: each media plane on a free port
}


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last: {last!r:.600}")


class AgentProc:
    def __init__(self, root: Path, name: str, host_class: str = "server", *, prefix: tuple[str, ...] = (),
                 listen: str | None = "/ip4/127.0.0.1/tcp/0", api: str | None = "127.0.0.1:0",
                 env: dict[str, str] | None = None) -> None:
        # prefix: e.g. ("ip", "netns", "exec", NS) to run this agent and its CLI inside a namespace.
        # listen/api None: the agent's defaults (no flag given).
        self.prefix = prefix
        self.listen = listen
        self.api = api
        self.name = name
        self.state_dir = root / name
        self.host_class = host_class
        self.env = {**os.environ, **FAST_ENV, "XDG_CONFIG_HOME": str(root / "cfg"),
                    "TVA_HOST_NAME": name, "TVA_HOST_CLASS": host_class, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.log = root / f"{name}.log"

    # --- one-shot commands ------------------------------------------------------------------------

    def run_cli(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix, BIN, "--state-dir", str(self.state_dir), *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout_s)

    def cli(self, *args: str) -> Any:
        """Run a command that must succeed; parse its JSON when --json was given."""
        res = self.run_cli(*args)
        assert res.returncode == 0, f"{self.name}: {args} exited {res.returncode}: {res.stderr}"
        return json.loads(res.stdout) if "--json" in args else res.stdout

    # --- the daemon -----------------------------------------------------------------------------

    def _spawn(self, *args: str) -> None:
        out = self.log.open("ab")
        flags = [*(["--listen", self.listen] if self.listen else []), *(["--api", self.api] if self.api else [])]
        self.proc = subprocess.Popen([*self.prefix, BIN, "--state-dir", str(self.state_dir), *args, *flags],
                                     env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def start(self) -> None:
        self._spawn("run")
        self.wait_ready()

    def start_join(self, token: str) -> None:
        self._spawn("join", token, "--run")
        self.wait_ready()

    def wait_ready(self, timeout_s: float = 60) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            info = self.state_dir / "daemon.json"
            if not info.exists():
                return False
            try:
                return json.loads(info.read_text()).get("pid") == self.proc.pid
            except ValueError:
                return False

        wait_until(ready, timeout_s, f"{self.name} to start")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self) -> int | None:
        self.kill(signal.SIGTERM)
        return self.proc.returncode if self.proc else None

    def daemon_info(self) -> dict:
        return json.loads((self.state_dir / "daemon.json").read_text())

    @property
    def peer_id(self) -> str:
        return self.cli("status", "--json")["peer_id"]


@contextmanager
def two_agent_fleet(root: Path, env: dict[str, str]) -> Iterator[tuple[AgentProc, AgentProc]]:
    """alpha founds fleet "home" and runs; beta joins it by invite and runs; both killed after."""
    alpha = AgentProc(root, "alpha", env=env)
    beta = AgentProc(root, "beta", env=env)
    try:
        alpha.cli("init", "--name", "home")
        alpha.start()
        beta.start_join(alpha.cli("invite", "--json")["invite"])
        yield alpha, beta
    finally:
        for p in (alpha, beta):
            p.kill()

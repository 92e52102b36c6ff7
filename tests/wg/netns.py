"""Network-namespace lab for tests and benches: N nodes on one veth/bridge underlay.

Layout: a hub namespace holds a bridge; each node namespace gets one veth (``u0``) into it with
an address in 198.51.100.0/24 (TEST-NET-2; never 192.0.2.0/24, where this machine's eth0 lives).
Every name starts with ``tvat-<run id>-`` so parallel runs cannot collide and leftovers are easy to
spot. :meth:`NetnsLab.close` removes everything it made, even after a failure, and
:meth:`NetnsLab.leftovers` lists what would still be there (tests assert it is empty).

Usage::

    with NetnsLab(3) as lab:
        lab.ns(0), lab.underlay_ip(1), lab.sock_dir(2), lab.ping(0, "10.77.3.2")
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

UNDERLAY_PREFIX = "198.51.100"
UNDERLAY_HOST_BASE = 10
NS_PREFIX = "tvat-"


def sh(*cmd: str, check: bool = True, timeout_s: float = 10.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout_s)


def netns_list() -> list[str]:
    out = sh("ip", "netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


class NetnsLab:
    def __init__(self, nodes: int) -> None:
        if not 1 <= nodes <= 200:
            raise ValueError("1..200 nodes")
        self.run_id = secrets.token_hex(3)
        self.prefix = f"{NS_PREFIX}{self.run_id}-"
        self.hub = f"{self.prefix}hub"
        self.nodes = [f"{self.prefix}n{i}" for i in range(nodes)]
        self.tmp = Path(tempfile.mkdtemp(prefix=self.prefix))
        self._made: list[str] = []
        self.pids: list[int] = []  # processes a test started inside the lab (checked by leftovers)

    # --- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> NetnsLab:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        self._add_ns(self.hub)
        sh("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.hub, "link", "set", "br0", "up")
        for i, ns in enumerate(self.nodes):
            self._add_ns(ns)
            sh("ip", "-n", self.hub, "link", "add", f"p{i}", "type", "veth", "peer", "name", "u0", "netns", ns)
            sh("ip", "-n", self.hub, "link", "set", f"p{i}", "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.underlay_ip(i)}/24", "dev", "u0")
            sh("ip", "-n", ns, "link", "set", "u0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def _add_ns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self._made.append(name)

    def close(self) -> None:
        for pid in self.pids:
            _kill(pid)
        for ns in reversed(self._made):
            # Deleting a namespace removes its veths and any wireguard-go tun inside it.
            sh("ip", "netns", "del", ns, check=False)
        self._made.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """Everything of this lab that still exists (namespaces, live pids, files)."""
        out = [f"netns {n}" for n in netns_list() if n.startswith(self.prefix)]
        out += [f"pid {p}" for p in self.pids if _alive(p)]
        if self.tmp.exists():
            out += [f"file {p}" for p in self.tmp.rglob("*")] or [f"dir {self.tmp}"]
        return out

    # --- helpers --------------------------------------------------------------------------------

    def ns(self, i: int) -> str:
        return self.nodes[i]

    def underlay_ip(self, i: int) -> str:
        return f"{UNDERLAY_PREFIX}.{UNDERLAY_HOST_BASE + i}"

    def sock_dir(self, i: int) -> Path:
        return self.tmp / f"n{i}" / "wireguard"

    def run(self, i: int, *cmd: str, check: bool = True, timeout_s: float = 10.0) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.nodes[i], *cmd, check=check, timeout_s=timeout_s)

    def ping(self, i: int, addr: str, *, wait_s: float = 1.0) -> bool:
        """One ping from node i; True when a reply came within ``wait_s``."""
        r = self.run(i, "ping", "-n", "-q", "-c", "1", "-W", f"{wait_s:g}", addr, check=False,
                     timeout_s=wait_s + 5)
        return r.returncode == 0

    def wait_ping(self, i: int, addr: str, *, timeout_s: float = 5.0) -> float | None:
        """Seconds until the first reply from ``addr`` (None if none within ``timeout_s``)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if self.ping(i, addr, wait_s=0.2):
                return time.monotonic() - start
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes once its state is Z.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _kill(pid: int) -> None:
    if not _alive(pid):
        return
    try:
        os.kill(pid, 15)
        for _ in range(100):
            if not _alive(pid):
                return
            time.sleep(0.01)
        os.kill(pid, 9)
    except ProcessLookupError:
        pass

"""Who owns a WireGuard interface on this host: one agent per interface, never a silent takeover.

Wave 1 adopted any ``tva0`` that answered: a second agent on the same host (another state dir) took
over the first one's interface, then failed to bind its API on addresses it did not have, and the
daemon died. Now an agent uses an interface only when it is its own:

* **A host-wide claim**: ``flock`` on ``<ifname>.<netns>.tva-owner`` in WireGuard's run directory
  (``/var/run/wireguard``, or ``wg_socket_dir``) while the agent runs the interface — per network
  namespace, since an interface name is. The file says which state dir and pid hold it, so
  another agent can say whose it is. The kernel drops the lock when its holder dies, so a crashed
  agent never blocks the next one; the file itself stays (removing it could let two agents lock
  two different files under one name).
* **Adoption** of an interface that already exists (wireguard-go outlives a SIGKILLed agent, by
  design: the tunnel must not drop with the agent) only when this agent's state dir has an
  ownership record for it *and* the interface holds this agent's private key.

Anything else leaves the agent mesh-only, with the reason in ``status`` ("tva0 belongs to the agent
with state dir D, pid N; set wg_interface to run a second one").
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from pathlib import Path

from agent.discovery import pid_alive, read_json_object
from tva.errors import WgBackendError

log = logging.getLogger("tva.fabric")

WG_RUN_DIR = Path("/var/run/wireguard")
OWNER_RECORD = "wg_owner"  # in the state dir (plain JSON, not secret): {"ifname", "public_key"}


def netns_id() -> int:
    """An id of this process's network namespace (interface names are unique only within one)."""
    try:
        return os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return 0


class InterfaceClaim:
    def __init__(self, ifname: str, state_dir: Path, *, claim_dir: Path | None = None) -> None:
        self.ifname = ifname
        self.state_dir = Path(state_dir)
        self.path = (claim_dir or WG_RUN_DIR) / f"{ifname}.{netns_id()}.tva-owner"
        self._fd: int | None = None

    def take(self, backend, private_b64: str, public_b64: str) -> str | None:
        """Claim the interface for this agent (blocking: netlink/UAPI). None when it is ours to run;
        else why not (the agent then runs mesh-only)."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            return f"cannot claim {self.ifname} ({self.path}: {exc.strerror})"
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self._holder()
            return (f"{self.ifname} belongs to the agent with state dir {holder.get('state_dir', '?')}, "
                    f"pid {holder.get('pid', '?')}; set wg_interface (and wg_listen_port) to run a second one")
        previous = self._holder()
        self._fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"state_dir": str(self.state_dir), "pid": os.getpid()}).encode(), 0)
        why = self._check_existing(backend, private_b64, previous)
        if why is not None:
            self.release()
            return why
        self._write_record(public_b64)
        return None

    def _check_existing(self, backend, private_b64: str, previous: dict) -> str | None:
        try:
            exists = backend.netlink.index() is not None
        except WgBackendError as exc:
            return f"cannot look at {self.ifname}: {exc.message}"
        if not exists:
            return None
        mine = self._record().get("ifname") == self.ifname
        try:
            key = backend.actual().private_key
        except WgBackendError as exc:
            key, mine = None, False
            log.info("%s: cannot read its key: %s", self.ifname, exc.message)
        if mine and key == private_b64:
            log.info("%s: adopting this agent's own interface (left running by its previous run)", self.ifname)
            return None
        prior = previous.get("state_dir")
        if prior and prior != str(self.state_dir):
            pid = previous.get("pid")
            alive = "running" if isinstance(pid, int) and pid_alive(pid) else "no longer running"
            owner = f"the agent with state dir {prior} (pid {pid}, {alive})"
        else:
            owner = "something else (not this agent: another key)"
        return (f"{self.ifname} already exists and belongs to {owner}; remove it (ip link del {self.ifname}) "
                "or set wg_interface (and wg_listen_port) to run another one")

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # the file stays: its text names the last holder for whoever finds the link

    def _holder(self) -> dict:
        return read_json_object(self.path)

    def _record(self) -> dict:
        return read_json_object(self.state_dir / OWNER_RECORD)

    def _write_record(self, public_b64: str) -> None:
        record = {"ifname": self.ifname, "public_key": public_b64}
        if self._record() == record:
            return
        path = self.state_dir / OWNER_RECORD
        tmp = path.with_name(f".{OWNER_RECORD}.tmp-{os.getpid()}")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(record))
            os.replace(tmp, path)

"""How a command finds the daemon of a state dir, and the lock that makes that daemon its only writer.

Standard library only: `tva-agent status` against a running daemon imports this and nothing heavy.

* ``daemon.json`` (0600) names the running daemon's pid, API address and token. It is written when
  the daemon's API answers and removed when it stops; a stale file (dead pid) is ignored.
* ``lock`` is held with ``flock(LOCK_EX)`` for as long as a writer works on the state dir: the
  daemon for its whole life, an offline command for one load-act-save. The kernel drops the lock
  when its holder dies (even by SIGKILL), so there is never a stale lock to clean up; the file's
  text (pid and role of the holder) is only there to say *who* holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

DAEMON_FILE = "daemon.json"
LOCK_FILE = "lock"
LOCK_POLL_S = 0.05


def daemon_info(state_dir: Path) -> dict[str, Any] | None:
    """The running daemon's API address and token, or None when no live daemon owns this state dir."""
    path = Path(state_dir) / DAEMON_FILE
    try:
        info = json.loads(path.read_text())
        pid = int(info["pid"])
        str(info["api"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    except (OverflowError, ValueError):
        return False
    return True


def write_daemon_file(state_dir: Path, info: dict[str, Any]) -> None:
    path = Path(state_dir) / DAEMON_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    os.replace(tmp, path)


def remove_daemon_file(state_dir: Path, pid: int) -> None:
    """Remove ``daemon.json`` if it is this process's (a newer daemon's file is left alone)."""
    path = Path(state_dir) / DAEMON_FILE
    try:
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


class StateLock:
    """The exclusive writer lock of one state dir (see the module docstring)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, role: str) -> bool:
        """Take the lock if it is free; True when this object now holds it."""
        if self._fd is not None:
            return True
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # O_CLOEXEC (Python's default): a child such as wireguard-go must not inherit the lock.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "role": role, "since_ms": time.time_ns() // 1_000_000})
                  .encode(), 0)
        return True

    def acquire(self, role: str, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the lock (another offline command may hold it briefly)."""
        deadline = time.monotonic() + timeout_s
        while not self.try_acquire(role):
            if time.monotonic() >= deadline:
                return False
            time.sleep(LOCK_POLL_S)
        return True

    def holder(self) -> dict[str, Any]:
        """Who holds the lock, as its holder wrote it ({} when unknown)."""
        return read_json_object(self.path)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> StateLock:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def read_json_object(path: Path) -> dict[str, Any]:
    """A small JSON object from a file another process writes; {} when absent, empty or not one."""
    try:
        info = json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def describe_holder(holder: dict[str, Any]) -> str:
    pid, role = holder.get("pid"), holder.get("role")
    if pid is None:
        return "another process"
    return f"pid {pid}" + (f" (tva-agent {role})" if role else "")


def agent_version() -> str:
    """The installed tva-agent's version (`tva-agent --version`, `status --json` → version)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tva-agent")
    except PackageNotFoundError:
        return "unknown"

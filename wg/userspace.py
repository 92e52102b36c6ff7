"""Userspace backend: wireguard-go, driven over its UAPI unix socket.

Shell. We start ``wireguard-go -f IFNAME`` ourselves (``-f`` keeps it in the foreground, so the
pid we hold is wireguard-go's and SIGTERM stops it cleanly, removing the socket and the tun
device), talk to ``<sock_dir>/IFNAME.sock`` for keys and peers, and use netlink for addresses and
the link state.

wireguard-go's socket directory is fixed at /var/run/wireguard. To run it in a network namespace
and/or with a private socket directory (tests run three nodes on one machine), ``sock_dir`` is
bind-mounted over /var/run/wireguard in a mount namespace of the wireguard-go process only:
``ip netns exec`` makes one (mounts there do not propagate back); without a netns, ``unshare -m``.
Pathname unix sockets are reachable from any network namespace, so we connect to
``sock_dir/IFNAME.sock`` from here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from tva.errors import DecodeError, TooLarge, WgBackendError
from wg.backend import IFNAME_DEFAULT
from wg.netlink import Netlink
from wg.plan.diff import ActualInterface, Op
from wg.uapi import GET_REQUEST, REPLY_BYTES_MAX, encode_set, parse_errno, parse_get

WG_RUN_DIR = Path("/var/run/wireguard")
START_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 3.0
UAPI_TIMEOUT_S = 5.0
_POLL_S = 0.01
_BIND_AND_EXEC = 'mount --bind "$1" "$2" && exec "$3" -f "$4"'


class UserspaceBackend:
    kind = "userspace"

    def __init__(
        self,
        ifname: str = IFNAME_DEFAULT,
        *,
        netns: str | None = None,
        sock_dir: Path | None = None,
        wireguard_go: str = "wireguard-go",
        log_path: Path | None = None,
    ) -> None:
        if netns is not None and sock_dir is None:
            raise WgBackendError(
                "a wireguard-go in a network namespace needs its own socket directory",
                hint="pass sock_dir= (bind-mounted over /var/run/wireguard for that process only)",
            )
        self.ifname = ifname
        self.netns = netns
        self.sock_dir = sock_dir
        self.wireguard_go = wireguard_go
        self.log_path = log_path
        self.netlink = Netlink(ifname, netns)
        self._proc: subprocess.Popen[bytes] | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def sock_path(self) -> Path:
        return (self.sock_dir or WG_RUN_DIR) / f"{self.ifname}.sock"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def up(self) -> None:
        """Start wireguard-go unless a live one already answers on the socket (then adopt it)."""
        if self.pid is not None or self._answers():
            return
        with contextlib.suppress(FileNotFoundError):
            self.sock_path.unlink()  # stale: nobody answers on it
        self._start()

    def _command(self) -> list[str]:
        if self.sock_dir is None:
            return [self.wireguard_go, "-f", self.ifname]
        args = [str(self.sock_dir), str(WG_RUN_DIR), self.wireguard_go, self.ifname]
        shell = ["sh", "-c", _BIND_AND_EXEC, "sh", *args]
        if self.netns is not None:
            return ["ip", "netns", "exec", self.netns, *shell]
        return ["unshare", "--mount", "--propagation", "private", *shell]

    def _start(self) -> None:
        if self.sock_dir is not None:
            try:
                self.sock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                WG_RUN_DIR.mkdir(parents=True, exist_ok=True)  # the bind-mount target must exist
            except OSError as e:
                raise WgBackendError(f"cannot prepare the wireguard-go socket directory: {e}") from e
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        env = {**os.environ, "WG_PROCESS_FOREGROUND": "1", "LOG_LEVEL": "error"}
        try:
            self._proc = subprocess.Popen(
                self._command(), stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                start_new_session=True,  # a Ctrl-C to the agent must not kill the tunnel mid-teardown
            )
        except OSError as e:
            raise WgBackendError(f"cannot start wireguard-go: {e}", hint="apt install wireguard-go") from e
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                raise WgBackendError(
                    f"wireguard-go exited with {code} while starting {self.ifname}",
                    hint="needs root and /dev/net/tun; see its log",
                )
            if self._answers():
                return
            time.sleep(_POLL_S)
        self.down()
        raise WgBackendError(f"wireguard-go did not open {self.sock_path} within {START_TIMEOUT_S} s")

    def down(self) -> None:
        """Stop wireguard-go (ours by pid; an adopted one by deleting its link) and clean up."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        else:
            # Not ours (adopted after an agent restart): wireguard-go exits when its tun goes away.
            self.netlink.delete_link()
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while self._answers() and time.monotonic() < deadline:
                time.sleep(_POLL_S)
        with contextlib.suppress(FileNotFoundError):
            self.sock_path.unlink()
        self.netlink.close()

    # --- UAPI -----------------------------------------------------------------------------------

    def _answers(self) -> bool:
        if not self.sock_path.exists():
            return False
        try:
            self._request(GET_REQUEST)
        except (OSError, WgBackendError):
            return False
        return True

    def _request(self, request: bytes) -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(UAPI_TIMEOUT_S)
            s.connect(str(self.sock_path))
            s.sendall(request)
            buf = bytearray()
            while not (buf.endswith(b"\n\n") and b"errno=" in buf[-32:]):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if len(buf) > REPLY_BYTES_MAX:
                    raise WgBackendError(f"UAPI reply over {REPLY_BYTES_MAX} bytes")
            return bytes(buf)

    def actual(self) -> ActualInterface:
        exists, up, addresses = self.netlink.state()
        if not exists or not self.sock_path.exists():
            return ActualInterface(exists=False)
        try:
            dev = parse_get(self._request(GET_REQUEST))
        except (OSError, DecodeError, TooLarge) as e:
            raise WgBackendError(f"UAPI get on {self.sock_path} failed: {e}") from e
        return replace(
            ActualInterface(exists=True, up=up, addresses=addresses),
            private_key=dev.private_key, listen_port=dev.listen_port, peers=dev.peers,
        )

    def apply(self, ops: Sequence[Op]) -> None:
        request = encode_set(ops)
        if request is not None:
            try:
                errno = parse_errno(self._request(request))
            except (OSError, DecodeError, TooLarge) as e:
                raise WgBackendError(f"UAPI set on {self.sock_path} failed: {e}") from e
            if errno:
                raise WgBackendError(
                    f"wireguard-go refused the configuration (errno={errno}: {os.strerror(abs(errno))})",
                    hint="a listen port already in use gives EADDRINUSE",
                )
        self.netlink.apply(ops)

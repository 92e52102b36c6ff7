"""A real transmission-daemon for tests: own config dir, loopback only, nothing outward, killed by pid."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import trio

from media.transmission_engine import TransmissionConfig, open_transmission_engine
from tests.conftest import IS_ROOT
from tva.errors import DaemonUnavailable

RPC_USER, RPC_PASSWORD = "tva-test", "not-a-secret"
START_TIMEOUT_S = 15


def require_transmission() -> str:
    path = shutil.which("transmission-daemon")
    if path:
        return path
    if IS_ROOT:
        pytest.fail("transmission-daemon missing: apt-get install -y transmission-daemon (setup.sh does)")
    pytest.skip("transmission-daemon is not installed and we are not root to install it")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Daemon:
    cfg: TransmissionConfig
    peer_port: int
    rpc_port: int
    pid: int
    log_path: str


@asynccontextmanager
async def transmission_daemon(tmp_path, media_root: str, settings_extra: dict | None = None) -> AsyncIterator[Daemon]:
    """``settings_extra`` overrides settings.json (only inside a namespace for anything outward)."""
    binary = require_transmission()
    conf = tmp_path / "tr-conf"
    conf.mkdir()
    rpc_port, peer_port = free_port(), free_port()
    settings = {
        "rpc-port": rpc_port, "rpc-bind-address": "127.0.0.1",
        "rpc-authentication-required": True, "rpc-username": RPC_USER, "rpc-password": RPC_PASSWORD,
        "rpc-whitelist-enabled": True, "rpc-whitelist": "127.0.0.1", "rpc-host-whitelist-enabled": False,
        # Nothing leaves loopback: no DHT, LPD, uTP, PEX, UPnP/NAT-PMP, blocklist download.
        "dht-enabled": False, "lpd-enabled": False, "utp-enabled": False, "pex-enabled": False,
        "port-forwarding-enabled": False, "blocklist-enabled": False,
        "peer-port": peer_port, "peer-port-random-on-start": False,
        "bind-address-ipv4": "127.0.0.1", "bind-address-ipv6": "::1",
        "download-dir": media_root, "incomplete-dir-enabled": False, "rename-partial-files": False,
        "start-added-torrents": True, "speed-limit-up-enabled": False, "speed-limit-down-enabled": False,
        "message-level": 2,
        **(settings_extra or {}),
    }
    (conf / "settings.json").write_text(json.dumps(settings))
    log_path = str(tmp_path / "transmission.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([binary, "-f", "-g", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        cfg = TransmissionConfig(
            url=f"http://127.0.0.1:{rpc_port}/transmission/rpc", media_root=media_root,
            username=RPC_USER, password=RPC_PASSWORD, timeout_s=5,
        )
        await _wait_rpc(cfg, proc)
        yield Daemon(cfg, peer_port, rpc_port, proc.pid, log_path)
    finally:
        proc.kill()  # by pid, ours alone
        proc.wait(timeout=10)


async def _wait_rpc(cfg: TransmissionConfig, proc: subprocess.Popen) -> None:
    with trio.move_on_after(START_TIMEOUT_S):
        while proc.poll() is None:
            try:
                async with open_transmission_engine(cfg):
                    return
            except DaemonUnavailable:
                await trio.sleep(0.05)
    raise RuntimeError(f"transmission-daemon did not answer RPC (exit {proc.poll()}); see its log")


def file_with(path, size_bytes: int, seed: int = 0) -> str:
    with open(path, "wb") as f:
        block, n = seed.to_bytes(4, "big"), 0
        while f.tell() < size_bytes:
            block = hashlib.sha256(block + n.to_bytes(8, "big")).digest() * 2048
            f.write(block[: size_bytes - f.tell()])
            n += 1
    return os.fspath(path)

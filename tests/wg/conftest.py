"""Shared by the tests that run several agents inside one network namespace (one "host")."""

from __future__ import annotations

import pytest

from tests.conftest import require_root
from tests.wg.netns import NetnsLab


@pytest.fixture
def host():
    """One namespace standing for one machine; nothing of it is left afterwards."""
    require_root("wireguard-go", "ip")
    with NetnsLab(1) as lab:
        yield lab
    assert lab.leftovers() == []


def one_host_env(lab: NetnsLab, **extra: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """The command prefix and environment of an agent on ``lab``'s host: WireGuard chosen as on a
    real machine (the kernel module or wireguard-go), its sockets in the lab, a 500 ms tick."""
    run_dir = lab.sock_dir(0)
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {"TVA_WG_BACKEND": "auto", "TVA_WG_SOCKET_DIR": str(run_dir), "TVA_TICK_INTERVAL_MS": "500", **extra}
    return ("ip", "netns", "exec", lab.ns(0)), env

"""Choose the WireGuard backend: kernel when the module exists, else wireguard-go, else none.

:func:`choose` is the pure decision over gathered facts (tested directly); :func:`select_backend`
gathers the facts from this machine and builds the backend. "none" is not an error: the agent then
runs mesh-only and the reason is shown by ``tva-agent wg status``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tva.errors import ConfigError
from wg.backend import IFNAME_DEFAULT, WgBackend
from wg.kernel import KernelBackend, kernel_module_reason
from wg.userspace import UserspaceBackend

PREFERENCES = ("auto", "kernel", "userspace", "none")
TUN_DEVICE = Path("/dev/net/tun")


@dataclass(frozen=True)
class Facts:
    root: bool
    kernel_reason: str | None  # None: the kernel module is usable
    wireguard_go: str | None  # its path, None when not installed
    tun: bool


@dataclass(frozen=True)
class Choice:
    kind: str | None  # "kernel", "userspace", or None (mesh-only)
    reason: str


def choose(preference: str, facts: Facts) -> Choice:
    if preference not in PREFERENCES:
        raise ConfigError(
            f"unknown WireGuard backend {preference!r}", hint=f"use one of {', '.join(PREFERENCES)}"
        )
    if preference == "none":
        return Choice(None, "WireGuard disabled in config (wg.backend = none): mesh-only")
    if not facts.root:
        return Choice(None, "not running as root: cannot create tva0, mesh-only")
    why_not: list[str] = []
    if preference in ("auto", "kernel"):
        if facts.kernel_reason is None:
            return Choice("kernel", "kernel WireGuard module present")
        why_not.append(facts.kernel_reason)
    if preference in ("auto", "userspace"):
        if facts.wireguard_go is None:
            why_not.append("wireguard-go not installed (apt install wireguard-go)")
        elif not facts.tun:
            why_not.append(f"{TUN_DEVICE} missing (needed by wireguard-go)")
        else:
            return Choice("userspace", f"wireguard-go at {facts.wireguard_go}")
    return Choice(None, "no WireGuard backend: " + "; ".join(why_not) + ": mesh-only")


def gather_facts() -> Facts:
    return Facts(
        root=os.geteuid() == 0,
        kernel_reason=kernel_module_reason(),
        wireguard_go=shutil.which("wireguard-go"),
        tun=TUN_DEVICE.exists(),
    )


def select_backend(
    preference: str = "auto",
    *,
    ifname: str = IFNAME_DEFAULT,
    netns: str | None = None,
    sock_dir: Path | None = None,
    facts: Facts | None = None,
) -> tuple[WgBackend | None, str]:
    """The backend to use (None: mesh-only) and why, for logs and ``wg status``."""
    facts = facts or gather_facts()
    choice = choose(preference, facts)
    if choice.kind == "kernel":
        return KernelBackend(ifname, netns=netns), choice.reason
    if choice.kind == "userspace":
        assert facts.wireguard_go is not None
        backend = UserspaceBackend(ifname, netns=netns, sock_dir=sock_dir, wireguard_go=facts.wireguard_go)
        return backend, choice.reason
    return None, choice.reason

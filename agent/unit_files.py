"""Service definitions for `tva-agent service install` (pure: text in, text out).

**systemd, system-wide** (root): the agent runs as root *without* root's powers — its capability
bounding set is ``CAP_NET_ADMIN`` (tva0: the tun device, addresses, routes, WireGuard's netlink)
and ``CAP_DAC_READ_SEARCH`` (reading media whatever their owner). It writes only its state dir,
its media root and ``/run/wireguard`` (wireguard-go's fixed socket directory); the rest of the file
system is read-only to it (``ProtectSystem=strict``), ``/home`` too. Why not a dynamic user: the
state dir a root `tva-agent run` made is root's, wireguard-go's socket directory is root's, and
media roots anywhere must stay readable — a dropped uid breaks all three, a bounded root does not.
Restarted on failure; never after exit 4 (this host was revoked: a restart cannot help).

**systemd, per user** (``--user``): the same command in the user's manager. Without root there is
no tva0 (the agent says so and runs mesh-only). A user's manager stops at logout unless lingering
is on: ``loginctl enable-linger USER``.

**launchd** (macOS): a LaunchDaemon (root) or LaunchAgent (user) plist; ``KeepAlive`` restarts it
unless it exited 0 (launchd cannot spare one exit status, so a revoked host is restarted and exits 4
again: its log says why).
"""

from __future__ import annotations

import plistlib
from dataclasses import dataclass

UNIT_NAME = "tva-agent.service"
LAUNCHD_LABEL = "org.tva-agent"
CAPABILITIES = ("CAP_NET_ADMIN", "CAP_DAC_READ_SEARCH")
WIREGUARD_RUN_DIR = "/run/wireguard"


@dataclass(frozen=True)
class ServiceSpec:
    exe: str  # the tva-agent executable, absolute
    state_dir: str
    config_file: str | None  # passed with --config (the file exists; install creates it)
    user_mode: bool  # a per-user service (systemctl --user, a LaunchAgent)
    write_paths: tuple[str, ...] = ()  # more directories it writes (a media root outside the state dir)
    log_file: str | None = None  # launchd only: where stdout/stderr go


def command(spec: ServiceSpec) -> list[str]:
    args = [spec.exe, "--state-dir", spec.state_dir]
    if spec.config_file:
        args += ["--config", spec.config_file]
    return [*args, "--log-format", "json", "run"]


def _quote(arg: str) -> str:
    """systemd's command-line quoting: double quotes when needed, \\ and " escaped, % doubled."""
    escaped = arg.replace("%", "%%")
    if escaped and not any(c in escaped for c in ' \t"\'\\;$'):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$") + '"'


def render_systemd(spec: ServiceSpec) -> str:
    exec_start = " ".join(_quote(a) for a in command(spec))
    lines = [
        "# Written by `tva-agent service install`; `tva-agent service uninstall` removes it.",
        "[Unit]",
        "Description=tva-agent: the household media fleet's peer-to-peer agent",
    ]
    if not spec.user_mode:
        lines += ["After=network-online.target", "Wants=network-online.target"]
    lines += [
        "",
        "[Service]",
        "Type=exec",
        f"ExecStart={exec_start}",
        "Restart=on-failure",
        "RestartSec=5s",
        "# 4: this host was revoked from its fleet; restarting cannot help.",
        "RestartPreventExitStatus=4",
        "TimeoutStopSec=30s",
        "Environment=PYTHONUNBUFFERED=1",
    ]
    if not spec.user_mode:
        writable = " ".join(_quote(p) for p in dict.fromkeys((spec.state_dir, *spec.write_paths)))
        lines += [
            "# Root's uid, not root's powers: only what tva0 and reading media need.",
            f"CapabilityBoundingSet={' '.join(CAPABILITIES)}",
            "NoNewPrivileges=yes",
            "DevicePolicy=closed",
            "DeviceAllow=/dev/net/tun rw",
            "ProtectSystem=strict",
            "ProtectHome=read-only",
            f"ReadWritePaths={writable}",
            "# wireguard-go's socket directory is fixed; kept between runs (other WireGuard users share it).",
            "RuntimeDirectory=wireguard",
            "RuntimeDirectoryPreserve=yes",
            "PrivateTmp=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelLogs=yes",
            "ProtectControlGroups=yes",
            "ProtectClock=yes",
            "ProtectHostname=yes",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
            "RestrictNamespaces=yes",
            "RestrictRealtime=yes",
            "LockPersonality=yes",
            "SystemCallArchitectures=native",
        ]
    lines += ["", "[Install]", f"WantedBy={'default.target' if spec.user_mode else 'multi-user.target'}", ""]
    return "\n".join(lines)


def render_launchd(spec: ServiceSpec) -> str:
    plist = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": command(spec),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 5,
        "EnvironmentVariables": {"PYTHONUNBUFFERED": "1"},
    }
    if spec.log_file:
        plist["StandardOutPath"] = spec.log_file
        plist["StandardErrorPath"] = spec.log_file
    return plistlib.dumps(plist, sort_keys=False).decode()

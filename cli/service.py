"""`tva-agent service install | uninstall | status`: run the agent under the system's service manager.

systemd on Linux (a system unit as root, a ``systemctl --user`` unit otherwise or with ``--user``),
launchd on macOS. The unit runs `tva-agent run` on the state dir and config this command resolves
(the same ones every other command uses), so `tva-agent status` finds the service's daemon.
``--dry-run`` prints the unit and what would be done; ``--unit-dir DIR`` writes the unit there and
leaves the service manager alone (packaging, tests). The unit's contents: ``agent.unit_files``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from agent import unit_files
from cli import output
from tva.errors import InvalidInput, TvaError

COMMAND_TIMEOUT_S = 60
CONFIG_HEADER = ("# tva-agent configuration (see the README's table of keys). Empty: the defaults.\n"
                 "# Created by `tva-agent service install`, which runs the agent with this file.\n")


class ServiceManagerError(TvaError):
    """The service manager refused or is not there (not a misuse: exit 1)."""


def add_parser(sub) -> None:
    s = sub.add_parser("service", help="run the agent as a system service (systemd, launchd)")
    ss = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_ in (("install", "write the unit, enable and start it"),
                        ("uninstall", "stop, disable and remove the unit"),
                        ("status", "is the unit installed, enabled, running?")):
        c = ss.add_parser(name, help=help_)
        c.add_argument("--user", action="store_true",
                       help="a per-user service (systemctl --user / LaunchAgent); the default when not root")
        c.add_argument("--manager", choices=["auto", "systemd", "launchd"], default="auto")
        c.add_argument("--json", action="store_true")
        if name != "status":
            c.add_argument("--dry-run", action="store_true", help="print the unit and the steps; change nothing")
            c.add_argument("--unit-dir", type=Path, help="write the unit here and leave the service manager alone")
        if name == "install":
            c.add_argument("--no-start", action="store_true", help="enable it, but do not start it now")


def _manager(args: argparse.Namespace) -> str:
    if args.manager != "auto":
        return args.manager
    return "launchd" if sys.platform == "darwin" else "systemd"


def _user_mode(args: argparse.Namespace) -> bool:
    return bool(args.user) or os.geteuid() != 0


def _exe() -> str:
    beside = Path(sys.executable).with_name("tva-agent")
    found = str(beside) if beside.exists() else shutil.which("tva-agent")
    if not found:
        raise InvalidInput("cannot find the tva-agent executable", hint="install it (./setup.sh run) first")
    return str(Path(found).absolute())


def _unit_path(manager: str, user: bool, unit_dir: Path | None) -> Path:
    name = unit_files.UNIT_NAME if manager == "systemd" else unit_files.LAUNCHD_LABEL + ".plist"
    if unit_dir is not None:
        return unit_dir / name
    if manager == "systemd":
        if user:
            base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
            return Path(base) / "systemd" / "user" / name
        return Path("/etc/systemd/system") / name
    return (Path.home() / "Library/LaunchAgents" if user else Path("/Library/LaunchDaemons")) / name


def spec_for(cfg, config_file: Path, user: bool) -> unit_files.ServiceSpec:
    state_dir = Path(cfg.state_dir).absolute()
    media = Path(cfg.media_dir()).absolute()
    extra = () if media.is_relative_to(state_dir) else (str(media),)
    return unit_files.ServiceSpec(exe=_exe(), state_dir=str(state_dir), config_file=str(config_file.absolute()),
                                  user_mode=user, write_paths=extra, log_file=str(state_dir / "agent.log"))


def render(manager: str, spec: unit_files.ServiceSpec) -> str:
    return unit_files.render_systemd(spec) if manager == "systemd" else unit_files.render_launchd(spec)


def _manager_steps(manager: str, user: bool, action: str, path: Path, start: bool) -> list[list[str]]:
    if manager == "systemd":
        ctl = ["systemctl", *(["--user"] if user else [])]
        if action == "install":
            return [[*ctl, "daemon-reload"], [*ctl, "enable", *(["--now"] if start else []), unit_files.UNIT_NAME]]
        return [[*ctl, "disable", "--now", unit_files.UNIT_NAME], [*ctl, "daemon-reload"]]
    domain = f"gui/{os.getuid()}" if user else "system"
    if action == "install":
        return [["launchctl", "bootstrap", domain, str(path)]]
    return [["launchctl", "bootout", f"{domain}/{unit_files.LAUNCHD_LABEL}"]]


def check_manager_runs(manager: str, user: bool) -> None:
    """Before anything is written: a unit for a manager that is not running would be left behind."""
    if manager == "systemd" and not Path("/run/systemd/system").is_dir():  # sd_booted(3)
        raise ServiceManagerError("systemd is not running on this machine (a container?)",
                                  hint="write the unit with --unit-dir DIR, or see it with --dry-run")
    if manager == "systemd" and user:
        _run_step(["systemctl", "--user", "show-environment"])  # a user manager answers
    if manager == "launchd" and shutil.which("launchctl") is None:
        raise ServiceManagerError("launchctl is not here", hint="launchd is macOS's; use --manager systemd")


def _run_step(cmd: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except FileNotFoundError:
        raise ServiceManagerError(f"{cmd[0]} is not installed here",
                                  hint="write the unit with --unit-dir DIR and install it by hand") from None
    except subprocess.TimeoutExpired:
        raise ServiceManagerError(f"`{' '.join(cmd)}` did not answer within {COMMAND_TIMEOUT_S} s") from None
    if check and res.returncode != 0:
        why = (res.stderr or res.stdout).strip().splitlines()
        raise ServiceManagerError(f"`{' '.join(cmd)}` failed: {why[-1] if why else f'exit {res.returncode}'}",
                                  hint="is the service manager running here (a container may have none)?")
    return res


def run(args: argparse.Namespace, cfg, config_arg: Path | None) -> int:
    from agent.config import default_config_file

    manager, user = _manager(args), _user_mode(args)
    unit_dir = getattr(args, "unit_dir", None)
    path = _unit_path(manager, user, unit_dir)
    if args.action == "status":
        result = status(manager, user, path)
    else:
        dry = bool(args.dry_run)
        if not user and not dry and unit_dir is None and os.geteuid() != 0:
            raise InvalidInput("a system service needs root", hint="run it with sudo, or use --user")
        config_file = config_arg or default_config_file()
        if args.action == "install":
            result = install(manager, user, path, spec_for(cfg, config_file, user), config_file, dry=dry,
                             manage=unit_dir is None, start=not args.no_start)
        else:
            result = uninstall(manager, user, path, dry=dry, manage=unit_dir is None)
    if args.json:
        output.emit_json(result)
    else:
        if result.get("unit") and (args.action == "install" and args.dry_run):
            print(result["unit"], end="")
        for line in result.get("steps_done", []) or result.get("steps", []):
            print(("would: " if result.get("dry_run") else "done: ") + line, file=sys.stderr)
        print(result["message"])
    return 0


def install(manager: str, user: bool, path: Path, spec: unit_files.ServiceSpec, config_file: Path, *,
            dry: bool, manage: bool, start: bool) -> dict[str, Any]:
    text = render(manager, spec)
    steps = [f"write {path}"]
    if not config_file.exists():
        steps.append(f"create {config_file} (empty: the defaults)")
    commands = _manager_steps(manager, user, "install", path, start) if manage else []
    steps += [" ".join(c) for c in commands]
    result: dict[str, Any] = {"manager": manager, "scope": "user" if user else "system", "path": str(path),
                              "unit": text, "dry_run": dry, "steps": steps}
    if dry:
        result["message"] = f"dry run: nothing was changed ({len(steps)} steps above)"
        return result
    if manage:
        check_manager_runs(manager, user)
    if not config_file.exists():
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config_file.write_text(CONFIG_HEADER)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, path)
    for cmd in commands:
        _run_step(cmd)
    result["steps_done"] = steps
    if not manage:
        result["message"] = f"wrote {path} (the service manager was not touched)"
    elif manager == "systemd":
        ctl = "systemctl --user" if user else "systemctl"
        result["message"] = (f"installed {unit_files.UNIT_NAME}" + (" and started it" if start else "")
                             + f"; `{ctl} status {unit_files.UNIT_NAME}` and `journalctl"
                             + (" --user" if user else "") + f" -u {unit_files.UNIT_NAME}` show it")
        if user:
            result["message"] += ("; a user's services stop at logout unless lingering is on: "
                                  f"`loginctl enable-linger {_user_name()}`")
    else:
        result["message"] = f"installed and loaded {path}; its log: {spec.log_file}"
    return result


def uninstall(manager: str, user: bool, path: Path, *, dry: bool, manage: bool) -> dict[str, Any]:
    commands = _manager_steps(manager, user, "uninstall", path, False) if manage else []
    steps = [" ".join(commands[0])] if commands else []
    steps.append(f"remove {path}")
    steps += [" ".join(c) for c in commands[1:]]
    result: dict[str, Any] = {"manager": manager, "scope": "user" if user else "system", "path": str(path),
                              "dry_run": dry, "steps": steps}
    if dry:
        result["message"] = "dry run: nothing was changed"
        return result
    if not path.exists():
        raise InvalidInput(f"no unit at {path}", hint="`tva-agent service status` says where it would be")
    if manage:
        check_manager_runs(manager, user)
    if commands:
        _run_step(commands[0], check=False)  # already stopped or disabled is fine
    path.unlink()
    for cmd in commands[1:]:
        _run_step(cmd)
    result["steps_done"] = steps
    result["message"] = f"removed {path}; the state dir is kept"
    return result


def status(manager: str, user: bool, path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"manager": manager, "scope": "user" if user else "system", "path": str(path),
                           "installed": path.exists(), "enabled": None, "active": None}
    try:
        if manager == "systemd":
            ctl = ["systemctl", *(["--user"] if user else [])]
            out["enabled"] = _run_step([*ctl, "is-enabled", unit_files.UNIT_NAME], check=False).stdout.strip() or None
            out["active"] = _run_step([*ctl, "is-active", unit_files.UNIT_NAME], check=False).stdout.strip() or None
        else:
            domain = f"gui/{os.getuid()}" if user else "system"
            res = _run_step(["launchctl", "print", f"{domain}/{unit_files.LAUNCHD_LABEL}"], check=False)
            out["active"] = "active" if res.returncode == 0 else "inactive"
    except ServiceManagerError as exc:
        out["note"] = exc.message
    shown = "installed" if out["installed"] else "not installed"
    out["message"] = f"{path}: {shown}" + (f", {out['enabled']}" if out["enabled"] else "") + (
        f", {out['active']}" if out["active"] else "") + (f" ({out['note']})" if out.get("note") else "")
    return out


def _user_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "$USER"

"""One machine in several fleets: one agent per fleet, each with its own state dir (``--fleet NAME``).

Why one agent per fleet, not one agent holding several: every piece of an agent is one fleet's —
its identity's admissions, the fleet key, the mesh transport's PSK, the join listener, the decision
log, the tva interface and its addresses, the API token. An agent per fleet keeps each of them
whole, so a fault, a revocation, a rotation or an upgrade in one fleet never reaches another; no
code path has to carry "which fleet" (nothing can leak across by a missing argument); and each
runs, stops and is serviced alone. The cost is one process per fleet (tens of MB).

``--fleet NAME`` names the state dir ``<fleets_dir>/NAME`` (``fleets_dir``: config key, default
``<state_dir>/fleets``). The first ``init``, ``join`` or ``run`` of a new name writes that state
dir's own settings (``agent.config.STATE_CONFIG_FILE``): a *slot* k ≥ 1 not used by another fleet
here — WireGuard interface ``tva<k>`` and port ``51820+k``; mesh, API and media ports ``4810+10k``,
``4811+10k`` and ``4813+10k`` (the join listener: mesh + 2) — so no two agents of this machine
collide on an interface name or a port, and each keeps its ports across restarts (its fleet knows
it by them). Any other command on an unknown name is an error that lists the known ones.

Also here: ``remember``, the state dir's settings chosen at set-up (``join --class seedbox``).
Standard library only (the CLI's fast path imports it).
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

from tva.errors import ConfigError, InvalidInput

FLEET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
SLOTS_MAX = 99
MESH_PORT_BASE, API_PORT_BASE, MEDIA_PORT_BASE, PORT_STEP = 4810, 4811, 4813, 10
WG_PORT_BASE = 51820
CREATING_COMMANDS = ("init", "join", "run")
SETTINGS_HEADER = ("# This agent's own settings, written when it was set up (`join --class`, `--fleet`);\n"
                   "# they override the config file. Edit with the agent stopped.\n")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not FLEET_NAME.fullmatch(name):
        raise InvalidInput(f"{name!r:.40} is not a fleet name here",
                           hint="1-32 lower-case letters, digits, '-' or '_', e.g. --fleet friends")
    return name


def fleet_state_dir(fleets_dir: Path, name: str) -> Path:
    return Path(fleets_dir) / check_name(name)


def known_fleets(fleets_dir: Path) -> list[str]:
    """Names of the fleets this machine has an agent for (a state dir with its settings)."""
    try:
        entries = sorted(Path(fleets_dir).iterdir())
    except OSError:
        return []
    return [p.name for p in entries if FLEET_NAME.fullmatch(p.name) and (p / _settings_name()).is_file()]


def _settings_name() -> str:
    from agent.config import STATE_CONFIG_FILE

    return STATE_CONFIG_FILE


def read_settings(state_dir: Path) -> dict[str, object]:
    from agent.config import load_state_config

    return load_state_config(Path(state_dir))


def slot_settings(slot: int, listen_host: str = "/ip4/0.0.0.0", api_host: str = "127.0.0.1") -> dict[str, object]:
    """Everything of slot ``slot`` that must not collide with another agent on this machine."""
    return {"wg_interface": f"tva{slot}", "wg_listen_port": WG_PORT_BASE + slot,
            "listen": [f"{listen_host}/tcp/{MESH_PORT_BASE + PORT_STEP * slot}"],
            "api": f"{api_host}:{API_PORT_BASE + PORT_STEP * slot}",
            "media_port": MEDIA_PORT_BASE + PORT_STEP * slot}


def _claims(values: dict[str, object]) -> set[str]:
    """Interface names and TCP/UDP ports a set of settings takes."""
    out: set[str] = set()
    if "wg_interface" in values:
        out.add(f"if:{values['wg_interface']}")
    if "wg_listen_port" in values:
        out.add(f"udp:{values['wg_listen_port']}")
    listen = values.get("listen")
    for addr in listen if isinstance(listen, list | tuple) else ():
        port = str(addr).rpartition("/tcp/")[2]
        if port.isdigit():
            out.update({f"tcp:{port}", f"tcp:{int(port) + 2}"})
    api = str(values.get("api", "")).rpartition(":")[2]
    if api.isdigit():
        out.add(f"tcp:{api}")
    if "media_port" in values:
        out.add(f"tcp:{values['media_port']}")
    return out


def _free_here(claims: set[str]) -> bool:
    """No interface of that name exists and every port binds now (a plain bind: SO_REUSEPORT
    listeners would share a port silently, FIELD-NOTES)."""
    for claim in sorted(claims):
        kind, _, value = claim.partition(":")
        if kind == "if":
            if Path("/sys/class/net", value).exists():
                return False
            continue
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
        try:
            sock.bind(("0.0.0.0", int(value)))
        except OSError:
            return False
        finally:
            sock.close()
    return True


def choose_slot(fleets_dir: Path, listen_host: str, api_host: str, *, probe=_free_here) -> dict[str, object]:
    """The settings of the first slot no other fleet here uses and that is free on this host."""
    from agent.config import Config

    default = Config()  # slot 0 is the machine's default agent
    taken = _claims({"wg_interface": default.wg_interface, "wg_listen_port": default.wg_listen_port,
                     "listen": list(default.listen), "api": default.api, "media_port": default.media_port})
    for name in known_fleets(fleets_dir):
        try:
            taken |= _claims(read_settings(Path(fleets_dir) / name))
        except ConfigError:
            continue  # a damaged profile: its agent will say so; do not guess its values
    for slot in range(1, SLOTS_MAX + 1):
        values = slot_settings(slot, listen_host, api_host)
        claims = _claims(values)
        if not claims & taken and probe(claims):
            return values
    raise ConfigError(f"no free slot for another fleet agent on this machine (tried {SLOTS_MAX})",
                      hint="remove a fleet you no longer use from " + str(fleets_dir))


def resolve(fleets_dir: Path, name: str, command: str, main_listen: tuple[str, ...], main_api: str) -> Path:
    """The state dir of fleet ``name``; made, with its slot's settings, on a creating command."""
    state_dir = fleet_state_dir(fleets_dir, name)
    if (state_dir / _settings_name()).is_file():
        return state_dir
    if command not in CREATING_COMMANDS:
        known = known_fleets(fleets_dir)
        raise InvalidInput(f"no fleet named {name!r} on this machine ({fleets_dir})",
                           hint=("known: " + ", ".join(known) + "; " if known else "")
                           + f"set one up with `tva-agent --fleet {name} join INVITE` or `--fleet {name} init`")
    listen_host = (main_listen[0].rpartition("/tcp/")[0] if main_listen else "") or "/ip4/0.0.0.0"
    api_host = main_api.rpartition(":")[0] or "127.0.0.1"
    values = choose_slot(fleets_dir, listen_host, api_host)
    remember(state_dir, values)
    return state_dir


def remember(state_dir: Path, values: dict[str, object]) -> None:
    """Merge ``values`` into the state dir's own settings (atomically; the dir is made 0700)."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    current = read_settings(state_dir)
    current.update(values)
    lines = [SETTINGS_HEADER]
    for key in sorted(current):
        lines.append(f"{key} = {_toml(current[key])}\n")
    path = state_dir / _settings_name()
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(lines))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string (JSON's escapes are TOML's)


def describe(fleets_dir: Path) -> list[dict[str, object]]:
    """`tva-agent fleets`: each fleet agent of this machine, its state dir, interface and ports."""
    from agent.discovery import daemon_info

    out = []
    for name in known_fleets(fleets_dir):
        state_dir = Path(fleets_dir) / name
        try:
            s = read_settings(state_dir)
        except ConfigError as exc:
            out.append({"name": name, "state_dir": str(state_dir), "error": exc.message})
            continue
        info = daemon_info(state_dir)
        out.append({"name": name, "state_dir": str(state_dir), "wg_interface": s.get("wg_interface"),
                    "listen": list(s.get("listen", ())), "api": s.get("api"),  # type: ignore[call-overload]
                    "host_class": s.get("host_class"), "running": info is not None,
                    "pid": info.get("pid") if info else None})
    return out

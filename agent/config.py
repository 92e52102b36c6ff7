"""Configuration: embedded defaults < TOML file < ``TVA_*`` environment < command-line flags.

The defaults are complete: ``tva-agent run`` with no file and no flags founds a one-node fleet
and serves. Every layer is validated the same way, and a bad value names its layer and key
(``config.toml: api: …``, ``TVA_API: …``) so the fix is obvious.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from tva import limits
from tva.errors import ConfigError

HOST_CLASSES = limits.HOST_CLASSES
WG_BACKENDS = ("auto", "kernel", "userspace", "off")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
IFNAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,15}")  # IFNAMSIZ is 16 with the NUL
TORRENT_ENGINES = ("libtorrent", "transmission", "off")
CONFIG_FILE_BYTES_MAX = 256 * 1024
# Settings this agent was set up with (`join --class seedbox`, `--fleet NAME`), kept in its state
# dir and layered above the config file: a later `run` without flags keeps them (agent.settings).
STATE_CONFIG_FILE = "config.toml"
STATE_CONFIG_REFUSED = ("state_dir", "fleets_dir")
NOTIFY_WEBHOOKS_MAX = 8
DEFAULT_P2P_PORT = 4810
DEFAULT_API_PORT = 4811
DEFAULT_MEDIA_PORT = 4813  # [media] the media plane (4812 is the join listener's)
# Batons lease a repair for 30 minutes: a maximum below twice that would refuse honest intents
# from a baton whose clock runs a little ahead; above a week a lease stops meaning anything.
REPAIR_LEASE_MS_MAX_MIN = 60 * 60 * 1000
REPAIR_LEASE_MS_MAX_MAX = 7 * 24 * 3600 * 1000


def _is_root() -> bool:
    return os.geteuid() == 0


def default_state_dir() -> Path:
    if _is_root():
        return Path("/var/lib/tva-agent")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tva-agent"


def default_config_file() -> Path:
    if _is_root():
        return Path("/etc/tva-agent/config.toml")
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tva-agent" / "config.toml"


@dataclass(frozen=True)
class Config:
    state_dir: Path = field(default_factory=default_state_dir)
    host_name: str = field(default_factory=lambda: socket.gethostname()[:64] or "host")
    host_class: str = "desktop"
    listen: tuple[str, ...] = (f"/ip4/0.0.0.0/tcp/{DEFAULT_P2P_PORT}",)
    # the join listener (agent.joining); empty: each listen address with its port + 2 (0 stays 0)
    join_listen: tuple[str, ...] = ()
    api: str = f"127.0.0.1:{DEFAULT_API_PORT}"
    api_token: str = ""  # empty: generated on first run and kept in the state dir
    media_root: Path | None = None  # None: <state_dir>/media
    gossip_interval_ms: int = 200  # rumour mongering (Serf's default); a change spreads in O(log N) of these
    sync_interval_ms: int = 1000  # push-pull anti-entropy: a 16-byte digest to two random peers
    probe_interval_ms: int = 1000
    tick_interval_ms: int = 2000
    save_interval_ms: int = 2000
    disk_reserve_bytes: int = 1 << 30
    wg_backend: str = "auto"
    wg_interface: str = "tva0"  # another agent on this host owns tva0? give this one its own name
    wg_listen_port: int = 51820
    wg_socket_dir: Path | None = None  # None: /var/run/wireguard (wireguard-go's fixed directory)
    overlay_api: bool = True  # also serve the API (token required) on this host's tva0 addresses
    torrent_engine: str = "libtorrent"
    torrent_port: int = 0  # libtorrent: 0 picks a free port; engine off: the port of an external client
    transmission_url: str = "http://127.0.0.1:9091/transmission/rpc"
    transmission_user: str = ""
    transmission_password: str = ""
    public_swarm: bool = False  # allow DHT/LSD/UPnP toward the outside when this host has the duty
    dht_bootstrap_nodes: tuple[str, ...] = ()  # "host:port" of DHT routers; none are implied
    torrent_upload_rate_bps: int = 0  # 0: unlimited (applies to fleet/LAN peers too)
    torrent_download_rate_bps: int = 0
    torrent_utp: bool = False  # fleet copies run over LAN/loopback/tva0, where TCP was 2-7x faster
    reaper_stalled_after_ms: int = 10 * 60 * 1000
    reaper_dead_after_ms: int = 60 * 60 * 1000
    # The longest repair lease this host honours: an intent naming it with a longer one is refused.
    repair_lease_ms_max: int = limits.REPAIR_LEASE_MS_MAX
    log_level: str = "info"
    log_format: str = "text"  # text (one line per record) or json (one object per line, for journald)
    # [library] the media library (agent.library_service): roots to scan (empty: the media root)
    media_roots: tuple[str, ...] = ()
    title_model_dir: Path | None = None  # a local mlx-lm model for degenerate titles; none: refiner off
    library_scan_interval_ms: int = 15 * 60 * 1000  # 0: scan only at start and on request
    ffmpeg_concurrency_max: int = 2  # ffprobe/ffmpeg processes at once
    refiner_timeout_ms: int = 15_000  # one refiner call (loading the model gets its own allowance)
    # [notify] webhooks told of hosts down/back, custody trouble, repairs, joins and revocations (agent.notify)
    notify_webhooks: tuple[str, ...] = ()
    notify_batch_ms: int = 5_000  # events within this of the first one go out in one post
    notify_interval_ms: int = 10_000  # at most one post per webhook this often (and retries no sooner)
    # [media] the HTTP media plane (agent.media_plane) and playback (agent.player)
    media_port: int = DEFAULT_MEDIA_PORT  # 0: a free port (the default falls back to one when taken)
    media_underlay: bool = True  # without tva0 addresses, serve media on the mesh's underlay addresses
    hls_transcodes_max: int = 2  # ffmpeg HLS runs at once
    hls_cache_bytes_max: int = 2 * 1024**3  # HLS segments kept on disk
    hls_idle_stop_ms: int = 30_000  # a transcode no client asked anything of for this long stops
    watch_save_interval_ms: int = 10_000  # how often a playing position is saved to the feed
    # [friends] friend fleets (agent.friends): what a new link offers them of our disks (0: nothing),
    # and how often gateways fetch their views and members fetch them from our gateways
    friend_custody_bytes: int = 0
    friend_sync_interval_ms: int = 10_000
    # [fleets] where `--fleet NAME` agents live (one state dir each): None = <state_dir>/fleets
    fleets_dir: Path | None = None

    def media_dir(self) -> Path:
        return self.media_root if self.media_root is not None else self.state_dir / "media"

    def api_host_port(self) -> tuple[str, int]:
        return parse_host_port(self.api, "api")

    def join_listen_addrs(self) -> tuple[str, ...]:
        if self.join_listen:
            return self.join_listen
        out = []
        for addr in self.listen:
            head, _, port = addr.rpartition("/tcp/")
            port_num = int(port) if port.isdigit() else 0
            out.append(f"{head}/tcp/{port_num + 2 if port_num else 0}")
        return tuple(out)


def parse_host_port(text: str, key: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{key}: expected HOST:PORT, got {text!r}", hint="e.g. 127.0.0.1:4811")
    return host.strip("[]"), int(port)


def _coerce(name: str, raw: object, where: str) -> object:
    """Turn a TOML/env/flag value into the field's type, or explain what is wrong."""
    kinds = {f.name: f.type for f in fields(Config)}
    kind = kinds.get(name)
    if kind is None:
        raise ConfigError(f"{where}: unknown setting {name!r}",
                          hint="known settings: " + ", ".join(sorted(kinds)))
    try:
        if kind == "int":
            if isinstance(raw, bool):
                raise ValueError
            value: object = int(raw)  # type: ignore[call-overload]
            if value < 0:  # type: ignore[operator]
                raise ValueError
        elif kind == "bool":
            if isinstance(raw, bool):
                value = raw
            elif str(raw).lower() in ("1", "true", "yes", "on"):
                value = True
            elif str(raw).lower() in ("0", "false", "no", "off"):
                value = False
            else:
                raise ValueError
        elif kind in ("Path", "Path | None"):
            value = Path(str(raw)).expanduser() if str(raw) else None
            if value is None and kind == "Path":
                raise ValueError
        elif kind == "tuple[str, ...]":
            items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
            value = tuple(str(x).strip() for x in items if str(x).strip())
        else:
            if not isinstance(raw, str | int) or isinstance(raw, bool):
                raise ValueError
            value = str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {name} has an invalid value {raw!r} (expected {kind})") from None
    return value


def validate(cfg: Config) -> Config:
    if cfg.host_class not in HOST_CLASSES:
        raise ConfigError(f"host_class {cfg.host_class!r} is unknown",
                          hint="one of: " + ", ".join(HOST_CLASSES))
    if cfg.wg_backend not in WG_BACKENDS:
        raise ConfigError(f"wg_backend {cfg.wg_backend!r} is unknown", hint="one of: " + ", ".join(WG_BACKENDS))
    if cfg.torrent_engine not in TORRENT_ENGINES:
        raise ConfigError(f"torrent_engine {cfg.torrent_engine!r} is unknown",
                          hint="one of: " + ", ".join(TORRENT_ENGINES))
    if not IFNAME_PATTERN.fullmatch(cfg.wg_interface) or cfg.wg_interface in (".", ".."):
        raise ConfigError(f"wg_interface {cfg.wg_interface!r} is not an interface name",
                          hint="1–15 letters, digits, '_', '-' or '.', e.g. tva1")
    if cfg.log_level not in LOG_LEVELS:
        raise ConfigError(f"log_level {cfg.log_level!r} is unknown", hint="one of: " + ", ".join(LOG_LEVELS))
    if cfg.log_format not in LOG_FORMATS:
        raise ConfigError(f"log_format {cfg.log_format!r} is unknown", hint="one of: " + ", ".join(LOG_FORMATS))
    if not cfg.host_name or len(cfg.host_name) > 64:
        raise ConfigError("host_name must be 1–64 characters")
    if not cfg.listen or any(not a.startswith("/ip") or "/tcp/" not in a for a in cfg.listen):
        raise ConfigError(f"listen: expected TCP multiaddrs, got {list(cfg.listen)!r}",
                          hint="e.g. /ip4/0.0.0.0/tcp/4810")
    if any(not a.startswith("/ip") or "/tcp/" not in a for a in cfg.join_listen):
        raise ConfigError(f"join_listen: expected TCP multiaddrs, got {list(cfg.join_listen)!r}",
                          hint="e.g. /ip4/0.0.0.0/tcp/4812")
    parse_host_port(cfg.api, "api")
    for name in ("gossip_interval_ms", "sync_interval_ms", "probe_interval_ms", "tick_interval_ms",
                 "save_interval_ms"):
        if not 10 <= getattr(cfg, name) <= 3_600_000:
            raise ConfigError(f"{name} must be between 10 and 3600000 ms")
    if cfg.reaper_dead_after_ms <= cfg.reaper_stalled_after_ms:
        raise ConfigError("reaper_dead_after_ms must be longer than reaper_stalled_after_ms")
    if not REPAIR_LEASE_MS_MAX_MIN <= cfg.repair_lease_ms_max <= REPAIR_LEASE_MS_MAX_MAX:
        raise ConfigError(f"repair_lease_ms_max must be between {REPAIR_LEASE_MS_MAX_MIN} and "
                          f"{REPAIR_LEASE_MS_MAX_MAX} ms", hint="the baton's own leases are 30 min: allow at least 1 h")
    for node in cfg.dht_bootstrap_nodes:
        parse_host_port(node, "dht_bootstrap_nodes")
    if not 1 <= cfg.ffmpeg_concurrency_max <= 32:  # [library]
        raise ConfigError("ffmpeg_concurrency_max must be between 1 and 32")
    if not 100 <= cfg.refiner_timeout_ms <= 600_000:
        raise ConfigError("refiner_timeout_ms must be between 100 and 600000 ms")
    if len(cfg.notify_webhooks) > NOTIFY_WEBHOOKS_MAX:
        raise ConfigError(f"notify_webhooks: at most {NOTIFY_WEBHOOKS_MAX} URLs")
    for url in cfg.notify_webhooks:
        if not re.fullmatch(r"https?://[^/\s?#]+(/\S*)?", url) or len(url) > 2048:
            raise ConfigError(f"notify_webhooks: {url[:60]!r} is not an http(s) URL",
                              hint="e.g. https://discord.com/api/webhooks/ID/TOKEN or http://127.0.0.1:9000/hook")
    if not 0 <= cfg.notify_batch_ms <= 600_000 or not 0 <= cfg.notify_interval_ms <= 3_600_000:
        raise ConfigError("notify_batch_ms must be 0–600000 ms and notify_interval_ms 0–3600000 ms")
    if not 1 <= cfg.hls_transcodes_max <= 16:  # [media]
        raise ConfigError("hls_transcodes_max must be between 1 and 16")
    if cfg.hls_cache_bytes_max < 64 * 1024**2:
        raise ConfigError("hls_cache_bytes_max must be at least 64 MiB (67108864)")
    if not 500 <= cfg.hls_idle_stop_ms <= 3_600_000:
        raise ConfigError("hls_idle_stop_ms must be between 500 and 3600000 ms")
    if not 1000 <= cfg.watch_save_interval_ms <= 3_600_000:
        raise ConfigError("watch_save_interval_ms must be between 1000 and 3600000 ms")
    if not 100 <= cfg.friend_sync_interval_ms <= 3_600_000:  # [friends]
        raise ConfigError("friend_sync_interval_ms must be between 100 and 3600000 ms")
    if cfg.friend_custody_bytes > 2**53 - 1:
        raise ConfigError("friend_custody_bytes must be below 2**53", hint="e.g. 500000000000 for 500 GB")
    for name in ("wg_listen_port", "torrent_port", "media_port"):
        if getattr(cfg, name) > 65535:
            raise ConfigError(f"{name} must be a port number (0–65535)")
    return cfg


def load_file(path: Path) -> dict[str, object]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    if len(data) > CONFIG_FILE_BYTES_MAX:
        raise ConfigError(f"{path}: larger than {CONFIG_FILE_BYTES_MAX} bytes")
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})", hint="fix the file or move it away") from None
    return {k: _coerce(k, v, str(path)) for k, v in table.items()}


def load_config(
    *, file: Path | None = None, env: dict[str, str] | None = None, flags: dict[str, object] | None = None,
) -> Config:
    """Build the effective config from all layers (flags with value None are 'not given')."""
    env = dict(os.environ) if env is None else env
    explicit_file = file or (Path(env["TVA_CONFIG"]) if env.get("TVA_CONFIG") else None)
    path = explicit_file or default_config_file()
    if explicit_file is not None and not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    values: dict[str, object] = load_file(path)
    names = {f.name for f in fields(Config)}
    later: dict[str, object] = {}  # environment, then flags
    for key, raw in env.items():
        if key.startswith("TVA_") and key not in ("TVA_CONFIG", "TVA_SOAK", "TVA_VENV"):
            name = key[4:].lower()
            if name in names:
                later[name] = _coerce(name, raw, key)
    for name, raw in (flags or {}).items():
        if raw is not None:
            later[name] = _coerce(name, raw, "--" + name.replace("_", "-"))
    state_dir = later.get("state_dir") or values.get("state_dir") or default_state_dir()
    values.update(load_state_config(Path(str(state_dir))))
    values.update(later)
    return validate(replace(Config(), **values))


def load_state_config(state_dir: Path) -> dict[str, object]:
    """The state dir's own settings (``STATE_CONFIG_FILE``; none when it has no such file)."""
    path = state_dir / STATE_CONFIG_FILE
    try:
        if not path.is_file():
            return {}
    except OSError:  # not a directory, not searchable: whoever uses the state dir next says what is wrong
        return {}
    values = load_file(path)
    for name in STATE_CONFIG_REFUSED:
        if name in values:
            raise ConfigError(f"{path}: {name} cannot be set inside a state dir",
                              hint=f"remove the {name} line; set it in the config file or with a flag")
    return values

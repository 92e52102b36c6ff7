"""libtorrent session settings from the host's swarm flags (pure: flags in, a settings dict out).

Why a separate pure helper: the one property that matters most here — a host that does not hold
the ``public_swarm_face`` duty sends *nothing* to the outside world (no DHT, LSD, UPnP, NAT-PMP,
no bootstrap traffic at start-up) — must be checkable without starting a session.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from tva.errors import InvalidInput

PORT_MAX = 65535
# libtorrent asks the tracker to wait at most this long on shutdown; the daemon must stop fast.
STOP_TRACKER_TIMEOUT_S = 1


@dataclass(frozen=True)
class SwarmFlags:
    """What the host lets its embedded session do.

    ``dht``/``lsd``/``upnp``/``natpmp`` are *wishes*: each takes effect only while the host holds
    the ``public_swarm_face`` duty. DHT bootstrap nodes are never implied: only the ones listed.
    ``local_dht`` lets a DHT run among private/loopback addresses (a LAN or overlay DHT, tests).
    """

    listen_addresses: tuple[str, ...] = ("127.0.0.1",)
    listen_port: int = 0  # 0: the OS picks (tests); the daemon passes its configured port
    public_swarm_face: bool = False
    dht: bool = True
    lsd: bool = False
    upnp: bool = True
    natpmp: bool = True
    dht_bootstrap_nodes: tuple[tuple[str, int], ...] = ()
    local_dht: bool = False
    utp: bool = True
    upload_rate_limit_bps: int = 0  # 0: unlimited
    download_rate_limit_bps: int = 0


def _endpoint(host: str, port: int) -> str:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise InvalidInput(
            f"listen address {host!r} is not an IP address",
            hint="give the overlay/LAN addresses as literal IPv4/IPv6 addresses",
        ) from None
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def _check_port(port: object, what: str) -> int:
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= PORT_MAX:
        raise InvalidInput(f"{what} {port!r} is not a port number", hint="use 0..65535")
    return port


def _bootstrap_node(host: str, port: int) -> str:
    # Hostnames are allowed here (a DHT router); they must not smuggle list separators.
    bad_char = any(c in host for c in ",: \t\n[]")
    if not host or (bad_char and not _is_ipv6(host)):
        raise InvalidInput(f"DHT bootstrap host {host!r} is malformed", hint="host or IP, no commas")
    _check_port(port, "DHT bootstrap port")
    return f"[{host}]:{port}" if _is_ipv6(host) else f"{host}:{port}"


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def effective_features(flags: SwarmFlags) -> dict[str, bool]:
    """Which outward-facing features are really on (the duty gates every one of them)."""
    face = flags.public_swarm_face
    return {
        "dht": face and flags.dht,
        "lsd": face and flags.lsd,
        "upnp": face and flags.upnp,
        "natpmp": face and flags.natpmp,
    }


def build_settings(flags: SwarmFlags) -> dict[str, object]:
    """The libtorrent ``settings_pack`` for these flags (keys are libtorrent setting names)."""
    port = _check_port(flags.listen_port, "listen port")
    for rate in (flags.upload_rate_limit_bps, flags.download_rate_limit_bps):
        if not isinstance(rate, int) or rate < 0:
            raise InvalidInput(f"rate limit {rate!r} is not a non-negative int", hint="bytes/s, 0=off")
    listen = ",".join(_endpoint(a, port) for a in flags.listen_addresses)
    on = effective_features(flags)
    bootstrap = ",".join(_bootstrap_node(h, p) for h, p in flags.dht_bootstrap_nodes) if on["dht"] else ""
    settings: dict[str, object] = {
        "listen_interfaces": listen,
        "enable_dht": on["dht"],
        "enable_lsd": on["lsd"],
        "enable_upnp": on["upnp"],
        "enable_natpmp": on["natpmp"],
        # libtorrent's default is dht.libtorrent.org: never contact anything not asked for.
        "dht_bootstrap_nodes": bootstrap,
        # Fleet hosts may share one NAT address (and tests share 127.0.0.1).
        "allow_multiple_connections_per_ip": True,
        "enable_incoming_utp": flags.utp,
        "enable_outgoing_utp": flags.utp,
        "upload_rate_limit": flags.upload_rate_limit_bps,
        "download_rate_limit": flags.download_rate_limit_bps,
        "stop_tracker_timeout": STOP_TRACKER_TIMEOUT_S,
        "user_agent": "tva-agent",
        # The netlink watcher only re-opens sockets on address changes; harmless but noisy in
        # namespaces. Listen addresses come from our config, so we re-apply on change ourselves.
        "enable_ip_notifier": False,
    }
    if on["dht"] and flags.local_dht:
        # A private DHT among LAN/overlay/loopback nodes: libtorrent's defaults reject these
        # addresses as "one node per IP" / "dark internet" protections meant for the public DHT.
        settings.update(
            dht_restrict_routing_ips=False,
            dht_restrict_search_ips=False,
            dht_prefer_verified_node_ids=False,
            dht_ignore_dark_internet=False,
            # Flood protection against strangers (5 packets/s, then blocked for 5 minutes) only
            # gets in the way among our own few nodes asking about many items.
            dht_block_ratelimit=1000,
        )
    return settings


OUTSIDE_TRAFFIC_KEYS = ("enable_dht", "enable_lsd", "enable_upnp", "enable_natpmp")


def sends_outside_traffic(settings: dict[str, object]) -> bool:
    """True when a settings dict would let the session talk to anything beyond its peers."""
    return any(bool(settings.get(k)) for k in OUTSIDE_TRAFFIC_KEYS) or bool(
        settings.get("dht_bootstrap_nodes")
    )

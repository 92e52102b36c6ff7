"""Addresses and keys for the libp2p transport: validation of what peers and config hand us.

Host cards, bootstrap invites and config files supply multiaddrs and the fleet key; everything
here turns bad input into ``DecodeError`` (from peers/invites) or ``ConfigError``/``InvalidInput``
(local), never a library traceback. ``multiaddr`` is imported lazily, like libp2p.
"""

from __future__ import annotations

import re

from crdt.identity import is_peer_id
from tva.errors import ConfigError, DecodeError, InvalidInput

PeerId = str
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
ADDR_CHARS_MAX = 256


def psk_hex(psk: bytes | str) -> str:
    """The fleet key as libp2p wants it: 64 hex characters (32 bytes)."""
    if isinstance(psk, bytes) and len(psk) == 32:
        return psk.hex()
    if isinstance(psk, str) and _HEX64.match(psk):
        return psk.lower()
    raise InvalidInput("the fleet pre-shared key must be 32 bytes (or 64 hex characters)")


def parse_peer_addr(peer: PeerId, addr: str) -> str:
    """Validate one dialable multiaddr for ``peer``; returns it without its ``/p2p/`` suffix."""
    from multiaddr import Multiaddr

    if not isinstance(addr, str) or len(addr) > ADDR_CHARS_MAX:
        raise DecodeError("peer address must be a string of at most 256 characters")
    try:
        ma = Multiaddr(addr)
        names = [p.name for p in ma.protocols()]
    except Exception as exc:  # multiaddr raises several unrelated types for garbage
        raise DecodeError(f"not a multiaddr: {addr[:64]!r} ({type(exc).__name__})") from None
    if "tcp" not in names or not names or names[0] not in ("ip4", "ip6", "dns", "dns4", "dns6"):
        raise DecodeError(f"not a dialable tcp multiaddr: {addr[:64]!r}")
    host, port = ma.value_for_protocol(names[0]), ma.value_for_protocol("tcp")
    if host in ("0.0.0.0", "::") or port in ("0", 0):
        # A wildcard is where a node listens, not where it can be reached (dialing 0.0.0.0 on
        # Linux reaches our own machine).
        raise DecodeError(f"not a reachable address: {addr[:64]!r}")
    if "p2p" in names:
        claimed = ma.value_for_protocol("p2p")
        if claimed != peer:
            raise DecodeError(f"address {addr[:64]!r} names another peer id")
        ma = ma.decapsulate_code(ma.protocols()[names.index("p2p")].code)
    return str(ma)


def split_peer_addr(addr: str) -> tuple[PeerId, str]:
    """``/ip4/…/tcp/…/p2p/<id>`` (a bootstrap address from an invite) → ``(peer, addr)``."""
    marker = "/p2p/"
    if not isinstance(addr, str) or marker not in addr:
        raise DecodeError("a bootstrap address must end in /p2p/<peer id>")
    peer = addr.rsplit(marker, 1)[1]
    if not is_peer_id(peer):
        raise DecodeError(f"not a peer id in bootstrap address: {peer[:20]!r}")
    return peer, parse_peer_addr(peer, addr)


def check_listen_addr_free(addr: str) -> None:
    """``ConfigError`` when a fixed tcp port is taken.

    py-libp2p listens with SO_REUSEPORT, so a second node on a busy port starts "fine" and the
    kernel then splits incoming connections between the two. A plain bind (no SO_REUSEPORT)
    fails on any port someone listens on, which is the check we want.
    """
    import socket

    from multiaddr import Multiaddr

    try:
        ma = Multiaddr(addr)
        names = [p.name for p in ma.protocols()]
        family = socket.AF_INET6 if names[0] == "ip6" else socket.AF_INET
        ip = ma.value_for_protocol(names[0])
        port = int(ma.value_for_protocol("tcp"))
    except Exception as exc:
        raise ConfigError(f"bad listen address {addr!r}: {exc}", hint="e.g. /ip4/0.0.0.0/tcp/4001") from None
    if port == 0:
        return
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT after a restart is fine
        try:
            sock.bind((ip, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {addr}: {exc.strerror}",
                hint="another tva-agent (or program) uses this port; pick another listen port",
            ) from None

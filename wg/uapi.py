"""wireguard-go's UAPI text protocol: encode ``set`` requests, parse ``get`` replies.

Pure (no socket here; :mod:`wg.userspace` does the I/O). The protocol, as wireguard-go speaks it:
a request is ``get=1`` or ``set=1`` followed by ``key=value`` lines and a blank line; the reply is
``key=value`` lines ending with ``errno=N`` and a blank line. Keys are lower-case **hex** here
(base64 everywhere else in tva), and ``public_key=`` opens each peer block: every peer key that
follows belongs to it.

The reply is parsed as untrusted input: anything malformed or over a limit raises ``DecodeError``
/ ``TooLarge``, never a bare ``ValueError`` or ``IndexError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import ip_network

from tva.errors import DecodeError, TooLarge
from wg.plan.desired import DesiredPeer, parse_endpoint, sort_cidrs
from wg.plan.diff import ActualPeer, AddPeer, Op, RemovePeer, SetDevice, UpdatePeer
from wg.plan.keys import b64_to_hex, hex_to_b64

REPLY_BYTES_MAX = 8 * 1024 * 1024
LINE_CHARS_MAX = 256
PEERS_MAX = 10_000
ALLOWED_IPS_PER_PEER_MAX = 1024

_DEVICE_KEYS = {"private_key", "listen_port", "fwmark"}
_INT_MAX = 2**64 - 1


@dataclass(frozen=True)
class UapiDevice:
    private_key: str | None  # base64
    listen_port: int | None
    peers: tuple[ActualPeer, ...]


GET_REQUEST = b"get=1\n\n"


def encode_set(ops: Sequence[Op]) -> bytes | None:
    """The ``set=1`` request for the UAPI-level ops in ``ops`` (None when there are none).

    Address and link ops are netlink's business and are skipped here.
    """
    lines: list[str] = []
    for op in ops:
        if isinstance(op, SetDevice):
            lines += [f"private_key={b64_to_hex(op.private_key)}", f"listen_port={op.listen_port}"]
    for op in ops:
        if isinstance(op, RemovePeer):
            lines += [f"public_key={b64_to_hex(op.public_key)}", "remove=true"]
        elif isinstance(op, AddPeer):
            lines += _peer_lines(op.peer, set_endpoint=True)
        elif isinstance(op, UpdatePeer):
            lines += _peer_lines(op.peer, set_endpoint=op.set_endpoint)
    if not lines:
        return None
    return ("set=1\n" + "\n".join(lines) + "\n\n").encode("ascii")


def _peer_lines(peer: DesiredPeer, *, set_endpoint: bool) -> list[str]:
    out = [f"public_key={b64_to_hex(peer.public_key)}"]
    if set_endpoint and peer.endpoint is not None:
        out.append(f"endpoint={peer.endpoint}")
    out.append(f"persistent_keepalive_interval={peer.keepalive_s or 0}")
    out.append("replace_allowed_ips=true")
    out += [f"allowed_ip={c}" for c in peer.allowed_ips]
    return out


def _lines(reply: bytes) -> list[tuple[str, str]]:
    if len(reply) > REPLY_BYTES_MAX:
        raise TooLarge(f"UAPI reply over {REPLY_BYTES_MAX} bytes")
    try:
        text = reply.decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError("UAPI reply is not ASCII") from None
    if not text.endswith("\n\n"):
        raise DecodeError("UAPI reply does not end with a blank line")
    body = text[:-2]
    out = []
    for line in body.split("\n") if body else []:
        if len(line) > LINE_CHARS_MAX:
            raise TooLarge(f"UAPI line over {LINE_CHARS_MAX} characters")
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise DecodeError(f"UAPI line is not key=value: {line[:40]!r}")
        out.append((key, value))
    if not out or out[-1][0] != "errno":
        raise DecodeError("UAPI reply does not end with errno=N")
    return out


def _uint(key: str, value: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 20:
        raise DecodeError(f"UAPI {key} is not an unsigned integer: {value[:24]!r}")
    n = int(value)
    if n > _INT_MAX:
        raise DecodeError(f"UAPI {key} out of range")
    return n


def _errno(value: str) -> int:
    # wireguard-go writes negative codes (errno=-22 for EINVAL); accept either sign.
    return -_uint("errno", value[1:]) if value.startswith("-") else _uint("errno", value)


def parse_errno(reply: bytes) -> int:
    """The errno of any reply (0 = success; wireguard-go's codes are negative)."""
    return _errno(_lines(reply)[-1][1])


def parse_get(reply: bytes) -> UapiDevice:
    """The device and peers in a ``get=1`` reply. Raises ``DecodeError`` on errno ≠ 0 as well."""
    lines = _lines(reply)
    errno = _errno(lines[-1][1])
    if errno:
        raise DecodeError(f"UAPI get failed with errno={errno}")
    private_key: str | None = None
    listen_port: int | None = None
    peers: list[ActualPeer] = []
    cur: dict[str, object] | None = None
    seen_keys: set[str] = set()

    def finish() -> None:
        if cur is not None:
            peers.append(
                ActualPeer(
                    public_key=str(cur["public_key"]),
                    endpoint=cur.get("endpoint"),  # type: ignore[arg-type]
                    allowed_ips=sort_cidrs(cur.get("allowed_ips", [])),  # type: ignore[arg-type]
                    keepalive_s=cur.get("keepalive_s") or None,  # type: ignore[arg-type]
                    last_handshake_unix_s=cur.get("hs") or None,  # type: ignore[arg-type]
                    rx_bytes=int(cur.get("rx", 0)),  # type: ignore[call-overload]
                    tx_bytes=int(cur.get("tx", 0)),  # type: ignore[call-overload]
                )
            )

    for key, value in lines[:-1]:
        if key == "public_key":
            finish()
            if len(peers) >= PEERS_MAX:
                raise TooLarge(f"UAPI reply lists over {PEERS_MAX} peers")
            b64 = hex_to_b64(value)
            if b64 in seen_keys:
                raise DecodeError("UAPI reply lists a peer twice")
            seen_keys.add(b64)
            cur = {"public_key": b64}
        elif key in _DEVICE_KEYS:
            if cur is not None:
                raise DecodeError(f"UAPI device key {key} inside a peer block")
            if key == "private_key":
                private_key = hex_to_b64(value)
            elif key == "listen_port":
                listen_port = _uint(key, value)
                if listen_port > 65535:
                    raise DecodeError("UAPI listen_port out of range")
            else:
                _uint(key, value)
        elif cur is None:
            raise DecodeError(f"UAPI peer key {key} before any public_key")
        elif key == "endpoint":
            cur["endpoint"] = _endpoint(value)
        elif key == "allowed_ip":
            ips = cur.setdefault("allowed_ips", [])
            assert isinstance(ips, list)
            if len(ips) >= ALLOWED_IPS_PER_PEER_MAX:
                raise TooLarge(f"UAPI peer with over {ALLOWED_IPS_PER_PEER_MAX} allowed IPs")
            ips.append(_cidr(value))
        elif key == "persistent_keepalive_interval":
            cur["keepalive_s"] = _uint(key, value)
        elif key == "last_handshake_time_sec":
            cur["hs"] = _uint(key, value)
        elif key == "rx_bytes":
            cur["rx"] = _uint(key, value)
        elif key == "tx_bytes":
            cur["tx"] = _uint(key, value)
        elif key in ("last_handshake_time_nsec", "protocol_version"):
            _uint(key, value)
        # Other keys (preshared_key, future additions) are not ours to interpret.
    finish()
    return UapiDevice(private_key=private_key, listen_port=listen_port, peers=tuple(peers))


def _endpoint(value: str) -> str:
    try:
        return parse_endpoint(value)
    except DecodeError:
        # A scoped link-local endpoint a peer roamed to is legal for wireguard-go but not something
        # tva would set: keep it verbatim (it is bounded by LINE_CHARS_MAX) so status shows it.
        if value.isprintable():
            return value
        raise


def _cidr(value: str) -> str:
    try:
        return str(ip_network(value, strict=True))
    except ValueError:
        raise DecodeError(f"UAPI allowed_ip is not a CIDR: {value[:48]!r}") from None

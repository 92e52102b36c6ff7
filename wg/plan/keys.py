"""WireGuard keys: one X25519 key per node, separate from its Ed25519 identity.

Pure: the private key is built from 32 seed bytes the shell draws from the OS. Any 32 bytes are
usable; we store them clamped (RFC 7748), as ``wg genkey`` prints them, because WireGuard clamps
what it is given and reports the clamped key back: comparing unclamped bytes with what
wireguard-go reports would re-set the key on every reconcile.

Two text forms exist and must never be mixed up: base64 (host cards, configs, ``wg`` output) and
lower-case hex (wireguard-go's UAPI socket only).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tva.errors import DecodeError, InvalidInput

WG_KEY_BYTES = 32
WG_KEY_B64_CHARS = 44
WG_KEY_HEX_CHARS = 64


def key_to_b64(key: bytes) -> str:
    _check_len(key)
    return base64.b64encode(key).decode("ascii")


def key_to_hex(key: bytes) -> str:
    _check_len(key)
    return key.hex()


def key_from_b64(text: object) -> bytes:
    """Decode a base64 WireGuard key from outside (a card, a config); ``DecodeError`` if it is not one."""
    if not isinstance(text, str) or len(text) != WG_KEY_B64_CHARS or not text.endswith("="):
        raise DecodeError("a WireGuard key is 44 base64 characters ending in '='")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise DecodeError("WireGuard key is not valid base64") from None
    if len(raw) != WG_KEY_BYTES:
        raise DecodeError(f"WireGuard key must decode to {WG_KEY_BYTES} bytes")
    if base64.b64encode(raw).decode("ascii") != text:
        # Non-zero padding bits give one key many spellings; only the canonical one is accepted,
        # so comparing key texts (duplicate and revoked-key checks) compares keys.
        raise DecodeError("WireGuard key is not in canonical base64")
    return raw


def key_from_hex(text: object) -> bytes:
    """Decode a hex key as wireguard-go's UAPI writes it; ``DecodeError`` if it is not one."""
    if not isinstance(text, str) or len(text) != WG_KEY_HEX_CHARS:
        raise DecodeError(f"a UAPI key is {WG_KEY_HEX_CHARS} hex characters")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise DecodeError("UAPI key is not hex") from None


def b64_to_hex(text: str) -> str:
    return key_from_b64(text).hex()


def hex_to_b64(text: str) -> str:
    return key_to_b64(key_from_hex(text))


def clamp_private(raw: bytes) -> bytes:
    """RFC 7748 clamping: the form WireGuard keeps and reports."""
    _check_len(raw)
    k = bytearray(raw)
    k[0] &= 248
    k[31] = (k[31] & 127) | 64
    return bytes(k)


def public_from_private(private: bytes) -> bytes:
    _check_len(private)
    key = X25519PrivateKey.from_private_bytes(private)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _check_len(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != WG_KEY_BYTES:
        raise InvalidInput(f"a WireGuard key has {WG_KEY_BYTES} bytes")


@dataclass(frozen=True)
class WgKey:
    """A node's WireGuard key pair, built from 32 seed bytes (the private key itself)."""

    private: bytes = field(repr=False)  # stored clamped
    public: bytes = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.private, bytes) or len(self.private) != WG_KEY_BYTES:
            raise InvalidInput(
                f"a WireGuard private key has {WG_KEY_BYTES} bytes",
                hint="the shell draws it with os.urandom(32) and stores it in the state dir",
            )
        object.__setattr__(self, "private", clamp_private(self.private))
        object.__setattr__(self, "public", public_from_private(self.private))

    @property
    def private_b64(self) -> str:
        return key_to_b64(self.private)

    @property
    def public_b64(self) -> str:
        return key_to_b64(self.public)

    @property
    def private_hex(self) -> str:
        return key_to_hex(self.private)

    @property
    def public_hex(self) -> str:
        return key_to_hex(self.public)

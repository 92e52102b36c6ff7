"""Node identity: one Ed25519 key is the libp2p peer id and the feed-signing key.

Pure: the private key comes in as 32 seed bytes (the shell draws them from the OS), so this
module never touches a randomness source. Peer ids are computed here exactly as libp2p does
(base58btc of an identity multihash of the protobuf-encoded public key), which keeps the heavy
libp2p import out of every command that only needs to print or compare an id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tva.errors import DecodeError, InvalidInput

PUBLIC_KEY_BYTES = 32
SEED_BYTES = 32
SIGNATURE_BYTES = 64

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}
# libp2p's PublicKey protobuf: field 1 (KeyType) = 1 (Ed25519), field 2 (Data) = 32 bytes.
_PROTOBUF_ED25519_PREFIX = b"\x08\x01\x12\x20"
# identity multihash: code 0x00, length 36.
_MULTIHASH_PREFIX = b"\x00\x24"
PEER_ID_CHARS_MAX = 64


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58_ALPHABET[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    n = 0
    for ch in text:
        try:
            n = n * 58 + _B58_INDEX[ch]
        except KeyError:
            raise DecodeError(f"not base58: {ch!r} in peer id") from None
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    pad = len(text) - len(text.lstrip("1"))
    return b"\0" * pad + body


def peer_id_from_public(public: bytes) -> str:
    """The libp2p peer id (``12D3KooW…``) of an Ed25519 public key."""
    if len(public) != PUBLIC_KEY_BYTES:
        raise InvalidInput(f"an Ed25519 public key has {PUBLIC_KEY_BYTES} bytes, got {len(public)}")
    return b58encode(_MULTIHASH_PREFIX + _PROTOBUF_ED25519_PREFIX + public)


def public_from_peer_id(peer_id: str) -> bytes:
    """Inverse of :func:`peer_id_from_public`; refuses anything that is not an Ed25519 peer id."""
    if not isinstance(peer_id, str) or not 0 < len(peer_id) <= PEER_ID_CHARS_MAX:
        raise DecodeError("peer id must be a non-empty string of at most 64 characters")
    raw = b58decode(peer_id)
    prefix = _MULTIHASH_PREFIX + _PROTOBUF_ED25519_PREFIX
    if len(raw) != len(prefix) + PUBLIC_KEY_BYTES or not raw.startswith(prefix):
        raise DecodeError(f"not an Ed25519 libp2p peer id: {peer_id[:16]}…")
    return raw[len(prefix):]


def is_peer_id(text: str) -> bool:
    try:
        public_from_peer_id(text)
    except DecodeError:
        return False
    return True


def verify(public: bytes, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is ``public``'s Ed25519 signature of ``message``."""
    if len(public) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class NodeKey:
    """A node's signing identity, built from 32 seed bytes."""

    seed: bytes = field(repr=False)
    public: bytes = field(init=False)
    peer_id: str = field(init=False)

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_BYTES:
            raise InvalidInput(f"an Ed25519 seed has {SEED_BYTES} bytes, got {len(self.seed)}")
        key = Ed25519PrivateKey.from_private_bytes(self.seed)
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "public", public)
        object.__setattr__(self, "peer_id", peer_id_from_public(public))

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)  # type: ignore[attr-defined]

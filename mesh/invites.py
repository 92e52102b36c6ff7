"""Invites: signed, expiring, single-use tokens that admit a host to a fleet (pure).

Token: ``tva1:`` + base64url(no padding) of ``msgpack([body, signature])``. The body names the
fleet (id, name), where to dial (the inviter's *join listener* multiaddrs), the role, an expiry, a
random one-time join secret (the nonce) and the inviter; the inviter's Ed25519 key signs a
domain-separated encoding of it.

What the token alone proves (checked by the joiner before it dials anything): it is intact and
signed by the key it names, and it has not expired. What only the fleet can check (done by the
admitting member): the inviter is a current member, and the nonce was never redeemed — the
redemption is recorded in the fleet document together with the admission, so a second use is
refused by every member that has synced it.

The fleet's pre-shared key is *not* in the token (format 1 carried it, so every invite ever
pasted into a chat leaked it for good): the joiner dials the join listener, a second libp2p host
whose private-network key is public and which answers nothing but join requests; once admitted it
receives the fleet key sealed to its own identity key (agent.secrets, agent.joining).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass

import msgpack

from crdt.identity import PUBLIC_KEY_BYTES, NodeKey, peer_id_from_public, verify
from tva.errors import InvalidInput, InviteError

TOKEN_PREFIX = "tva1:"
TOKEN_CHARS_MAX = 4096
FORMAT_VERSION = 2  # 1 carried the fleet PSK
ROLES = ("admin", "member", "friend")
NONCE_BYTES = 16
FLEET_ID_CHARS_MAX = 64
FLEET_NAME_CHARS_MAX = 64
BOOTSTRAP_ADDRS_MAX = 16
MULTIADDR_CHARS_MAX = 256
TTL_MS_MAX = 30 * 24 * 3600 * 1000
_SIGNING_DOMAIN = b"tva/invite/v1"


@dataclass(frozen=True)
class Invite:
    fleet_id: str
    fleet_name: str
    bootstrap: tuple[str, ...]
    role: str
    expires_at_ms: int
    nonce: bytes
    inviter: bytes  # Ed25519 public key
    signature: bytes = b""

    @property
    def inviter_peer_id(self) -> str:
        return peer_id_from_public(self.inviter)

    @property
    def nonce_hex(self) -> str:
        return self.nonce.hex()

    def body(self) -> list:
        return [
            FORMAT_VERSION, self.fleet_id, self.fleet_name, list(self.bootstrap),
            self.role, self.expires_at_ms, self.nonce, self.inviter,
        ]

    def signing_bytes(self) -> bytes:
        return _SIGNING_DOMAIN + msgpack.packb(self.body(), use_bin_type=True)

    def to_json_dict(self) -> dict:
        """What `tva-agent invite --json` and logs may show: never the join secret (nonce)."""
        return {
            "fleet_id": self.fleet_id,
            "fleet_name": self.fleet_name,
            "role": self.role,
            "bootstrap": list(self.bootstrap),
            "expires_at_ms": self.expires_at_ms,
            "inviter": self.inviter_peer_id,
        }


def _check_fields(inv: Invite) -> None:
    """Shape checks shared by issuing (local misuse) and parsing (remote data)."""
    if not isinstance(inv.fleet_id, str) or not 0 < len(inv.fleet_id) <= FLEET_ID_CHARS_MAX:
        raise ValueError("fleet id must be 1–64 characters")
    if not isinstance(inv.fleet_name, str) or not 0 < len(inv.fleet_name) <= FLEET_NAME_CHARS_MAX:
        raise ValueError("fleet name must be 1–64 characters")
    if not isinstance(inv.bootstrap, tuple) or not 0 < len(inv.bootstrap) <= BOOTSTRAP_ADDRS_MAX:
        raise ValueError(f"an invite needs 1–{BOOTSTRAP_ADDRS_MAX} bootstrap addresses")
    for addr in inv.bootstrap:
        if not isinstance(addr, str) or not addr.startswith("/") or len(addr) > MULTIADDR_CHARS_MAX:
            raise ValueError(f"bootstrap address is not a multiaddr: {str(addr)[:40]!r}")
    if inv.role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not isinstance(inv.expires_at_ms, int) or isinstance(inv.expires_at_ms, bool) or inv.expires_at_ms <= 0:
        raise ValueError("expiry must be a positive integer (ms)")
    if not isinstance(inv.nonce, bytes) or len(inv.nonce) != NONCE_BYTES:
        raise ValueError(f"nonce must be {NONCE_BYTES} bytes")
    if not isinstance(inv.inviter, bytes) or len(inv.inviter) != PUBLIC_KEY_BYTES:
        raise ValueError("inviter must be a 32-byte Ed25519 public key")


def issue_invite(
    *, key: NodeKey, fleet_id: str, fleet_name: str, bootstrap: list[str], role: str,
    ttl_ms: int, nonce: bytes, now_ms: int,
) -> str:
    """Sign a new invite token. ``nonce`` comes from the shell's randomness source."""
    if not 0 < ttl_ms <= TTL_MS_MAX:
        raise InvalidInput(f"invite ttl must be between 1 ms and 30 days, got {ttl_ms} ms",
                           hint="use e.g. --ttl 24h")
    inv = Invite(fleet_id, fleet_name, tuple(bootstrap), role, now_ms + ttl_ms, nonce, key.public)
    try:
        _check_fields(inv)
    except ValueError as exc:
        hint = "start the daemon (tva-agent run) so the invite can name where to dial" \
            if "bootstrap" in str(exc) else ""
        raise InvalidInput(f"cannot issue invite: {exc}", hint=hint) from None
    signature = key.sign(inv.signing_bytes())
    raw = msgpack.packb([inv.body(), signature], use_bin_type=True)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def parse_invite(token: str) -> Invite:
    """Decode and verify a token's integrity and signature (not its expiry: see :func:`check_usable`)."""
    if not isinstance(token, str):
        raise InviteError("invite must be text")
    token = token.strip()
    if len(token) > TOKEN_CHARS_MAX:
        raise InviteError(f"invite is longer than {TOKEN_CHARS_MAX} characters",
                          hint="copy the whole tva1:… token and nothing else")
    if not token.startswith(TOKEN_PREFIX):
        raise InviteError("not a tva invite (it must start with 'tva1:')",
                          hint="copy the whole token printed by `tva-agent invite`")
    text = token[len(TOKEN_PREFIX):]
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InviteError("invite is not valid base64url", hint="was the token cut or wrapped?") from None
    try:
        outer = msgpack.unpackb(raw, use_list=True, raw=False, strict_map_key=True, max_bin_len=4096,
                                max_str_len=4096, max_array_len=64, max_map_len=0, max_ext_len=0)
    except Exception:  # msgpack raises many types on garbage; all mean the same thing here
        raise InviteError("invite is corrupt (cannot decode)", hint="was the token cut or wrapped?") from None
    if not (isinstance(outer, list) and len(outer) == 2 and isinstance(outer[0], list)
            and isinstance(outer[1], bytes)):
        raise InviteError("invite has an unknown structure")
    body, signature = outer
    if body and body[0] == 1:
        raise InviteError("invite of an older format (it carried the fleet key)",
                          hint="ask for a new invite from an upgraded member: tva-agent invite")
    if not body or body[0] != FORMAT_VERSION:
        raise InviteError(f"invite format {body[0] if body else '?'} is not supported by this version",
                          hint="upgrade tva-agent on this host")
    if len(body) != 8:
        raise InviteError("invite has an unknown structure")
    _, fleet_id, fleet_name, bootstrap, role, expires, nonce, inviter = body
    if not isinstance(bootstrap, list):
        raise InviteError("invite has an unknown structure")
    inv = Invite(fleet_id, fleet_name, tuple(bootstrap), role, expires, nonce, inviter, signature)
    try:
        _check_fields(inv)
    except ValueError as exc:
        raise InviteError(f"invite is malformed: {exc}") from None
    if not verify(inv.inviter, signature, inv.signing_bytes()):
        raise InviteError("invite signature does not verify (tampered or forged)",
                          hint="ask for a fresh invite")
    return inv


def check_usable(inv: Invite, now_ms: int) -> None:
    """The joiner-side checks that need a clock: refuse an expired invite before dialling."""
    if now_ms >= inv.expires_at_ms:
        raise InviteError("invite has expired", hint="ask a fleet member for a new one: tva-agent invite")


def check_admission(
    inv: Invite, *, now_ms: int, fleet_id: str, roles: Mapping[str, str], revoked: frozenset[str],
    redeemed: frozenset[str], joiner: str,
) -> None:
    """The admitting member's checks, against its copy of the fleet document (``roles``: every
    current member's role)."""
    check_usable(inv, now_ms)
    if inv.fleet_id != fleet_id:
        raise InviteError("invite is for another fleet")
    if inv.inviter_peer_id in revoked or inv.inviter_peer_id not in roles:
        raise InviteError("invite was issued by a host that is not (or no longer) a member")
    if roles[inv.inviter_peer_id] not in ("owner", "admin"):
        raise InviteError("invite was issued by a host that is not an admin", hint="only admins may invite")
    if inv.nonce_hex in redeemed:
        raise InviteError("invite was already redeemed", hint="each invite admits one host once")
    if joiner in revoked:
        raise InviteError("this host was revoked from the fleet")
    if inv.role not in ("admin", "member"):
        raise InviteError("friend invites link fleets; they do not admit members",
                          hint="an admin of the other fleet runs `tva-agent friend add INVITE`")


def check_friend_invite(
    inv: Invite, *, now_ms: int, fleet_id: str, roles: Mapping[str, str], revoked: frozenset[str],
    used: frozenset[str],
) -> None:
    """The inviting fleet's checks when another fleet redeems a friend invite (``used``: nonces
    already redeemed by a friend link, agent.policy.friend_links.used_nonces)."""
    check_usable(inv, now_ms)
    if inv.role != "friend":
        raise InviteError("this invite admits a host; it does not link fleets",
                          hint="ask an admin for `tva-agent invite --role friend`")
    if inv.fleet_id != fleet_id:
        raise InviteError("invite is for another fleet")
    if inv.inviter_peer_id in revoked or roles.get(inv.inviter_peer_id) not in ("owner", "admin"):
        raise InviteError("invite was issued by a host that is not (or no longer) an admin")
    if inv.nonce_hex in used:
        raise InviteError("invite was already redeemed", hint="each friend invite links one fleet once")

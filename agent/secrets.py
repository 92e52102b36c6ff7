"""The fleet key (libp2p private-network PSK): sealed to members, rotated on revoke, never in invites.

* **Sealed to a member's key.** A member's Ed25519 identity converts to an X25519 key (libsodium's
  ``crypto_sign_ed25519_pk_to_curve25519``); the PSK is a libsodium sealed box to it, so only that
  member can open it, and anyone may carry it (the decision log, a join reply).
* **Rotation.** When an admin revokes a host it draws a new PSK and records a ``psk`` decision
  (``FleetDoc.rotate_psk``): the next epoch, sealed to every remaining member. Members adopt it
  from their replica by themselves and switch ``SWITCH_DELAY_MS`` after it was made, so the fleet
  changes over together (a member switching alone could not reach the others for a while). A
  member that was offline learns the new key within one reconnect through the join listener's
  ``rekey`` request (``agent.joining``). The revoked host never gets it: from then on it cannot
  open a connection to any member.
* **The join network.** Joiners and members behind on the key reach a member's *join listener*,
  a second libp2p host whose private-network key is public (derived from the fleet id) and which
  serves nothing but ``join`` and ``rekey`` requests.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from crdt.identity import NodeKey, public_from_peer_id
from tva.errors import DecodeError, InvalidInput

PSK_BYTES = 32
SWITCH_DELAY_MS = 5_000  # from the rotation's time to everyone switching: gossip reaches all first


@dataclass(frozen=True)
class FleetKey:
    epoch: int
    psk: bytes
    switch_at_ms: int  # wall clock; the key is used for dialling and listening from then on


def seal_psk(psk: bytes, member: str) -> bytes:
    """``psk`` sealed to ``member``'s identity key (a peer id)."""
    from nacl import bindings

    if not isinstance(psk, bytes) or len(psk) != PSK_BYTES:
        raise InvalidInput(f"a fleet key has {PSK_BYTES} bytes")
    x_public = bindings.crypto_sign_ed25519_pk_to_curve25519(public_from_peer_id(member))
    return bindings.crypto_box_seal(psk, x_public)


def open_psk(sealed: bytes, key: NodeKey) -> bytes:
    """Open a fleet key sealed to this node; DecodeError when it was not sealed to us or is damaged."""
    from nacl import bindings
    from nacl.exceptions import CryptoError

    ed_secret = key.seed + key.public  # libsodium's 64-byte Ed25519 secret key layout
    x_secret = bindings.crypto_sign_ed25519_sk_to_curve25519(ed_secret)
    x_public = bindings.crypto_sign_ed25519_pk_to_curve25519(key.public)
    try:
        psk = bindings.crypto_box_seal_open(sealed, x_public, x_secret)
    except (CryptoError, ValueError, TypeError):
        raise DecodeError("a sealed fleet key does not open with this host's key") from None
    if len(psk) != PSK_BYTES:
        raise DecodeError("a sealed fleet key has the wrong length")
    return psk


def new_psk() -> bytes:
    return os.urandom(PSK_BYTES)


def join_psk(fleet_id: str) -> bytes:
    """The join network's private-network key: public by design (anyone with the fleet id may
    knock), so the join listener is reachable with an invite alone and by members whose fleet key
    is out of date — and by nobody who does not know the fleet id."""
    return hashlib.blake2b(b"tva/join-net/v1/" + fleet_id.encode(), digest_size=PSK_BYTES).digest()


def seal_for_members(psk: bytes, members: frozenset[str] | set[str]) -> dict[str, bytes]:
    return {peer: seal_psk(psk, peer) for peer in sorted(members)}


def current_key(doc, key: NodeKey) -> FleetKey | None:
    """The newest fleet key the decision log holds for this node (None: no rotation has happened,
    or the newest one was not sealed to us — we were revoked, or admitted after it)."""
    rotation = doc.psk_rotation()
    if rotation is None:
        return None
    sealed = rotation.sealed.get(key.peer_id)
    if sealed is None:
        return None
    return FleetKey(rotation.epoch, open_psk(sealed, key), rotation.at_ms + SWITCH_DELAY_MS)

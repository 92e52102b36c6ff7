"""Who may say what about whom: the signatures on liveness statements and presence.

Liveness about X is X's to end. Every record that says what X *is* — alive, asleep, left — is a
statement X signed over (X, incarnation, state); presence is signed by its owner over its whole
encoding, which names its incarnation. Other members may still *suspect* X or declare it *dead*
(that is what failure detection is), but such a record must carry X's own signed statement at the
same incarnation as proof that X reached it. So nobody but X can move X's incarnation, and X
refutes any suspicion with incarnation + 1: the step per round is exactly one, and a forged record
at the wire's maximum incarnation (which X could never out-bid) is simply refused.

The core stays pure: the shell passes a ``Signer`` (``crdt.identity.NodeKey`` is one) and a
``Verifier`` in. ``peer_verifier`` is the production verifier (peer ids are Ed25519 keys);
``CachingVerifier`` memoises verdicts, which lets the simulator share one cache between a
thousand nodes that all check the same records.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

import msgpack

from crdt.identity import public_from_peer_id
from crdt.identity import verify as ed25519_verify
from tva.errors import DecodeError

from .frames import MemberRecord, PresenceRecord, presence_body
from .types import Liveness

OWN_STATES = (Liveness.ALIVE, Liveness.ASLEEP, Liveness.LEFT)  # what only the member itself may say

_MEMBER_DOMAIN = b"tva/mesh-member/2\0"
_PRESENCE_DOMAIN = b"tva/mesh-presence/2\0"


class Signer(Protocol):
    """This node's signing identity (``crdt.identity.NodeKey``)."""

    @property
    def peer_id(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...


# (peer id, signature, message) -> True when the peer's key signed the message
Verifier = Callable[[str, bytes, bytes], bool]


def member_message(peer: str, incarnation: int, own_rank: int) -> bytes:
    """What X signs to say "at ``incarnation`` I am ``own_rank``" (alive, asleep or left)."""
    return _MEMBER_DOMAIN + msgpack.packb([peer, incarnation, own_rank], use_bin_type=True)


def presence_message(body: bytes) -> bytes:
    """What X signs for a presence: the body exactly as it travels (so relays need not re-encode
    it, and fields a newer build adds stay covered by the signature through older relays)."""
    return _PRESENCE_DOMAIN + body


def peer_verifier(peer: str, signature: bytes, message: bytes) -> bool:
    """Production: a peer id *is* an Ed25519 public key (``crdt.identity``)."""
    try:
        public = public_from_peer_id(peer)
    except DecodeError:
        return False
    return ed25519_verify(public, signature, message)


class CachingVerifier:
    """Remembers the last ``entries_max`` verdicts (valid and forged alike), keyed by a hash of
    (peer, signature, message). Verifying costs ~140 µs; a lookup ~1 µs."""

    def __init__(self, inner: Verifier = peer_verifier, entries_max: int = 65_536) -> None:
        self._inner = inner
        self._entries_max = entries_max
        self._verdicts: OrderedDict[bytes, bool] = OrderedDict()
        self.checks = 0  # real verifications done (cache misses)

    def __call__(self, peer: str, signature: bytes, message: bytes) -> bool:
        raw = peer.encode("utf-8", "replace")
        key = hashlib.blake2b(b"".join((len(raw).to_bytes(4, "big"), raw, len(signature).to_bytes(4, "big"), signature,
                                        len(message).to_bytes(4, "big"), message)), digest_size=16).digest()
        hit = self._verdicts.get(key)
        if hit is not None:
            self._verdicts.move_to_end(key)
            return hit
        self.checks += 1
        verdict = bool(self._inner(peer, signature, message))
        self._verdicts[key] = verdict
        if len(self._verdicts) > self._entries_max:
            self._verdicts.popitem(last=False)
        return verdict


# --- building signed records ---------------------------------------------------------------------


def own_member_record(signer: Signer, state: Liveness, incarnation: int) -> MemberRecord:
    """This node's statement "at ``incarnation`` I am ``state``" (alive, asleep or left), signed."""
    sig = signer.sign(member_message(signer.peer_id, incarnation, state.rank))
    return MemberRecord(state, signer.peer_id, incarnation, "", state, sig)


def issue_presence(signer: Signer, incarnation: int, pseq: int, disk_free_bytes: int, uptime_score: float,
                   endpoints: tuple[str, ...], host_class: str, asleep: bool) -> PresenceRecord:
    """This node's presence, signed over the body exactly as it will travel. Ed25519 signatures are
    deterministic, so the same fields always give the same record (the simulator relies on it)."""
    unsigned = PresenceRecord(signer.peer_id, incarnation, pseq, disk_free_bytes, float(uptime_score),
                              tuple(endpoints), host_class, asleep)
    body = presence_body(unsigned)
    return replace(unsigned, body=body, sig=signer.sign(presence_message(body)))


def member_proof_ok(verify: Verifier, rec: MemberRecord) -> bool:
    """Does ``rec`` carry its subject's own signed statement at its incarnation?

    An own-state record (alive, asleep, left) must be exactly what the subject signed; a suspicion
    or a death must carry the subject's statement (alive or asleep) at the same incarnation. At
    incarnation 0 — where every member starts, before anyone heard from it — suspicions need none.
    """
    if rec.state in OWN_STATES:
        if rec.own is not rec.state:
            return False
    elif rec.own is None:
        return rec.incarnation == 0 and not rec.sig
    elif rec.own not in (Liveness.ALIVE, Liveness.ASLEEP):
        return False
    return verify(rec.peer, rec.sig, member_message(rec.peer, rec.incarnation, rec.own.rank))


def presence_ok(verify: Verifier, p: PresenceRecord) -> bool:
    return verify(p.peer, p.sig, presence_message(p.wire_body()))

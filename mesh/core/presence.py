"""Members' presence: soft state signed by its owner, ordered by (incarnation, sequence).

Why the incarnation is part of the order: a host restarted within the same second, or with its
clock stepped back (a board without a real-time clock), starts at an equal or lower incarnation
and sequence 1. Peers still hold its presence from before at a higher order and ignore the new
one — so they send it back to the owner (a correction); the owner sees its own older-life record
above what it says now, refutes above that incarnation (``swim.Swim.refute_above``) and re-issues
its presence at the new incarnation, which every peer takes. Nobody else can do this for it: the
record is signed over its whole body, so a forged or "frozen" presence (say at sequence 2**62) is
refused and counted.

Validity. A presence is valid ``presence_ttl_for(n)`` after its owner issued it; every record on
the wire carries how long its sender still holds it valid (``remaining_ms``), and a receiver keeps
the smaller of that and its own TTL, so a relay — or anti-entropy long after the fact — can never
make a presence live longer than its owner's refresh allows. Expired records stay held (they still
order later copies, which are then ignored), and so do those of dead members: anti-entropy compares
what nodes *hold*, which must not flip-flop with local clocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from tva.errors import InvalidInput

from .frames import (
    ENDPOINT_CHARS_MAX,
    ENDPOINTS_MAX,
    HOST_CLASS_CHARS_MAX,
    INCARNATION_MAX,
    PEER_CHARS_MAX,
    U64_MAX,
    PresenceRecord,
    presence_from_body,
)
from .signing import Signer, issue_presence
from .types import Presence

SOFT_STATE_HINT = (f"disk_free_bytes 0..2^64-1, uptime_score 0..1, at most {ENDPOINTS_MAX} endpoints of "
                   f"1..{ENDPOINT_CHARS_MAX} chars, host_class up to {HOST_CLASS_CHARS_MAX} chars")


@dataclass
class Held:
    record: PresenceRecord
    expires_ms: int
    view: Presence  # built once: presence() is read on every planning pass

class PresenceBook:
    def __init__(self, signer: Signer) -> None:
        self._signer = signer
        self.own: PresenceRecord | None = None
        self.held: dict[str, Held] = {}

    def order_of(self, peer: str) -> tuple[int, int]:
        if peer == self._signer.peer_id:
            return self.own.order if self.own is not None else (0, 0)
        h = self.held.get(peer)
        return h.record.order if h is not None else (0, 0)

    def issue(self, incarnation: int, disk: int, score: float, endpoints: tuple[str, ...], host_class: str,
              asleep: bool) -> PresenceRecord:
        """Our next presence: one signature per change (refreshes included)."""
        pseq = self.own.pseq + 1 if self.own is not None else 1
        self.own = issue_presence(self._signer, incarnation, pseq, disk, score, endpoints, host_class, asleep)
        return self.own

    def reissue(self, incarnation: int) -> PresenceRecord | None:
        o = self.own
        if o is None:
            return None
        return self.issue(incarnation, o.disk_free_bytes, o.uptime_score, o.endpoints, o.host_class, o.asleep)

    def newer(self, p: PresenceRecord) -> bool:
        h = self.held.get(p.peer)
        return h is None or p.order > h.record.order

    def put(self, p: PresenceRecord, now: int, ttl_ms: int) -> None:
        expires = now + min(ttl_ms, p.remaining_ms)
        self.held[p.peer] = Held(p, expires, as_presence(p, expires))  # its remaining_ms is never read

    def drop(self, peer: str) -> None:
        self.held.pop(peer, None)

    def with_remaining(self, peer: str, now: int) -> PresenceRecord | None:
        """The held record as it goes on the wire now (its remaining validity filled in)."""
        h = self.held.get(peer)
        if h is None:
            return None
        return replace(h.record, remaining_ms=max(0, h.expires_ms - now))

    def view(self, peer: str, now: int) -> Presence | None:
        h = self.held.get(peer)
        if h is None or h.expires_ms <= now:
            return None
        return h.view


def as_presence(p: PresenceRecord, expires_ms: int) -> Presence:
    return Presence(p.peer, p.pseq, p.disk_free_bytes, p.uptime_score, p.endpoints, p.host_class, p.asleep,
                    expires_ms, p.incarnation, p.sig, p.wire_body())


def from_presence(r: Presence, remaining_ms: int) -> PresenceRecord:
    """A remembered ``Presence`` back as the signed record it was. With its body kept, the fields
    come from the body (which the signature covers); raises DecodeError for a bad one."""
    if r.body:
        return presence_from_body(r.body, r.sig, remaining_ms)
    return PresenceRecord(r.peer, r.incarnation, r.pseq, r.disk_free_bytes, float(r.uptime_score), tuple(r.endpoints),
                          r.host_class, r.asleep, r.sig, b"", remaining_ms)


def soft_state_ok(disk: object, score: object, endpoints: object, host_class: object) -> bool:
    # checked on the way in, not only on the wire: a bad value of ours would make every peer
    # refuse our frames
    return (type(disk) is int and 0 <= disk <= U64_MAX
            and type(score) in (int, float) and math.isfinite(score) and 0 <= score <= 1  # type: ignore[arg-type]
            and isinstance(endpoints, tuple | list) and len(endpoints) <= ENDPOINTS_MAX
            and all(isinstance(x, str) and 0 < len(x) <= ENDPOINT_CHARS_MAX for x in endpoints)
            and isinstance(host_class, str) and len(host_class) <= HOST_CLASS_CHARS_MAX)


def check_remembered(records: object) -> None:
    """``RestorePresence`` records are the shell's: InvalidInput for any out of range (none taken)."""
    if not isinstance(records, tuple | list):
        raise InvalidInput("RestorePresence.records must be a tuple of Presence")
    for r in records:
        if (not isinstance(r, Presence) or not isinstance(r.peer, str) or not 0 < len(r.peer) <= PEER_CHARS_MAX
                or type(r.pseq) is not int or not 0 <= r.pseq <= U64_MAX or type(r.asleep) is not bool
                or type(r.incarnation) is not int or not 0 <= r.incarnation <= INCARNATION_MAX
                or not isinstance(r.sig, bytes) or not isinstance(r.body, bytes)
                or not soft_state_ok(r.disk_free_bytes, r.uptime_score, r.endpoints, r.host_class)):
            raise InvalidInput("RestorePresence: a record is out of range",
                               hint="peer ids of 1..64 chars, pseq 0..2^64-1, " + SOFT_STATE_HINT)


def restarted(p: PresenceRecord, held: PresenceRecord | None) -> bool:
    """Does ``p`` come from a process that started after the one ``held`` came from? A process
    numbers its presence from 1 and only counts up (a refutation re-issues it at a higher
    incarnation and the next sequence), so a higher incarnation at a sequence no higher than before
    means a fresh start. Held nothing: its first presence at a non-zero incarnation (a fleet
    starting together is all at 0; an agent's incarnation is its start time)."""
    if held is None:
        return p.pseq == 1 and p.incarnation > 0
    return p.incarnation > held.incarnation and p.pseq <= held.pseq

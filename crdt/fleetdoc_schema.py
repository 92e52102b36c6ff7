"""Values, argument checks and peer-data parsing for the fleet document (crdt.fleetdoc).

Checks on local arguments raise InvalidInput with a hint; parsers of what peers wrote return None
for "malformed" and never raise.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from crdt.identity import is_peer_id
from tva.errors import InvalidInput

PeerId = str
Role = Literal["owner", "admin", "member"]
Scalar = str | int | bool | None

SYNC_MESSAGE_BYTES_MAX = 4 * 1024 * 1024
DOC_BYTES_MAX = 256 * 1024 * 1024
# What a decision op may carry (the wire's domain); tva.limits decides what readers use.
COPIES_MAX = 1000
TEXT_CHARS_MAX = 256
LINK_FIELDS_MAX = 32
LINK_VALUE_CHARS_MAX = 2048
MS_MAX = 2**53
# Fleet-wide settings (an admin's to change): name -> the shape of its value (crdt.decision_rules
# checks the meaning, e.g. that a subnet is private).
SETTINGS = {"ipv4_subnet": re.compile(r"(?:[0-9]{1,3}\.){3}0/24")}

TOKEN_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
ID_RE = re.compile(r"[A-Za-z0-9_=-]{1,128}")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


# --- values --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    """Keep ``min_copies``..``max_copies`` copies of ``content`` (None: no upper bound)."""

    content: str
    min_copies: int
    max_copies: int | None
    by: PeerId
    at_ms: int
    # Friends' copies may count for it (``pin … --friends``): an optional body field of the pin op
    # that the rules ignore, so an older build reads the same pin without it (it counts only our own).
    friends: bool = False


@dataclass(frozen=True)
class Override:
    """Settings for one host made from any node; None = not overridden (the host's card holds).
    Duty weights are -100..100; what they mean (prefer, avoid, never) is agent.policy's call."""

    peer: PeerId
    host_class: str | None
    services: frozenset[str] | None
    duty_prefs: tuple[tuple[str, str], ...] | None  # sorted (duty, prefer|avoid|never) pairs

    def duty_prefs_dict(self) -> dict[str, str] | None:
        return None if self.duty_prefs is None else dict(self.duty_prefs)


@dataclass(frozen=True)
class Admission:
    peer: PeerId
    name: str
    role: Role
    invite_nonce: str | None
    by: PeerId
    at_ms: int


@dataclass(frozen=True)
class Revocation:
    """A permanent tombstone: the peer is never a member again, whatever admissions say."""

    peer: PeerId
    by: PeerId
    reason: str
    at_ms: int


@dataclass(frozen=True)
class FriendLink:
    fleet_id: str
    name: str
    link: tuple[tuple[str, str | int | bool], ...]  # sorted (field, value) pairs
    by: PeerId
    at_ms: int

    def link_dict(self) -> dict[str, str | int | bool]:
        return dict(self.link)


# --- argument checks (local misuse → InvalidInput with a hint) -----------------------------------


def check_text(value: object, what: str, chars_max: int = TEXT_CHARS_MAX, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str) or len(value) > chars_max or (not value and not empty_ok):
        raise InvalidInput(f"{what} must be a string of 1..{chars_max} characters",
                           hint=f"got {value!r:.60}")
    if CONTROL_RE.search(value):
        raise InvalidInput(f"{what} contains control characters", hint="use printable text")
    return value


def check_token(value: object, what: str) -> str:
    if not isinstance(value, str) or not TOKEN_RE.fullmatch(value):
        raise InvalidInput(f"{what} must match {TOKEN_RE.pattern}", hint=f"got {value!r:.60}")
    return value


def check_ident(value: object, what: str) -> str:
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise InvalidInput(f"{what} must match {ID_RE.pattern}", hint=f"got {value!r:.60}")
    return value


def check_peer(value: object, what: str = "peer") -> PeerId:
    if not isinstance(value, str) or not peer_ok(value):
        raise InvalidInput(f"{what} must be an Ed25519 libp2p peer id (12D3KooW…)",
                           hint=f"got {value!r:.60}")
    return value


def check_int(value: object, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidInput(f"{what} must be an integer in {lo}..{hi}", hint=f"got {value!r:.60}")
    return value


def check_ms(value: object) -> int:
    return check_int(value, "now_ms", 0, MS_MAX)


def services_text(services: Iterable[str]) -> str:
    if isinstance(services, str):
        raise InvalidInput("services must be a collection of names, not one string",
                           hint="pass e.g. {'seed', 'play'}")
    names = sorted({check_token(s, "service name") for s in services})
    if len(names) > LINK_FIELDS_MAX:
        raise InvalidInput(f"at most {LINK_FIELDS_MAX} services", hint=f"got {len(names)}")
    return ",".join(names)


# The policy core's vocabulary (agent.policy.classes.DUTY_PREFS): prefer ranks a host ahead of
# every host without it, avoid behind, never removes it from the duty.
DUTY_PREFS = ("prefer", "avoid", "never")


def duty_text(duty_prefs: Mapping[str, str]) -> str:
    if not isinstance(duty_prefs, Mapping) or len(duty_prefs) > LINK_FIELDS_MAX:
        raise InvalidInput(f"duty_prefs must be a mapping of at most {LINK_FIELDS_MAX} duties",
                           hint="e.g. {'custodian': 'prefer', 'research': 'never'}")
    pairs = []
    for k, v in duty_prefs.items():
        if v not in DUTY_PREFS:
            raise InvalidInput(f"duty preference {v!r:.40} is not one of {', '.join(DUTY_PREFS)}",
                               hint="e.g. {'custodian': 'prefer'}")
        pairs.append((check_token(k, "duty name"), v))
    return ";".join(f"{k}={v}" for k, v in sorted(pairs))


# --- decoding what peers wrote (never raises: None means malformed) -------------------------------


def services_parse(text: str) -> frozenset[str] | None:
    names = text.split(",") if text else []
    if len(names) > LINK_FIELDS_MAX or not all(TOKEN_RE.fullmatch(n) for n in names):
        return None
    return frozenset(names)


def duty_parse(text: str) -> tuple[tuple[str, str], ...] | None:
    out: dict[str, str] = {}
    for part in text.split(";") if text else []:
        name, _, pref = part.partition("=")
        if not TOKEN_RE.fullmatch(name) or pref not in DUTY_PREFS:
            return None
        out[name] = pref
    return tuple(sorted(out.items())) if len(out) <= LINK_FIELDS_MAX else None


def peer_ok(value: object) -> bool:
    """is_peer_id for anything a peer wrote (cached: the same few ids recur in every record)."""
    return isinstance(value, str) and _peer_ok_cached(value)


@functools.lru_cache(maxsize=4096)
def _peer_ok_cached(value: str) -> bool:
    return is_peer_id(value)


def ok_text(v: object, chars_max: int = TEXT_CHARS_MAX) -> bool:
    return isinstance(v, str) and 0 < len(v) <= chars_max and not CONTROL_RE.search(v)


def ok_ms(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MS_MAX

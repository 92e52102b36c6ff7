"""Frozen input values of the policy core; the runtime adapts replicated state into them.

Every constructor validates its fields (``InvalidInput`` with a hint) and normalises where a
value has two spellings (infohash case, IP address text), so two agents that adapted the same
state hold equal values and compute byte-identical outputs.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from tva import limits

from . import checks
from .classes import (
    CONTENT_SOURCES,
    DHT,
    DUTIES,
    DUTY_PREFS,
    HOST_CLASSES,
    LIVENESS,
    POLICIES,
    PUBLIC,
    SERVICE_PRESETS,
    SERVICES,
    SRC_PUBLIC,
    TRACKER,
)

PORT_MAX = 65535
UNDERLAY_ADDRS_MAX = 16
COPIES_MAX = limits.PIN_COPIES_MAX  # one limit for the API, the fleet document and the planner


def _ip(value: object, field_name: str, version: int | None = None) -> str:
    if not isinstance(value, str):
        raise checks.fail(f"{field_name} must be an IP address string, got {value!r:.80}", "e.g. 10.77.0.2")
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise checks.fail(f"{field_name} is not an IP address: {value!r:.80}", "e.g. 10.77.0.2 or fd00::2") from None
    if version is not None and addr.version != version:
        raise checks.fail(f"{field_name} must be IPv{version}, got {value!r:.80}", f"pass an IPv{version} address")
    return addr.compressed


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True, slots=True)
class HostView:
    """One host's card plus its soft state, as this agent currently sees them.

    ``services=None`` means the class preset. ``disk_free_bytes=None`` means unknown (such a host
    is never a repair target: we will not fill a disk we cannot see).
    """

    peer_id: str
    name: str
    host_class: str
    liveness: str
    services: frozenset[str] | None = None
    disk_free_bytes: int | None = None
    uptime_score: float = 0.0
    overlay_ipv4: str | None = None
    overlay_ipv6: str | None = None
    torrent_port: int | None = None
    revoked: bool = False
    # Where the fleet reaches a host that has no tva0 (mesh-only: no root, no backend, or tva0 down):
    # the IPs of its libp2p listen addresses. Used only when it has no overlay address at all.
    underlay_addrs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        checks.peer_id(self.peer_id, "HostView.peer_id")
        checks.text(self.name, "HostView.name")
        checks.choice(self.host_class, "host_class", HOST_CLASSES)
        checks.choice(self.liveness, "liveness", LIVENESS)
        if self.services is None:
            _set(self, "services", SERVICE_PRESETS[self.host_class])
        else:
            _set(self, "services", checks.string_set(self.services, "services", SERVICES))
        checks.optional_integer(self.disk_free_bytes, "HostView.disk_free_bytes")
        _set(self, "uptime_score", checks.fraction(self.uptime_score, "HostView.uptime_score"))
        if self.overlay_ipv4 is not None:
            _set(self, "overlay_ipv4", _ip(self.overlay_ipv4, "HostView.overlay_ipv4", 4))
        if self.overlay_ipv6 is not None:
            _set(self, "overlay_ipv6", _ip(self.overlay_ipv6, "HostView.overlay_ipv6", 6))
        checks.optional_integer(self.torrent_port, "HostView.torrent_port", minimum=1, maximum=PORT_MAX)
        checks.boolean(self.revoked, "HostView.revoked")
        addrs = checks.instances(self.underlay_addrs, "HostView.underlay_addrs", str)
        if len(addrs) > UNDERLAY_ADDRS_MAX:
            raise checks.fail(f"{len(addrs)} underlay addresses (max {UNDERLAY_ADDRS_MAX})", "pass the best few")
        _set(self, "underlay_addrs", tuple(sorted({_ip(a, "HostView.underlay_addrs") for a in addrs})))


@dataclass(frozen=True, slots=True)
class HoldingView:
    """One host's claim (from its own signed feed) to hold a content item.

    ``policy=None`` means "not explicitly opened": see ``classes.effective_policy``.
    """

    peer_id: str
    content_id: str
    infohash: str
    size_bytes: int
    complete: bool
    policy: str | None = None
    source: str = SRC_PUBLIC
    custody: bool = False  # made by a custody repair: the only kind of copy a trim may remove

    def __post_init__(self) -> None:
        # Called 100k times when a full state is adapted: the checks stay flat and cheap.
        checks.peer_id(self.peer_id, "HoldingView.peer_id")
        checks.text(self.content_id, "HoldingView.content_id")
        _set(self, "infohash", checks.infohash(self.infohash, "HoldingView.infohash"))
        checks.integer(self.size_bytes, "HoldingView.size_bytes", maximum=limits.HOLDING_SIZE_BYTES_MAX)
        checks.boolean(self.complete, "HoldingView.complete")
        checks.boolean(self.custody, "HoldingView.custody")
        if self.policy is not None:
            checks.choice(self.policy, "policy", POLICIES)
        checks.choice(self.source, "content source", CONTENT_SOURCES)


@dataclass(frozen=True, slots=True)
class PinView:
    """A pin from the fleet document: keep at least ``min_copies`` and at most ``max_copies``.

    ``content`` is a content id or an infohash; it matches holdings by either.
    """

    content: str
    min_copies: int
    max_copies: int | None = None
    friends: bool = False  # friends' copies may count (``pin … --friends``; agent.policy.friend_custody)

    def __post_init__(self) -> None:
        checks.text(self.content, "PinView.content")
        checks.boolean(self.friends, "PinView.friends")
        # The same rule as the API and the fleet document (tva.limits): a pin they accept is
        # always a valid PinView, so a read never fails on a stored pin.
        why = limits.pin_problem(self.content, self.min_copies, self.max_copies)
        if why is not None:
            raise checks.fail(f"pin {self.content!r:.60}: {why}",
                              f"copies are 1..{COPIES_MAX} and max_copies ≥ min_copies (or None for no maximum)")
        if checks.is_infohash(self.content):
            _set(self, "content", self.content.lower())


@dataclass(frozen=True, slots=True)
class IntentView:
    """A repair intent a baton recorded in its feed: ``target_peer`` fetches ``content`` until the lease ends."""

    content: str
    baton_peer: str
    target_peer: str
    lease_until_ms: int

    def __post_init__(self) -> None:
        checks.text(self.content, "IntentView.content")
        if checks.is_infohash(self.content):
            _set(self, "content", self.content.lower())
        checks.peer_id(self.baton_peer, "IntentView.baton_peer")
        checks.peer_id(self.target_peer, "IntentView.target_peer")
        checks.integer(self.lease_until_ms, "IntentView.lease_until_ms")


@dataclass(frozen=True, slots=True)
class Override:
    """A host override from the fleet document; it wins over the host's own card.

    ``duty_prefs`` maps a duty to ``prefer`` | ``avoid`` | ``never``.
    """

    peer_id: str
    host_class: str | None = None
    services: frozenset[str] | None = None
    duty_prefs: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        checks.peer_id(self.peer_id, "Override.peer_id")
        if self.host_class is not None:
            checks.choice(self.host_class, "host_class", HOST_CLASSES)
        if self.services is not None:
            _set(self, "services", checks.string_set(self.services, "services", SERVICES))
        if isinstance(self.duty_prefs, dict):
            pairs = tuple(self.duty_prefs.items())
        else:
            pairs = checks.instances(self.duty_prefs, "Override.duty_prefs", tuple)
        for pair in pairs:
            if len(pair) != 2:
                raise checks.fail(f"duty pref {pair!r:.80} is not a (duty, pref) pair", "e.g. ('research', 'never')")
            checks.choice(pair[0], "duty", DUTIES)
            checks.choice(pair[1], "duty preference", DUTY_PREFS)
        prefs = dict(pairs)
        if len(prefs) != len(pairs):
            raise checks.fail("Override.duty_prefs names a duty twice", "give one preference per duty")
        _set(self, "duty_prefs", tuple(sorted(prefs.items())))


@dataclass(frozen=True, slots=True)
class FriendPeer:
    """A holder in a friend fleet that shared ``infohash`` with us; ``policy`` is the item's policy there."""

    fleet_id: str
    peer_id: str
    addr: str
    port: int
    infohash: str
    policy: str = PUBLIC

    def __post_init__(self) -> None:
        checks.text(self.fleet_id, "FriendPeer.fleet_id")
        checks.peer_id(self.peer_id, "FriendPeer.peer_id")
        _set(self, "addr", _ip(self.addr, "FriendPeer.addr"))
        checks.integer(self.port, "FriendPeer.port", minimum=1, maximum=PORT_MAX)
        _set(self, "infohash", checks.infohash(self.infohash, "FriendPeer.infohash"))
        checks.choice(self.policy, "policy", POLICIES)


@dataclass(frozen=True, slots=True)
class ExternalPeer:
    """A peer found outside the fleet (live DHT lookup or a tracker announce) for one infohash."""

    addr: str
    port: int
    source: str = DHT

    def __post_init__(self) -> None:
        _set(self, "addr", _ip(self.addr, "ExternalPeer.addr"))
        checks.integer(self.port, "ExternalPeer.port", minimum=1, maximum=PORT_MAX)
        checks.choice(self.source, "external peer source", (DHT, TRACKER))

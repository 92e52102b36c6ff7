"""The fleet's vocabulary: host classes and their service presets, liveness, item policies.

Host classes (the seed's "type → services presets mapping to fleet classes"):

=========  ==================================  =============================================
class      services preset                     why
=========  ==================================  =============================================
desktop    play, search, seed, storage         a workstation: plays, downloads, keeps copies
server     storage, seed, search, transcode    always on, the best custodian
nas        storage, seed                       always on, storage first
seedbox    storage, seed, search               always on, public-facing; the swarm face
portable   play, search                        laptops and phones: sleep, move, never custodians
=========  ==================================  =============================================

A host override from the fleet document replaces the class and/or the services of a host card.

Liveness (an input, from the failure detector): ``alive``, ``suspect``, ``dead``, ``asleep``
(a portable that said good night), ``left`` (departed cleanly), ``revoked``.

* Duties and holder counting treat ``alive`` and ``suspect`` as live: suspicion is often refuted
  within seconds and moving a duty or repairing a copy on every suspicion would flap.
* New repair targets must be ``alive``: starting a copy onto a host we already doubt wastes a lease.
* ``asleep`` holders do not count toward a pin's minimum (their copy is unreachable now) and are
  never trimmed (the copy comes back when they wake).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from tva import limits

from . import checks

# The vocabulary itself lives in tva.limits, shared with the fleet document and the API.
DESKTOP, SERVER, NAS, SEEDBOX, PORTABLE = limits.HOST_CLASSES
HOST_CLASSES = limits.HOST_CLASSES

STORAGE, SEED, SEARCH, PLAY, TRANSCODE = limits.SERVICES
SERVICES = limits.SERVICES

SERVICE_PRESETS: dict[str, frozenset[str]] = {
    DESKTOP: frozenset({PLAY, SEARCH, SEED, STORAGE}),
    SERVER: frozenset({STORAGE, SEED, SEARCH, TRANSCODE}),
    NAS: frozenset({STORAGE, SEED}),
    SEEDBOX: frozenset({STORAGE, SEED, SEARCH}),
    PORTABLE: frozenset({PLAY, SEARCH}),
}

# Rendezvous weight per class: always-on storage wins more keys than a desktop that may sleep.
CLASS_WEIGHT: dict[str, float] = {SERVER: 4.0, NAS: 4.0, SEEDBOX: 3.0, DESKTOP: 2.0, PORTABLE: 1.0}

ALIVE, SUSPECT, DEAD, ASLEEP, LEFT, REVOKED = "alive", "suspect", "dead", "asleep", "left", "revoked"
LIVENESS = (ALIVE, SUSPECT, DEAD, ASLEEP, LEFT, REVOKED)
LIVE = frozenset({ALIVE, SUSPECT})  # counts for duties and as a holder
TARGETABLE = frozenset({ALIVE})  # may be chosen as a new repair target

PUBLIC, F2F_ONLY, SEARCH_ONLY = "public", "f2f_only", "search_only"
POLICIES = (PUBLIC, F2F_ONLY, SEARCH_ONLY)
# Higher = more closed. Where views disagree the most closed answer wins (safe by default).
_CLOSEDNESS = {PUBLIC: 0, F2F_ONLY: 1, SEARCH_ONLY: 2}

# Where content came from. A private tracker's content may never reach a public swarm (the
# source account is at stake); any private source starts closed until someone opens it.
SRC_PUBLIC, SRC_PRIVATE_TRACKER, SRC_PRIVATE = "public", "private_tracker", "private"
CONTENT_SOURCES = (SRC_PUBLIC, SRC_PRIVATE_TRACKER, SRC_PRIVATE)

# Provenance tags of peers_for answers, in trust order (the first wins when deduplicating).
FLEET, SEEDBOX_SRC, FRIEND, TRACKER, DHT = "fleet", "seedbox", "friend", "tracker", "dht"
PEER_SOURCES = (FLEET, SEEDBOX_SRC, FRIEND, TRACKER, DHT)
PEER_SOURCE_RANK = {s: i for i, s in enumerate(PEER_SOURCES)}
GATE_ALLOWS: dict[str, frozenset[str]] = {
    PUBLIC: frozenset(PEER_SOURCES),
    F2F_ONLY: frozenset({FLEET, SEEDBOX_SRC, FRIEND}),
    SEARCH_ONLY: frozenset(),
}

# Uptime scores are an EWMA riding heartbeats, so every agent sees a slightly different value.
# Quantising into quarters keeps small jitter from moving duties or repair targets.
UPTIME_BUCKETS = 4


def uptime_factor(uptime_score: float) -> float:
    """0.5 … 1.0: a host that is never up still gets half weight (it may be the only one)."""
    bucket = min(math.floor(uptime_score * UPTIME_BUCKETS), UPTIME_BUCKETS) / UPTIME_BUCKETS
    return 0.5 + 0.5 * bucket


def host_weight(host_class: str, uptime_score: float) -> float:
    """Weighted-rendezvous weight of a host: class weight × quantised uptime factor."""
    return CLASS_WEIGHT[host_class] * uptime_factor(uptime_score)


def preset(host_class: str) -> frozenset[str]:
    checks.choice(host_class, "host_class", HOST_CLASSES)
    return SERVICE_PRESETS[host_class]


def effective_policy(policy: str | None, source: str) -> str:
    """The policy an item really has, given what was asked for (``None`` = not opened) and its source.

    * public source: as asked, ``public`` by default.
    * private source: ``search_only`` until explicitly opened; then as asked.
    * private tracker: ``search_only`` until opened; opened means ``f2f_only`` at most — a request
      for ``public`` is clamped, so no override can ever open it to the public swarm.
    """
    checks.choice(source, "content source", CONTENT_SOURCES)
    if policy is not None:
        checks.choice(policy, "policy", POLICIES)
    if source == SRC_PUBLIC:
        return policy or PUBLIC
    if policy is None:
        return SEARCH_ONLY
    if source == SRC_PRIVATE_TRACKER and policy == PUBLIC:
        return F2F_ONLY
    return policy


def most_closed(policies: Iterable[str]) -> str | None:
    """The most closed of several policies (``None`` when there are none)."""
    best: str | None = None
    for p in policies:
        if best is None or _CLOSEDNESS[p] > _CLOSEDNESS[best]:
            best = p
    return best

# Duties every agent computes for the whole fleet (see agent.policy.duties).
CUSTODIAN, PUBLIC_SWARM_FACE, RESEARCH, REAPER, NOTIFIER = limits.DUTIES
DUTIES = limits.DUTIES
# Per-host duty preferences set in the fleet document: ``prefer`` puts the host ahead of every
# host without it, ``avoid`` behind every host without it, ``never`` makes it ineligible.
PREFER, AVOID, NEVER = limits.DUTY_PREFS
DUTY_PREFS = limits.DUTY_PREFS

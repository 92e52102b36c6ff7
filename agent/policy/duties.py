"""Duties: which host does which fleet-wide job, computed identically by every agent.

Each duty ranks its eligible live hosts by the key (preference tier, class tier, weighted
rendezvous score, peer id); the first is the primary, the next ``standbys_max`` the standbys.
Because each host's key depends only on that host, adding or removing one host moves only the
duties it now wins or used to hold (see agent.policy.rendezvous).

================== ================== ========================== ===========================
duty               needs service      eligible classes           preferred classes (tier 0)
================== ================== ========================== ===========================
custodian          storage            desktop server nas seedbox server nas seedbox
public_swarm_face  seed               desktop server nas seedbox seedbox
research           search             all                        all but portable
reaper             —                  all                        all but portable
notifier           —                  all                        all but portable
================== ================== ========================== ===========================

Weight = class weight × quantised uptime factor (``classes.host_weight``). Fleet-document duty
preferences come first: ``prefer`` ranks ahead of any host without it, ``avoid`` behind, ``never``
removes the host from the duty. Live means ``alive`` or ``suspect``.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import checks, rendezvous
from .canonical import JsonOutput
from .classes import (
    AVOID,
    CUSTODIAN,
    DESKTOP,
    DUTIES,
    HOST_CLASSES,
    LIVE,
    NAS,
    NEVER,
    NOTIFIER,
    PREFER,
    PUBLIC_SWARM_FACE,
    REAPER,
    RESEARCH,
    SEARCH,
    SEED,
    SEEDBOX,
    SERVER,
    STORAGE,
    host_weight,
)
from .view import FleetView

STANDBYS_MAX_DEFAULT = 2
STANDBYS_MAX_LIMIT = 16


@dataclass(frozen=True, slots=True)
class DutySpec:
    name: str
    service: str | None
    classes: frozenset[str]
    preferred: frozenset[str]


_NOT_PORTABLE = frozenset({DESKTOP, SERVER, NAS, SEEDBOX})
DUTY_SPECS: dict[str, DutySpec] = {
    CUSTODIAN: DutySpec(CUSTODIAN, STORAGE, _NOT_PORTABLE, frozenset({SERVER, NAS, SEEDBOX})),
    PUBLIC_SWARM_FACE: DutySpec(PUBLIC_SWARM_FACE, SEED, _NOT_PORTABLE, frozenset({SEEDBOX})),
    RESEARCH: DutySpec(RESEARCH, SEARCH, frozenset(HOST_CLASSES), _NOT_PORTABLE),
    REAPER: DutySpec(REAPER, None, frozenset(HOST_CLASSES), _NOT_PORTABLE),
    # One host sends each notification (agent.notify): every host sees the same events, only the
    # primary posts them, so a webhook hears of a dead host once, from a host still alive.
    NOTIFIER: DutySpec(NOTIFIER, None, frozenset(HOST_CLASSES), _NOT_PORTABLE),
}
_PREF_TIER = {PREFER: 0, None: 1, AVOID: 2}


@dataclass(frozen=True, slots=True)
class DutyAssignment(JsonOutput):
    duty: str
    primary: str | None
    standbys: tuple[str, ...]


def eligible(view: FleetView, duty: str) -> list[str]:
    """Peer ids of the live hosts eligible for ``duty`` (unordered)."""
    spec = DUTY_SPECS[checks.choice(duty, "duty", DUTIES)]
    out = []
    for h in view.hosts.values():
        if h.revoked or h.liveness not in LIVE or h.host_class not in spec.classes:
            continue
        if spec.service is not None and spec.service not in h.services:
            continue
        if view.duty_prefs.get(h.peer_id, {}).get(duty) == NEVER:
            continue
        out.append(h.peer_id)
    return out


def duty_ranking(view: FleetView, duty: str) -> list[str]:
    """All eligible live hosts for ``duty``, best first."""
    checks.instance(view, "view", FleetView)
    spec = DUTY_SPECS[checks.choice(duty, "duty", DUTIES)]
    key = rendezvous.key_bytes("duty", duty)
    keyed = []
    for peer in eligible(view, duty):
        h = view.hosts[peer]
        pref_tier = _PREF_TIER[view.duty_prefs.get(peer, {}).get(duty)]
        class_tier = 0 if h.host_class in spec.preferred else 1
        score = rendezvous.score(key, peer, host_weight(h.host_class, h.uptime_score))
        keyed.append((pref_tier, class_tier, -score, peer))
    keyed.sort()
    return [k[-1] for k in keyed]


def assign_duties(view: FleetView, standbys_max: int = STANDBYS_MAX_DEFAULT) -> tuple[DutyAssignment, ...]:
    """Every duty's primary and standbys, sorted by duty name. A duty no live host is eligible
    for has ``primary=None`` (the CLI shows it as unassigned)."""
    checks.instance(view, "view", FleetView)
    checks.integer(standbys_max, "standbys_max", maximum=STANDBYS_MAX_LIMIT)
    out = []
    for duty in sorted(DUTIES):
        ranked = duty_ranking(view, duty)
        out.append(DutyAssignment(duty, ranked[0] if ranked else None, tuple(ranked[1 : 1 + standbys_max])))
    return tuple(out)


def primary_of(assignments: tuple[DutyAssignment, ...], duty: str) -> str | None:
    for a in assignments:
        if a.duty == duty:
            return a.primary
    return None

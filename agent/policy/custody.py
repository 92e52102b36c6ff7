"""Custody: for each pin, how many copies the fleet has and what to do about it.

Counting (decided here, the same on every agent):

* A **holder** is a host with a *complete* holding that is live (``alive`` or ``suspect``), not
  revoked and not ``portable``. Only holders count toward ``min_copies``/``max_copies``.
* Portable hosts' copies and those of asleep/dead/departed hosts are **other holders**: listed, used
  as repair sources when live, never counted (a laptop's sleep cycle must not cause a
  repair-then-trim churn) and never trimmed.
* **Pending**: an intent counts as a copy in flight only when its author is this pin's baton
  (as computed here), its lease has not ended and does not run past ``now + lease_ms_max``, and
  its target is live, not revoked, not portable and not yet a holder. An intent from anyone else
  — a former baton, or a member writing intents it has no right to — is ignored everywhere: the
  target does not fetch it and nobody counts it (a member cannot make a victim download).

Status: ``lost`` when no live host has a complete copy (→ a research action for the research
duty); ``under`` when holders < min; ``over`` when holders > max; otherwise ``ok``.

Repairs (under): ``min - holders - pending`` targets (as many as exist), never a revoked, full
(disk free < size + reserve, or unknown), portable, suspect, storage-less or already-holding host,
nor one whose override says ``custodian: never``. Ranked by (custodian preference, class tier:
server/nas/seedbox before desktop, weighted rendezvous score with class weight × uptime factor).
Only the **baton** — the first live holder in plain rendezvous order, counted holders before
portable ones — carries them out: it records each as an intent with a lease.

Trims (over): only once the view is healed for this pin (no suspect holder, nothing pending), up
to ``holders - max`` of the holders whose copy custody made (``HoldingView.custody``), from the end
of the rendezvous order, the baton last; never a copy a user added (a pin over its max because of
users' own copies stays over, with a note), and never below min. Under a partition each side sees
fewer holders and repairs up to min: the union may over-replicate, never under; the trim runs after
healing.

Each pin's plan depends only on that pin's holdings, intents, and the hosts, which is what lets
``CustodyPlanner`` re-plan only the pins one change touches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from hashlib import blake2b

from tva import limits

from . import checks, rendezvous
from .canonical import JsonOutput
from .classes import (
    ALIVE,
    CUSTODIAN,
    LIVE,
    NAS,
    NEVER,
    PORTABLE,
    PREFER,
    PUBLIC,
    SEEDBOX,
    SERVER,
    STORAGE,
    SUSPECT,
    effective_policy,
    host_weight,
    most_closed,
)
from .inputs import IntentView, PinView
from .view import FleetView

OK, UNDER, OVER, LOST = "ok", "under", "over", "lost"
LEASE_MS_DEFAULT = 30 * 60 * 1000  # a copy of a few GB over the fabric finishes well within this
RESERVE_BYTES_DEFAULT = 2 * 1024**3  # never fill a disk to the last byte
LEASE_MS_MAX = 7 * 24 * 3600 * 1000  # the ceiling of any configured lease maximum
_TARGET_CLASS_TIER = {SERVER: 0, NAS: 0, SEEDBOX: 0}  # anything else (desktop): tier 1


@dataclass(frozen=True, slots=True)
class CustodyConfig:
    lease_ms: int = LEASE_MS_DEFAULT
    reserve_bytes: int = RESERVE_BYTES_DEFAULT
    # Intents whose lease runs past now + this are ignored (agent.config repair_lease_ms_max).
    lease_ms_max: int = limits.REPAIR_LEASE_MS_MAX

    def __post_init__(self) -> None:
        checks.integer(self.lease_ms_max, "CustodyConfig.lease_ms_max", minimum=1, maximum=LEASE_MS_MAX)
        checks.integer(self.lease_ms, "CustodyConfig.lease_ms", minimum=1, maximum=self.lease_ms_max)
        checks.integer(self.reserve_bytes, "CustodyConfig.reserve_bytes")


@dataclass(frozen=True, slots=True)
class Repair(JsonOutput):
    """Copy to ``target`` from the first reachable of ``sources``. The lease is a duration: the
    baton turns it into ``lease_until_ms`` when it records the intent (``actions.StartRepair``),
    which keeps plans independent of the clock, so time passing re-plans nothing but leases."""

    target: str
    sources: tuple[str, ...]
    lease_ms: int


@dataclass(frozen=True, slots=True)
class Research(JsonOutput):
    """Find the content again. ``scope`` is ``public`` only for public items; a closed item is
    only asked of friends, never re-searched publicly by the fleet on its own."""

    content: str
    infohash: str | None
    scope: str


@dataclass(frozen=True, slots=True)
class CustodyPlan(JsonOutput):
    content: str
    infohash: str | None
    size_bytes: int | None
    min_copies: int
    max_copies: int | None
    status: str
    copies: int
    holders: tuple[str, ...]
    other_holders: tuple[str, ...]
    pending: tuple[str, ...]
    baton: str | None
    repairs: tuple[Repair, ...]
    trims: tuple[str, ...]
    research: Research | None
    notes: tuple[str, ...]
    # Friend fleets whose copies this plan counts (``pin … --friends``; agent.policy.friend_custody).
    friend_copies: tuple[str, ...] = ()


class _Pool:
    """Hosts that could take a new copy of anything (alive, storage, not portable, not revoked,
    disk known, not ``custodian: never``), grouped by tier, so each under pin only filters and
    scores them — and a lower tier is not scored at all once a better one filled the need."""

    __slots__ = ("by_peer", "tiers")

    def __init__(self, view: FleetView) -> None:
        self.by_peer: dict[str, tuple[tuple[int, int], float, int]] = {}
        for h in view.hosts.values():
            if h.revoked or h.liveness != ALIVE or h.host_class == PORTABLE or STORAGE not in h.services:
                continue
            if h.disk_free_bytes is None:
                continue
            pref = view.duty_prefs.get(h.peer_id, {}).get(CUSTODIAN)
            if pref == NEVER:
                continue
            tier = (0 if pref == PREFER else 1, _TARGET_CLASS_TIER.get(h.host_class, 1))
            self.by_peer[h.peer_id] = (tier, host_weight(h.host_class, h.uptime_score), h.disk_free_bytes)
        groups: dict[tuple[int, int], list[tuple[str, bytes, float, int]]] = {}
        for peer, (tier, weight, free) in sorted(self.by_peer.items()):
            groups.setdefault(tier, []).append((peer, peer.encode(), weight, free))
        self.tiers = sorted(groups.items())

    def target_key(self, key: bytes, peer: str) -> tuple[tuple[int, int], float, str] | None:
        """The sort key ``_targets`` gives ``peer`` for this pin (None: not in the pool)."""
        entry = self.by_peer.get(peer)
        if entry is None:
            return None
        return (entry[0], -rendezvous.score(key, peer, entry[1]), peer)


def _validate(view: FleetView, now_ms: int, config: CustodyConfig) -> None:
    checks.instance(view, "view", FleetView)
    checks.integer(now_ms, "now_ms")
    checks.instance(config, "config", CustodyConfig)


def plan_pin(view: FleetView, pin: PinView, now_ms: int, config: CustodyConfig = CustodyConfig()) -> CustodyPlan:
    """The custody plan of one pin (it need not be in ``view.pins``)."""
    _validate(view, now_ms, config)
    checks.instance(pin, "pin", PinView)
    return _plan(view, pin, now_ms, config, _Pool(view))


def plan_all(view: FleetView, now_ms: int, config: CustodyConfig = CustodyConfig()) -> tuple[CustodyPlan, ...]:
    """Plans of every pin in the view, sorted by content (the naive full recompute)."""
    _validate(view, now_ms, config)
    pool = _Pool(view)
    return tuple(_plan(view, view.pins[c], now_ms, config, pool) for c in sorted(view.pins))


def _plan(view: FleetView, pin: PinView, now_ms: int, config: CustodyConfig, pool: _Pool) -> CustodyPlan:
    # The hot path of a full recompute (10k pins): one pass over the holdings, no per-holder
    # function calls beyond the hash.
    content = pin.content
    holds = view.holdings_for(content)
    hosts = view.hosts
    key = rendezvous.key_bytes("pin", content)
    hash64 = rendezvous.hash64
    live: list[tuple[bool, int, str]] = []
    other: list[str] = []
    infohash: str | None = None
    size: int | None = None
    for peer, h in holds.items():
        if not h.complete:
            continue
        if infohash is None or h.infohash < infohash:
            infohash = h.infohash
        if size is None or h.size_bytes > size:
            size = h.size_bytes
        host = hosts.get(peer)
        if host is None or host.revoked:
            continue  # unknown or revoked: not a copy we may use or count
        if host.liveness in LIVE:
            # Plain (unweighted) rendezvous for the baton: the order must not move with soft
            # state. For weight 1 the score is monotone in the hash, so the raw hash ranks.
            portable = host.host_class == PORTABLE
            live.append((portable, -hash64(key, peer), peer))
            if portable:
                other.append(peer)
        else:
            other.append(peer)
    if infohash is None:  # no complete copy anywhere: describe it by what is known
        infohash = min((h.infohash for h in holds.values()), default=content if checks.is_infohash(content) else None)
        size = max((h.size_bytes for h in holds.values()), default=None)
    live.sort()
    sources = tuple([p for _, _, p in live])
    holders = tuple([p for portable, _, p in live if not portable]) if other else sources
    baton = sources[0] if sources else None
    copies = len(holders)
    notes: list[str] = []

    pending_set = set()
    for i in view.intents.get(content, ()):
        if not honoured(i, baton, now_ms, config.lease_ms_max):
            continue
        t = hosts.get(i.target_peer)
        if (i.baton_peer in view.revoked_peers or t is None or t.revoked
                or t.liveness not in LIVE or t.host_class == PORTABLE or i.target_peer in holders):
            continue
        pending_set.add(i.target_peer)
    pending = tuple(sorted(pending_set))

    repairs: tuple[Repair, ...] = ()
    trims: tuple[str, ...] = ()
    research = None
    if not sources:
        status = LOST
        policy = most_closed(effective_policy(h.policy, h.source) for h in holds.values()) or PUBLIC
        research = Research(content, infohash, "public" if policy == PUBLIC else "friends")
    elif copies < pin.min_copies:
        status = UNDER
        need = pin.min_copies - copies - len(pending)
        if need > 0:
            assert size is not None  # there is a live complete holding
            targets = _targets(pool, key, size + config.reserve_bytes, holds, pending_set, need)
            repairs = tuple(Repair(t, sources, config.lease_ms) for t in targets)
            if len(targets) < need:
                notes.append(f"only {len(targets)} eligible targets for {need} missing copies")
    elif pin.max_copies is not None and copies > pin.max_copies:
        status = OVER
        if pending or any(hosts[p].liveness == SUSPECT for p in holders):
            notes.append("trim deferred until the view heals (suspect holders or copies in flight)")
        else:
            excess = copies - pin.max_copies
            # Only copies custody made, from the end of the rendezvous order (the copies kept
            # are the ones every agent would pick first), the baton last; excess ≤ copies - min,
            # so a trim never goes below the minimum.
            made = [p for p in reversed(holders) if holds[p].custody]
            trims = tuple(sorted(made, key=lambda p: p == baton)[:excess])
            if len(trims) < excess:
                notes.append(f"{excess - len(trims)} extra copies are users' own: never trimmed")
    else:
        status = OK
    return CustodyPlan(
        content=content, infohash=infohash, size_bytes=size, min_copies=pin.min_copies,
        max_copies=pin.max_copies, status=status, copies=copies, holders=holders,
        other_holders=tuple(sorted(other)), pending=pending, baton=baton, repairs=repairs, trims=trims,
        research=research, notes=tuple(notes),
    )


def honoured(intent: IntentView, baton: str | None, now_ms: int, lease_ms_max: int) -> bool:
    """Whether a repair intent may count and be fetched: written by the pin's baton, with a lease
    that still runs and runs no further than ``lease_ms_max`` from now."""
    return intent.baton_peer == baton and now_ms < intent.lease_until_ms <= now_ms + lease_ms_max


def refusal_reason(intent: IntentView, baton: str | None, now_ms: int, lease_ms_max: int) -> str | None:
    """Why ``honoured`` says no to a live intent (None: honoured, or simply lapsed)."""
    if intent.lease_until_ms <= now_ms:
        return None
    if intent.baton_peer != baton:
        return "its author is not the pin's baton"
    if intent.lease_until_ms > now_ms + lease_ms_max:
        return f"its lease runs past the maximum of {lease_ms_max} ms"
    return None


def missing_copies(plan: CustodyPlan) -> int:
    """Copies an under plan still needs beyond those held and in flight (0 otherwise)."""
    if plan.status != UNDER:
        return 0
    return max(0, plan.min_copies - plan.copies - len(plan.pending))


def _targets(pool: _Pool, key: bytes, bytes_needed: int, holds: dict, pending: set[str], need: int) -> list[str]:
    chosen: list[str] = []
    # rendezvous.score inlined (same arithmetic, so the same floats): this loop is most of a
    # full recompute when many pins are under-replicated.
    b2, from_bytes, log, shift, scale = blake2b, int.from_bytes, math.log, rendezvous.SHIFT, rendezvous.SCALE
    for _tier, group in pool.tiers:
        keyed = [(weight / log(((from_bytes(b2(key + pb, digest_size=8).digest(), "big") >> shift) + 0.5) / scale), peer)
                 for peer, pb, weight, free in group
                 if free >= bytes_needed and peer not in holds and peer not in pending]
        keyed.sort()
        chosen.extend(p for _, p in keyed[: need - len(chosen)])
        if len(chosen) >= need:
            break
    return chosen

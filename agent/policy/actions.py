"""What this agent itself must do, given the plans every agent computes alike.

Every agent computes all plans; each then acts only on the parts that name it:

* ``StartRepair`` — this host is a pin's baton and the plan lists a repair: record an intent
  (content, baton, target, lease) in this host's feed. Recording it is what stops a second
  repair: on the next plan the intent counts as pending.
* ``FetchCopy`` — an intent of the pin's baton whose lease is running (and no longer than the
  lease maximum) names this host as the target: fetch the content from the sources (over the
  fabric), until the lease ends. Intents from anyone else are refused (``refused_intents``).
* ``DropCopy`` — this host is in a pin's trim list: delete its copy (the plan never trims below
  the minimum, and only once the view is healed).
* ``StartResearch`` — this host is the research duty's primary and a pin is lost.

The runtime carries these out; the pure core never does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tva import limits

from . import checks
from .canonical import JsonOutput
from .classes import RESEARCH
from .custody import CustodyPlan, honoured, refusal_reason
from .duties import DutyAssignment, primary_of
from .view import FleetView


@dataclass(frozen=True, slots=True)
class StartRepair(JsonOutput):
    content: str
    infohash: str | None
    target: str
    sources: tuple[str, ...]
    lease_until_ms: int


@dataclass(frozen=True, slots=True)
class FetchCopy(JsonOutput):
    content: str
    infohash: str | None
    baton: str
    sources: tuple[str, ...]
    lease_until_ms: int


@dataclass(frozen=True, slots=True)
class DropCopy(JsonOutput):
    content: str
    infohash: str | None


@dataclass(frozen=True, slots=True)
class StartResearch(JsonOutput):
    content: str
    infohash: str | None
    scope: str


Action = StartRepair | FetchCopy | DropCopy | StartResearch


def actions_for(
    peer_id: str,
    plans: Iterable[CustodyPlan],
    duties: Iterable[DutyAssignment],
    view: FleetView,
    now_ms: int,
    *,
    lease_ms_max: int = limits.REPAIR_LEASE_MS_MAX,
) -> tuple[Action, ...]:
    """The effects that fall to ``peer_id``, in plan (content) order."""
    checks.peer_id(peer_id, "peer_id")
    checks.integer(lease_ms_max, "lease_ms_max", minimum=1)
    plan_list = checks.instances(plans, "plans", CustodyPlan)
    duty_list = checks.instances(duties, "duties", DutyAssignment)
    checks.instance(view, "view", FleetView)
    checks.integer(now_ms, "now_ms")
    if peer_id in view.revoked_peers:
        return ()  # a revoked host takes part in nothing
    researcher = primary_of(tuple(duty_list), RESEARCH)
    out: list[Action] = []
    for plan in sorted(plan_list, key=lambda p: p.content):
        if plan.baton == peer_id:
            out.extend(StartRepair(plan.content, plan.infohash, r.target, r.sources, now_ms + r.lease_ms)
                       for r in plan.repairs)
        if peer_id in plan.pending:
            sources = plan.holders + tuple(p for p in plan.other_holders if view.is_live(p))
            for i in view.intents_for(plan.content):
                if i.target_peer == peer_id and honoured(i, plan.baton, now_ms, lease_ms_max) and sources:
                    out.append(FetchCopy(plan.content, plan.infohash, i.baton_peer, sources, i.lease_until_ms))
                    break  # one fetch per content, under the first (canonical) intent
        if peer_id in plan.trims:
            out.append(DropCopy(plan.content, plan.infohash))
        if plan.research is not None and researcher == peer_id:
            out.append(StartResearch(plan.content, plan.infohash, plan.research.scope))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class RefusedIntent(JsonOutput):
    """A live repair intent naming ``target`` that ``target`` will not carry out, and why."""

    content: str
    author: str
    target: str
    lease_until_ms: int
    reason: str


def refused_intents(
    peer_id: str,
    plans: Iterable[CustodyPlan],
    view: FleetView,
    now_ms: int,
    *,
    lease_ms_max: int = limits.REPAIR_LEASE_MS_MAX,
) -> tuple[RefusedIntent, ...]:
    """Intents naming ``peer_id`` as the target that it refuses (not from the pin's baton, or a
    lease past the maximum), so the shell can count and log them; intents for unpinned content
    are refused too (no plan, so no baton). Lapsed intents are not refusals: they just ended."""
    checks.peer_id(peer_id, "peer_id")
    batons = {p.content: p.baton for p in checks.instances(plans, "plans", CustodyPlan)}
    out: list[RefusedIntent] = []
    for content in sorted(view.intents):
        for i in view.intents[content]:
            if i.target_peer != peer_id or i.lease_until_ms <= now_ms:
                continue
            if content not in batons:
                why: str | None = "the content is not pinned"
            else:
                why = refusal_reason(i, batons[content], now_ms, lease_ms_max)
            if why is not None:
                out.append(RefusedIntent(content, i.baton_peer, peer_id, i.lease_until_ms, why))
    return tuple(out)

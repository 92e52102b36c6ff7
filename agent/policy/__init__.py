"""agent.policy — the fleet's decisions as a pure core (duties, custody, reaper, peers_for + gates).

Every agent computes these from its own converged copy of the state: inputs are this package's
frozen dataclasses (the runtime adapts replicated state into them), time comes in as ``now_ms``,
outputs are frozen dataclasses in canonical order with ``to_json_dict()``. No I/O, no clock, no
randomness: two agents with the same state compute byte-identical results.
"""

from __future__ import annotations

from .actions import Action, DropCopy, FetchCopy, StartRepair, StartResearch, actions_for
from .canonical import encode, jsonable
from .classes import (
    CLASS_WEIGHT,
    DUTIES,
    HOST_CLASSES,
    LIVENESS,
    POLICIES,
    SERVICE_PRESETS,
    SERVICES,
    effective_policy,
    host_weight,
)
from .custody import CustodyConfig, CustodyPlan, Repair, Research, plan_all, plan_pin
from .duties import DutyAssignment, assign_duties, duty_ranking, primary_of
from .inputs import ExternalPeer, FriendPeer, HoldingView, HostView, IntentView, Override, PinView
from .peers import Custodians, Peer, PeerAnswer, custodians_of, item_policy, peers_for
from .planner import CustodyPlanner
from .reaper import ReaperThresholds, ReaperVerdict, RecoveryStep, TorrentSample, reap
from .view import FleetView

__all__ = [
    "CLASS_WEIGHT", "DUTIES", "HOST_CLASSES", "LIVENESS", "POLICIES", "SERVICES", "SERVICE_PRESETS",
    "Action", "Custodians", "CustodyConfig", "CustodyPlan", "CustodyPlanner", "DropCopy", "DutyAssignment",
    "ExternalPeer", "FetchCopy", "FleetView", "FriendPeer", "HoldingView", "HostView", "IntentView",
    "Override", "Peer", "PeerAnswer", "PinView", "ReaperThresholds", "ReaperVerdict", "RecoveryStep",
    "Repair", "Research", "StartRepair", "StartResearch", "TorrentSample", "actions_for", "assign_duties",
    "custodians_of", "duty_ranking", "effective_policy", "encode", "host_weight", "item_policy",
    "jsonable", "peers_for", "plan_all", "plan_pin", "primary_of", "reap",
]

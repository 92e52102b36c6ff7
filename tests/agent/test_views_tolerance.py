"""Reads never fail on what other hosts stored: agent.views skips and reports instead of raising.

A member's validly signed feed may carry values the records layer accepts but the policy core
cannot use (an intent whose lease is beyond the core's integer range), and the fleet document may
carry pins and overrides outside tva.limits. Every read of the service keeps answering.
"""

from __future__ import annotations

from agent.service import Service
from agent.state import NodeState
from agent.store import StateStore
from crdt import records
from crdt.feedset import FeedSet, OwnFeed
from crdt.identity import NodeKey

NOW = 1_900_000_000_000
IH = "ab" * 20


def test_an_intent_past_the_policy_range_is_skipped_not_raised(tmp_path):
    state = NodeState.found(StateStore(tmp_path), fleet_name="f", card=records.HostCard(name="me", host_class="server"),
                            now_ms=NOW)
    rogue = NodeKey(b"\x09" * 32)
    state.doc.admit(rogue.peer_id, "rogue", "member", None, NOW)
    state.refresh_membership()
    own = OwnFeed(rogue, FeedSet())
    own.put(records.CARD_KEY, records.encode_card(records.HostCard(name="rogue", host_class="server")))
    own.put(records.holding_key("film"), records.encode_holding(records.Holding("film", IH, 10, "complete",
                                                                               "public", "local", 10)))
    # The records layer allows leases up to 2**63-1; the policy core's integers stop at 2**62.
    own.put(records.intent_key("film", state.peer_id),
            records.encode_intent(records.RepairIntent("film", state.peer_id, 2**62 + 5)))
    state.feeds.apply_delta(own.commit(NOW))
    state.doc.pin("film", 2, None, NOW)
    service = Service(state, clock_ms=lambda: NOW)
    plan = service.custody()[0]
    assert plan["content"] == "film" and plan["pending"] == [] and plan["baton"] == rogue.peer_id
    assert service.hosts() and service.peers_for(IH)["infohash"] == IH and service.status()["invalid_pins"] == []


def test_an_override_outside_the_vocabulary_is_reported_once_and_not_applied(tmp_path, caplog):
    from tests.agent.raw_decisions import write_raw

    state = NodeState.found(StateStore(tmp_path), fleet_name="f", card=records.HostCard(name="me", host_class="server"),
                            now_ms=NOW)
    assert write_raw(state.doc, state.key, "override",
                     {"peer": state.peer_id, "class": None, "services": "storage,teleport", "duty": None}, NOW)
    service = Service(state, clock_ms=lambda: NOW)
    caplog.set_level("WARNING", logger="tva.views")
    for _ in range(3):
        service.invalidate()
        status = service.status()
    assert [o["peer_id"] for o in status["invalid_overrides"]] == [state.peer_id]
    assert "teleport" in status["invalid_overrides"][0]["why"]
    assert service.hosts()[0]["class"] == "server"
    assert sum("skipping the override" in r.getMessage() for r in caplog.records) == 1

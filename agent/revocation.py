"""Telling a host that it was revoked, and believing such news only from its author.

The mesh cuts a revoked host off at once (its frames and connections are refused), so it would
never sync the fleet document that says so, and would go on as if nothing happened. So the
revoking member tells it directly, over the request channel, with a notice it signs itself; the
revoked host believes the notice only when its sender is a member (in its own view) and signed it,
i.e. with the same trust it gives the fleet document it would have synced. Then it stops taking
part (agent.runtime).
"""

from __future__ import annotations

from agent import rpc
from tva.errors import RemoteDataError


def notice_body(state, peer: str, rev) -> dict:
    """The ``revoked`` query this node (the revoker) sends to ``peer``."""
    fleet_id, by, at_ms, reason = state.fleet.fleet_id, state.peer_id, rev.at_ms, rev.reason or ""
    return {"fleet_id": fleet_id, "peer": peer, "by": by, "at_ms": at_ms, "reason": reason,
            "sig": state.key.sign(rpc.notice_message(fleet_id, peer, by, at_ms, reason))}


def check_notice(state, sender: str, body: dict) -> None:
    """RemoteDataError unless ``body`` is a notice about this host, from and signed by ``sender``,
    a member here."""
    from crdt.identity import public_from_peer_id, verify

    if (body["fleet_id"], body["peer"], body["by"]) != (state.fleet.fleet_id, state.peer_id, sender) \
            or sender == state.peer_id or sender not in state.members():
        raise RemoteDataError("not a revocation notice for this host from a member")
    message = rpc.notice_message(body["fleet_id"], body["peer"], body["by"], body["at_ms"], body["reason"])
    if not verify(public_from_peer_id(sender), body["sig"], message):
        raise RemoteDataError("the revocation notice is not signed by its sender")


def apply_notice(state, body: dict) -> bool:
    """Record this host's revocation as the notice says; True when it was news."""
    if state.revocation() is not None:
        return False
    state.doc.revoke(state.peer_id, body["by"], body["reason"] or "revoked", body["at_ms"])
    return True

"""Telling a host that it was revoked — with the signed decisions that say so, nothing less.

The mesh cuts a revoked host off at once (its frames and connections are refused), so it would
never sync the decisions that say so, and would go on as if nothing happened. So the revoking
member tells it directly over the request channel, and the notice *is* the signed decision log's
tail up to the revocation: the revoked host inserts those ops like any others (each verified, and
effective only if its author had the right), so it believes its revocation exactly when the fleet
does, whoever carried the news. Then it stops taking part (agent.runtime). A host the notice
misses learns the same way from a join listener once its fleet key is out of date (agent.joining).
"""

from __future__ import annotations

from agent import rpc
from tva.errors import RemoteDataError

NOTICE_BYTES_MAX = 48 * 1024  # under the request limit (rpc.REQUEST_BYTES_MAX)


def notice_body(state, peer: str) -> dict:
    """The ``revoked`` query this node (the revoker) sends to ``peer``: the newest decisions up to and
    including ``peer``'s revocation, oldest first, as many as fit (the revoked host held the rest)."""
    ops = state.doc.ops()
    revoke = next((i for i in range(len(ops) - 1, -1, -1)
                   if ops[i].kind == "revoke" and ops[i].body.get("peer") == peer), len(ops) - 1)
    tail, spent = [], 0
    for op in reversed(ops[: revoke + 1]):
        if spent + op.size + 16 > NOTICE_BYTES_MAX or len(tail) >= rpc.NOTICE_DECISIONS_MAX:
            break
        tail.append(op.wire)
        spent += op.size + 16
    return {"fleet_id": state.fleet.fleet_id, "decisions": list(reversed(tail))}


def apply_notice(state, sender: str, body: dict) -> bool:
    """Take the notice's decisions (each verified, as from any peer); True when this host now holds
    its own revocation. RemoteDataError when the notice is not for this fleet or not from a member."""
    if body["fleet_id"] != state.fleet.fleet_id or sender == state.peer_id or sender not in state.doc.admissions():
        raise RemoteDataError("not a revocation notice of this fleet from one of its hosts")
    state.doc.take_ops(body["decisions"])
    return state.revocation() is not None

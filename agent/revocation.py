"""Telling a host that it was revoked — with the signed decisions that say so, nothing less.

The mesh cuts a revoked host off at once (its frames and connections are refused), so it would
never sync the decisions that say so, and would go on as if nothing happened. So the revoking
member tells it directly over the request channel, and the notice *is* the signed decision log's
tail up to the revocation: the revoked host inserts those ops like any others (each verified, and
effective only if its author had the right), so it believes its revocation exactly when the fleet
does, whoever carried the news. Then it stops taking part (``RevocationWatch``). A host the notice
misses learns the same way from a join listener once its fleet key is out of date (agent.joining).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from agent import rpc
from tva.errors import RemoteDataError, TvaError

log = logging.getLogger("tva.agent")

# What a revoked host stops (the rest — saving, jobs, the local API — goes on).
PARTICIPATION = ("mesh", "join", "fleet_key", "torrents", "presence", "fabric", "policy", "housekeeping",
                 "overlay_api", "notify", "media", "friends")
NOTICE_ATTEMPTS = 5
NOTICE_TIMEOUT_MS = 10_000
NOTICE_RETRY_S = 3.0
STOP_DELAY_S = 0.5

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


class RevocationWatch:
    """The daemon's side of revocations: after any change of the fleet document it tells the hosts
    this node just revoked, and stops this host taking part once it is the one revoked.

    ``agent`` is the daemon (agent.runtime.Agent): its state, service, supervisor, persistence, current
    transport and ``spawn`` (a guarded task in the daemon's nursery, or nothing before it runs)."""

    def __init__(self, agent) -> None:
        self._agent = agent
        self._known = frozenset(agent.state.revoked())
        self._notifying: set[str] = set()  # revoked peers being told so (see _notify)
        self._stopped = False

    def peer_allowed(self, peer: str) -> bool:
        """The mesh's peer filter: no revoked host, but the ones being told so."""
        return peer not in self._agent.state.revoked() or peer in self._notifying

    def changed(self) -> None:
        state = self._agent.state
        now = frozenset(state.revoked())
        fresh, self._known = now - self._known, now
        records_ = state.doc.revocations()
        for peer in fresh:
            if records_[peer].by == state.peer_id and peer != state.peer_id:
                self._agent.spawn(self._notify, peer)
        if state.revocation() is not None and not self._stopped and self._agent.spawn(self._stop_soon):
            # Not from here: this may run inside the mesh component (a request handler), which the
            # stop cancels; a moment later the handler's reply is out.
            self._stopped = True

    async def _stop_soon(self) -> None:
        await trio.sleep(STOP_DELAY_S)
        self.stop_participating()
        self._agent.persistence.mark_dirty()

    def stop_participating(self) -> None:
        agent = self._agent
        rev = agent.state.revocation()
        self._stopped = True
        by = agent.service._name(rev.by) or rev.by
        log.warning("this host was revoked from fleet %s by %s (%s): it no longer takes part; its data is kept "
                    "and the local API keeps answering", agent.state.fleet.fleet_name, by, rev.reason or "no reason")
        for name in PARTICIPATION:
            agent.supervisor.stop(name, "this host was revoked from the fleet")
        agent.service.invalidate()

    async def _notify(self, peer: str) -> None:
        """Tell ``peer`` it was revoked (signed by this node, the revoker). The mesh cuts a revoked
        host off at once, so without this notice it would never learn and never stop."""
        agent = self._agent
        body = notice_body(agent.state, peer)
        name = agent.service._name(peer) or peer[:16]
        self._notifying.add(peer)
        why = "no attempt"
        try:
            for _attempt in range(NOTICE_ATTEMPTS):
                try:
                    reply = await agent.transport.request(peer, rpc.encode_query("revoked", body), NOTICE_TIMEOUT_MS)
                    rpc.raise_if_refused(rpc.decode_reply(reply))
                    log.info("told %s that it was revoked", name)
                    return
                except TvaError as exc:
                    why = exc.message
                await trio.sleep(NOTICE_RETRY_S)
            log.info("could not tell %s that it was revoked (%s)", name, why)
        finally:
            self._notifying.discard(peer)
            agent.transport.set_peer_filter(self.peer_allowed)  # drops any connection it still has

    def answer_notice(self, sender: str, body: dict, on_decisions: Callable[[], None]) -> bytes:
        """A ``revoked`` query from ``sender``; ``on_decisions`` when it carried decisions we lacked."""
        version = self._agent.state.doc.version
        revoked = apply_notice(self._agent.state, sender, body)
        if self._agent.state.doc.version != version:
            on_decisions()
        return rpc.encode_reply({"ok": True, "revoked": revoked})


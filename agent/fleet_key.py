"""The ``fleet_key`` component: follows rotations of the fleet key (the libp2p private-network PSK).

* A rotation recorded in the decisions (``agent.secrets``: after a revoke) is opened with this
  host's key and switched to at its time, on the running transport (``RekeyableTransport``).
* When members stop answering — no frame from any of them for a while, or some held dead — it
  asks their join listeners (``rekey``) whether it missed a rotation: a member that was offline
  during one catches up in one reconnect, and a revoked host learns of its revocation from the
  signed decisions the answer carries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from agent import secrets
from agent.joining import fetch_fleet_key
from crdt import records
from tva.errors import RemoteDataError

log = logging.getLogger("tva.agent")

POLL_S = 1.0
FIRST_ASK_S = 2.0  # after a start, give the mesh a moment before suspecting a missed rotation
LONELY_S = 3.0  # no member answered for this long: maybe we hold an old fleet key
ASK_INTERVAL_S = 15.0
ASK_PEERS_MAX = 3
ASK_TIMEOUT_MS = 5_000


class FleetKeyKeeper:
    def __init__(self, state, *, clock_ms: Callable[[], int], transport: Callable[[], object], join,
                 liveness: Callable[[], dict[str, str]], on_decisions: Callable[[], None],
                 on_adopted: Callable[[], None]) -> None:
        self.state = state
        self.clock_ms = clock_ms
        self._transport = transport  # the mesh's current transport
        self._join = join  # the JoinListener: its transport asks other members' listeners
        self._liveness = liveness
        self._on_decisions = on_decisions  # a rekey answer carried decisions we lacked
        self._on_adopted = on_adopted  # a new key is in the state: save it
        self.due: secrets.FleetKey | None = None
        self._changed = trio.Event()

    def check(self) -> None:
        """After a decision changed: a newer fleet key for this host? Switch at its time."""
        try:
            key = secrets.current_key(self.state.doc, self.state.key)
        except RemoteDataError as exc:
            log.warning("a fleet key rotation could not be opened: %s", exc.message)
            return
        if key is not None and key.epoch > self.state.fleet.psk_epoch and (self.due is None or key.epoch > self.due.epoch):
            log.info("fleet key epoch %d recorded; switching at its time", key.epoch)
            self.due = key
            self._changed.set()

    def status(self) -> dict:
        due = self.due
        return {"epoch": self.state.fleet.psk_epoch, "next_epoch": due.epoch if due else None,
                "switch_at_ms": due.switch_at_ms if due else None}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        self.check()
        lonely_since = trio.current_time()
        next_ask = trio.current_time() + FIRST_ASK_S
        heard = -1
        while True:
            due = self.due
            wait_s = POLL_S if due is None else min(POLL_S, max(0.0, (due.switch_at_ms - self.clock_ms()) / 1000))
            with trio.move_on_after(wait_s):
                await self._changed.wait()
            self._changed = trio.Event()
            due = self.due
            if due is not None and self.clock_ms() >= due.switch_at_ms:
                self.due = None
                self.switch(due.epoch, due.psk)
            now = trio.current_time()
            others = self.state.members() - {self.state.peer_id}
            frames_in = self._transport().stats().get("frames_in", 0)
            if frames_in != heard or not others:
                heard, lonely_since = frames_in, now
            liveness = self._liveness()
            unreachable = [p for p in sorted(others) if liveness.get(p) in ("dead", "suspect")]
            lonely = bool(others) and now - lonely_since >= LONELY_S
            if now >= next_ask and (unreachable or lonely):
                next_ask = now + ASK_INTERVAL_S
                await self.ask(unreachable + [p for p in sorted(others) if p not in unreachable])

    async def ask(self, ordered: list[str]) -> None:
        cards = records.cards(self.state.feeds)
        candidates = [(p, list(cards[p].join_addrs)) for p in ordered if p in cards and cards[p].join_addrs]
        doc_version = self.state.doc.version
        got = await fetch_fleet_key(self._join.transport, self.state.doc, self.state.key, candidates[:ASK_PEERS_MAX],
                                    self.state.fleet.psk_epoch, ASK_TIMEOUT_MS)
        if self.state.doc.version != doc_version:
            self._on_decisions()
        if got is not None:
            log.info("learnt fleet key epoch %d from a member's join listener (missed a rotation)", got[0])
            self.switch(*got)

    def switch(self, epoch: int, psk: bytes) -> None:
        if not self.state.adopt_fleet_key(epoch, psk):
            return
        self._on_adopted()
        switch = getattr(self._transport(), "switch_psk", None)
        if switch is None:
            log.warning("fleet key epoch %d adopted; this transport cannot switch keys while running", epoch)
            return
        log.info("switching to fleet key epoch %d", epoch)
        switch(psk)

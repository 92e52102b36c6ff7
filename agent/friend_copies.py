"""Copies this host keeps for friend fleets (their side of cross-fleet custody).

A part of ``agent.torrents.TorrentManager`` (mixed into it). A friend's view asks us to keep some
of its items (agent.policy.friend_custody); every member takes the same asks, in infohash order,
while they fit what our link offers that friend, and names the same keeper for each. The keeper
fetches like a repair: by magnet on hold with its swarm closed, dialling only the friend's holders
of that item; the metadata's real size must not exceed what the friend asked for and must fit our
disk, then the data follows, and the finished copy is published as a custody holding with source
``friend`` (so our view shows it to that friend, and to no other). A copy nobody asks for any more
is dropped after ``FRIEND_DROP_GRACE_MS`` (a view that lapses for a moment does not cost a copy).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from agent.policy.friend_custody import accepted_asks, target_of
from agent.torrent_index import Entry
from crdt import records
from tva.errors import InvalidInput, TvaError

log = logging.getLogger("tva.torrents")

FRIEND_LEASE_MS = 10 * 60 * 1000
FRIEND_DROP_GRACE_MS = 10 * 60 * 1000


def friend_content_id(fleet: str, content: str, infohash: str) -> str:
    """Our content id for a copy kept for ``fleet``: recognisable, never one of our own names."""
    cid = f"friend:{fleet[:8]}:{content}"[:128]
    try:
        return records.check_content_id(cid)
    except InvalidInput:
        return f"friend:{infohash}"


class FriendCopies:
    """The friend-custody half of ``TorrentManager`` (see the module docstring)."""

    def _init_friend_copies(self) -> None:
        self._friend_wanted_ms: dict[str, int] = {}
        self._friend_dialled: dict[str, int] = {}
        self.counters.update(friend_copies_started=0, friend_copies_dropped=0)

    async def _keep_friend_copies(self, samples, now: int) -> bool:
        inputs = self.service.friend_inputs()
        wanted: dict[str, tuple[str, object]] = {}
        for fleet in sorted(inputs.links):
            for ask in accepted_asks(inputs.views.get(fleet), inputs.links[fleet]):
                wanted.setdefault(ask.infohash, (fleet, ask))
        changed = False
        view = self.service.snapshot().view
        last = {s.infohash: s for s in samples}
        for ih, (fleet, ask) in sorted(wanted.items()):
            self._friend_wanted_ms[ih] = now
            e = self.entries.get(ih)
            if e is None:
                if target_of(view, ask, self.cfg.disk_reserve_bytes) != self.state.peer_id:
                    continue
                changed |= await self._start_friend_copy(fleet, ask, now)
                e = self.entries.get(ih)
                if e is None:
                    continue
            elif e.kind == "repair" and e.source == "friend" and e.lease_until_ms < now + FRIEND_LEASE_MS // 2:
                self._remember(replace(e, lease_until_ms=now + FRIEND_LEASE_MS))
            if e.source == "friend" and e.kind == "repair":
                await self._dial_friend(fleet, ih, last.get(ih), now)
        changed |= await self._drop_unwanted_friend_copies(wanted, view, now)
        return changed

    async def _start_friend_copy(self, fleet: str, ask, now: int) -> bool:
        e = Entry(ask.infohash, friend_content_id(fleet, ask.content, ask.infohash), ask.policy, "friend", "repair",
                  None, size_bytes=ask.size_bytes, lease_until_ms=now + FRIEND_LEASE_MS)
        if self._refused_lease.get(ask.infohash) is not None and self._refused_lease[ask.infohash] > now:
            return False  # refused (size or disk) under a lease that still runs
        if not self.room_for(ask.size_bytes):
            return await self._refuse_copy(e, "repairs_refused_disk",
                                           f"not enough disk to keep {ask.size_bytes} bytes for a friend")
        # Closed from the first instant: a friend's item is never looked up on the DHT.
        await self._require_engine().add_magnet(self._magnet(e), hold=True, public=False)
        self._remember(e)
        self.applied_public(ask.infohash, False)
        self.counters["friend_copies_started"] += 1
        log.info("keeping %s (%d bytes) for friend fleet %s: fetching it from their holders", e.content_id,
                 ask.size_bytes, fleet[:16])
        return self._put_holding(records.Holding(e.content_id, e.infohash, e.size_bytes, "partial", e.policy,
                                                 "friend", 0, custody=True))

    async def _dial_friend(self, fleet: str, ih: str, last, now: int) -> None:
        if last is not None and last.seeds > 0:
            return
        if now - self._friend_dialled.get(ih, -10**15) < self.tuning.redial_interval_ms:
            return
        peers = tuple(dict.fromkeys((p.addr, p.port) for p in self.service.friend_inputs().peers_of(ih)
                                    if p.fleet_id == fleet))
        if not peers:
            return
        self._friend_dialled[ih] = now
        try:
            await self._require_engine().connect_peers(ih, peers)
        except TvaError as exc:
            log.info("dialling friend holders of %s: %s", ih, exc.message)

    async def _drop_unwanted_friend_copies(self, wanted: dict, view, now: int) -> bool:
        changed = False
        for e in [e for e in self.entries.values() if e.source == "friend" and e.kind in ("repair", "custody")]:
            if e.infohash in wanted or e.infohash in view.pins or e.content_id in view.pins:
                continue
            since = self._friend_wanted_ms.setdefault(e.infohash, now)
            if now - since < FRIEND_DROP_GRACE_MS:
                continue
            log.info("dropping %s: no friend asks us to keep it any more", e.content_id)
            self.counters["friend_copies_dropped"] += 1
            self._friend_wanted_ms.pop(e.infohash, None)
            changed |= await self._drop_copy(e)
        return changed

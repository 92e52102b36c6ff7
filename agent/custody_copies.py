"""Custody's copies on this host: repair intents, fetches on hold, size and disk checks, trims.

A part of ``agent.torrents.TorrentManager`` (mixed into it, split out for size); it uses the
manager's engine, index (``entries``), samples and replicated state.

* **As a pin's baton** — record each planned repair as an intent (with its lease) in our feed,
  and delete it once the target holds a complete copy, the lease lapsed, the target was revoked
  or the pin went: intents never pile up in the feed.
* **As a target** — honour only intents of the pin's baton, with a lease no longer than
  ``repair_lease_ms_max`` (``agent.policy.actions.refused_intents`` are counted and logged once).
  Add the torrent by magnet *on hold* and dial the fleet holders (their card's ``torrent_port``
  at their overlay or, in mesh-only mode, underlay addresses): the metadata arrives first
  (ut_metadata), and only when its real size is no larger than the largest size the holders
  claimed and fits the disk does the data follow. The disk is re-checked while the copy runs.
  A refused copy is not retried under the same lease. A copy that completes stays custody's
  (index kind ``custody``, holding ``custody=True``).
* **Trims** — a pin over its max names custody copies to drop: this host removes its copy
  (files, index entry and holding) only when custody made it; a user's copy is never deleted.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from agent.feed_upkeep import finished_intent_keys
from agent.policy import actions as policy_actions
from agent.policy import peers as peers_policy
from agent.probes import disk_free_bytes
from agent.torrent_index import CUSTODY_KINDS, Entry
from crdt import records
from media.engine import TorrentSample
from media.torrent_input import parse_torrent
from tva.errors import TvaError

log = logging.getLogger("tva.torrents")

REFUSALS_REMEMBERED_MAX = 4096  # (content, author, lease) refusals already counted and logged
COUNTERS = ("intents_refused", "repairs_refused_size", "repairs_refused_disk", "repairs_aborted_disk",
            "intents_removed", "trims_done", "trims_skipped_user_copy",
            # this host as a target: copies begun, completed, and given up (refused, aborted, lease over)
            "repairs_started", "repairs_done", "repairs_failed", "intents_recorded")


class CustodyCopies:
    """The custody half of ``TorrentManager`` (see the module docstring)."""

    def _init_custody(self) -> None:
        self._research_logged: set[str] = set()
        self._trim_skipped: set[str] = set()
        # Intents already refused (counted and logged once), and infohash → the lease under
        # which its copy was refused: not retried until a new intent brings a new lease.
        self._refusals_seen: dict[tuple[str, str, int], None] = {}
        self._refused_lease: dict[str, int] = {}
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)

    async def _learn_metadata(self, samples: list[TorrentSample]) -> bool:
        # A magnet's .torrent bytes arrive from peers: keep them, so a restart re-adds by file.
        # A repair's metadata is its real size: checked here before any data is let through.
        changed = False
        for s in samples:
            e = self.entries.get(s.infohash)
            if e is None or e.torrent is not None or not s.size_bytes:
                continue
            data = await self._require_engine().torrent_file(s.infohash)
            if data is None:
                continue
            real = parse_torrent(data).size_bytes
            if e.kind == "repair":
                if real > e.size_bytes:
                    changed |= await self._refuse_copy(e, "repairs_refused_size", f"its metadata says {real} bytes, "
                                                       f"the holders claimed {e.size_bytes}")
                    continue
                if not self.room_for(real, exclude=e.infohash):
                    changed |= await self._refuse_copy(e, "repairs_refused_disk",
                                                       f"not enough disk for {real} bytes + reserve")
                    continue
                self._remember(replace(e, torrent=data, size_bytes=real))
                await self._require_engine().release(e.infohash)
                log.info("repair of %s: metadata checked (%d bytes), fetching the data", e.content_id, real)
            else:
                self._remember(replace(e, torrent=data, size_bytes=real))
        return changed

    async def _guard_disk(self, samples: list[TorrentSample]) -> bool:
        """While a repair copies, its rest must still fit: something else may fill the disk."""
        changed = False
        for s in samples:
            e = self.entries.get(s.infohash)
            if (e is None or e.kind != "repair" or e.torrent is None
                    or s.infohash in self._completion.complete_infohashes()):
                continue
            if not self.room_for(max(0, e.size_bytes - s.bytes_done), exclude=e.infohash):
                changed |= await self._refuse_copy(e, "repairs_aborted_disk",
                                                   "the disk filled up while copying; dropping the partial copy")
        return changed

    async def _refuse_copy(self, e: Entry, counter: str, why: str) -> bool:
        """Stop a repair copy for good under its current lease: torrent, files, partial holding."""
        self.counters[counter] += 1
        self.counters["repairs_failed"] += 1
        log.warning("repair of %s refused here: %s", e.content_id, why)
        self._refused_lease[e.infohash] = e.lease_until_ms
        if len(self._refused_lease) > REFUSALS_REMEMBERED_MAX:
            self._refused_lease.pop(next(iter(self._refused_lease)))
        return await self._drop_copy(e)

    async def _drop_copy(self, e: Entry) -> bool:
        """Remove a copy this host holds for custody: from the engine (files too), the index and
        the feed. True when the feed changed."""
        try:
            await self._require_engine().remove(e.infohash, delete_files=True)
        except TvaError:
            pass  # already gone from the engine
        self.entries.pop(e.infohash, None)
        self._published_ms.pop(e.infohash, None)
        self._save_index()
        key = records.holding_key(e.content_id)
        if self.state.own.get(key) is None:
            return False
        self.state.own.delete(key)
        return True

    def _publish_progress(self, samples: list[TorrentSample], now: int) -> bool:
        changed = False
        for s in samples:
            e = self.entries.get(s.infohash)
            if e is None or e.kind != "repair" or s.infohash in self._completion.complete_infohashes():
                continue
            if now - self._published_ms.get(s.infohash, 0) < self.tuning.progress_interval_ms:
                continue
            size = s.size_bytes or e.size_bytes
            done = min(s.bytes_done, size)
            self._published_ms[s.infohash] = now
            changed |= self._put_holding(records.Holding(e.content_id, s.infohash, size, "partial", e.policy,
                                                         e.source, done, custody=True))
        return changed

    async def _carry_out(self, now: int) -> bool:
        snap = self.service.snapshot()
        duties = self.service.duty_assignments()
        plans = self.service.custody_plans()
        lease_max = self.cfg.repair_lease_ms_max
        changed = self._remove_finished_intents(plans, snap.view, now)
        self._note_refusals(plans, snap.view, now)
        acts = policy_actions.actions_for(self.state.peer_id, plans, duties, snap.view, now, lease_ms_max=lease_max)
        recorded: set = set()
        fetching: set[str] = set()
        for a in acts:
            # one intent per (content, target): a pin missing two copies records both at once
            if isinstance(a, policy_actions.StartRepair):
                key = (a.content, a.target)
                if key not in recorded:
                    changed |= self._record_intent(a)
                    recorded.add(key)
            elif isinstance(a, policy_actions.FetchCopy) and a.infohash is not None:
                fetching.add(a.infohash)
                changed |= await self._fetch(a, snap, now)
            elif isinstance(a, policy_actions.DropCopy):
                changed |= await self._trim(a)
            elif isinstance(a, policy_actions.StartResearch) and a.content not in self._research_logged:
                # No search backend runs inside the agent: the research duty's host says so once,
                # and the action stays visible in `custody` (its `research` field) until resolved.
                self._research_logged.add(a.content)
                log.warning("%s is lost (no live holder): needs research (scope %s)", a.content, a.scope)
        changed |= await self._expire_repairs(fetching, now)
        return changed

    async def _trim(self, a: policy_actions.DropCopy) -> bool:
        """Over-replicated: drop this host's copy only if custody made it. The plan only names
        custody copies, but the holding mark is what this host published: a copy the user added
        here (the same item added by hand later, say) is never deleted by the fleet."""
        e = self.entries.get(a.infohash) if a.infohash else None
        if e is None or e.kind not in CUSTODY_KINDS:
            if a.content not in self._trim_skipped:
                self._trim_skipped.add(a.content)
                self.counters["trims_skipped_user_copy"] += 1
                log.info("trim of %s skipped: this copy was not made by custody", a.content)
            return False
        log.info("trim: dropping the custody copy of %s (the pin has more copies than its max)", a.content)
        self.counters["trims_done"] += 1
        return await self._drop_copy(e)

    def _remove_finished_intents(self, plans, view, now: int) -> bool:
        """The baton's side of a repair's end (``feed_upkeep.finished_intent_keys``)."""
        keys = finished_intent_keys(self.state.own.feed, plans, view, now)
        for key in keys:
            self.state.own.delete(key)
            self.counters["intents_removed"] += 1
        return bool(keys)

    def _note_refusals(self, plans, view, now: int) -> None:
        """Count and log (once each) the live intents naming this host that it will not carry out."""
        by_content = {p.content: p for p in plans}
        for r in policy_actions.refused_intents(self.state.peer_id, plans, view, now,
                                                lease_ms_max=self.cfg.repair_lease_ms_max):
            mark = (r.content, r.author, r.lease_until_ms)
            if mark in self._refusals_seen:
                continue
            if len(self._refusals_seen) >= REFUSALS_REMEMBERED_MAX:
                self._refusals_seen.pop(next(iter(self._refusals_seen)))
            self._refusals_seen[mark] = None
            self.counters["intents_refused"] += 1
            # A holder's intent after the baton moved on is routine (it lapses by itself); an
            # intent from a host that holds nothing, or with an overlong lease, is not.
            plan = by_content.get(r.content)
            routine = plan is not None and r.author in plan.holders and "baton" in r.reason
            log.log(logging.INFO if routine else logging.WARNING, "refused a repair intent for %s from %s: %s",
                    r.content, r.author[:16], r.reason)

    def _record_intent(self, a: policy_actions.StartRepair) -> bool:
        intent = records.RepairIntent(a.content, a.target, a.lease_until_ms)
        self.state.own.put(records.intent_key(a.content, a.target), records.encode_intent(intent))
        self.counters["intents_recorded"] += 1
        log.info("repair of %s: %s fetches it until %d", a.content, a.target[:16], a.lease_until_ms)
        return True

    def _holder_endpoints(self, snap, infohash: str, peers) -> tuple[tuple[str, int], ...]:
        """The torrent endpoints of these fleet holders, as the policy core addresses them
        (overlay, else underlay for mesh-only hosts). Fleet-internal like ``custodians_of``, so
        not gated by the item policy: a search_only item is still copied over the fabric."""
        found = peers_policy.custodians_of(snap.view, infohash, exclude_peer=self.state.peer_id)
        return tuple(dict.fromkeys((p.addr, p.port) for p in found.peers if p.peer_id in peers))

    async def _fetch(self, a: policy_actions.FetchCopy, snap, now: int) -> bool:
        engine = self._require_engine()
        ih = a.infohash
        peers = self._holder_endpoints(snap, ih, a.sources)
        e = self.entries.get(ih)
        if e is None:
            if self._refused_lease.get(ih) == a.lease_until_ms:
                return False  # refused under this very lease already: wait for a new intent
            held = snap.view.holders_of_infohash(ih)
            claims = [held[p] for p in a.sources if p in held]
            if not claims:
                return False
            src = claims[0]
            # The largest size any source claims: a disk check against the smallest would let
            # one lying holder talk us into more than we can keep. The metadata decides later.
            claim = max(h.size_bytes for h in claims)
            holding = snap.holdings.get(src.peer_id, {}).get(src.content_id)
            source = holding.source if holding is not None else "local"
            policy = holding.policy if holding is not None else "search_only"
            e = Entry(ih, src.content_id, policy, source, "repair", None, size_bytes=claim,
                      lease_until_ms=a.lease_until_ms)
            if not self.room_for(claim):
                # Several pins may pick this host at once from soft state that lags: the target is
                # the last guard. The intent lapses and the baton re-plans elsewhere.
                return await self._refuse_copy(e, "repairs_refused_disk",
                                               f"not enough disk (needs {claim} bytes + reserve)")
            if source == "private-tracker":
                # BEP 27: never a bare magnet (it could look the item up before its metadata says
                # private): the .torrent, private flag included, comes from a holder.
                if not await self._add_private(e, a.sources):
                    return False
            else:
                await engine.add_magnet(self._magnet(e), hold=True)  # metadata only, until checked
                self._remember(e)
            self.counters["repairs_started"] += 1
            self._dialled.pop(ih, None)
            log.info("fetching %s (%s) from %d fleet endpoints", e.content_id, ih, len(peers))
        elif e.kind == "repair" and e.lease_until_ms != a.lease_until_ms:
            self._remember(replace(e, lease_until_ms=a.lease_until_ms))
        last = self._last.get(ih)
        # Dial at once when the holders' endpoints changed (a restarted holder has a new port),
        # else every redial interval while no seed is connected. Not on "peers": libtorrent
        # counts its own half-open retries to a dead endpoint as peers.
        at, dialled = self._dialled.get(ih, (-10**15, ()))
        if peers and (peers != dialled or ((last is None or last.seeds == 0)
                                           and now - at >= self.tuning.redial_interval_ms)):
            self._dialled[ih] = (now, peers)
            log.info("dialling fleet holders of %s: %s", e.content_id, peers)
            await engine.connect_peers(ih, peers)
        if e.kind == "repair" and ih not in self._completion.complete_infohashes() and ih not in self._published_ms:
            self._published_ms[ih] = now
            return self._put_holding(records.Holding(e.content_id, ih, e.size_bytes, "partial", e.policy, e.source, 0,
                                                     custody=True))
        return False

    async def _add_private(self, e: Entry, sources) -> bool:
        """Add a private tracker's item from a holder's .torrent (trackers stripped by the holder),
        checked before anything is added: its infohash, its private flag and its real size."""
        if self._fetch_torrent is None:
            return False
        for peer in sources:
            try:
                data = await self._fetch_torrent(peer, e.infohash)
                if data is None:
                    continue
                meta = parse_torrent(data)
            except TvaError as exc:
                log.info("repair of %s: no .torrent from %s (%s)", e.content_id, peer[:16], exc.message)
                continue
            if meta.infohash != e.infohash or not meta.private:
                log.warning("repair of %s: %s sent a .torrent that is not this private item's", e.content_id,
                            peer[:16])
                continue
            if meta.size_bytes > e.size_bytes:
                await self._refuse_copy(e, "repairs_refused_size", f"its .torrent says {meta.size_bytes} bytes, "
                                        f"the holders claimed {e.size_bytes}")
                return False
            if not self.room_for(meta.size_bytes):
                await self._refuse_copy(e, "repairs_refused_disk", "not enough disk for it + reserve")
                return False
            await self._require_engine().add_torrent(data, public=False)
            self._remember(replace(e, torrent=data, size_bytes=meta.size_bytes))
            return True
        return False

    def room_for(self, size_bytes: int, *, exclude: str | None = None) -> bool:
        """Free disk under the media root covers ``size_bytes`` more, what the other copies in
        flight still have to write, and the configured reserve (unknown free space: trust the
        planner, which saw a number). ``exclude``: the copy being checked itself."""
        free = disk_free_bytes(self.cfg.media_dir())
        if free is None:
            return True
        done = self._completion.complete_infohashes()
        in_flight = 0
        for e in self.entries.values():
            if e.kind == "repair" and e.infohash not in done and e.infohash != exclude:
                last = self._last.get(e.infohash)
                in_flight += max(0, e.size_bytes - (last.bytes_done if last is not None else 0))
        return free - in_flight >= size_bytes + self.cfg.disk_reserve_bytes

    async def _expire_repairs(self, fetching: set[str], now: int) -> bool:
        """A repair copy whose lease ended unfinished is dropped: the baton re-plans elsewhere."""
        changed = False
        for e in [e for e in self.entries.values() if e.kind == "repair"]:
            if e.infohash in fetching or e.lease_until_ms > now:
                continue
            log.info("repair of %s: lease over before completion, dropping the partial copy", e.content_id)
            self.counters["repairs_failed"] += 1
            changed |= await self._drop_copy(e)
        return changed

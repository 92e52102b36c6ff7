"""BEP 27 in the running engine: each torrent's swarm mode, and the addresses the engine binds.

A part of ``agent.torrents.TorrentManager`` (mixed into it). Every torrent is added closed (per-
torrent DHT, PEX and LSD off) unless it is already known to be public, and each tick re-applies
``agent.policy.swarm.swarm_public`` to what the engine holds: an item that some holder or friend
closes is closed here at once, one opened by everyone is opened. The engine binds only concrete
addresses — the fleet's (tva0), plus the underlay where something outside the fabric must reach
this host (``agent.policy.swarm.torrent_listen_ips``) — never 0.0.0.0.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from agent.policy.swarm import swarm_public, torrent_listen_ips
from agent.torrent_index import listen_ips
from media.torrent_input import info_only, parse_torrent
from tva.errors import TvaError

log = logging.getLogger("tva.torrents")


class SwarmKeeper:
    """The swarm half of ``TorrentManager`` (see the module docstring)."""

    def _init_swarm(self) -> None:
        self._swarm_applied: dict[str, bool] = {}
        self._private: dict[str, bool] = {}
        self._swarm_refused: set[str] = set()

    def _is_private(self, e) -> bool:
        if e.torrent is None:
            return False
        if e.infohash not in self._private:
            try:
                self._private[e.infohash] = parse_torrent(e.torrent).private
            except TvaError:
                self._private[e.infohash] = True  # unreadable: treat as the most closed
        return self._private[e.infohash]

    def wants_public(self, infohash: str, entry_policy: str | None, private: bool) -> bool:
        """Whether ``infohash`` may meet the public swarm now (closed on any doubt)."""
        if private:
            return False
        try:
            item = self.service.item_policy(infohash)
        except TvaError:
            return False
        return swarm_public(entry_policy, item, private)

    def public_choice(self, policy: str | None):
        """For an add whose infohash is known only inside the engine (agent.torrents.add)."""
        def choose(infohash: str, private: bool) -> bool:
            asked = policy if policy is not None else ("search_only" if private else "public")
            return self.wants_public(infohash, asked, private)
        return choose

    async def _sync_swarm(self) -> None:
        engine = self.engine
        if engine is None or not hasattr(engine, "set_public"):
            return
        for ih in [ih for ih in self._swarm_applied if ih not in self.entries]:
            self._swarm_applied.pop(ih, None)
            self._private.pop(ih, None)
        for ih, e in list(self.entries.items()):
            want = self.wants_public(ih, e.policy, self._is_private(e))
            if self._swarm_applied.get(ih) == want:
                continue
            try:
                await engine.set_public(ih, want)
            except TvaError as exc:
                if ih not in self._swarm_refused:
                    self._swarm_refused.add(ih)
                    log.warning("%s must be closed to the public swarm, but the engine refused: %s",
                                e.content_id, exc.message)
                continue
            if ih in self._swarm_applied or want:
                log.info("%s %s the public swarm (DHT/PEX/LSD %s)", e.content_id, "opened to" if want else
                         "closed to", "on" if want else "off")
            self._swarm_applied[ih] = want

    def applied_public(self, infohash: str, public: bool) -> None:
        self._swarm_applied[infohash] = public

    # --- where the engine listens ---------------------------------------------------------------

    def listen_addresses(self) -> tuple[str, ...]:
        card = self.state.card()
        overlay = [a for a in ((card.overlay_ipv4, card.overlay_ipv6) if card else ()) if a]
        underlay = list(listen_ips(tuple(card.listen_addrs))) if card and card.listen_addrs else []
        if not underlay or any(ip in ("0.0.0.0", "::") for ip in underlay):
            from agent.netinfo import dialable

            underlay = list(listen_ips(tuple(dialable(list(self.cfg.listen)))))
        ips = torrent_listen_ips(overlay=overlay, underlay=underlay, public_face=self._face,
                                 friends=bool(self.state.doc.friends()))
        return ips or ("127.0.0.1",)

    def _follow_listen(self) -> None:
        engine = self.engine
        if engine is None or not hasattr(engine, "apply_flags"):
            return
        ips = self.listen_addresses()
        if ips == self._flags.listen_addresses:
            return
        self._flags = replace(self._flags, listen_addresses=ips, listen_port=self.listen_port())
        engine.apply_flags(self._flags)
        log.info("torrent engine listens on %s (port %d)", ", ".join(ips), self.listen_port())

    async def shareable_torrent(self, infohash: str) -> bytes | None:
        """A held item's .torrent for a fleet repair, trackers stripped (agent.friends_wire)."""
        if self.engine is None or infohash not in self.entries:
            return None
        data = await self.engine.torrent_file(infohash)
        return info_only(data) if data is not None else None

"""Friend fleets at run time: links, the views that cross, and who talks to whom.

A link is recorded in both fleets' decision logs (``agent.policy.friend_links``). Each side names a
few *gateways* (admins, by preference always on). Only gateways ever talk to the friend:

* every ``friend_sync_interval_ms`` a gateway of ours asks one of theirs (on *their* join network)
  for their signed view (``friend_view``); it keeps the newest one;
* our other members ask one of our gateways for it over the mesh (``friend_views``) and check its
  signature themselves — so nobody of ours beyond the gateways is ever known to the friend, and
  nobody of theirs beyond their gateways and the holders of what they share is known to us;
* our join listener answers their gateways with our view (``agent.policy.friend_view``) — built
  from our own replica, signed by this host — and with nothing else.

A friend going away never blocks anything of ours: each request has a time-out, every answer comes
from a cache, and a view older than ``FRIEND_VIEW_TTL_MS`` stops counting (its peers leave
``peers_for``, its copies leave custody). ``friend rm`` ends a link on both sides: our admin records
it and tells their gateways, whose admins record it too; a notice that does not arrive is made up
for by their next poll, which we answer with ``{"linked": false}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from agent import rpc
from agent.friend_inputs import FriendInputs
from agent.joining import ask
from agent.policy import friend_links as fl
from agent.policy import friend_view as fv
from agent.policy.friend_custody import asks_for
from crdt import records
from tva.errors import Conflict, DecodeError, PeerUnavailable, RemoteDataError, RequestRefused, TvaError

log = logging.getLogger("tva.friends")

FRIEND_VIEW_TTL_MS = 10 * 60 * 1000
REQUEST_TIMEOUT_MS = 10_000
LINK_GRACE_MS = 60_000  # "not linked" ends a younger link only after this: their other gateways learn it by gossip
VIEW_CACHE_MS = 1_000  # a view served again within this is the same signed bytes
ADMIN_ROLES = ("owner", "admin")
ALWAYS_ON = ("server", "nas", "seedbox", "desktop")


@dataclass
class Held:
    view: fv.SharedView
    raw: bytes
    received_ms: int


@dataclass
class LinkState:
    state: str = "pending"  # pending | linked | unreachable | ended
    since_ms: int = 0
    error: str = ""
    served: dict = field(default_factory=dict)  # what we last showed them (gateways only)


class FriendsManager:
    def __init__(self, cfg, state, service, *, clock_ms: Callable[[], int], commit: Callable[[], None],
                 client_factory: Callable[[str], tuple[object, bool]],
                 mesh_request: Callable[[str, bytes, int], object], live: Callable[[], frozenset[str]],
                 own_join_addrs: Callable[[], list[str]]) -> None:
        self.cfg = cfg
        self.state = state
        self.service = service
        self.clock_ms = clock_ms
        self._commit = commit
        self._client_factory = client_factory
        self._mesh_request = mesh_request
        self._live = live
        self._own_join_addrs = own_join_addrs
        self.views: dict[str, Held] = {}
        self.link_states: dict[str, LinkState] = {}
        self.ended: dict[str, int] = {}
        self.learnt_addrs: dict[str, dict[str, list[str]]] = {}  # fleet -> their gateway -> addrs it told us
        self._clients: dict[str, tuple[object, trio.CancelScope | None]] = {}
        self._nursery: trio.Nursery | None = None
        self._wake = trio.Event()
        self._version = 0  # moves when a view arrives or a link ends here
        self._links_cache: tuple[int, dict[str, fl.FriendLinkView]] | None = None
        self._inputs_cache: tuple[tuple, FriendInputs] | None = None
        self._served: dict[str, tuple[int, int, bytes]] = {}  # fleet -> (built at ms, snapshot id, bytes)
        self.loopback_ok = all(a.startswith(("/ip4/127.", "/ip6/::1/")) for a in cfg.listen)
        self.counters = {"views_served": 0, "views_fetched": 0, "views_refused": 0, "links_made": 0,
                         "links_ended": 0, "polls_failed": 0}

    # --- links ----------------------------------------------------------------------------------

    @property
    def me(self) -> str:
        return self.state.peer_id

    def links(self) -> dict[str, fl.FriendLinkView]:
        """Every link of our decision log that this build can use, by friend fleet id."""
        doc = self.state.doc
        if self._links_cache is None or self._links_cache[0] != doc.version:
            parsed = {}
            for fid, link in doc.friends().items():
                v = fl.parse_link(fid, link.name, link.link_dict(), by=link.by, since_ms=link.at_ms)
                if v is not None:
                    parsed[fid] = v
            self._links_cache = (doc.version, parsed)
        return self._links_cache[1]

    def usable_links(self) -> dict[str, fl.FriendLinkView]:
        return {f: link for f, link in self.links().items() if f not in self.ended}

    def _is_admin(self) -> bool:
        return self.state.doc.role_of(self.me) in ADMIN_ROLES

    def _join_addrs_of(self, peer: str) -> list[str]:
        if peer == self.me:
            return list(self._own_join_addrs())
        card = records.cards(self.state.feeds).get(peer)
        return list(card.join_addrs) if card else []

    def our_gateways(self) -> tuple[str, ...]:
        """The hosts of ours that serve a new link (agent.policy.friend_links.choose_gateways)."""
        doc = self.state.doc
        admins = [p for p, r in doc.roles().items() if r in ADMIN_ROLES]
        cards = records.cards(self.state.feeds)
        on = [p for p, c in cards.items() if c.host_class in ALWAYS_ON]
        return fl.choose_gateways(self.me, admins, self._live() | {self.me}, on)

    # --- what the rest of the agent reads -------------------------------------------------------

    def inputs(self) -> FriendInputs:
        now = self.clock_ms()
        key = (self.state.doc.version, self._version, now // 10_000)
        if self._inputs_cache is not None and self._inputs_cache[0] == key:
            return self._inputs_cache[1]
        links = self.usable_links()
        views = {f: h.view for f, h in self.views.items() if f in links and now - h.received_ms <= FRIEND_VIEW_TTL_MS}
        inputs = FriendInputs.build(links, views)
        self._inputs_cache = (key, inputs)
        return inputs

    def _changed(self) -> None:
        self._version += 1
        self.service.invalidate()

    # --- serving their gateways (our join listener) --------------------------------------------

    def handle_request(self, peer: str, kind: str, body: dict) -> dict:
        if kind == "friend_link":
            from agent.friends_link import redeem

            return redeem(self, peer, body)
        self._learn_addrs(peer, body)
        if kind == "friend_unlink":
            return self._their_unlink(peer, body["fleet_id"])
        return self._serve_view(peer, body["fleet_id"])

    def _learn_addrs(self, peer: str, body: dict) -> None:
        link = self.links().get(body["fleet_id"])
        if link is None or peer not in link.their_gateways or "gateways" not in body:
            return
        known = self.learnt_addrs.setdefault(link.fleet_id, {})
        for gateway, addrs in body["gateways"]:
            if gateway in link.their_gateways and addrs:
                known[gateway] = list(addrs)[: fl.ADDRS_MAX]

    def _our_gateway_field(self, link: fl.FriendLinkView) -> list[list]:
        out = []
        for p in link.our_gateways:
            addrs = self._join_addrs_of(p)[: fl.ADDRS_MAX]
            if addrs:
                out.append([p, addrs])
        return out

    def their_gateways(self, link: fl.FriendLinkView) -> list[tuple[str, list[str]]]:
        held = self.views.get(link.fleet_id)
        return fv.gateway_addrs(held.view if held else None, link.their_gateways, link.their_addrs,
                                self.learnt_addrs.get(link.fleet_id))

    def _serve_view(self, peer: str, fleet: str) -> dict:
        link = self.usable_links().get(fleet)
        if link is None or peer not in link.their_gateways:
            self.counters["views_refused"] += 1
            return {"linked": False}
        if self.me not in link.our_gateways:
            raise RequestRefused("this host does not serve that link", hint="ask the gateways the link names")
        self.counters["views_served"] += 1
        return {"linked": True, "view": self.view_bytes(link)}

    def view_bytes(self, link: fl.FriendLinkView) -> bytes:
        """Our signed view for ``link``'s fleet (rebuilt at most once a second, or on a state change)."""
        now = self.clock_ms()
        snap = self.service.snapshot()
        cached = self._served.get(link.fleet_id)
        if cached is not None and cached[1] == id(snap) and now - cached[0] < VIEW_CACHE_MS:
            return cached[2]
        inputs = self.inputs()
        view = snap.view
        asks = asks_for(view, self.service.own_custody_plans(), link.fleet_id, inputs.links, inputs.views)
        theirs = inputs.views.get(link.fleet_id)
        gateways = [fv.Gateway(p, tuple(self._join_addrs_of(p)[: fl.ADDRS_MAX])) for p in link.our_gateways]
        shared = fv.build_view(view, issuer_fleet=self.state.fleet.fleet_id, for_fleet=link.fleet_id,
                               shares=link.shares, issued_ms=now, asks=asks,
                               gateways=[g for g in gateways if g.addrs], custody_bytes=link.custody_bytes,
                               their_asks=[a.infohash for a in theirs.asks] if theirs else (), friends=inputs.peers)
        raw = fv.sign_view(shared, self.state.key)
        self._served[link.fleet_id] = (now, id(snap), raw)
        self.link_states.setdefault(link.fleet_id, LinkState()).served = {
            "items": len(shared.items), "asks": len(shared.asks), "at_ms": now}
        return raw

    def _their_unlink(self, peer: str, fleet: str) -> dict:
        link = self.links().get(fleet)
        if link is None:
            return {"ok": True, "recorded": False}
        if peer not in link.their_gateways:
            raise RequestRefused("only the friend's gateways may end the link")
        log.info("fleet %s (%s) ended our link", link.name, fleet[:16])
        return {"ok": True, "recorded": self._end(link, "they ended it")}

    def _end(self, link: fl.FriendLinkView, why: str) -> bool:
        """The friend ended the link: record it (an admin), or stop using it here (anyone else)."""
        self.counters["links_ended"] += 1
        self.link_states.setdefault(link.fleet_id, LinkState()).state = "ended"
        if self._is_admin():
            try:
                if self.state.doc.remove_friend(link.fleet_id, self.clock_ms()):
                    self._commit()
                self._forget(link.fleet_id)
                return True
            except TvaError as exc:
                log.warning("could not record the end of the link with %s: %s", link.name, exc.message)
        self.ended[link.fleet_id] = self.clock_ms()
        self._changed()
        log.info("link with %s ended (%s); an admin of ours records it when it learns", link.name, why)
        return False

    def _forget(self, fleet: str) -> None:
        self.views.pop(fleet, None)
        self.learnt_addrs.pop(fleet, None)
        self._served.pop(fleet, None)
        self._changed()

    # --- serving our members (mesh) -------------------------------------------------------------

    def answer_member(self, peer: str, body: dict) -> dict:
        fleet = body["fleet_id"]
        if fleet not in self.links():
            return {"state": "unlinked", "view": None}
        held = self.views.get(fleet)
        st = self.link_states.get(fleet, LinkState())
        state = "ended" if fleet in self.ended else st.state
        fresh = held is not None and held.view.issued_ms > body["issued_ms"]
        return {"state": state, "view": held.raw if fresh else None,
                "age_ms": None if held is None else max(0, self.clock_ms() - held.received_ms)}

    # --- the loop ---------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                while True:
                    await self.sync_once()
                    with trio.move_on_after(self.cfg.friend_sync_interval_ms / 1000):
                        await self._wake.wait()
                    self._wake = trio.Event()
        finally:
            self._nursery = None
            self._clients.clear()

    def kick(self) -> None:
        self._wake.set()

    async def sync_once(self) -> None:
        links = self.links()
        for fleet in [f for f in self._clients if f not in links]:
            self._close_client(fleet)
        for fleet in [f for f in self.views if f not in links]:
            self._forget(fleet)
        for fleet in [f for f in self.ended if f not in links]:
            self.ended.pop(fleet)
        async with trio.open_nursery() as nursery:
            for link in links.values():
                if link.fleet_id in self.ended:
                    continue
                poll = self._poll_theirs if self.me in link.our_gateways else self._poll_ours
                nursery.start_soon(self._guarded, poll, link)

    async def _guarded(self, poll, link: fl.FriendLinkView) -> None:
        st = self.link_states.setdefault(link.fleet_id, LinkState())
        try:
            with trio.move_on_after(2 * REQUEST_TIMEOUT_MS / 1000):
                await poll(link, st)
                return
            raise PeerUnavailable("timed out")
        except TvaError as exc:
            self.counters["polls_failed"] += 1
            st.error = exc.message
            held = self.views.get(link.fleet_id)
            # A missed poll (their listener busy, a lost packet) is not news while the view we
            # hold is recent: only a friend silent for a few intervals is unreachable.
            if held is not None and self.clock_ms() - held.received_ms <= self._patience_ms():
                return
            if st.state != "unreachable":
                log.info("friend fleet %s unreachable: %s", link.name, exc.message)
                st.since_ms = self.clock_ms()
            st.state = "unreachable"

    def _patience_ms(self) -> int:
        return max(3 * self.cfg.friend_sync_interval_ms, 30_000)

    def _accept(self, link: fl.FriendLinkView, st: LinkState, raw: bytes) -> None:
        held = self.views.get(link.fleet_id)
        view = fv.open_view(raw, issuer_fleet=link.fleet_id, for_fleet=self.state.fleet.fleet_id,
                            signers=link.their_gateways, loopback_ok=self.loopback_ok)
        fv.newer(view, held.view if held else None)
        changed = held is None or held.raw != raw
        self.views[link.fleet_id] = Held(view, raw, self.clock_ms())
        if st.state != "linked":
            log.info("friend fleet %s: view received (%d items shared with us)", link.name, len(view.items))
            st.since_ms = self.clock_ms()
        st.state, st.error = "linked", ""
        self.counters["views_fetched"] += 1
        if changed:
            self._changed()

    async def _poll_theirs(self, link: fl.FriendLinkView, st: LinkState) -> None:
        """As a gateway: ask one of their gateways for their view."""
        targets = self.their_gateways(link)
        if not targets:
            raise PeerUnavailable("no address known for any of their gateways")
        transport = await self.client(link.fleet_id)
        last: TvaError = PeerUnavailable("no gateway answered")
        for peer, addrs in targets:
            try:
                body = {"fleet_id": self.state.fleet.fleet_id}
                gateways = self._our_gateway_field(link)
                if gateways:
                    body["gateways"] = gateways
                reply = await ask(transport, peer, addrs, "friend_view", body, REQUEST_TIMEOUT_MS)
                if reply.get("linked") is False:
                    if self.clock_ms() - link.since_ms >= LINK_GRACE_MS:
                        self._end(link, f"their gateway {peer[:16]} holds no link with us")
                        return
                    raise RequestRefused("their gateway does not know the link yet")
                if not isinstance(reply.get("view"), bytes):
                    raise DecodeError("a friend view reply without a view")
                self._accept(link, st, reply["view"])
                return
            except (PeerUnavailable, RemoteDataError) as exc:
                last = exc
        raise last

    async def _poll_ours(self, link: fl.FriendLinkView, st: LinkState) -> None:
        """As a member: ask one of our gateways for the friend's latest view."""
        live = self._live()
        gateways = [p for p in link.our_gateways if p in live]
        if not gateways:
            raise PeerUnavailable("none of our gateways for this link is alive")
        held = self.views.get(link.fleet_id)
        body = {"fleet_id": link.fleet_id, "issued_ms": held.view.issued_ms if held else 0}
        last: TvaError = PeerUnavailable("no gateway answered")
        for peer in gateways:
            try:
                reply = rpc.decode_reply(await self._mesh_request(peer, rpc.encode_query("friend_views", body),
                                                                  REQUEST_TIMEOUT_MS))
                rpc.raise_if_refused(reply)
                if reply.get("state") == "ended":
                    self.ended[link.fleet_id] = self.clock_ms()
                    st.state = "ended"
                    self._changed()
                    return
                if isinstance(reply.get("view"), bytes):
                    self._accept(link, st, reply["view"])
                elif held is not None and reply.get("state") == "linked":
                    st.state, st.error = "linked", ""
                elif reply.get("state") in ("unreachable", "pending"):
                    st.state, st.error = str(reply["state"]), "our gateway has no fresh view"
                return
            except (PeerUnavailable, RemoteDataError) as exc:
                last = exc
        raise last

    # --- client transports (their join network) --------------------------------------------------

    async def client(self, fleet: str):
        found = self._clients.get(fleet)
        if found is not None:
            return found[0]
        if self._nursery is None:
            raise Conflict("friend links need the running daemon", hint="start it with: tva-agent run")
        transport, owned = self._client_factory(fleet)
        scope = trio.CancelScope() if owned else None
        if scope is not None:
            async def run(*, task_status=trio.TASK_STATUS_IGNORED) -> None:
                with scope:
                    await transport.run(task_status=task_status)
            await self._nursery.start(run)
        self._clients[fleet] = (transport, scope)
        return transport

    def _close_client(self, fleet: str) -> None:
        _transport, scope = self._clients.pop(fleet, (None, None))
        if scope is not None:
            scope.cancel()

    # --- reading for people ----------------------------------------------------------------------

    def listing(self) -> list[dict]:
        now = self.clock_ms()
        usable = self.links()
        rows = []
        for fid, link in sorted(self.state.doc.friends().items()):
            parsed = usable.get(fid)
            st = self.link_states.get(fid, LinkState())
            held = self.views.get(fid)
            state = "unusable" if parsed is None else ("ended" if fid in self.ended else st.state)
            if state == "linked" and held is not None and now - held.received_ms > FRIEND_VIEW_TTL_MS:
                state = "stale"
            row = {"fleet_id": fid, "name": link.name, "state": state, "since_ms": link.at_ms, "by": link.by,
                   "error": st.error or None, "view_age_ms": None if held is None else now - held.received_ms}
            if parsed is not None:
                row.update(side=parsed.side, our_gateways=list(parsed.our_gateways),
                           their_gateways=list(parsed.their_gateways), shares=sorted(parsed.shares),
                           custody_bytes_offered=parsed.custody_bytes, serving=self.me in parsed.our_gateways,
                           shown_to_them=st.served or None)
            if held is not None:
                row.update(shared_with_us=len(held.view.items), custody_bytes_offered_to_us=held.view.custody_bytes,
                           asks_from_them=len(held.view.asks))
            rows.append(row)
        return rows

"""Friend fleets in the simulator: several real fleets in one world, linked and unlinked, with the
signed views that cross between them and the copies kept for friends (issue 15, item 7).

What runs is the product's: each fleet has its own genesis, fleet id and mesh (nodes of different
fleets never exchange a frame); links are ``friend`` decisions with the real link map
(``agent.policy.friend_links``) written by each fleet's gateway (its founder) and gossiped; views are
built from the issuing gateway's own replica (``friend_view.build_view``), signed with its key and
opened by the audience's gateway against the gateways its link names (``open_view``); nodes answer
``peers_for`` and count friends' copies (``friend_custody.count_friends``) from
``agent.friend_inputs.FriendInputs`` of their own links and the fresh views, as the agent does; a
fleet keeps copies for a friend's asks (``accepted_asks`` / ``target_of``), like
``agent.friend_copies``.

What is the simulator's: views cross every ``SYNC_MS`` when both gateways are up and each one's
replica lists the link (the request-reply over the join network is not simulated); a gateway's
members see its held views at once (the agent relays them over the mesh within a sync interval);
a view stops counting after ``VIEW_TTL_MS`` and an unasked copy is dropped after ``DROP_GRACE_MS``
(the agent's 10 minutes, scaled to a run of seconds); copying takes size / 50 MB/s.
"""

from __future__ import annotations

from agent.friend_inputs import FriendInputs
from agent.policy import friend_links as fl
from agent.policy import friend_view as fv
from agent.policy.friend_custody import accepted_asks, asks_for, target_of
from simulations.adapter import AddFriend, AddHolding, RemoveFriend, RemoveHolding, infohash_of
from tva.errors import RemoteDataError

SYNC_MS = 2000
VIEW_TTL_MS = 3 * SYNC_MS
DROP_GRACE_MS = 4000
RESERVE_BYTES = 1024**3
TRANSFER_BYTES_PER_S = 50_000_000  # between two homes' hosts (the fleet-internal model: 10 MB/s)


class FriendWorld:
    def __init__(self, sim, factory) -> None:
        self.sim = sim
        self.n = factory.fleets
        self.ids = [factory.real_shared(f).fleet_id for f in range(self.n)]
        self.number = {fid: f for f, fid in enumerate(self.ids)}
        firsts = [factory.fleet_indexes(f)[0] for f in range(self.n)]
        self.gateways = [sim.by_index[i] for i in firsts]  # each fleet's founder: its owner, always on
        self.keys = [factory.key(i) for i in firsts]
        # truth: links (both sides recorded) and what each side offers the other
        self.link_since: dict[frozenset, int] = {}
        self.link_ended: dict[frozenset, int] = {}
        self.offer_bytes: dict[tuple[int, int], int] = {}  # (keeper, asker) -> bytes offered
        self.friend_pins: set[str] = set()
        # views each fleet's gateway holds: audience -> issuer -> (view, received at)
        self.held: dict[int, dict[int, tuple[fv.SharedView, int]]] = {f: {} for f in range(self.n)}
        self.views_version = 0
        # copies kept for friends: (keeper fleet, item) -> keeper peer; in flight; when last asked
        self.copies: dict[tuple[int, str], str] = {}
        self.copy_gone: dict[tuple[int, str], int] = {}
        self.in_flight: set[tuple[int, str]] = set()
        self.asked_ms: dict[tuple[int, str], int] = {}
        self._items_seen = -1
        self._by_ih: dict[str, object] = {}
        self._inputs: dict[tuple, FriendInputs] = {}
        self.stats = {"links_made": 0, "links_ended": 0, "views_delivered": 0, "views_refused": 0,
                      "friend_copies_made": 0, "friend_copies_dropped": 0, "friend_answers": 0,
                      "first_friend_answer_ms": None}
        factory.friend_inputs_for = lambda fleet, index: (lambda node: self.inputs(fleet, node))

    # --- truth, for the checkers ----------------------------------------------------------------
    def fleet_number(self, fleet_id: str) -> int | None:
        return self.number.get(fleet_id)

    def linked(self, a: int, b: int, now_ms: int, grace_ms: int) -> bool:
        if a == b:
            return True
        pair = frozenset((a, b))
        if pair not in self.link_since:
            return False
        ended = self.link_ended.get(pair)
        return ended is None or now_ms - ended <= grace_ms

    def may_see(self, owner: int, fleet: int, now_ms: int, grace_ms: int) -> bool:
        """May ``fleet`` learn the holders of a closed item of ``owner``? Its own, or a friend's."""
        return self.linked(owner, fleet, now_ms, grace_ms)

    def offers(self, keeper: int, asker: int, now_ms: int, grace_ms: int) -> bool:
        return self.offer_bytes.get((keeper, asker), 0) > 0 and self.linked(keeper, asker, now_ms, grace_ms)

    def holds(self, fleet: int, item: str, now_ms: int, grace_ms: int) -> bool:
        sim = self.sim
        if any(sim.fleet_of[p] == fleet for p in sim.item_holders.get(item, ())):
            return True
        gone = self.copy_gone.get((fleet, item))
        return gone is not None and now_ms - gone <= grace_ms

    @property
    def items_by_infohash(self) -> dict:
        if self._items_seen != len(self.sim.items):
            self._by_ih = {infohash_of(name): it for name, it in self.sim.items.items()}
            self._items_seen = len(self.sim.items)
        return self._by_ih

    # --- what a node reads (agent.friends.FriendsManager.inputs) -----------------------------------
    def links_of(self, node) -> dict[str, fl.FriendLinkView]:
        out = {}
        for fid, link in node.doc.friends().items():
            parsed = fl.parse_link(fid, link.name, link.link_dict(), by=link.by, since_ms=link.at_ms)
            if parsed is not None:
                out[fid] = parsed
        return out

    def inputs(self, fleet: int, node) -> FriendInputs:
        now = self.sim.world.now_ms
        links = self.links_of(node)
        fresh = {self.ids[g]: v for g, (v, at) in sorted(self.held[fleet].items()) if now - at <= VIEW_TTL_MS}
        key = (fleet, tuple(sorted((f, link.custody_bytes, link.shares) for f, link in links.items())),
               self.views_version, tuple(sorted(fresh)))
        got = self._inputs.get(key)
        if got is None:
            if len(self._inputs) > 256:
                self._inputs.clear()
            got = self._inputs[key] = FriendInputs.build(links, fresh)
        return got

    # --- links (both gateways record them, as `friend add` does) -----------------------------------
    def link(self, a: int, b: int, now_ms: int, offer_a_to_b: int = 0, offer_b_to_a: int = 0) -> None:
        for me, them, offer in ((a, b, offer_a_to_b), (b, a, offer_b_to_a)):
            fields = fl.link_fields(side="inviter" if me == a else "invitee", nonce=f"sim-{min(a, b)}-{max(a, b)}-{now_ms}",
                                    their_gateways=[self.gateways[them]], their_addrs=(),
                                    our_gateways=[self.gateways[me]], custody_bytes=offer)
            self.sim.change(self.gateways[me], AddFriend(self.ids[them], tuple(sorted(fields.items()))), now_ms)
            self.offer_bytes[(me, them)] = offer
        pair = frozenset((a, b))
        self.link_since[pair] = now_ms
        self.link_ended.pop(pair, None)
        self.stats["links_made"] += 1

    def unlink(self, a: int, b: int, now_ms: int) -> None:
        for me, them in ((a, b), (b, a)):
            self.sim.change(self.gateways[me], RemoveFriend(self.ids[them]), now_ms)
        self.link_ended[frozenset((a, b))] = now_ms
        self.stats["links_ended"] += 1

    # --- every SYNC_MS: views cross, friend copies are kept or dropped -------------------------------
    def sync(self, now_ms: int) -> None:
        for g in range(self.n):
            for f in range(self.n):
                if f != g:
                    self._cross(g, f, now_ms)
        for keeper in range(self.n):
            self._keep_copies(keeper, now_ms)

    def _cross(self, issuer: int, audience: int, now_ms: int) -> None:
        sim = self.sim
        node_i, node_a = sim.nodes.get(self.gateways[issuer]), sim.nodes.get(self.gateways[audience])
        if node_i is None or node_a is None:
            return  # a gateway is down: no view this round; the held one ages out
        link_i = self.links_of(node_i).get(self.ids[audience])
        link_a = self.links_of(node_a).get(self.ids[issuer])
        if link_a is None or link_i is None:  # it does not ask, or hears "not linked": what it held goes
            if self.held[audience].pop(issuer, None) is not None:
                self.views_version += 1
            return
        mine = self.inputs(issuer, node_i)
        view = node_i.view()
        own_plans = node_i._shared_view().plans(now_ms, node_i.shared.custody)
        theirs = mine.views.get(self.ids[audience])
        shared = fv.build_view(view, issuer_fleet=self.ids[issuer], for_fleet=self.ids[audience],
                               shares=link_i.shares, issued_ms=now_ms,
                               asks=asks_for(view, own_plans, self.ids[audience], mine.links, mine.views),
                               custody_bytes=link_i.custody_bytes,
                               their_asks=[a.infohash for a in theirs.asks] if theirs else (), friends=mine.peers)
        raw = fv.sign_view(shared, self.keys[issuer])
        try:
            held = self.held[audience].get(issuer)
            opened = fv.newer(fv.open_view(raw, issuer_fleet=self.ids[issuer], for_fleet=self.ids[audience],
                                           signers=link_a.their_gateways), held[0] if held else None)
        except RemoteDataError:
            self.stats["views_refused"] += 1
            return
        self.held[audience][issuer] = (opened, now_ms)
        self.views_version += 1
        self.stats["views_delivered"] += 1
        sim.checker.view_delivered(issuer, audience, opened, now_ms)

    def _keep_copies(self, keeper: int, now_ms: int) -> None:
        sim = self.sim
        gw = sim.nodes.get(self.gateways[keeper])
        if gw is None:
            return
        links = self.links_of(gw)
        wanted: set[str] = set()
        for asker, (their_view, at) in sorted(self.held[keeper].items()):
            link = links.get(self.ids[asker])
            if link is None or now_ms - at > VIEW_TTL_MS:
                continue
            for ask in accepted_asks(their_view, link):
                item = ask.content
                if item not in sim.items:
                    continue
                wanted.add(item)
                self.asked_ms[(keeper, item)] = now_ms
                if (keeper, item) in self.copies or (keeper, item) in self.in_flight:
                    continue
                target = target_of(gw.view(), ask, RESERVE_BYTES)
                if target is None or target not in sim.nodes or item in sim.hosts[target].disk:
                    continue
                self.in_flight.add((keeper, item))
                delay = 100 + 1000 * ask.size_bytes // TRANSFER_BYTES_PER_S
                sim.at(now_ms + delay, "friend-copy",
                       lambda now, k=keeper, a=asker, t=target, i=item: self._landed(k, a, t, i, now))
        for (k, item), peer in sorted(self.copies.items()):
            if k == keeper and item not in wanted and now_ms - self.asked_ms.get((k, item), 0) > DROP_GRACE_MS:
                del self.copies[(k, item)]
                self.copy_gone[(k, item)] = now_ms
                self.stats["friend_copies_dropped"] += 1
                sim.change(peer, RemoveHolding(item), now_ms)

    def _landed(self, keeper: int, asker: int, target: str, item: str, now_ms: int) -> None:
        sim = self.sim
        self.in_flight.discard((keeper, item))
        it = sim.items.get(item)
        sources = [p for p in sim.item_holders.get(item, ()) if p in sim.nodes and sim.fleet_of[p] == asker]
        gw = sim.nodes.get(self.gateways[keeper])
        if gw is None or self.ids[asker] not in self.links_of(gw):
            return  # the link ended while copying: a copy for an ex-friend is abandoned
        if it is None or target not in sim.nodes or sim.hosts[target].full or not sources:
            return  # the keeper went down, or no holder of theirs was up to copy from: asked again next round
        sim.checker.repair_landed(item, target, now_ms)
        self.copies[(keeper, item)] = target
        self.copy_gone.pop((keeper, item), None)
        self.stats["friend_copies_made"] += 1
        sim.change(target, AddHolding(item, it.size_bytes, it.policy, custody=True, source="friend"), now_ms)

    def settled(self) -> tuple[bool, str]:
        """Liveness: every copy kept is kept for a linked fleet, and every public friend pin has a
        copy at a linked fleet that offers custody."""
        now = self.sim.world.now_ms
        sim = self.sim
        stray = [f"{item}@{k}" for (k, item) in sorted(self.copies)
                 if not self.linked(k, sim.items[item].fleet, now, 0)]
        missing = []
        for item in sorted(self.friend_pins):
            it = sim.items[item]
            if it.policy != "public" or item not in sim.pins:
                continue
            if not any(self.offers(k, it.fleet, now, 0) and self.holds(k, item, now, 0)
                       for k in range(self.n) if k != it.fleet):
                missing.append(item)
        ok = not stray and not missing
        return ok, ("friend copies only at linked fleets; friend pins held by a linked friend" if ok else
                    f"copies kept for unlinked fleets: {stray[:5]}; friend pins with no linked friend's copy: "
                    f"{missing[:5]}")

    def friend_answer(self, answer: list, now_ms: int) -> None:
        """Counts answers naming a real friend fleet's holders, and when the first came (figures)."""
        if any(a.provenance == "friend" and a.fleet in self.number for a in answer):
            self.stats["friend_answers"] += 1
            if self.stats["first_friend_answer_ms"] is None:
                self.stats["first_friend_answer_ms"] = now_ms

"""peers_for across fleet boundaries: generated fleets, holdings, policies and link graphs.

Every fleet builds, signs and serves the view the production path builds (agent.policy.friend_view:
``build_view`` → ``sign_view``; the receiver ``open_view`` → ``FriendInputs.build`` → ``peers_for``),
two rounds so that what friends say of an item can close it further. A rogue, unlinked fleet also
hands every fleet a correctly signed view made out to it. Then, for every fleet and every item,
each peer in the answer is traced back to the fleet that owns its address, and checked against an
oracle written here from the raw holdings (not from the code under test):

* nothing of a fleet we are not linked with, ever;
* an item its owner's holdings make ``search_only`` never leaves the owner's fleet; ``f2f_only``
  reaches only a linked fleet the owner shares ``f2f_only`` with; nothing crosses a link that
  shares neither policy;
* a copy a fleet keeps for one friend (holding source ``private``) reaches only the fleet that asked;
* the asker's own gates: search_only answers nothing, f2f_only no dht or tracker peer.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.friend_inputs import FriendInputs
from agent.policy import ExternalPeer, FleetView, HoldingView, HostView, peers_for
from agent.policy import friend_view as fv
from agent.policy.friend_links import FriendLinkView
from crdt.identity import NodeKey

FLEETS_MAX = 4
HOSTS_PER_FLEET = 3
ITEMS = [bytes([i]).hex() * 20 for i in range(1, 6)]
ROGUE = "fleet-rogue"
NOW_MS = 1_800_000_000_000
RANK = {"public": 0, "f2f_only": 1, "search_only": 2}
KEYS = {f"fleet-{f}": [NodeKey(bytes([f + 1, h + 1]) * 16) for h in range(HOSTS_PER_FLEET)] for f in range(FLEETS_MAX)}
KEYS[ROGUE] = [NodeKey(bytes([99, h + 1]) * 16) for h in range(HOSTS_PER_FLEET)]
SHARE_SETS = [frozenset(), frozenset({"public"}), frozenset({"f2f_only"}), frozenset({"public", "f2f_only"})]


def addr_of(fleet: str, host: int) -> str:
    n = 250 if fleet == ROGUE else int(fleet.rsplit("-", 1)[1]) + 1
    return f"10.{n}.0.{host + 1}"


def oracle_policy(holdings: list[HoldingView]) -> str | None:
    """The most closed policy the owner's own holdings give the item (None: it holds none)."""
    said = []
    for h in holdings:
        if h.source == "public":
            said.append(h.policy or "public")
        elif h.policy is None:
            said.append("search_only")  # a private source is closed until opened
        elif h.source == "private_tracker" and h.policy == "public":
            said.append("f2f_only")  # at most f2f_only, whatever it asks for
        else:
            said.append(h.policy)
    return max(said, key=RANK.__getitem__) if said else None


holding_st = st.tuples(st.integers(0, HOSTS_PER_FLEET - 1), st.sampled_from(ITEMS), st.booleans(),
                       st.sampled_from([None, "public", "f2f_only", "search_only"]),
                       st.sampled_from(["public", "private_tracker", "private"]))


@st.composite
def world_st(draw):
    n = draw(st.integers(2, FLEETS_MAX))
    fleets = [f"fleet-{i}" for i in range(n)] + [ROGUE]
    holdings: dict[str, list[HoldingView]] = {}
    for f in fleets:
        rows = []
        for i, (host, ih, complete, policy, source) in enumerate(draw(st.lists(holding_st, max_size=8))):
            if source == "private_tracker" and policy == "public":
                policy = "f2f_only"  # records refuse the combination (crdt.records): never stored
            rows.append(HoldingView(KEYS[f][host].peer_id, f"c{i}", ih, 1000, complete, policy, source))
        holdings[f] = rows
    pairs = list(itertools.combinations(fleets[:-1], 2))
    linked = [p for p in pairs if draw(st.booleans())]
    shares = {(a, b): draw(st.sampled_from(SHARE_SETS)) for a, b in linked for a, b in ((a, b), (b, a))}
    asks = {k: frozenset(draw(st.lists(st.sampled_from(ITEMS), max_size=3))) for k in shares}
    external = draw(st.lists(st.sampled_from(ITEMS), max_size=3))
    return fleets, holdings, shares, asks, external


def view_of(fleet: str, holdings: list[HoldingView]) -> FleetView:
    hosts = [HostView(k.peer_id, f"{fleet}-h{i}", "server", "alive", torrent_port=6881,
                      underlay_addrs=(addr_of(fleet, i),)) for i, k in enumerate(KEYS[fleet])]
    return FleetView.build(hosts, holdings)


def link(me: str, them: str, shares: dict) -> FriendLinkView:
    return FriendLinkView(them, them, "inviter", "00" * 16, (KEYS[them][0].peer_id,), (), (KEYS[me][0].peer_id,),
                          shares[(me, them)], 0)


@settings(max_examples=150, deadline=None)
@given(world_st())
def test_peers_for_never_crosses_a_fleet_boundary_the_policy_forbids(world):
    fleets, holdings, shares, asks, external = world
    views = {f: view_of(f, holdings[f]) for f in fleets}
    links = {f: {t: link(f, t, shares) for (a, t) in shares if a == f} for f in fleets}
    inputs = {f: FriendInputs() for f in fleets}
    rogue_peers: dict[str, dict] = {}
    for _round in range(2):  # the second round: what friends say closes items further
        served: dict[str, dict[str, bytes]] = {f: {} for f in fleets}
        for issuer in fleets:
            audiences = list(links[issuer]) if issuer != ROGUE else [f for f in fleets if f != ROGUE]
            for audience in audiences:
                share = shares[(issuer, audience)] if issuer != ROGUE else frozenset({"public", "f2f_only"})
                v = fv.build_view(views[issuer], issuer_fleet=issuer, for_fleet=audience, shares=share,
                                  issued_ms=NOW_MS, their_asks=asks.get((audience, issuer), ()),
                                  friends=inputs[issuer].peers)
                served[audience][issuer] = fv.sign_view(v, KEYS[issuer][0])
        for f in fleets:
            opened = {}
            for issuer, raw in served[f].items():
                signers = [KEYS[issuer][0].peer_id]
                opened[issuer] = fv.open_view(raw, issuer_fleet=issuer, for_fleet=f, signers=signers)
            inputs[f] = FriendInputs.build(links[f], opened)  # the rogue's view is offered, never linked
            rogue_peers[f] = fv.friend_peers(opened[ROGUE]) if ROGUE in opened else {}

    owner_of = {addr_of(f, h): f for f in fleets for h in range(HOSTS_PER_FLEET)}
    for me in fleets[:-1]:
        for ih in ITEMS:
            ext = [ExternalPeer("198.51.100.7", 6881, "dht")] if ih in external else []
            # Also handed the rogue's holders (a cache that outlived its link): peers_for drops them.
            friends = (*inputs[me].peers_of(ih), *rogue_peers[me].get(ih, ()))
            ans = peers_for(views[me], ih, friends=friends, friend_fleets=frozenset(links[me]), external=ext)
            mine = oracle_policy([h for h in holdings[me] if h.infohash == ih])
            if mine == "search_only":
                assert ans.peers == (), (me, ih, ans)
            if ans.policy != "public" or mine in ("f2f_only", "search_only"):
                assert not {p.source for p in ans.peers} & {"dht", "tracker"}, (me, ih, ans)
            for p in ans.peers:
                if p.source in ("dht", "tracker"):
                    continue
                owner = owner_of[p.addr]
                if owner == me:
                    assert p.source in ("fleet", "seedbox")
                    continue
                assert p.source == "friend" and p.host == owner
                assert owner in links[me] and owner != ROGUE, f"{me} got a peer of unlinked {owner}"
                theirs = [h for h in holdings[owner] if h.infohash == ih]
                truth = oracle_policy(theirs)
                assert truth in ("public", "f2f_only"), f"{owner}'s {truth} item {ih[:6]} reached {me}"
                assert shares[(owner, me)], "a link sharing nothing let an item through"
                if truth == "f2f_only":
                    assert "f2f_only" in shares[(owner, me)]
                held_by_p = [h for h in theirs if h.peer_id == p.peer_id and h.complete]
                assert held_by_p, "a friend peer that holds no complete copy"
                if all(h.source == "private" for h in held_by_p):
                    assert ih in asks.get((me, owner), ()), "a copy kept for another friend leaked"

"""Cross-fleet custody (agent.policy.friend_custody): what counts, what is asked, what is taken.

Generated fleets (tests.policy.strategies), pins that may or may not say ``--friends``, friend
links with random shares and offers, and friends' views listing random items. The oracle reads
the raw inputs, not the code under test.
"""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.policy import FleetView, custody
from agent.policy.friend_custody import accepted_asks, asks_for, count_friends, target_of
from agent.policy.friend_links import FriendLinkView
from agent.policy.friend_view import Ask, SharedView, ViewHolder, ViewItem
from tests.policy.strategies import INFOHASHES, NOW_MS, PEERS, state_st

FLEETS = ("fleet-a", "fleet-b", "fleet-c")
SHARE_SETS = [frozenset(), frozenset({"public"}), frozenset({"f2f_only"}), frozenset({"public", "f2f_only"})]
GB = 1024**3


def link(fleet: str, shares: frozenset, custody_bytes: int) -> FriendLinkView:
    return FriendLinkView(fleet, fleet, "inviter", "00" * 16, (PEERS[40],), (), (PEERS[41],), shares, custody_bytes)


@st.composite
def friends_st(draw, infohashes: tuple[str, ...] = ()):
    """Links and views; ``infohashes``: items of ours the views mostly list (so copies may count)."""
    pool = st.sampled_from(list(infohashes)) if infohashes else st.sampled_from(INFOHASHES)
    links, views = {}, {}
    for i, f in enumerate(FLEETS):
        if not draw(st.booleans()):
            continue
        links[f] = link(f, draw(st.sampled_from(SHARE_SETS)), draw(st.sampled_from([0, GB, 300 * GB])))
        if draw(st.integers(0, 3)) == 0:
            continue  # linked, but no fresh view (its copies must not count)
        holder = ViewHolder(PEERS[42 + i], (f"10.9{i}.0.1",), 6881)
        items = tuple(ViewItem(ih, 1000, draw(st.sampled_from(["public", "f2f_only"])), (0,))
                      for ih in sorted(draw(st.sets(st.one_of(pool, st.sampled_from(INFOHASHES)), max_size=6))))
        views[f] = SharedView(f, "us", NOW_MS, (holder,), items, custody_bytes=draw(st.sampled_from([0, GB, 300 * GB])))
    # A view of a fleet we are not linked with (a cache that outlived its link) sometimes too.
    if draw(st.booleans()):
        views["fleet-x"] = SharedView("fleet-x", "us", NOW_MS, (ViewHolder(PEERS[47], ("10.99.0.1",), 6881),),
                                      tuple(ViewItem(ih, 1000, "public", (0,)) for ih in INFOHASHES[:6]),
                                      custody_bytes=300 * GB)
    return links, views


def with_friend_pins(state: dict, flags: list[bool]) -> FleetView:
    pins = [dataclasses.replace(p, friends=f) for p, f in zip(state["pins"], flags + [False] * len(state["pins"]),
                                                                strict=False)]
    return FleetView.build(**{**state, "pins": pins})


def shareable_oracle(view: FleetView, plan) -> str | None:
    pin = view.pins[plan.content]
    if not pin.friends or plan.infohash is None:
        return None
    holds = [h for per in view.by_infohash.get(plan.infohash, {}).values() for h in per.values()]
    if any(h.source == "private_tracker" for h in view.holdings_for(plan.content).values()):
        return None
    said = []
    for h in holds:
        if h.source == "public":
            said.append(h.policy or "public")
        elif h.policy is None:
            said.append("search_only")
        elif h.source == "private_tracker" and h.policy == "public":
            said.append("f2f_only")
        else:
            said.append(h.policy)
    rank = {"public": 0, "f2f_only": 1, "search_only": 2}
    policy = max(said, key=rank.__getitem__) if said else "public"
    return policy if policy != "search_only" else None


@settings(max_examples=200, deadline=None)
@given(state_st(), st.lists(st.booleans(), max_size=8), st.data())
def test_friend_copies_count_only_where_the_pin_and_the_link_allow(state, flags, data):
    view = with_friend_pins(state, flags)
    own = custody.plan_all(view, NOW_MS)
    links, views = data.draw(friends_st(tuple(p.infohash for p in own if p.infohash)))
    counted = count_friends(view, own, links, views)
    assert [p.content for p in counted] == [p.content for p in own]
    for before, after in zip(own, counted, strict=True):
        policy = shareable_oracle(view, before)
        if not after.friend_copies:
            assert after == before  # nothing counted: the plan is untouched
            continue
        assert policy is not None, f"{after.content}: friend copies counted for a pin that may not count them"
        for f in after.friend_copies:
            assert f in links and f in views and policy in links[f].shares
            assert views[f].item(before.infohash) is not None
        if after.status == "ok" and before.status == "under":
            assert before.copies + len(after.friend_copies) >= before.min_copies
        assert len(after.repairs) <= len(before.repairs)

    for friend in FLEETS:
        asks = asks_for(view, own, friend, links, views)
        assert list(asks) == sorted(asks, key=lambda a: a.infohash)
        if friend not in links:
            assert asks == ()
        for a in asks:
            plan = next(p for p in own if p.infohash == a.infohash and p.content == a.content)
            assert shareable_oracle(view, plan) == a.policy and a.policy in links[friend].shares
            assert plan.holders, "asked a friend to copy what no host of ours holds"
            theirs = views.get(friend)
            already = theirs is not None and theirs.item(a.infohash) is not None
            assert already or (theirs is not None and theirs.custody_bytes >= a.size_bytes)


ask_st = st.builds(Ask, st.sampled_from(INFOHASHES), st.integers(1, 400 * GB), st.sampled_from(["public", "f2f_only"]),
                   st.sampled_from(["c1", "c2"]))


@given(st.lists(ask_st, max_size=12, unique_by=lambda a: a.infohash), st.sampled_from(SHARE_SETS),
       st.sampled_from([0, 1, GB, 300 * GB]))
def test_accepted_asks_fit_the_offer_and_what_we_share(asks, shares, offer):
    theirs = SharedView("fleet-a", "us", NOW_MS, (), (), tuple(sorted(asks, key=lambda a: a.infohash)))
    taken = accepted_asks(theirs, link("fleet-a", shares, offer))
    assert sum(a.size_bytes for a in taken) <= offer
    assert all(a.policy in shares and a in asks for a in taken)
    assert list(taken) == sorted(taken, key=lambda a: a.infohash)
    # Greedy in infohash order: every ask left out would not have fitted, or is not shared.
    used = 0
    for a in sorted(asks, key=lambda a: a.infohash):
        if a in taken:
            used += a.size_bytes
        elif a.policy in shares:
            assert used + a.size_bytes > offer
    assert accepted_asks(None, link("fleet-a", shares, offer)) == ()
    assert accepted_asks(theirs, None) == ()


@given(state_st(), ask_st)
def test_one_keeper_for_an_ask_a_live_storage_host_with_room(state, ask):
    view = FleetView.build(**state)
    keeper = target_of(view, ask, reserve_bytes=GB)
    if keeper is None:
        return
    host = view.hosts[keeper]
    assert not host.revoked and view.is_live(keeper)
    held = view.holders_of_infohash(ask.infohash).get(keeper)
    if held is None:  # a new copy: a storage host with room for it and the reserve
        assert host.disk_free_bytes is not None and host.disk_free_bytes >= ask.size_bytes + GB
        assert host.host_class != "portable"
    assert target_of(view, ask, reserve_bytes=GB) == keeper  # every member names the same one


def test_a_private_trackers_item_never_counts_nor_asks_friends_even_with_friends_on():
    from agent.policy import HoldingView, HostView, PinView

    ih = INFOHASHES[0]
    hosts = [HostView(PEERS[0], "h0", "server", "alive", disk_free_bytes=GB, torrent_port=6881)]
    both = frozenset({"public", "f2f_only"})
    links = {"fleet-a": link("fleet-a", both, 300 * GB)}
    views = {"fleet-a": SharedView("fleet-a", "us", NOW_MS, (ViewHolder(PEERS[42], ("10.90.0.1",), 6881),),
                                   (ViewItem(ih, 1000, "f2f_only", (0,)),), custody_bytes=300 * GB)}
    for source, counts in (("private_tracker", False), ("public", True)):
        policy = "f2f_only"
        view = FleetView.build(hosts, [HoldingView(PEERS[0], "film", ih, 1000, True, policy, source)],
                               [PinView("film", 2, friends=True)], friend_slots=1)
        own = custody.plan_all(view, NOW_MS)
        (plan,) = count_friends(view, own, links, views)
        assert (plan.friend_copies == ("fleet-a",)) is counts and (plan.status == "ok") is counts
        asked = asks_for(view, own, "fleet-a", links, views)
        assert [a.infohash for a in asked] == ([ih] if counts else [])

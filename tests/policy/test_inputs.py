"""Every policy input validates itself: nonsense gives InvalidInput with a hint, never a crash."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.policy import (
    CustodyConfig,
    ExternalPeer,
    FleetView,
    FriendPeer,
    HoldingView,
    HostView,
    IntentView,
    Override,
    PinView,
    ReaperThresholds,
    TorrentSample,
    assign_duties,
    plan_all,
)
from agent.policy.classes import HOST_CLASSES, SERVICE_PRESETS, host_weight, uptime_factor
from tests.policy.strategies import INFOHASHES, PEERS
from tva.errors import InvalidInput

P, IH = PEERS[0], INFOHASHES[0]


def host(**kw) -> HostView:
    base = {"peer_id": P, "name": "nas", "host_class": "nas", "liveness": "alive"}
    return HostView(**{**base, **kw})


def holding(**kw) -> HoldingView:
    base = {"peer_id": P, "content_id": "film", "infohash": IH, "size_bytes": 1, "complete": True}
    return HoldingView(**{**base, **kw})


NONSENSE = [
    (host, {"host_class": "toaster"}, "host_class"),
    (host, {"liveness": "zombie"}, "liveness"),
    (host, {"peer_id": "not/a/peer id"}, "peer id"),
    (host, {"peer_id": ""}, "peer id"),
    (host, {"name": ""}, "name"),
    (host, {"name": "a\x00b"}, "control"),
    (host, {"disk_free_bytes": -1}, "disk_free_bytes"),
    (host, {"uptime_score": 1.5}, "uptime_score"),
    (host, {"uptime_score": float("nan")}, "uptime_score"),
    (host, {"services": frozenset({"teleport"})}, "service"),
    (host, {"services": "storage"}, "services"),
    (host, {"overlay_ipv4": "fd00::1"}, "IPv4"),
    (host, {"overlay_ipv6": "10.0.0.1"}, "IPv6"),
    (host, {"overlay_ipv4": "10.0.0.300"}, "not an IP"),
    (host, {"torrent_port": 0}, "torrent_port"),
    (host, {"torrent_port": 70000}, "torrent_port"),
    (host, {"revoked": "no"}, "revoked"),
    (holding, {"size_bytes": -5}, "size_bytes"),
    (holding, {"size_bytes": 1.5}, "size_bytes"),
    (holding, {"size_bytes": True}, "size_bytes"),
    (holding, {"infohash": "abc"}, "40 hex"),
    (holding, {"infohash": "z" * 40}, "not hex"),
    (holding, {"policy": "open"}, "policy"),
    (holding, {"source": "usenet"}, "source"),
    (holding, {"complete": 1}, "complete"),
    (holding, {"content_id": "x" * 300}, "characters"),
    (lambda **kw: PinView(**{"content": "film", "min_copies": 2, **kw}), {"min_copies": 0}, "min_copies"),
    (lambda **kw: PinView(**{"content": "film", "min_copies": 2, **kw}), {"max_copies": 1}, "max_copies"),
    (lambda **kw: PinView(**{"content": "film", "min_copies": 2, **kw}), {"min_copies": 1000}, "min_copies"),
    (lambda **kw: IntentView(**{"content": "film", "baton_peer": P, "target_peer": P, "lease_until_ms": 1, **kw}),
     {"lease_until_ms": -1}, "lease_until_ms"),
    (lambda **kw: Override(P, **kw), {"host_class": "mainframe"}, "host_class"),
    (lambda **kw: Override(P, **kw), {"duty_prefs": (("janitor", "prefer"),)}, "duty"),
    (lambda **kw: Override(P, **kw), {"duty_prefs": (("research", "maybe"),)}, "preference"),
    (lambda **kw: Override(P, **kw), {"duty_prefs": (("research", "prefer"), ("research", "never"))}, "twice"),
    (lambda **kw: Override(P, **kw), {"duty_prefs": (("research",),)}, "pair"),
    (lambda **kw: FriendPeer(**{"fleet_id": "f", "peer_id": P, "addr": "10.1.1.1", "port": 1, "infohash": IH, **kw}),
     {"addr": "example.com"}, "not an IP"),
    (lambda **kw: ExternalPeer(**{"addr": "1.2.3.4", "port": 1, **kw}), {"source": "pex"}, "source"),
    (lambda **kw: CustodyConfig(**kw), {"lease_ms": -1}, "lease_ms"),
]


@pytest.mark.parametrize(("make", "bad", "words"), NONSENSE, ids=[f"{i}-{next(iter(c[1]))}" for i, c in enumerate(NONSENSE)])
def test_nonsense_gives_a_clear_error_with_a_hint(make, bad, words):
    with pytest.raises(InvalidInput) as e:
        make(**bad)
    assert words.lower() in e.value.message.lower()
    assert e.value.hint


def test_fleet_view_refuses_duplicates_and_impossible_pins():
    with pytest.raises(InvalidInput, match="two host cards"):
        FleetView.build([host(), host(name="again")])
    with pytest.raises(InvalidInput, match="listed twice"):
        FleetView.build([host()], [holding(), holding(size_bytes=2)])
    with pytest.raises(InvalidInput, match="two pins"):
        FleetView.build([host(), host(peer_id=PEERS[1])], pins=[PinView("film", 1), PinView("film", 2)])
    with pytest.raises(InvalidInput, match="two overrides"):
        FleetView.build([host()], overrides=[Override(P), Override(P)])
    with pytest.raises(InvalidInput, match="usable hosts"):  # N > hosts
        FleetView.build([host()], pins=[PinView("film", 2)])
    with pytest.raises(InvalidInput):
        FleetView.build([{"peer_id": P}])  # type: ignore[list-item]
    with pytest.raises(InvalidInput):
        FleetView.build("hosts")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        FleetView.build([host()], revoked=["not a peer!"])


def test_normalisation_makes_equal_values_equal():
    assert holding(infohash=IH.upper()) == holding()
    assert PinView(IH.upper(), 1).content == IH
    assert host(overlay_ipv6="FD00:0:0::1").overlay_ipv6 == "fd00::1"
    assert host().services == SERVICE_PRESETS["nas"]
    assert Override(P, duty_prefs={"research": "never", "reaper": "avoid"}).duty_prefs == \
        (("reaper", "avoid"), ("research", "never"))


def test_weights_are_documented_values():
    assert uptime_factor(0.0) == 0.5 and uptime_factor(1.0) == 1.0 and uptime_factor(0.74) == uptime_factor(0.5)
    for cls in HOST_CLASSES:
        assert 0 < host_weight(cls, 0.0) < host_weight(cls, 1.0)


junk = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=70), st.binary(max_size=20), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.frozensets(st.text(max_size=8), max_size=3),
    st.tuples(st.text(max_size=8), st.text(max_size=8)),
)


def _maybe(valid):
    return st.one_of(st.just(valid), junk)


CONSTRUCTORS = {
    HostView: dict(peer_id=P, name="h", host_class="nas", liveness="alive", services=None, disk_free_bytes=1,
                   uptime_score=0.5, overlay_ipv4="10.0.0.1", overlay_ipv6=None, torrent_port=1, revoked=False),
    HoldingView: dict(peer_id=P, content_id="c", infohash=IH, size_bytes=1, complete=True, policy=None, source="public"),
    PinView: dict(content="c", min_copies=1, max_copies=None),
    IntentView: dict(content="c", baton_peer=P, target_peer=P, lease_until_ms=0),
    Override: dict(peer_id=P, host_class=None, services=None, duty_prefs=()),
    FriendPeer: dict(fleet_id="f", peer_id=P, addr="10.0.0.1", port=1, infohash=IH, policy="public"),
    ExternalPeer: dict(addr="1.2.3.4", port=1, source="dht"),
    TorrentSample: dict(at_ms=0, progress=0.5, peers=0, seeds=0, down_rate_bps=0, up_rate_bps=0, error=None,
                        tracker_ok=None, availability=None),
    ReaperThresholds: dict(stalled_after_ms=1, dead_after_ms=2, rate_floor_bps=0, peers_presence_min=0.5),
    CustodyConfig: dict(lease_ms=1, reserve_bytes=0),
}


@pytest.mark.parametrize("cls", list(CONSTRUCTORS), ids=lambda c: c.__name__)
@given(data=st.data())
def test_garbage_in_any_field_is_refused_cleanly(cls, data):
    fields = CONSTRUCTORS[cls]
    kwargs = {k: data.draw(_maybe(v), label=k) for k, v in fields.items()}
    try:
        value = cls(**kwargs)
    except InvalidInput as e:
        assert e.hint
        return
    # Accepted: it must then be usable (hashable, comparable) like any valid value.
    assert value == cls(**kwargs) and hash(value) == hash(cls(**kwargs))


@given(st.lists(st.one_of(junk, st.just(host())), max_size=3), st.lists(junk, max_size=2))
def test_garbage_collections_never_crash_the_view(hosts, holdings):
    try:
        view = FleetView.build(hosts, holdings)
    except InvalidInput:
        return
    assert assign_duties(view) and plan_all(view, 0) == ()

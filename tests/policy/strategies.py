"""Hypothesis strategies for random fleets (shared by the policy tests)."""

from __future__ import annotations

from hashlib import blake2b

from hypothesis import strategies as st

from agent.policy import (
    FleetView,
    FriendPeer,
    HoldingView,
    HostView,
    IntentView,
    Override,
    PinView,
)
from agent.policy.classes import (
    CONTENT_SOURCES,
    DUTIES,
    DUTY_PREFS,
    HOST_CLASSES,
    LIVENESS,
    POLICIES,
    SERVICES,
)
from crdt.identity import peer_id_from_public

NOW_MS = 1_800_000_000_000
PEERS = [peer_id_from_public(blake2b(b"peer%d" % i, digest_size=32).digest()) for i in range(48)]
CONTENTS = [f"content-{i}" for i in range(10)]
INFOHASHES = [blake2b(b"ih%d" % i, digest_size=20).hexdigest() for i in range(len(CONTENTS) + 4)]
GB = 1024**3

# Strategies are built once here: building them inside composites costs hypothesis a
# validation pass per draw, which made generation ~10× slower than the code under test.
liveness_st = st.one_of(st.just("alive"), st.sampled_from(LIVENESS))
_class = st.sampled_from(HOST_CLASSES)
_services = st.one_of(st.none(), st.frozensets(st.sampled_from(SERVICES)))
_disk = st.one_of(st.none(), st.integers(0, 4000 * GB))
_uptime = st.floats(0.0, 1.0)
_v6 = st.booleans()
_port = st.one_of(st.none(), st.integers(1024, 65535))
_one_in_ten = st.integers(0, 9)
_content_index = st.integers(0, len(CONTENTS) - 1)
_any_infohash = st.sampled_from(INFOHASHES)
_size = st.integers(0, 200 * GB)
_policy = st.one_of(st.none(), st.sampled_from(POLICIES))
_source = st.sampled_from(CONTENT_SOURCES)
_pin_keys = st.lists(st.sampled_from(CONTENTS + INFOHASHES[:3]), max_size=8, unique=True)
_prefs = st.dictionaries(st.sampled_from(DUTIES), st.sampled_from(DUTY_PREFS), max_size=2)
# Mostly ordinary leases; sometimes one far past the lease maximum (a writer overstepping).
_lease_delta = st.one_of(st.integers(-60_000, 60_000), st.integers(10**9, 10**12))


@st.composite
def host_st(draw, peer_id: str, index: int) -> HostView:
    cls = draw(_class)
    live = draw(liveness_st)
    services = draw(_services)
    return HostView(
        peer_id=peer_id,
        name=f"host{index}",
        host_class=cls,
        liveness=live,
        services=services,
        disk_free_bytes=draw(_disk),
        uptime_score=draw(_uptime),
        overlay_ipv4=f"10.77.0.{index + 1}",
        overlay_ipv6=f"fd00::{index + 1:x}" if draw(_v6) else None,
        torrent_port=draw(_port),
        revoked=live == "revoked" or draw(_one_in_ten) == 0,
    )


@st.composite
def hosts_st(draw, n_min: int = 1, n_max: int = 10) -> list[HostView]:
    n = draw(st.integers(n_min, n_max))
    ids = draw(st.lists(st.sampled_from(PEERS), min_size=n, max_size=n, unique=True))
    return [draw(host_st(pid, i)) for i, pid in enumerate(ids)]


@st.composite
def holding_st(draw, peer_ids: list[str]) -> HoldingView:
    c = draw(_content_index)
    # Mostly the content's own infohash; sometimes another one (a second release of it).
    ih = draw(_any_infohash) if draw(_one_in_ten) < 3 else INFOHASHES[c]
    return HoldingView(
        peer_id=draw(st.sampled_from(peer_ids)),
        content_id=CONTENTS[c],
        infohash=ih,
        size_bytes=draw(_size),
        complete=draw(_v6),
        policy=draw(_policy),
        source=draw(_source),
        custody=draw(_v6),
    )


@st.composite
def state_st(draw, n_min: int = 1, n_max: int = 10, holdings_max: int = 40) -> dict:
    """Inputs of ``FleetView.build`` for a random, valid fleet."""
    hosts = draw(hosts_st(n_min, n_max))
    ids = [h.peer_id for h in hosts]
    stranger = [p for p in PEERS if p not in ids][:1]  # a holder whose card has not arrived
    raw = draw(st.lists(holding_st(ids + stranger), max_size=holdings_max))
    holdings = list({(h.peer_id, h.content_id): h for h in raw}.values())
    revoked = draw(st.lists(st.sampled_from(ids), max_size=2, unique=True))
    overrides = []
    for pid in draw(st.lists(st.sampled_from(ids), max_size=3, unique=True)):
        overrides.append(Override(
            peer_id=pid,
            host_class=draw(_class) if draw(_v6) else None,
            services=draw(_services),
            duty_prefs=tuple(draw(_prefs).items()),
        ))
    usable = FleetView.build(hosts, holdings, (), (), overrides, revoked).usable_host_count()
    pins = []
    if usable:
        keys = draw(_pin_keys)
        for k in keys:
            lo = draw(st.integers(1, min(usable, 4)))
            hi = draw(st.one_of(st.none(), st.integers(lo, lo + 3)))
            pins.append(PinView(k, lo, hi))
    intents = []
    if pins:
        for _ in range(draw(st.integers(0, 4))):
            intents.append(IntentView(
                content=draw(st.sampled_from([p.content for p in pins])),
                baton_peer=draw(st.sampled_from(ids)),
                target_peer=draw(st.sampled_from(ids)),
                lease_until_ms=NOW_MS + draw(_lease_delta),
            ))
    return {"hosts": hosts, "holdings": holdings, "pins": pins, "intents": intents,
            "overrides": overrides, "revoked": revoked}


def build(state: dict) -> FleetView:
    return FleetView.build(**state)


@st.composite
def friend_peers_st(draw, fleets: tuple[str, ...] = ("fleet-a", "fleet-b", "fleet-x")) -> list[FriendPeer]:
    out = []
    for i in range(draw(st.integers(0, 6))):
        out.append(FriendPeer(
            fleet_id=draw(st.sampled_from(fleets)),
            peer_id=draw(st.sampled_from(PEERS)),
            addr=f"10.99.{i}.{draw(st.integers(1, 3))}",
            port=draw(st.integers(1024, 1030)),
            infohash=draw(st.sampled_from(INFOHASHES[:4])),
            policy=draw(st.sampled_from(POLICIES)),
        ))
    return out

"""Admission on the inviting side: the invite, the joiner's own signed card, single use."""

from __future__ import annotations

import pytest

from agent import rpc
from agent.config import Config
from agent.runtime import Agent
from agent.state import NodeState
from agent.store import StateStore
from crdt import records
from crdt.feedset import FeedSet, OwnFeed
from crdt.identity import NodeKey
from mesh import invites
from mesh.memory_transport import MemoryNetwork
from tva.errors import InviteError, RemoteDataError

NOW = 1_900_000_000_000
JOINER = NodeKey(bytes([7]) * 32)
OTHER = NodeKey(bytes([8]) * 32)


@pytest.fixture
def founder(tmp_path):
    cfg = Config(state_dir=tmp_path / "s", host_name="founder", wg_backend="off", torrent_engine="off")
    state = NodeState.found(StateStore(cfg.state_dir), fleet_name="home",
                            card=records.HostCard(name="founder", host_class="server"), now_ms=NOW)
    return Agent(cfg, state, MemoryNetwork().transport(state.peer_id), clock_ms=lambda: NOW)


def _token(agent: Agent, *, ttl_ms: int = 60_000, now: int = NOW, nonce: bytes = b"x" * 16) -> str:
    st = agent.state
    return invites.issue_invite(key=st.key, fleet_id=st.fleet.fleet_id, fleet_name=st.fleet.fleet_name,
                                psk=st.fleet.psk, bootstrap=["/ip4/127.0.0.1/tcp/1/p2p/" + st.peer_id],
                                role="member", ttl_ms=ttl_ms, nonce=nonce, now_ms=now)


def _card_delta(key: NodeKey, name: str = "joiner") -> bytes:
    own = OwnFeed(key, FeedSet())
    own.put(records.CARD_KEY, records.encode_card(records.HostCard(name=name, host_class="nas")))
    return own.commit(NOW)


def test_a_valid_invite_admits_once_and_records_the_nonce(founder):
    token = _token(founder)
    reply = founder._admit(JOINER.peer_id, {"invite": token, "card_delta": _card_delta(JOINER)})
    doc, deltas = rpc.decode_join_reply(reply)
    assert JOINER.peer_id in founder.state.members()
    assert founder.state.doc.redeemed() == {(b"x" * 16).hex(): JOINER.peer_id}
    assert founder.state.doc.admissions()[JOINER.peer_id].name == "joiner"
    assert doc and deltas  # the joiner gets the document and every feed in one reply
    with pytest.raises(InviteError, match="already redeemed"):
        founder._admit(OTHER.peer_id, {"invite": token, "card_delta": _card_delta(OTHER)})
    assert OTHER.peer_id not in founder.state.members()


def test_a_card_signed_by_someone_else_is_refused_and_nothing_is_admitted(founder):
    with pytest.raises(RemoteDataError, match="another host"):
        founder._admit(JOINER.peer_id, {"invite": _token(founder), "card_delta": _card_delta(OTHER)})
    assert JOINER.peer_id not in founder.state.members()
    assert founder.state.doc.redeemed() == {}
    assert records.cards(founder.state.feeds).keys() == {founder.state.peer_id}


def test_an_expired_invite_is_refused(founder):
    token = _token(founder, ttl_ms=1000, now=NOW - 10_000)
    with pytest.raises(InviteError, match="expired"):
        founder._admit(JOINER.peer_id, {"invite": token, "card_delta": _card_delta(JOINER)})
    assert JOINER.peer_id not in founder.state.members()


async def test_refusals_travel_back_as_data(founder):
    query = rpc.encode_query("join", {"invite": "tva1:garbage", "card_delta": _card_delta(JOINER)})
    reply = rpc.decode_reply(await founder._handle_request(JOINER.peer_id, query))
    assert "corrupt" in reply["error"]
    reply = rpc.decode_reply(await founder._handle_request(JOINER.peer_id, b"\x00garbage"))
    assert reply["error"]
    # A non-member may only ask to join.
    reply = rpc.decode_reply(await founder._handle_request(
        JOINER.peer_id, rpc.encode_query("peers_for", {"infohash": "ab" * 20})))
    assert "members" in reply["error"]

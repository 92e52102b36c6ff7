"""Admission and the fleet key on the join listener (agent.joining): invite, the joiner's own signed
card, single use, the key sealed to the joiner, rekey for members only, rate limits, garbage."""

from __future__ import annotations

import pytest
import trio

from agent import peer_queries, rpc, secrets
from agent.config import Config
from agent.joining import encode_join_query, fleet_key_from
from agent.runtime import Agent
from agent.state import NodeState
from agent.store import StateStore
from crdt import records
from crdt.feedset import FeedSet, OwnFeed
from crdt.fleetdoc import FleetDoc
from crdt.identity import NodeKey
from mesh import invites
from mesh.memory_transport import MemoryNetwork
from tva.errors import DecodeError, InviteError, RemoteDataError

NOW = 1_900_000_000_000
JOINER = NodeKey(bytes([7]) * 32)
OTHER = NodeKey(bytes([8]) * 32)


@pytest.fixture
def founder(tmp_path):
    cfg = Config(state_dir=tmp_path / "s", host_name="founder", wg_backend="off", torrent_engine="off")
    state = NodeState.found(StateStore(cfg.state_dir), fleet_name="home",
                            card=records.HostCard(name="founder", host_class="server"), now_ms=NOW)
    net = MemoryNetwork()
    return Agent(cfg, state, net.transport(state.peer_id), clock_ms=lambda: NOW,
                 join_transport=net.transport(state.peer_id + "-join"))


def _token(agent: Agent, *, key: NodeKey | None = None, ttl_ms: int = 60_000, now: int = NOW,
           nonce: bytes = b"x" * 16, role: str = "member") -> str:
    st = agent.state
    return invites.issue_invite(key=key or st.key, fleet_id=st.fleet.fleet_id, fleet_name=st.fleet.fleet_name,
                                bootstrap=["/ip4/127.0.0.1/tcp/1/p2p/" + st.peer_id],
                                role=role, ttl_ms=ttl_ms, nonce=nonce, now_ms=now)


def _card_delta(key: NodeKey, name: str = "joiner") -> bytes:
    own = OwnFeed(key, FeedSet())
    own.put(records.CARD_KEY, records.encode_card(records.HostCard(name=name, host_class="nas")))
    return own.commit(NOW)


def test_a_valid_invite_admits_once_with_its_role_and_hands_over_the_fleet_key_sealed(founder):
    token = _token(founder, role="admin")
    reply = founder.join._admit(JOINER.peer_id, {"invite": token, "card_delta": _card_delta(JOINER)})
    assert JOINER.peer_id in founder.state.members()
    assert founder.state.doc.role_of(JOINER.peer_id) == "admin"
    assert founder.state.doc.redeemed() == {(b"x" * 16).hex(): JOINER.peer_id}
    assert founder.state.doc.admissions()[JOINER.peer_id].name == "joiner"
    # the joiner gets the decisions, every feed, and the fleet key only it can open
    joined = FleetDoc.load(reply["doc"], JOINER, expected_fleet_id=founder.state.fleet.fleet_id)
    assert joined.members() == founder.state.members() and reply["deltas"]
    assert fleet_key_from(reply, JOINER) == (0, founder.state.fleet.psk)
    with pytest.raises(DecodeError):
        fleet_key_from(reply, OTHER)
    assert founder.state.fleet.psk not in reply["doc"] and founder.state.fleet.psk not in token.encode()
    with pytest.raises(InviteError, match="already redeemed"):
        founder.join._admit(OTHER.peer_id, {"invite": token, "card_delta": _card_delta(OTHER)})
    assert OTHER.peer_id not in founder.state.members()


def test_a_card_signed_by_someone_else_is_refused_and_nothing_is_admitted(founder):
    with pytest.raises(RemoteDataError, match="another host"):
        founder.join._admit(JOINER.peer_id, {"invite": _token(founder), "card_delta": _card_delta(OTHER)})
    assert JOINER.peer_id not in founder.state.members()
    assert founder.state.doc.redeemed() == {}
    assert records.cards(founder.state.feeds).keys() == {founder.state.peer_id}


def test_expired_foreign_or_member_issued_invites_are_refused(founder):
    with pytest.raises(InviteError, match="expired"):
        founder.join._admit(JOINER.peer_id, {"invite": _token(founder, ttl_ms=1000, now=NOW - 10_000),
                                             "card_delta": _card_delta(JOINER)})
    with pytest.raises(InviteError, match="no longer"):
        founder.join._admit(JOINER.peer_id, {"invite": _token(founder, key=OTHER),
                                             "card_delta": _card_delta(JOINER)})
    founder.state.doc.admit(OTHER.peer_id, "other", "member", None, NOW)  # a plain member …
    with pytest.raises(InviteError, match="not an admin"):  # … may not invite
        founder.join._admit(JOINER.peer_id, {"invite": _token(founder, key=OTHER, nonce=b"y" * 16),
                                             "card_delta": _card_delta(JOINER)})
    assert JOINER.peer_id not in founder.state.members()


async def test_rekey_answers_members_only_and_seals_the_key_to_the_asker(founder):
    handle = founder.join._handle
    founder.state.doc.admit(JOINER.peer_id, "joiner", "member", None, NOW)
    founder.state.adopt_fleet_key(3, b"n" * 32)
    reply = rpc.decode_reply(await handle(JOINER.peer_id, encode_join_query("rekey", {"epoch": 1})))
    assert fleet_key_from(reply, JOINER) == (3, b"n" * 32)
    await trio.sleep(1.1)  # one request a second per peer
    reply = rpc.decode_reply(await handle(JOINER.peer_id, encode_join_query("rekey", {"epoch": 3})))
    assert fleet_key_from(reply, JOINER) is None  # up to date: nothing sealed
    reply = rpc.decode_reply(await handle(OTHER.peer_id, encode_join_query("rekey", {"epoch": 0})))
    assert "only members" in reply["error"] and "sealed_psk" not in reply
    # a revoked host gets no key, but the signed decisions it lacks: it learns its revocation from them
    joiner_doc = FleetDoc.load(founder.state.doc.save(), JOINER)
    founder.state.doc.revoke(JOINER.peer_id, "gone", NOW + 1)
    await trio.sleep(1.1)
    vector = [[a, n] for a, n in joiner_doc.vector().items()]
    reply = rpc.decode_reply(await handle(JOINER.peer_id, encode_join_query("rekey", {"epoch": 0, "vector": vector})))
    assert reply["member"] is False and "sealed_psk" not in reply
    assert joiner_doc.take_ops(reply["decisions"]) and JOINER.peer_id in joiner_doc.revocations()


async def test_garbage_other_requests_and_floods_are_refused_as_data(founder):
    handle = founder.join._handle
    peers = [NodeKey(bytes([40 + i]) * 32).peer_id for i in range(30)]
    reply = rpc.decode_reply(await handle(peers[0], encode_join_query("join", {"invite": "tva1:garbage",
                                                                              "card_delta": b"x"})))
    assert "corrupt" in reply["error"]
    reply = rpc.decode_reply(await handle(peers[1], b"\x00garbage"))
    assert reply["error"]
    reply = rpc.decode_reply(await handle(peers[2], rpc.encode_query("peers_for", {"infohash": "ab" * 20})))
    assert "only join, rekey and friend requests" in reply["error"]
    replies = [rpc.decode_reply(await handle(p, encode_join_query("rekey", {"epoch": 0}))) for p in peers[3:]]
    assert sum("busy" in r.get("error", "") for r in replies) >= 5  # the bucket holds 20 at once
    assert founder.join.counters["rate_limited"] >= 5


async def test_the_mesh_transport_answers_no_joins_and_only_members(founder):
    query = rpc.encode_query("join", {"invite": _token(founder), "card_delta": _card_delta(JOINER)})
    reply = rpc.decode_reply(await peer_queries.answer(founder, JOINER.peer_id, query))
    assert "join listener" in reply["error"]
    reply = rpc.decode_reply(await peer_queries.answer(founder,
        JOINER.peer_id, rpc.encode_query("peers_for", {"infohash": "ab" * 20})))
    assert "members" in reply["error"]
    assert JOINER.peer_id not in founder.state.members()


def test_a_revoke_rotates_the_fleet_key_sealed_to_the_remaining_members_only(founder):
    doc = founder.state.doc
    doc.admit(JOINER.peer_id, "joiner", "member", None, NOW)
    doc.admit(OTHER.peer_id, "other", "member", None, NOW)
    founder.service.revoke(OTHER.peer_id, "stolen")
    rotation = doc.psk_rotation()
    assert rotation.epoch == 1 and set(rotation.sealed) == {founder.state.peer_id, JOINER.peer_id}
    mine = secrets.current_key(doc, founder.state.key)
    theirs = secrets.current_key(FleetDoc.load(doc.save(), JOINER), JOINER)
    assert mine.psk == theirs.psk != founder.state.fleet.psk and mine.epoch == 1
    assert secrets.current_key(FleetDoc.load(doc.save(), OTHER), OTHER) is None  # the revoked get nothing

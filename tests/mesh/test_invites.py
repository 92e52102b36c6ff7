"""Invites: every refusal case, plus hypothesis garbage never crashes the parser."""

from __future__ import annotations

import base64

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdt.identity import NodeKey
from mesh.invites import (
    TOKEN_PREFIX,
    check_admission,
    check_usable,
    issue_invite,
    parse_invite,
)
from tva.errors import InvalidInput, InviteError, RemoteDataError

FOUNDER = NodeKey(bytes(range(32)))
STRANGER = NodeKey(bytes(range(1, 33)))
JOINER = NodeKey(bytes(range(2, 34))).peer_id
NOW = 1_700_000_000_000


def make(key=FOUNDER, role="member", ttl_ms=3_600_000, nonce=b"n" * 16, now=NOW) -> str:
    return issue_invite(key=key, fleet_id="f" * 32, fleet_name="home",
                        bootstrap=["/ip4/127.0.0.1/tcp/4001/p2p/" + key.peer_id], role=role,
                        ttl_ms=ttl_ms, nonce=nonce, now_ms=now)


def admit(token, *, now=NOW, roles=None, revoked=frozenset(), redeemed=frozenset(), joiner=JOINER):
    check_admission(parse_invite(token), now_ms=now, fleet_id="f" * 32,
                    roles=roles if roles is not None else {FOUNDER.peer_id: "owner"},
                    revoked=revoked, redeemed=redeemed, joiner=joiner)


def test_round_trip_keeps_every_field():
    inv = parse_invite(make())
    assert (inv.fleet_id, inv.fleet_name, inv.role) == ("f" * 32, "home", "member")
    assert inv.expires_at_ms == NOW + 3_600_000
    assert inv.inviter_peer_id == FOUNDER.peer_id
    # neither the fleet key (no longer in any invite) nor the join secret is ever shown
    assert "psk" not in inv.to_json_dict() and "nonce" not in inv.to_json_dict()
    assert not hasattr(inv, "psk")
    admit(make())  # a fresh, valid invite passes every admission check


def test_expired_invite_is_refused_before_dialling():
    inv = parse_invite(make(ttl_ms=1000))
    check_usable(inv, NOW + 999)
    with pytest.raises(InviteError, match="expired"):
        check_usable(inv, NOW + 1000)


def test_tampered_invite_is_refused():
    token = make()
    raw = bytearray(base64.urlsafe_b64decode(token[5:] + "=" * (-len(token[5:]) % 4)))
    body, sig = msgpack.unpackb(bytes(raw))
    body[2] = "evil"  # rename the fleet
    forged = TOKEN_PREFIX + base64.urlsafe_b64encode(msgpack.packb([body, sig])).rstrip(b"=").decode()
    with pytest.raises(InviteError, match="signature"):
        parse_invite(forged)


def test_invite_signed_by_a_non_member_is_refused():
    with pytest.raises(InviteError, match=r"no longer\) a member"):
        admit(make(key=STRANGER))


def test_invite_signed_by_a_plain_member_is_refused():
    with pytest.raises(InviteError, match="not an admin"):
        admit(make(key=STRANGER), roles={FOUNDER.peer_id: "owner", STRANGER.peer_id: "member"})
    admit(make(key=STRANGER), roles={FOUNDER.peer_id: "owner", STRANGER.peer_id: "admin"})
    admit(make(role="admin"))  # an admin invite admits an admin


def test_invite_from_a_revoked_member_is_refused():
    with pytest.raises(InviteError, match=r"no longer\) a member"):
        admit(make(), revoked=frozenset({FOUNDER.peer_id}))


def test_second_redemption_is_refused():
    token = make()
    with pytest.raises(InviteError, match="already redeemed"):
        admit(token, redeemed=frozenset({parse_invite(token).nonce_hex}))


def test_friend_invite_parses_but_does_not_admit_a_member():
    inv = parse_invite(make(role="friend"))
    assert inv.role == "friend"
    with pytest.raises(InviteError, match="friend"):
        admit(make(role="friend"))


@pytest.mark.parametrize("token", ["", "tva1:", "tva2:abc", "hello", "tva1:!!!!", "tva1:" + "A" * 5000])
def test_malformed_tokens_are_refused_with_a_hint(token):
    with pytest.raises(InviteError) as info:
        parse_invite(token)
    assert info.value.message


def test_issuing_validates_its_inputs():
    with pytest.raises(InvalidInput):
        make(ttl_ms=0)
    with pytest.raises(InvalidInput):
        make(role="emperor")
    with pytest.raises(InvalidInput):
        issue_invite(key=FOUNDER, fleet_id="f", fleet_name="home", bootstrap=[],
                     role="member", ttl_ms=1000, nonce=b"n" * 16, now_ms=NOW)


@given(st.binary(max_size=600))
def test_garbage_payloads_only_raise_invite_errors(payload):
    token = TOKEN_PREFIX + base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    with pytest.raises(RemoteDataError):
        parse_invite(token)


@given(st.lists(st.one_of(st.integers(min_value=-(2**63), max_value=2**64 - 1), st.text(max_size=20), st.binary(max_size=40),
                          st.lists(st.text(max_size=10), max_size=3), st.none()), max_size=10),
       st.binary(max_size=70))
def test_structured_garbage_only_raises_invite_errors(body, sig):
    token = TOKEN_PREFIX + base64.urlsafe_b64encode(msgpack.packb([body, sig])).rstrip(b"=").decode()
    with pytest.raises(InviteError):
        parse_invite(token)


@given(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=7))
def test_any_single_bit_flip_is_detected(position, bit):
    token = make()
    raw = bytearray(base64.urlsafe_b64decode(token[5:] + "=" * (-len(token[5:]) % 4)))
    position %= len(raw)
    raw[position] ^= 1 << bit
    flipped = TOKEN_PREFIX + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(InviteError):
        parse_invite(flipped)


def test_an_invite_of_the_old_format_carrying_the_fleet_key_is_refused_with_a_hint():
    body = [1, "f" * 32, "home", b"k" * 32, ["/ip4/127.0.0.1/tcp/1/p2p/" + FOUNDER.peer_id], "member",
            NOW + 1000, b"n" * 16, FOUNDER.public]
    old = TOKEN_PREFIX + base64.urlsafe_b64encode(msgpack.packb([body, b"s" * 64])).rstrip(b"=").decode()
    with pytest.raises(InviteError, match="older format") as info:
        parse_invite(old)
    assert "new invite" in info.value.hint

"""WireGuard key forms: X25519 from seed bytes, base64 ↔ hex, garbage refused with DecodeError."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tva.errors import DecodeError, InvalidInput
from wg.plan.keys import (
    WgKey,
    b64_to_hex,
    hex_to_b64,
    key_from_b64,
    key_from_hex,
    key_to_b64,
)

# RFC 7748 §6.1 (Alice): the same scalar and public key WireGuard would compute.
RFC7748_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
RFC7748_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")


def test_public_key_matches_rfc7748_vector():
    key = WgKey(RFC7748_PRIVATE)
    assert key.public == RFC7748_PUBLIC
    assert key.public_hex == RFC7748_PUBLIC.hex()
    assert key_from_b64(key.public_b64) == RFC7748_PUBLIC


def test_private_key_not_in_repr():
    assert RFC7748_PRIVATE.hex() not in repr(WgKey(RFC7748_PRIVATE))


@given(st.binary(min_size=32, max_size=32))
def test_forms_round_trip(raw):
    assert key_from_b64(key_to_b64(raw)) == raw
    assert key_from_hex(raw.hex()) == raw
    assert hex_to_b64(b64_to_hex(key_to_b64(raw))) == key_to_b64(raw)


@pytest.mark.parametrize("n", [0, 31, 33])
def test_seed_length_checked(n):
    with pytest.raises(InvalidInput):
        WgKey(bytes(n))


@given(st.one_of(st.text(max_size=80), st.binary(max_size=80), st.integers(), st.none()))
def test_garbage_b64_is_decode_error(text):
    try:
        raw = key_from_b64(text)
    except DecodeError:
        return
    assert len(raw) == 32 and key_to_b64(raw) == text


@given(st.one_of(st.text(max_size=80), st.none()))
def test_garbage_hex_is_decode_error(text):
    try:
        raw = key_from_hex(text)
    except DecodeError:
        return
    assert len(raw) == 32


def test_near_miss_b64_refused():
    good = key_to_b64(RFC7748_PUBLIC)
    for bad in (good[:-1], good + "=", good.replace("=", "A"), "!" + good[1:], good[:43] + " "):
        with pytest.raises(DecodeError):
            key_from_b64(bad)


@given(st.binary(min_size=32, max_size=32))
def test_private_is_stored_clamped_and_public_unchanged_by_clamping(raw):
    key = WgKey(raw)
    assert key.private[0] & 7 == 0 and key.private[31] & 0xC0 == 0x40
    assert WgKey(key.private) == key  # clamping is idempotent: what wireguard-go reports round-trips


def test_non_canonical_spelling_of_a_key_is_refused():
    good = key_to_b64(RFC7748_PUBLIC)
    # The last character before '=' carries 2 padding bits: flipping them spells the same bytes.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    i = alphabet.index(good[42])
    twin = good[:42] + alphabet[i ^ 1] + "="
    assert base64.b64decode(twin) == RFC7748_PUBLIC and twin != good
    with pytest.raises(DecodeError):
        key_from_b64(twin)

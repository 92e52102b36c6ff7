"""The door's dashboard sessions (agent.door, pure): minted with the API token, accepted in place of
it until they expire, never on the token-only routes, and nothing else passes for one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent import door

TOKEN = "k" * 40
NOW = 1_700_000_000_000
NONCE = "0123456789abcdef" * 2
SERVER = ("127.0.0.1", 4811)


def req(path: str = "/status", method: str = "GET", auth: str | None = None, **headers: str) -> door.Request:
    pairs = [("host", "127.0.0.1:4811"), *((k.replace("_", "-"), v) for k, v in headers.items())]
    if auth is not None:
        pairs.append(("authorization", auth))
    return door.Request(method, path, tuple(pairs), SERVER)


def test_a_session_is_accepted_until_it_expires():
    session, expires = door.new_session(TOKEN, NOW, NONCE)
    assert expires == NOW + door.SESSION_MS
    bearer = f"Bearer {session}"
    assert door.check(req(auth=bearer), token=TOKEN, now_ms=NOW) is None
    assert door.check(req(auth=bearer), token=TOKEN, now_ms=expires - 1) is None
    assert door.check(req(auth=bearer), token=TOKEN, now_ms=expires).status == 401
    # Without a clock (a caller that does not do sessions) only the token itself opens the door.
    assert door.check(req(auth=bearer), token=TOKEN).status == 401
    # A new API token ends every session made with the old one.
    assert door.check(req(auth=bearer), token="n" * 40, now_ms=NOW).status == 401


def test_a_session_cannot_mint_login_codes_the_token_can():
    session, _ = door.new_session(TOKEN, NOW, NONCE)
    mint = req("/dashboard/login-codes", "POST", f"Bearer {session}")
    assert door.check(mint, token=TOKEN, now_ms=NOW).status == 401
    assert door.check(req("/dashboard/login-codes", "POST", f"Bearer {TOKEN}"), token=TOKEN, now_ms=NOW) is None


def test_tampered_sessions_are_refused():
    session, expires = door.new_session(TOKEN, NOW, NONCE)
    prefix, exp, nonce, mac = session.split(".")
    later = str(expires + 3_600_000)
    forged = [
        f"{prefix}.{later}.{nonce}.{mac}",  # a longer life
        f"{prefix}.{exp}.{'f' * 32}.{mac}",  # another nonce
        f"{prefix}.{exp}.{nonce}.{'0' * 64}",  # another mac
        f"{prefix}.{exp}.{nonce}.{mac[:-1]}",  # a short one
        f"s2.{exp}.{nonce}.{mac}",
    ]
    for value in forged:
        assert door.check(req(auth=f"Bearer {value}"), token=TOKEN, now_ms=NOW).status == 401, value
    # A session made far ahead of this clock (a clock gone wrong, or a forged date) is not taken.
    ahead, _ = door.new_session(TOKEN, NOW + 2 * door.SESSION_MS, NONCE)
    assert door.check(req(auth=f"Bearer {ahead}"), token=TOKEN, now_ms=NOW).status == 401


def test_the_page_and_login_are_open_everything_else_is_not():
    for method, path in (("GET", "/"), ("GET", "/ui/app.js"), ("POST", "/login"), ("GET", "/health")):
        assert door.check(req(path, method), token=TOKEN, now_ms=NOW) is None, path
    for method, path in (("POST", "/ui/app.js"), ("GET", "/status"), ("GET", "/metrics"), ("DELETE", "/"),
                         ("POST", "/dashboard/login-codes"), ("GET", "/uix")):
        assert door.check(req(path, method), token=TOKEN, now_ms=NOW).status == 401, path
    # Open routes keep every other check: a rebound Host or a foreign page is refused there too.
    assert door.check(door.Request("POST", "/login", (("host", "evil.example"),), SERVER),
                      token=TOKEN, now_ms=NOW).status == 403
    assert door.check(req("/login", "POST", origin="http://evil.example"), token=TOKEN, now_ms=NOW).status == 403


@given(st.text(max_size=200))
def test_nothing_else_passes_for_a_credential(value):
    refusal = door.check(req(auth=value), token=TOKEN, now_ms=NOW)
    assert refusal is not None and refusal.status in (401, 400)


@given(st.integers(min_value=0, max_value=10**15), st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
       st.from_regex(r"[0-9a-f]{64}", fullmatch=True))
def test_a_well_formed_session_with_a_wrong_mac_never_passes(expires, nonce, mac):
    if mac != door.session_mac(TOKEN, expires, nonce):
        assert not door.session_ok(f"Bearer s1.{expires}.{nonce}.{mac}", TOKEN, NOW)

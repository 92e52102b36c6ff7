"""The dashboard's login over the real route table behind the real door (in-process ASGI): a code
from the token holder, traded once within its time for a session that opens the door; the page
and its files are served with a strict Content-Security-Policy and show nothing of the fleet."""

from __future__ import annotations

import httpx
import pytest

from agent.api import ApiContext, build_app
from agent.dashboard_api import LOGIN_CODE_MS, LoginCodes, login_url
from agent.http import door_app
from agent.service import Service
from agent.state import NodeState
from agent.store import StateStore
from crdt import records

BASE = "http://127.0.0.1:4811"


@pytest.fixture
def setup(tmp_path):
    state = NodeState.found(StateStore(tmp_path / "s"), fleet_name="fleet-qx7",
                            card=records.HostCard(name="host-zq9", host_class="server"), now_ms=1_700_000_000_000)
    service = Service(state, media_dir=tmp_path, bootstrap=lambda: ["/ip4/127.0.0.1/tcp/4810/p2p/" + state.peer_id])
    app = build_app(ApiContext(service=service, daemon=True))
    clock = [1_700_000_000_000]
    app.state.login_codes = LoginCodes(clock_ms=lambda: clock[0])
    return door_app(app, state.local.api_token), state.local.api_token, clock


def client(app, headers=None) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app, client=("127.0.0.1", 5555)), base_url=BASE,
                             headers=headers or {})


async def test_a_code_is_traded_once_for_a_session_that_opens_the_door(setup):
    app, token, _clock = setup
    async with client(app, {"Authorization": f"Bearer {token}"}) as cli:
        code = (await cli.post("/dashboard/login-codes", json={})).json()["code"]
    async with client(app) as page:
        assert (await page.get("/status")).status_code == 401
        r = await page.post("/login", json={"code": code})
        assert r.status_code == 201, r.text
        session = r.json()["session"]
        again = await page.post("/login", json={"code": code})
        assert again.status_code == 401 and "used" in again.json()["error"] and again.json()["hint"]
        bearer = {"Authorization": f"Bearer {session}"}
        assert (await page.get("/hosts", headers=bearer)).json()[0]["name"] == "host-zq9"
        invite = await page.post("/invites", json={}, headers={**bearer, "Origin": BASE})
        assert invite.status_code == 201 and invite.json()["invite"].startswith("tva1:")
        # A session cannot extend itself: login codes need the token.
        assert (await page.post("/dashboard/login-codes", json={}, headers=bearer)).status_code == 401


async def test_an_expired_or_unknown_code_gets_nothing(setup):
    app, token, clock = setup
    async with client(app, {"Authorization": f"Bearer {token}"}) as cli:
        code = (await cli.post("/dashboard/login-codes", json={})).json()["code"]
    clock[0] += LOGIN_CODE_MS
    async with client(app) as page:
        assert (await page.post("/login", json={"code": code})).status_code == 401
        assert (await page.post("/login", json={"code": "A" * 32})).status_code == 401
        assert (await page.post("/login", json={"code": "<script>"})).status_code == 422
        # From another site's page: refused before any code is looked at.
        r = await page.post("/login", json={"code": "A" * 32}, headers={"Origin": "http://evil.example"})
        assert r.status_code == 403


async def test_the_page_is_served_with_a_strict_policy_and_holds_no_fleet_data(setup):
    app, _token, _clock = setup
    async with client(app) as page:
        for path, kind in (("/", "text/html"), ("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css")):
            r = await page.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith(kind), path
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe" not in csp and "connect-src 'self'" in csp
            assert "host-zq9" not in r.text and "fleet-qx7" not in r.text
        assert (await page.get("/ui/../daemon.json")).status_code in (401, 404)
        assert (await page.get("/ui/nope.js")).status_code == 404


def test_the_link_names_the_daemons_address():
    assert login_url("127.0.0.1:4811", "abc") == "http://127.0.0.1:4811/#login=abc"
    assert login_url("0.0.0.0:4811", "abc") == "http://127.0.0.1:4811/#login=abc"
    assert login_url("[::]:4811", "abc") == "http://[::1]:4811/#login=abc"
    assert login_url("[fd00::1]:4811", "abc") == "http://[fd00::1]:4811/#login=abc"

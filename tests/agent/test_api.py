"""The HTTP API in-process: the real route table and service over ASGI, behind the real door.

Door (issue 12 item 7): a token on every request but /health, loopback included; a Host that is
not the bound address, a browser Origin of another site, a non-JSON body and an oversized body are
refused. Routes: 4xx with a JSON error on bad input, every endpoint answering. The live-server
schema check (schemathesis against a running daemon) is in test_api_schema.py.
"""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.api import ApiContext, build_app
from agent.door import BODY_BYTES_MAX
from agent.http import door_app
from agent.service import Service
from agent.state import NodeState
from agent.store import StateStore
from crdt import records

TOKEN = "t" * 32
IH = "ab" * 20
BASE = "http://127.0.0.1:4811"  # the server address the door sees (ASGI "server")


@pytest.fixture
def service(tmp_path):
    state = NodeState.found(StateStore(tmp_path / "s"), fleet_name="home",
                            card=records.HostCard(name="box", host_class="server"), now_ms=1_700_000_000_000)
    return Service(state, clock_ms=lambda: 1_700_000_000_000, media_dir=tmp_path,
                   bootstrap=lambda: ["/ip4/127.0.0.1/tcp/4810/p2p/" + state.peer_id])


def client(service, *, token: str | None = TOKEN, base: str = BASE, host: str = "127.0.0.1",
           headers: dict | None = None) -> httpx.AsyncClient:
    app = door_app(build_app(ApiContext(service=service, daemon=True)), TOKEN)
    sent = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app, client=(host, 5555)), base_url=base,
                             headers={**sent, **(headers or {})})


async def test_every_read_endpoint_answers_json(service):
    async with client(service) as c:
        for path in ("/health", "/status", "/hosts", "/holdings", "/custody", "/duties", "/reaper",
                     f"/peers_for/{IH}", "/custodians_of/film", "/wg"):
            r = await c.get(path)
            assert r.status_code == 200, (path, r.text)
            r.json()
        status = (await c.get("/status")).json()
        assert status["fleet_name"] == "home" and status["revoked"] is False and status["version"]
        assert (await c.get("/openapi.json")).json()["info"]["title"] == "tva-agent"


async def test_writes_change_what_reads_answer(service):
    async with client(service) as c:
        r = await c.post("/holdings", json={"content": "film", "infohash": IH.upper(), "size_bytes": 10})
        assert r.status_code == 201, r.text
        assert [h["content"] for h in (await c.get("/holdings")).json()] == ["film"]
        assert (await c.get(f"/peers_for/{IH}")).json()["policy"] == "public"
        assert (await c.post("/pins", json={"content": "film", "copies": 1})).status_code == 201
        custody = (await c.get("/custody")).json()
        assert custody[0]["content"] == "film" and custody[0]["status"] == "ok"
        assert (await c.delete("/pins/film")).status_code == 200
        assert (await c.delete("/holdings/film")).status_code == 200
        invite = (await c.post("/invites", json={"ttl_ms": 60_000})).json()
        assert invite["invite"].startswith("tva1:")


async def test_private_tracker_content_starts_closed(service):
    async with client(service) as c:
        await c.post("/holdings", json={"content": "rare", "infohash": IH, "size_bytes": 1,
                                        "source": "private-tracker"})
        answer = (await c.get(f"/peers_for/{IH}")).json()
        assert answer["policy"] == "search_only" and answer["peers"] == []
        # Asking to open it to the public swarm is forced down to f2f_only, never refused silently.
        r = await c.post("/holdings", json={"content": "rare", "infohash": IH, "size_bytes": 1,
                                            "source": "private-tracker", "policy": "public"})
        assert r.status_code == 201 and r.json()["policy"] == "f2f_only" and r.json()["note"]
        answer = (await c.get(f"/peers_for/{IH}")).json()
        assert answer["policy"] == "f2f_only"


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", "/peers_for/xyz", None, 422),
    ("GET", "/peers_for/" + "g" * 40, None, 422),
    ("GET", "/custodians_of/bad%20id", None, 422),
    ("GET", "/nope", None, 404),
    ("POST", "/holdings", {"content": "a", "infohash": IH, "size_bytes": -1}, 422),
    ("POST", "/holdings", {"content": "a/b", "infohash": IH, "size_bytes": 1}, 422),
    ("POST", "/pins", {"content": "a", "copies": 0}, 422),
    ("POST", "/pins", {"content": "a", "copies": 5}, 409),  # more copies than hosts
    ("POST", "/pins", {"content": "a", "copies": 1, "colour": "red"}, 422),  # unknown field
    ("DELETE", "/pins/never-pinned", None, 404),
    ("DELETE", "/holdings/never-held", None, 404),
    ("POST", "/revocations", {"host": "nobody"}, 404),
    ("POST", "/invites", {"ttl_ms": 5}, 422),
])
async def test_bad_input_gets_4xx_with_a_json_error(service, method, path, body, status):
    async with client(service) as c:
        r = await c.request(method, path, json=body)
        assert r.status_code == status, r.text
        assert r.json()["error"]


async def test_daemon_only_routes_answer_503_offline(service):
    app = build_app(ApiContext(service=service, daemon=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://x") as c:
        for method, path, body in (("POST", "/wg/down", {}), ("GET", "/torrents", None),
                                   ("POST", "/reaper/apply", {}), ("GET", "/jobs", None)):
            r = await c.request(method, path, json=body)
            assert r.status_code == 503 and "tva-agent run" in r.json()["hint"], (path, r.text)


# --- the door -------------------------------------------------------------------------------------


async def test_a_token_is_needed_on_loopback_too(service):
    async with client(service, token=None) as c:
        assert (await c.get("/health")).status_code == 200  # liveness probes stay open
        r = await c.get("/status")
        assert r.status_code == 401 and "token" in r.json()["error"] and r.json()["hint"]
        assert (await c.post("/pins", json={"content": "a", "copies": 1})).status_code == 401
        assert (await c.get("/openapi.json")).status_code == 401
    async with client(service, token="x" * 32) as c:
        assert (await c.get("/status")).status_code == 401
    async with client(service, host="10.77.0.9") as c:  # the overlay: the same door
        assert (await c.get(f"/peers_for/{IH}")).status_code == 200
    assert [h["content"] for h in service.holdings()] == []


@pytest.mark.parametrize("host", ["evil.example", "evil.example:4811", "127.0.0.1:9999", "10.0.0.1:4811",
                                  "", "localhost.evil.example:4811"])
async def test_a_host_header_that_is_not_the_agent_is_refused(service, host):
    # DNS rebinding: a page on evil.example whose name now points at 127.0.0.1.
    async with client(service, headers={"Host": host}) as c:
        for method, path in (("GET", "/status"), ("GET", "/health"), ("POST", "/invites")):
            r = await c.request(method, path, json={} if method == "POST" else None)
            assert r.status_code == 403 and "Host" in r.json()["error"], (host, path, r.text)


@pytest.mark.parametrize("host", ["127.0.0.1:4811", "localhost:4811", "LOCALHOST:4811", "[::1]:4811"])
async def test_every_loopback_spelling_of_the_bound_address_is_accepted(service, host):
    async with client(service, headers={"Host": host}) as c:
        assert (await c.get("/status")).status_code == 200


async def test_a_cross_origin_form_post_is_refused_and_changes_nothing(service):
    form = {"content": "film", "infohash": IH, "size_bytes": "1"}
    # What a page on another site can send without a CORS preflight: a form, with its Origin.
    async with client(service, token=None, headers={"Origin": "http://evil.example"}) as c:
        r = await c.post("/wg/down", data=form)
        assert r.status_code == 403 and "origin" in r.json()["error"]
        assert (await c.post("/holdings", data=form)).status_code == 403
    # Even with the token (a page cannot have it, but a script could be careless), a browser context
    # of another origin or site is refused.
    async with client(service, headers={"Origin": "null"}) as c:
        assert (await c.post("/holdings", json=form)).status_code == 403
    async with client(service, headers={"Sec-Fetch-Site": "cross-site"}) as c:
        assert (await c.post("/holdings", json=form)).status_code == 403
    async with client(service, headers={"Origin": "http://127.0.0.1:4811"}) as c:  # the agent's own
        assert (await c.get("/status")).status_code == 200
    assert service.holdings() == []


@pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                  None])
async def test_bodies_must_be_json(service, kind):
    body = b'{"content": "film", "infohash": "' + IH.encode() + b'", "size_bytes": 1}'
    headers = {"Content-Type": kind} if kind else {}
    async with client(service) as c:
        r = await c.post("/holdings", content=body, headers=headers)
        assert r.status_code == 415 and "application/json" in r.json()["error"], r.text
        ok = await c.post("/holdings", content=body, headers={"Content-Type": "application/json; charset=utf-8"})
        assert ok.status_code == 201, ok.text


async def test_an_oversized_body_gets_413_however_it_arrives(service):
    big = b'{"content": "' + b"a" * BODY_BYTES_MAX + b'"}'
    async with client(service) as c:
        r = await c.post("/holdings", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "limit" in r.json()["error"]

        async def chunks():  # no Content-Length: counted as it arrives
            for i in range(0, len(big), 4096):
                yield big[i:i + 4096]

        r = await c.post("/holdings", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        # A route that takes large bodies says so: a 100 KB .torrent upload is not refused by size.
        r = await c.post("/torrents", json={"torrent_b64": "A" * 100_000})
        assert r.status_code != 413


_header_values = st.text(alphabet=st.characters(codec="latin-1", exclude_characters="\r\n\x00"), max_size=60)


@settings(max_examples=60)
@given(auth=st.one_of(st.none(), _header_values, st.just("Bearer " + "t" * 31), st.just("bearer " + TOKEN)),
       host=st.one_of(st.just("127.0.0.1:4811"), _header_values),
       origin=st.one_of(st.none(), _header_values), kind=st.one_of(st.none(), _header_values),
       path=st.sampled_from(["/status", "/holdings", "/pins", "/invites", "/wg/down"]),
       method=st.sampled_from(["GET", "POST", "DELETE"]))
async def test_without_the_exact_token_no_request_reaches_a_handler(tmp_path_factory, auth, host, origin, kind,
                                                                    path, method):
    state = NodeState.found(StateStore(tmp_path_factory.mktemp("d")), fleet_name="d",
                            card=records.HostCard(name="d", host_class="nas"), now_ms=1)
    svc = Service(state, clock_ms=lambda: 1)
    headers = {"Host": host}
    for name, value in (("Authorization", auth), ("Origin", origin), ("Content-Type", kind)):
        if value is not None:
            headers[name] = value
    async with client(svc, token=None) as c:
        try:
            r = await c.request(method, path, content=b'{"content":"x","copies":1}', headers=headers)
        except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError):
            return
    assert r.status_code in (400, 401, 403, 413, 415), (r.status_code, r.text)
    assert r.json()["error"]
    assert svc.holdings() == [] and state.doc.pins() == {}


@settings(max_examples=40)
@given(path=st.text(alphabet=st.characters(codec="ascii", exclude_characters="?#"), max_size=60))
async def test_garbage_paths_never_give_a_server_error(tmp_path_factory, path):
    state = NodeState.found(StateStore(tmp_path_factory.mktemp("g")), fleet_name="g",
                            card=records.HostCard(name="g", host_class="nas"), now_ms=1)
    async with client(Service(state, clock_ms=lambda: 1)) as c:
        for method in ("GET", "DELETE"):
            try:
                r = await c.request(method, "/peers_for/" + path)
            except httpx.InvalidURL:
                return
            assert r.status_code < 500, (path, r.text)


async def test_a_pin_outside_the_policy_domain_is_reported_not_fatal(service):
    # The API refuses max_copies above the limits (tva.limits), but an older build or another writer
    # can still record one in the decisions: every read built on the snapshot must still answer,
    # naming the pin it could not use.
    from tests.agent.raw_decisions import write_raw

    async with client(service) as c:
        assert (await c.post("/pins", json={"content": "film", "copies": 1, "max_copies": 77})).status_code == 422
        assert write_raw(service.state.doc, service.state.key, "pin", {"content": "film", "min": 1, "max": 77},
                         1_700_000_000_000)
        service.invalidate()
        for path in ("/status", "/hosts", "/holdings", "/custody", "/duties"):
            assert (await c.get(path)).status_code == 200, path
        invalid = (await c.get("/status")).json()["invalid_pins"]
        assert [p["content"] for p in invalid] == ["film"] and "max_copies" in invalid[0]["why"]

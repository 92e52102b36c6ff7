"""The HTTP API in-process (real state, real service, real FastAPI app over ASGI).

Auth (token off loopback), 4xx with a JSON error on bad input, and every endpoint answering.
The live-server schema check (schemathesis against a running daemon) is in test_api_schema.py.
"""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.api import build_app
from agent.service import Service
from agent.state import NodeState
from agent.store import StateStore
from crdt import records

TOKEN = "t" * 32
IH = "ab" * 20


@pytest.fixture
def service(tmp_path):
    state = NodeState.found(StateStore(tmp_path / "s"), fleet_name="home",
                            card=records.HostCard(name="box", host_class="server"), now_ms=1_700_000_000_000)
    return Service(state, clock_ms=lambda: 1_700_000_000_000, media_dir=tmp_path,
                   bootstrap=lambda: ["/ip4/127.0.0.1/tcp/4810/p2p/" + state.peer_id])


def client(service, host="127.0.0.1", token=None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(build_app(service, TOKEN), client=(host, 5555)),
                             base_url="http://agent", headers=headers)


async def test_every_read_endpoint_answers_json(service):
    async with client(service) as c:
        for path in ("/health", "/status", "/hosts", "/holdings", "/custody", "/duties", "/reaper",
                     f"/peers_for/{IH}", "/custodians_of/film"):
            r = await c.get(path)
            assert r.status_code == 200, (path, r.text)
            r.json()
        assert (await c.get("/status")).json()["fleet_name"] == "home"
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


async def test_off_loopback_needs_the_token(service):
    async with client(service, host="10.77.0.9") as c:
        assert (await c.get("/health")).status_code == 200  # liveness probes stay open
        r = await c.get(f"/peers_for/{IH}")
        assert r.status_code == 401 and "token" in r.json()["error"]
        assert (await c.post("/pins", json={"content": "a", "copies": 1})).status_code == 401
    async with client(service, host="10.77.0.9", token="x" * 32) as c:
        assert (await c.get("/status")).status_code == 401
    async with client(service, host="10.77.0.9", token=TOKEN) as c:
        assert (await c.get(f"/peers_for/{IH}")).status_code == 200


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
    # The API (and any member, through the fleet document) can set max_copies above the policy's 64:
    # every read built on the snapshot must still answer, naming the pin it could not use.
    async with client(service) as c:
        assert (await c.post("/pins", json={"content": "film", "copies": 1, "max_copies": 77})).status_code == 201
        for path in ("/status", "/hosts", "/holdings", "/custody", "/duties"):
            assert (await c.get(path)).status_code == 200, path
        invalid = (await c.get("/status")).json()["invalid_pins"]
        assert [p["content"] for p in invalid] == ["film"] and "max_copies" in invalid[0]["why"]

"""The `tva-agent` command without a daemon: refusals are one clear line, a hint, an exit code."""

from __future__ import annotations

import base64
import json

import msgpack
import pytest

from crdt.identity import NodeKey
from mesh.invites import issue_invite
from tests.agent.procs import AgentProc

KEY = NodeKey(bytes(range(32)))


def _token(ttl_ms: int = 3_600_000, now_ms: int = 1_700_000_000_000) -> str:
    return issue_invite(key=KEY, fleet_id="f" * 32, fleet_name="home",
                        bootstrap=["/ip4/127.0.0.1/tcp/9/p2p/" + KEY.peer_id], role="member",
                        ttl_ms=ttl_ms, nonce=b"n" * 16, now_ms=now_ms)


def _tampered() -> str:
    text = _token()[5:]
    body, sig = msgpack.unpackb(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    body[2] = "other"
    return "tva1:" + base64.urlsafe_b64encode(msgpack.packb([body, sig])).rstrip(b"=").decode()


@pytest.mark.parametrize(("token", "needle"), [
    (_token(ttl_ms=1000), "expired"),  # expired long ago (2023)
    (_tampered(), "signature"),
    ("tva1:AAAA", "corrupt"),
    ("hello", "tva1"),
])
def test_bad_invites_are_refused_before_anything_is_written(tmp_path, token, needle):
    agent = AgentProc(tmp_path, "joiner")
    res = agent.run_cli("join", token, "--listen", "/ip4/127.0.0.1/tcp/0")
    assert res.returncode == 1, res
    assert needle in res.stderr and "hint:" in res.stderr, res.stderr
    assert not (agent.state_dir / "fleet").exists()


def test_usage_errors_exit_2_with_a_hint(tmp_path):
    agent = AgentProc(tmp_path, "solo")
    res = agent.run_cli("status")
    assert res.returncode == 2 and "init" in res.stderr  # no fleet yet: the hint names the fix
    agent.cli("init", "--name", "solo")
    res = agent.run_cli("pin", "x", "--copies", "3", "--json")
    assert res.returncode == 2 and json.loads(res.stdout)["error"].startswith("cannot keep 3 copies")
    res = agent.run_cli("peers-for", "not-a-hash")
    assert res.returncode == 2 and "40 hex" in res.stderr
    res = agent.run_cli("invite")  # no daemon: nowhere to dial, and it says what to do
    assert res.returncode == 2 and "tva-agent run" in res.stderr
    res = agent.run_cli("wg", "up")
    assert res.returncode == 3 and "tva-agent run" in res.stderr


def test_offline_writes_persist_and_reads_see_them(tmp_path):
    agent = AgentProc(tmp_path, "solo")
    agent.cli("init", "--name", "solo")
    agent.cli("holdings", "add", "film", "--infohash", "ab" * 20, "--size", "10")
    agent.cli("pin", "film", "--copies", "1")
    assert [h["content"] for h in agent.cli("holdings", "list", "--json")] == ["film"]
    assert agent.cli("custody", "--json")[0]["status"] == "ok"
    assert agent.cli("status", "--json")["daemon"] is False
    table = agent.cli("hosts")
    assert table.splitlines()[0].split()[:2] == ["NAME", "PEER"]  # people get a table

"""The OpenAPI description validates against the live daemon (schemathesis, real process)."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.agent.procs import AgentProc


@pytest.fixture(scope="module")
def live_agent(tmp_path_factory):
    agent = AgentProc(tmp_path_factory.mktemp("schema"), "schema")
    agent.cli("init", "--name", "schema")
    agent.start()
    yield agent
    agent.kill()


@pytest.fixture(scope="module")
def api_schema(live_agent):
    info = json.loads((live_agent.state_dir / "daemon.json").read_text())
    return schemathesis.openapi.from_url(f"http://{info['api']}/openapi.json", headers=_auth(live_agent))


def _auth(agent) -> dict:
    # Every request but /health needs the token, loopback included (agent.door).
    return {"Authorization": "Bearer " + json.loads((agent.state_dir / "daemon.json").read_text())["token"]}


def test_live_api_matches_its_openapi_description(api_schema, live_agent):
    # schemathesis' pytest plugin does not run under pytest 9, so each operation's strategy is
    # driven by hypothesis here. Every check schemathesis has runs: no 5xx, documented status
    # codes and content types, responses matching their schemas, invalid input rejected (4xx).
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            case.call_and_validate(headers=_auth(live_agent))

        check()

"""/metrics of a live two-agent fleet (real processes), read with prometheus-client's own parser:
the token is needed as everywhere; members, traffic, custody, decisions, refusals, components and
the API's latency are there, and they move when the fleet changes."""

from __future__ import annotations

import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.agent.procs import AgentProc, wait_until

IH = "d1" * 20


def scrape_raw(agent: AgentProc, token: str | None) -> tuple[int, str, str]:
    info = agent.daemon_info()
    host, port = info["api"].rsplit(":", 1)
    head = f"GET /metrics HTTP/1.1\r\nHost: {info['api']}\r\nConnection: close\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall((head + "\r\n").encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    header, _, body = raw.partition(b"\r\n\r\n")
    kind = next((line.split(b":", 1)[1].strip().decode() for line in header.split(b"\r\n")
                 if line.lower().startswith(b"content-type")), "")
    return int(header.split(b" ")[1]), kind, body.decode()


def scrape(agent: AgentProc) -> dict[tuple[str, tuple], float]:
    status, kind, text = scrape_raw(agent, agent.daemon_info()["token"])
    assert status == 200 and kind.startswith("text/plain"), (status, kind)
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


@pytest.fixture
def fleet(tmp_path):
    alpha, beta, gamma = (AgentProc(tmp_path, n) for n in ("alpha", "beta", "gamma"))
    alpha.cli("init", "--name", "home")
    alpha.start()
    try:
        invite = alpha.cli("invite", "--json")["invite"]
        beta.start_join(invite)
        for p in (alpha, beta):
            wait_until(lambda p=p: [h["state"] for h in p.cli("hosts", "--json")].count("alive") == 2, 60,
                       f"{p.name} to see two live hosts")
        yield alpha, beta, gamma, invite
    finally:
        for p in (alpha, beta, gamma):
            p.kill()


def test_metrics_need_the_token_and_move_with_the_fleet(fleet):
    alpha, beta, gamma, used_invite = fleet
    assert scrape_raw(alpha, None)[0] == 401
    assert scrape_raw(alpha, "x" * 32)[0] == 401

    before = scrape(alpha)
    assert value(before, "tva_members", state="alive") == 2
    assert value(before, "tva_component_up", component="mesh") == 1
    assert value(before, "tva_component_state", component="api", state="ok") == 1
    assert total(before, "tva_mesh_frames_total", direction="in") > 0
    assert total(before, "tva_mesh_bytes_total", direction="out") > 0
    assert value(before, "tva_transport_events_total", event="bytes_in") > 0
    assert value(before, "tva_custody_pins", status="under") == 0
    assert ("tva_repairs_total", (("event", "started"),)) in before
    assert ("tva_torrent_rate_bytes_per_second", (("direction", "down"),)) in before
    assert ("tva_decode_errors_total", (("source", "transport"),)) in before
    requests_before = total(before, "tva_api_request_duration_seconds_count")
    inserted_before = value(before, "tva_decision_ops_total", outcome="inserted")

    # A pin on beta reaches alpha as a signed decision: custody is under, then ok once beta holds it too.
    alpha.cli("holdings", "add", "film", "--infohash", IH, "--size", "10")
    beta.cli("pin", "film", "--copies", "2")
    wait_until(lambda: value(scrape(alpha), "tva_custody_pins", status="under") == 1, 30, "custody under")
    beta.cli("holdings", "add", "film", "--infohash", IH, "--size", "10")
    wait_until(lambda: value(scrape(alpha), "tva_custody_pins", status="ok") == 1, 30, "custody ok")
    # A used invite knocks on alpha's join listener: refused, and counted.
    res = gamma.run_cli("join", used_invite)
    assert res.returncode != 0
    after = scrape(alpha)
    assert value(after, "tva_decision_ops_total", outcome="inserted") > inserted_before
    assert value(after, "tva_refusals_total", source="join", reason="refused") >= 1
    assert total(after, "tva_api_request_duration_seconds_count") > requests_before
    assert total(after, "tva_api_request_duration_seconds_count", route="/hosts", status="200") >= 1  # direct
    assert total(after, "tva_api_request_duration_seconds_count", route="/metrics", status="200") >= 1  # FastAPI
    assert total(after, "tva_policy_tick_lag_seconds_count") > 0

    # A member that dies is counted as such.
    beta.kill()
    wait_until(lambda: value(scrape(alpha), "tva_members", state="alive") == 1, 60, "beta seen as gone")

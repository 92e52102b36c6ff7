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


def gossip(samples) -> dict[str, float]:
    return {"put": value(samples, "tva_gossip_queue_events_total", queue="deltas", event="put"),
            "delta_items": value(samples, "tva_gossip_items_sent_total", kind="delta"),
            "delta_bytes": value(samples, "tva_gossip_item_bytes_sent_total", kind="delta")}


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
    assert total(before, "tva_gossip_items_sent_total", kind="presence") > 0
    assert ("tva_gossip_queue_depth", (("queue", "deltas"),)) in before
    assert value(before, "tva_gossip_retransmit_limit") >= 1
    gossip_before = gossip(before)
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
    # The holding was a feed delta: rumoured by alpha's delta queue, and carried as a delta item.
    gossip_after = gossip(after)
    assert gossip_after["put"] > gossip_before["put"]
    assert gossip_after["delta_items"] > gossip_before["delta_items"]
    assert gossip_after["delta_bytes"] > gossip_before["delta_bytes"]
    # Every rumour that left the queue is in the histogram, none sent more often than the limit.
    for queue in ("records", "deltas"):
        left = sum(value(after, "tva_gossip_queue_events_total", queue=queue, event=e)
                   for e in ("replaced", "retired", "evicted"))
        assert value(after, "tva_gossip_rumour_transmits_count", queue=queue) == left
        limit = int(value(after, "tva_gossip_retransmit_limit"))
        assert value(after, "tva_gossip_rumour_transmits_bucket", queue=queue, le=f"{limit}.0") == left

    # A member that dies is counted as such.
    beta.kill()
    wait_until(lambda: value(scrape(alpha), "tva_members", state="alive") == 1, 60, "beta seen as gone")

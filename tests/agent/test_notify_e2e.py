"""Webhook notifications from a live three-agent fleet (real processes): a receiver started here
gets one batched event for a killed host and one for its return, each sent by one host only;
beside it, a webhook that hangs and one that refuses connections are retried with back-off and
slow nothing else: the receiver still hears, and no agent's policy tick runs late."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.agent.procs import AgentProc, wait_until
from tests.agent.test_metrics import scrape, total, value


class Receiver:
    def __init__(self) -> None:
        self.posts: list[dict] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, kind: str, subject: str) -> list[tuple[dict, dict]]:
        return [(post, e) for post in list(self.posts) for e in post["events"]
                if e["kind"] == kind and e["subject"] == subject]


@pytest.fixture
def hooks():
    good = Receiver()
    # Accepts connections (the kernel's backlog) and never answers: each post runs into its time-out.
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(64)
    # Refuses: a port nothing listens on.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    closed.close()
    urls = [good.url, f"http://127.0.0.1:{hanging.getsockname()[1]}/hang", f"http://127.0.0.1:{refused_port}/x"]
    yield good, urls
    good.server.shutdown()
    hanging.close()


def test_a_dead_host_and_its_return_are_told_once_and_failing_webhooks_slow_nothing(tmp_path, hooks):
    good, urls = hooks
    env = {"TVA_NOTIFY_WEBHOOKS": ",".join(urls), "TVA_NOTIFY_BATCH_MS": "1000", "TVA_NOTIFY_INTERVAL_MS": "1000"}
    agents = [AgentProc(tmp_path, n, env=env) for n in ("alpha", "beta", "gamma")]
    alpha, beta, gamma = agents
    try:
        alpha.cli("init", "--name", "home")
        alpha.start()
        for p in (beta, gamma):
            p.start_join(alpha.cli("invite", "--json")["invite"])
        for p in agents:
            wait_until(lambda p=p: [h["state"] for h in p.cli("hosts", "--json")].count("alive") == 3, 60,
                       f"{p.name} to see three live hosts")
        victim = gamma.peer_id
        gamma.kill()
        killed_at = time.monotonic()
        wait_until(lambda: good.events("host_dead", victim), 90, "the webhook to hear of the dead host")
        heard_s = time.monotonic() - killed_at
        time.sleep(4)  # several batch windows and ticks more: a second sender would have posted by now
        dead = good.events("host_dead", victim)
        assert len(dead) == 1, dead  # one event, in one post, from one host
        post = dead[0][0]
        assert post["fleet"] == "home" and post["from"]["peer_id"] != victim

        gamma.start()
        wait_until(lambda: good.events("host_back", victim), 90, "the webhook to hear of the return")
        time.sleep(4)
        back = good.events("host_back", victim)
        assert len(back) == 1, back

        # The failing webhooks were tried, failed, and retried — on the host that sent.
        sender = next(p for p in agents if p.peer_id == post["from"]["peer_id"])
        samples = scrape(sender)
        assert value(samples, "tva_notify_total", outcome="posts_failed") >= 2
        assert value(samples, "tva_notify_total", outcome="posts_sent") >= 2
        # No policy tick of any agent woke more than a second late, though a post hung for 10 s
        # at a time: the senders are tasks of their own.
        for p in (alpha, beta):
            s = scrape(p)
            ticks = total(s, "tva_policy_tick_lag_seconds_count")
            assert ticks > 10 and value(s, "tva_policy_tick_lag_seconds_bucket", le="1.0") == ticks, p.name
        assert heard_s < 60
    finally:
        for p in agents:
            p.kill()

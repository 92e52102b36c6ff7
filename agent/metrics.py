"""The daemon in the Prometheus text format (prometheus-client), served at ``GET /metrics`` by
``agent.metrics_api`` (kept apart: the daemon builds these before FastAPI is imported).

Most figures already exist as counters somewhere in the daemon (the mesh driver, the transport,
the join listener, custody, the decision log, the supervisor): a collector reads them at scrape
time rather than copying every increment into a second set of counters. What only exists here:
the API's request latency histogram (fed by the HTTP server for every answered request) and the
policy loop's lateness.

The route needs the token like every other (the door): Prometheus sends it with
``authorization: {credentials_file: …}`` (or ``bearer_token_file``) in the scrape config. Open
metrics would tell anyone who can reach the port the fleet's size, its hosts' states and its
traffic — exactly what the door keeps from other local users and web pages.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

log = logging.getLogger("tva.metrics")

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
TICK_LAG_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
# fixed, so the series stay put when the limit (retransmit_mult · ⌈log10(n+1)⌉) moves with the fleet
RUMOUR_TRANSMITS_BUCKETS = (*range(0, 17), 24, 32, 48, 64)
COMPONENT_STATES = ("starting", "ok", "degraded", "restarting", "off")
REFUSAL_COUNTERS = {  # (source, counter) pairs that count refused input, by where they are kept
    "join": ("refused", "rate_limited"),
    "custody": ("intents_refused", "repairs_refused_size", "repairs_refused_disk"),
}


class AgentMetrics:
    """One daemon's metrics: a registry of its own (never the process-global one: tests run
    several agents in one process)."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Histogram("tva_api_request_duration_seconds", "API requests answered, by route template",
                                  ("route", "method", "status"), buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.tick_lag = Histogram("tva_policy_tick_lag_seconds", "how late the policy loop woke up, per tick",
                                  buckets=TICK_LAG_BUCKETS_S, registry=self.registry)
        self.registry.register(_Collector(agent))

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).observe(seconds)

    def attach(self, app) -> None:
        """Serve this agent's metrics from ``app`` and time its requests (agent.http_server)."""
        app.state.metrics = self
        app.state.observe_request = self.observe_request

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Collector:
    def __init__(self, agent: Any) -> None:
        self.agent = agent

    def collect(self):
        a = self.agent
        for family in (self._members, self._traffic, self._gossip, self._refusals, self._custody, self._torrents, self._components,
                       self._decisions, self._notify):
            try:
                yield from family(a)
            except Exception:  # one broken family must not cost the scrape the others
                log.exception("metrics: %s failed", family.__name__)

    @staticmethod
    def _members(a):
        g = GaugeMetricFamily("tva_members", "fleet members by liveness state, as this host sees them",
                              labels=("state",))
        states = Tally(h["state"] for h in a.service.hosts())
        for state in ("alive", "suspect", "dead", "asleep", "left", "revoked", "unknown"):
            g.add_metric((state,), states.get(state, 0))
        yield g
        info = GaugeMetricFamily("tva_info", "this agent", labels=("version", "fleet", "host", "peer_id"))
        status = a.service.status()
        info.add_metric((str(status.get("version")), str(status.get("fleet_name")), str(status.get("host_name")),
                         a.state.peer_id), 1)
        yield info

    @staticmethod
    def _traffic(a):
        frames = CounterMetricFamily("tva_mesh_frames", "mesh frames by direction and kind", labels=("direction", "kind"))
        size = CounterMetricFamily("tva_mesh_bytes", "mesh frame bytes by direction and kind",
                                   labels=("direction", "kind"))
        for (direction, kind), (n, b) in sorted(a.driver.traffic.items()):
            frames.add_metric((direction, kind), n)
            size.add_metric((direction, kind), b)
        yield frames
        yield size
        transport = CounterMetricFamily("tva_transport_events", "the mesh transport's counters (libp2p)",
                                        labels=("event",))
        stats = a.transport.stats()
        for name, value in sorted(stats.items()):
            transport.add_metric((name,), value)
        yield transport
        decode = CounterMetricFamily("tva_decode_errors", "input that could not be decoded, by where it came in",
                                     labels=("source",))
        decode.add_metric(("transport",), stats.get("decode_errors", 0))
        core_stats = a.node.stats
        decode.add_metric(("mesh",), sum(v for k, v in core_stats.items()  # frames that did not decode
                                         if k.startswith("frames_refused_") and k != "frames_refused_nonmember"))
        yield decode
        core = CounterMetricFamily("tva_mesh_events", "the mesh core's and driver's counters", labels=("event",))
        for name, value in sorted({**a.node.stats, **a.driver.counters}.items()):
            core.add_metric((name,), value)
        yield core

    @staticmethod
    def _gossip(a):
        """What gossip frames carry by item kind, and the rumour queues (issue 19: a retransmit
        limit per rumour; ``transmits_at_exit`` says how often each was sent when it left)."""
        g = a.node.gossip_stats()
        items = CounterMetricFamily("tva_gossip_items_sent", "items sent inside gossip frames, by kind",
                                    labels=("kind",))
        size = CounterMetricFamily("tva_gossip_item_bytes_sent", "bytes of items sent inside gossip frames, by kind",
                                   labels=("kind",))
        for kind, n in g["items_sent"].items():
            items.add_metric((kind,), n)
            size.add_metric((kind,), g["item_bytes_sent"][kind])
        yield items
        yield size
        limit = GaugeMetricFamily("tva_gossip_retransmit_limit", "how often one rumour is sent at most, now")
        limit.add_metric((), g["retransmit_limit"])
        yield limit
        depth = GaugeMetricFamily("tva_gossip_queue_depth", "rumours waiting in a queue", labels=("queue",))
        depth_max = GaugeMetricFamily("tva_gossip_queue_depth_max", "the most rumours a queue ever held",
                                      labels=("queue",))
        events = CounterMetricFamily("tva_gossip_queue_events", "what happened to a queue's rumours "
                                     "(put, replaced, retired, evicted, dropped_for_size, skipped_for_size, "
                                     "transmits)", labels=("queue", "event"))
        sent = HistogramMetricFamily("tva_gossip_rumour_transmits", "how often each rumour had been sent when "
                                     "it left its queue", labels=("queue",))
        for name, q in sorted(g["queues"].items()):
            depth.add_metric((name,), q["depth"])
            depth_max.add_metric((name,), q["depth_max"])
            for event, n in sorted(q.items()):
                if event not in ("depth", "depth_max", "transmits_at_exit"):
                    events.add_metric((name, event), n)
            at_exit = q["transmits_at_exit"]
            buckets = [(floatToGoString(le), sum(n for t, n in at_exit.items() if t <= le)) for le in RUMOUR_TRANSMITS_BUCKETS]
            buckets.append(("+Inf", sum(at_exit.values())))
            sent.add_metric((name,), buckets, sum_value=sum(t * n for t, n in at_exit.items()))
        yield from (depth, depth_max, events, sent)

    @staticmethod
    def _refusals(a):
        c = CounterMetricFamily("tva_refusals", "requests and data refused, by source and reason",
                                labels=("source", "reason"))
        for reason, n in sorted(a.state.doc.stats.refused.items()):
            c.add_metric(("decisions", reason), n)
        counters = {"join": a.join.counters, "custody": a.torrents.counters}
        for source, names in REFUSAL_COUNTERS.items():
            for name in names:
                c.add_metric((source, name), counters[source].get(name, 0))
        for name, value in sorted({**a.node.stats, **a.driver.counters}.items()):
            if "refused" in name or "forged" in name:
                c.add_metric(("mesh", name), value)
        yield c

    @staticmethod
    def _decisions(a):
        stats = a.state.doc.stats
        c = CounterMetricFamily("tva_decision_ops", "signed decision ops received, by outcome", labels=("outcome",))
        c.add_metric(("inserted",), stats.inserted)
        c.add_metric(("duplicate",), stats.duplicates)
        c.add_metric(("refused",), sum(stats.refused.values()))
        c.add_metric(("ineffective",), sum(stats.ineffective.values()))
        c.add_metric(("orphan_dropped",), stats.orphans_dropped)
        c.add_metric(("equivocation",), stats.equivocations)
        yield c

    @staticmethod
    def _custody(a):
        g = GaugeMetricFamily("tva_custody_pins", "pins by custody status", labels=("status",))
        statuses = Tally(row["status"] for row in a.service.custody())
        for status in ("ok", "under", "over", "lost"):
            g.add_metric((status,), statuses.get(status, 0))
        yield g
        c = CounterMetricFamily("tva_repairs", "custody repair copies on this host, by event", labels=("event",))
        counters = a.torrents.counters
        for event in ("started", "done", "failed"):
            c.add_metric((event,), counters.get(f"repairs_{event}", 0))
        yield c
        other = CounterMetricFamily("tva_custody_events", "custody's other counters", labels=("event",))
        for name, value in sorted(counters.items()):
            if not name.startswith("repairs_"):
                other.add_metric((name,), value)
        yield other

    @staticmethod
    def _torrents(a):
        samples = list(getattr(a.torrents, "_last", {}).values())
        rate = GaugeMetricFamily("tva_torrent_rate_bytes_per_second", "payload rate of all torrents",
                                 labels=("direction",))
        rate.add_metric(("down",), sum(s.rate_down_bps for s in samples))
        rate.add_metric(("up",), sum(s.rate_up_bps for s in samples))
        yield rate
        g = GaugeMetricFamily("tva_torrents", "torrents in this host's engine by state", labels=("state",))
        for state, n in sorted(Tally(s.state for s in samples).items()):
            g.add_metric((state,), n)
        yield g
        peers = GaugeMetricFamily("tva_torrent_peers", "connected torrent peers, all torrents")
        peers.add_metric((), sum(s.peers for s in samples))
        yield peers

    @staticmethod
    def _components(a):
        up = GaugeMetricFamily("tva_component_up", "1 when the component runs and says it is ok",
                               labels=("component",))
        state = GaugeMetricFamily("tva_component_state", "the component's state (1 for the current one)",
                                  labels=("component", "state"))
        restarts = CounterMetricFamily("tva_component_restarts", "restarts after a failure", labels=("component",))
        for name, h in sorted(a.supervisor.status().items()):
            up.add_metric((name,), 1 if h["state"] == "ok" else 0)
            for s in COMPONENT_STATES:
                state.add_metric((name, s), 1 if h["state"] == s else 0)
            restarts.add_metric((name,), h["restarts"])
        yield up
        yield state
        yield restarts

    @staticmethod
    def _notify(a):
        notifier = getattr(a, "notifier", None)
        if notifier is None:
            return
        c = CounterMetricFamily("tva_notify", "webhook notifications, by outcome", labels=("outcome",))
        for name, value in sorted(notifier.counters.items()):
            c.add_metric((name,), value)
        yield c

"""Notifications to webhooks (``notify_webhooks`` in the config): the shell around
``agent.notify_core``, a daemon component of its own.

Each tick it observes the fleet through the service's snapshot, derives events, and — on the host
holding the ``notifier`` duty — queues them on every webhook's ``Batcher``. Each webhook has its own
sender task, so a webhook that hangs or fails delays only itself: posts time out after
``POST_TIMEOUT_S``, are retried with back-off, and nothing else in the daemon waits on them (the
policy loop, the API and the mesh are other tasks). A Discord webhook gets Discord's payload;
anything else a plain JSON body (``notify_core.payload``). Webhook URLs can hold secrets (Discord's
token is in its path): logs show only the scheme and host.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

import h11
import trio

from agent import notify_core
from agent.logs import RateLimit
from agent.policy import duties as duty_policy
from agent.policy.classes import NOTIFIER
from tva.errors import RemoteDataError

log = logging.getLogger("tva.notify")

POST_TIMEOUT_S = 10.0
RESPONSE_BYTES_MAX = 64 * 1024
FAILURE_LOG_INTERVAL_S = 300.0


def shown(url: str) -> str:
    """A webhook as logs may show it (its path and query may be a secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "") + "/…"


class Notifier:
    def __init__(self, cfg, state, service, *, clock_ms: Callable[[], int],
                 on_health: Callable[[str, str | None], None] = lambda _s, _r: None) -> None:
        self.cfg = cfg
        self.state = state
        self.service = service
        self.clock_ms = clock_ms
        self._on_health = on_health
        self.batchers = {url: notify_core.Batcher(cfg.notify_batch_ms, cfg.notify_interval_ms)
                         for url in cfg.notify_webhooks}
        self.counters = {"events": 0, "posts_sent": 0, "posts_failed": 0, "batches_given_up": 0, "events_dropped": 0}
        self._prev: notify_core.Observation | None = None
        self._recent: list[notify_core.Event] = []
        self._prev_notifier: str | None = None
        self._wake = {url: trio.Event() for url in self.batchers}
        self._logged = RateLimit(FAILURE_LOG_INTERVAL_S)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if not self.batchers:
            self._on_health("off", "no notify_webhooks configured")
            task_status.started()
            # Stays a running component like the other "off" ones (fabric, torrents): the
            # supervisor's status and fault injection treat every component alike.
            await trio.sleep_forever()
        async with trio.open_nursery() as nursery:
            for url, batcher in self.batchers.items():
                nursery.start_soon(self._sender, url, batcher)
            task_status.started()
            while True:
                self.observe()
                await trio.sleep(self.cfg.tick_interval_ms / 1000)

    # --- observing ------------------------------------------------------------------------------

    def observation(self) -> notify_core.Observation:
        snap = self.service.snapshot()
        copies = frozenset((content, peer) for peer, items in snap.holdings.items()
                           for content, h in items.items() if h.custody and h.state == "complete")
        return notify_core.Observation(
            liveness=dict(snap.liveness), names={p: c.name for p, c in snap.cards.items()},
            custody={plan.content: plan.status for plan in self.service.custody_plans()},
            custody_copies=copies, members=frozenset(self.state.members()), revoked=frozenset(self.state.revoked()))

    def observe(self) -> None:
        now = self.clock_ms()
        cur = self.observation()
        events = notify_core.events_between(self._prev, cur, now)
        self._prev = cur
        self.counters["events"] += len(events)
        notifier = duty_policy.primary_of(self.service.duty_assignments(), NOTIFIER)
        role = notify_core.sender_role(self.state.peer_id, self._prev_notifier, notifier, cur.liveness)
        self._prev_notifier = notifier
        if role is not None:
            if role == notify_core.TAKE_OVER:
                # The last notifier is gone: what the last minute brought may not have been sent.
                events = [e for e in notify_core.recent(self._recent, now) if e not in events] + events
            self._recent = []
            if events:
                for batcher in self.batchers.values():
                    before = batcher.dropped
                    batcher.add(events, now)
                    self.counters["events_dropped"] += batcher.dropped - before
                for wake in self._wake.values():
                    wake.set()
        else:
            self._recent = notify_core.recent(self._recent + events, now)

    # --- sending --------------------------------------------------------------------------------

    async def _sender(self, url: str, batcher: notify_core.Batcher) -> None:
        while True:
            due = batcher.due_at()
            wait_ms = None if due is None else due - self.clock_ms()
            if wait_ms is None or wait_ms > 0:
                with trio.move_on_after(max(0, wait_ms or 0) / 1000 if wait_ms is not None else float("inf")):
                    await self._wake[url].wait()
                self._wake[url] = trio.Event()
                continue
            batch = batcher.take(self.clock_ms())
            if batch is None:
                continue
            await self._post_batch(url, batcher, *batch)

    async def _post_batch(self, url: str, batcher: notify_core.Batcher, events, dropped: int) -> None:
        card = self.state.card()
        body = notify_core.payload(url, events, dropped, fleet=self.state.fleet.fleet_name,
                                   fleet_id=self.state.fleet.fleet_id, host=card.name if card else "?",
                                   peer_id=self.state.peer_id)
        retry_after_ms = None
        try:
            status, retry_after_ms = await post_json(url, body, POST_TIMEOUT_S)
            if not 200 <= status < 300:
                raise RemoteDataError(f"HTTP {status}")
        except (OSError, trio.TooSlowError, h11.ProtocolError, RemoteDataError, ssl.SSLError, ValueError) as exc:
            why = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            self.counters["posts_failed"] += 1
            retried = batcher.failed(self.clock_ms(), retry_after_ms)
            if not retried:
                self.counters["batches_given_up"] += 1
                log.warning("notify: gave up on %d events for %s after %d tries (%s)", len(events), shown(url),
                            notify_core.ATTEMPTS_MAX, why)
            elif self._logged.allow(url):
                log.warning("notify: %s failed (%s); retrying with back-off", shown(url), why)
            return
        batcher.sent(self.clock_ms())
        self.counters["posts_sent"] += 1
        log.info("notify: sent %d events to %s", len(events), shown(url))


async def post_json(url: str, body: dict, timeout_s: float) -> tuple[int, int | None]:
    """POST ``body`` as JSON; (status, Retry-After in ms if the answer named one). http and https."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {shown(url)}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    payload = json.dumps(body).encode()
    host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if ":" in parts.hostname and not host_header.startswith("["):
        host_header = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
    with trio.fail_after(timeout_s):
        if parts.scheme == "https":
            stream = await trio.open_ssl_over_tcp_stream(parts.hostname, port, ssl_context=ssl.create_default_context())
        else:
            stream = await trio.open_tcp_stream(parts.hostname, port)
        async with stream:
            conn = h11.Connection(h11.CLIENT)
            out = conn.send(h11.Request(method="POST", target=target, headers=[
                ("Host", host_header), ("User-Agent", "tva-agent"), ("Content-Type", "application/json"),
                ("Content-Length", str(len(payload))), ("Connection", "close")]))
            out += conn.send(h11.Data(data=payload)) + conn.send(h11.EndOfMessage())
            await stream.send_all(out)
            received = 0
            response = None
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(16384)
                    received += len(data)
                    if received > RESPONSE_BYTES_MAX:
                        break
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Response):
                    response = event
                if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed) or response is not None:
                    break
    if response is None:
        raise RemoteDataError("no HTTP answer")
    retry_after = None
    for name, value in response.headers:
        if name == b"retry-after" and value.strip().isdigit():
            retry_after = int(value.strip()) * 1000
    return response.status_code, retry_after

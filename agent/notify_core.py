"""Notifications, the deciding part (pure): which events the fleet's state changes make, and when a
webhook gets a batch of them.

Every host observes the fleet each tick and derives the same events from the changes it sees
(``events_between``): a host dead or back, a pin's custody under, lost or restored, a repair done,
an invite redeemed (a new member), a revocation. One host sends them (``sender_role``): the one
that held the ``notifier`` duty (``agent.policy.duties``) at the *previous* tick — so when a
notifier comes back and takes its duty back, the host that saw it return still sends "back". When
the previous notifier is gone (dead: the very event), the new one takes over and also sends what
the last minute brought (``HANDOVER_MS``): every other host keeps that much for this.

Per webhook, a ``Batcher`` turns events into posts: the first pending event opens a batch window
(``batch_ms``) so that what happens together goes out together; posts are at least
``interval_ms`` apart (rate limit); a failed post is retried with doubling back-off up to
``RETRY_DELAY_MS_MAX`` and given up after ``ATTEMPTS_MAX`` tries (counted, logged by the shell).
At most ``PENDING_MAX`` events wait; beyond that the oldest are dropped and the post says how many.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

HANDOVER_MS = 60_000  # events a non-notifier keeps, for the host that takes the duty over
PENDING_MAX = 100
ATTEMPTS_MAX = 8
RETRY_DELAY_MS_MIN = 2_000
RETRY_DELAY_MS_MAX = 300_000
DEAD_STATES = frozenset({"dead"})
LIVE_STATES = frozenset({"alive", "suspect"})
TROUBLED = {"under": "custody_under", "lost": "custody_lost"}
KINDS = ("host_dead", "host_back", "custody_under", "custody_lost", "custody_restored", "repair_done",
         "invite_redeemed", "host_revoked")


@dataclass(frozen=True)
class Observation:
    """What one tick saw. ``liveness``: peer → state; ``custody``: content → status;
    ``custody_copies``: (content, peer) of complete copies made by custody repairs."""

    liveness: Mapping[str, str]
    names: Mapping[str, str]
    custody: Mapping[str, str]
    custody_copies: frozenset[tuple[str, str]]
    members: frozenset[str]
    revoked: frozenset[str]


@dataclass(frozen=True)
class Event:
    kind: str  # one of KINDS
    subject: str  # a peer id, or a content id
    text: str  # one line for people
    at_ms: int

    def to_json(self) -> dict:
        return {"kind": self.kind, "subject": self.subject, "text": self.text, "at_ms": self.at_ms}


def events_between(prev: Observation | None, cur: Observation, now_ms: int) -> list[Event]:
    """The events from ``prev`` to ``cur``; none for the first observation (a restart must not
    announce the whole fleet again)."""
    if prev is None:
        return []
    out: list[Event] = []

    def name(peer: str) -> str:
        return cur.names.get(peer) or prev.names.get(peer) or peer[:16]

    for peer in sorted(cur.liveness):
        was, now = prev.liveness.get(peer), cur.liveness[peer]
        if peer in cur.revoked:
            continue  # a revocation is its own event
        if now in DEAD_STATES and was in LIVE_STATES:
            out.append(Event("host_dead", peer, f"{name(peer)} is down (no answer from it)", now_ms))
        elif now in LIVE_STATES and was in DEAD_STATES:
            out.append(Event("host_back", peer, f"{name(peer)} is back", now_ms))
    for content in sorted(cur.custody):
        was, now = prev.custody.get(content), cur.custody[content]
        if was == now or was is None:
            continue  # a new pin starts wherever it starts
        if now in TROUBLED:
            short = "no live copy left" if now == "lost" else "fewer copies than pinned"
            out.append(Event(TROUBLED[now], content, f"{content}: {short}", now_ms))
        elif now == "ok" and was in TROUBLED:
            out.append(Event("custody_restored", content, f"{content}: enough copies again", now_ms))
    for content, peer in sorted(cur.custody_copies - prev.custody_copies):
        out.append(Event("repair_done", content, f"{content}: a copy was repaired onto {name(peer)}", now_ms))
    for peer in sorted(cur.members - prev.members - cur.revoked):
        out.append(Event("invite_redeemed", peer, f"{name(peer)} joined the fleet (an invite was redeemed)", now_ms))
    for peer in sorted(cur.revoked - prev.revoked):
        out.append(Event("host_revoked", peer, f"{name(peer)} was revoked from the fleet", now_ms))
    return out


@dataclass
class Batcher:
    """One webhook's queue: events in, a batch out when due, its fate back (times in ms)."""

    batch_ms: int
    interval_ms: int
    pending: list[Event] = field(default_factory=list)
    dropped: int = 0  # events pushed out of a full queue since the last post
    in_flight: tuple[Event, ...] = ()
    in_flight_dropped: int = 0
    attempts: int = 0
    not_before_ms: int = 0  # rate limit or back-off
    window_end_ms: int | None = None  # when the open batch window closes

    def add(self, events: list[Event], now_ms: int) -> None:
        if not events:
            return
        if self.window_end_ms is None and not self.in_flight:
            self.window_end_ms = now_ms + self.batch_ms
        self.pending.extend(events)
        over = len(self.pending) - PENDING_MAX
        if over > 0:
            del self.pending[:over]
            self.dropped += over

    def due_at(self) -> int | None:
        """When the next post may go (None: nothing to send)."""
        if self.in_flight:
            return self.not_before_ms
        if not self.pending:
            return None
        return max(self.not_before_ms, self.window_end_ms if self.window_end_ms is not None else 0)

    def take(self, now_ms: int) -> tuple[tuple[Event, ...], int] | None:
        """The batch to post now (events, how many were dropped before them), or None."""
        due = self.due_at()
        if due is None or now_ms < due:
            return None
        if not self.in_flight:
            self.in_flight, self.in_flight_dropped = tuple(self.pending), self.dropped
            self.pending, self.dropped, self.window_end_ms = [], 0, None
        self.attempts += 1
        return self.in_flight, self.in_flight_dropped

    def sent(self, now_ms: int) -> None:
        self.in_flight, self.in_flight_dropped, self.attempts = (), 0, 0
        self.not_before_ms = now_ms + self.interval_ms
        if self.pending:
            self.window_end_ms = now_ms + self.batch_ms

    def failed(self, now_ms: int, retry_after_ms: int | None = None) -> bool:
        """The post failed; True when it will be retried, False when given up (after ATTEMPTS_MAX)."""
        if self.attempts >= ATTEMPTS_MAX:
            self.in_flight, self.in_flight_dropped, self.attempts = (), 0, 0
            self.not_before_ms = now_ms + self.interval_ms
            if self.pending:
                self.window_end_ms = now_ms + self.batch_ms
            return False
        delay = min(RETRY_DELAY_MS_MAX, RETRY_DELAY_MS_MIN * 2 ** (self.attempts - 1))
        if retry_after_ms is not None:
            delay = min(RETRY_DELAY_MS_MAX, max(delay, retry_after_ms))
        self.not_before_ms = now_ms + max(delay, self.interval_ms)
        return True


SEND, TAKE_OVER = "send", "take over"


def sender_role(self_id: str, prev_notifier: str | None, notifier: str | None,
                liveness: Mapping[str, str]) -> str | None:
    """Whether this host sends this tick's events: ``SEND`` (it was the notifier), ``TAKE_OVER``
    (it is the notifier now and the previous one is not alive: send the kept events too), or None."""
    if prev_notifier == self_id:
        return SEND
    if notifier == self_id and (prev_notifier is None or liveness.get(prev_notifier) not in LIVE_STATES):
        return TAKE_OVER
    return None


def recent(events: list[Event], now_ms: int) -> list[Event]:
    """What a non-notifier keeps for a handover."""
    return [e for e in events if now_ms - e.at_ms <= HANDOVER_MS]


def is_discord(url: str) -> bool:
    """Discord's webhooks take their own payload (``content``), not ours."""
    rest = url.split("://", 1)[-1]
    host, _, path = rest.partition("/")
    host = host.rsplit("@", 1)[-1].split(":", 1)[0].lower()
    return (host in ("discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com")
            and path.startswith("api/webhooks/"))


DISCORD_CONTENT_CHARS_MAX = 2000


def payload(url: str, events: tuple[Event, ...], dropped: int, *, fleet: str, fleet_id: str, host: str,
            peer_id: str) -> dict:
    """The JSON body of one post: Discord's shape for a Discord webhook, ours otherwise."""
    if is_discord(url):
        lines = [f"**{fleet}** (sent by {host})"] + [f"• {e.text}" for e in events]
        if dropped:
            lines.append(f"… and {dropped} earlier events that did not fit")
        text = "\n".join(lines)
        if len(text) > DISCORD_CONTENT_CHARS_MAX:
            text = text[: DISCORD_CONTENT_CHARS_MAX - 2] + " …"
        # Host and content names are the fleet's own text: never let them mention anyone.
        return {"username": "tva-agent", "content": text, "allowed_mentions": {"parse": []}}
    return {"fleet": fleet, "fleet_id": fleet_id, "from": {"host": host, "peer_id": peer_id},
            "events": [e.to_json() for e in events], "dropped": dropped}

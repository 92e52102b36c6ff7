"""Notifications' pure core: the events a change makes, and a webhook's batches (agent.notify_core)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent import notify_core as nc

A, B, C = "12D3KooWA", "12D3KooWB", "12D3KooWC"


def obs(liveness=None, custody=None, copies=(), members=(A, B, C), revoked=()) -> nc.Observation:
    return nc.Observation(liveness=liveness or {A: "alive", B: "alive", C: "alive"},
                          names={A: "alpha", B: "beta", C: "gamma"}, custody=custody or {},
                          custody_copies=frozenset(copies), members=frozenset(members), revoked=frozenset(revoked))


def kinds(events) -> list[tuple[str, str]]:
    return [(e.kind, e.subject) for e in events]


def test_the_first_observation_announces_nothing():
    assert nc.events_between(None, obs(liveness={A: "alive", B: "dead"}, custody={"film": "lost"}), 1) == []


def test_hosts_down_and_back_custody_repairs_joins_and_revocations():
    before = obs(custody={"film": "ok", "show": "under"}, members=(A, B))
    after = obs(liveness={A: "alive", B: "dead", C: "alive"}, custody={"film": "under", "show": "ok", "new": "under"},
                copies=[("show", C)], members=(A, B, C))
    assert kinds(nc.events_between(before, after, 5)) == [
        ("host_dead", B), ("custody_under", "film"), ("custody_restored", "show"), ("repair_done", "show"),
        ("invite_redeemed", C)]
    back = obs(liveness={A: "alive", B: "alive", C: "dead"}, custody={"film": "lost"}, revoked=(C,))
    assert kinds(nc.events_between(after, back, 6)) == [
        ("host_back", B), ("custody_lost", "film"), ("host_revoked", C)]
    # suspicion alone, or a host asleep, is not news
    assert nc.events_between(obs(), obs(liveness={A: "alive", B: "suspect", C: "asleep"}), 7) == []


def ev(i: int, at: int = 0) -> nc.Event:
    return nc.Event("host_dead", f"p{i}", f"p{i} is down", at)


def test_a_batch_window_gathers_events_and_posts_are_rate_limited():
    b = nc.Batcher(batch_ms=1000, interval_ms=5000)
    b.add([ev(1)], 0)
    assert b.take(999) is None
    b.add([ev(2)], 500)
    events, dropped = b.take(1000)
    assert [e.subject for e in events] == ["p1", "p2"] and dropped == 0
    b.sent(1100)
    b.add([ev(3)], 1200)
    assert b.take(2200) is None and b.due_at() == 6100  # the interval holds the next post back
    assert [e.subject for e in b.take(6100)[0]] == ["p3"]


def test_a_failing_post_is_retried_with_back_off_then_given_up():
    b = nc.Batcher(batch_ms=0, interval_ms=0)
    b.add([ev(1)], 0)
    now, delays = 0, []
    while True:
        assert b.take(now) is not None
        if not b.failed(now):
            break
        delays.append(b.due_at() - now)
        now = b.due_at()
    assert len(delays) == nc.ATTEMPTS_MAX - 1
    assert delays == sorted(delays) and delays[0] == nc.RETRY_DELAY_MS_MIN and delays[-1] <= nc.RETRY_DELAY_MS_MAX
    assert b.due_at() is None  # given up: nothing pending any more
    # A Retry-After longer than the back-off is honoured.
    b.add([ev(2)], now)
    b.take(now)
    b.failed(now, retry_after_ms=60_000)
    assert b.due_at() == now + 60_000


@given(st.lists(st.tuples(st.sampled_from(["add", "take", "ok", "fail"]), st.integers(0, 3)), max_size=80))
def test_no_event_is_lost_or_sent_twice_unless_dropped_or_given_up(steps):
    b = nc.Batcher(batch_ms=100, interval_ms=300)
    now, made, sent, flying = 0, 0, [], None
    lost = 0
    for op, n in steps:
        now += 150
        if op == "add":
            b.add([ev(made + i, now) for i in range(n)], now)
            made += n
        elif op == "take" and flying is None:
            got = b.take(now)
            if got is not None:
                flying = got
        elif op == "ok" and flying is not None:
            b.sent(now)
            sent.extend(e.subject for e in flying[0])
            flying = None
        elif op == "fail" and flying is not None:
            if not b.failed(now):
                lost += len(flying[0])
            flying = None
    assert len(sent) == len(set(sent))
    waiting = len(b.pending) + (len(b.in_flight) if b.in_flight else 0)
    assert len(sent) + waiting + lost + b.dropped + b.in_flight_dropped <= made
    assert len(b.pending) <= nc.PENDING_MAX


def test_discord_gets_its_own_payload_and_no_mentions():
    events = (nc.Event("host_dead", B, "@everyone beta is down", 1),)
    url = "https://discord.com/api/webhooks/123/secret"
    assert nc.is_discord(url) and not nc.is_discord("https://example.org/api/webhooks/1")
    body = nc.payload(url, events, 2, fleet="home", fleet_id="f", host="alpha", peer_id=A)
    assert set(body) == {"username", "content", "allowed_mentions"} and body["allowed_mentions"] == {"parse": []}
    assert "beta is down" in body["content"] and "2 earlier" in body["content"]
    long = tuple(nc.Event("host_dead", str(i), "x" * 100, 1) for i in range(50))
    assert len(nc.payload(url, long, 0, fleet="home", fleet_id="f", host="a", peer_id=A)["content"]) <= 2000
    plain = nc.payload("http://127.0.0.1:9/hook", events, 0, fleet="home", fleet_id="f", host="alpha", peer_id=A)
    assert plain["events"][0]["kind"] == "host_dead" and plain["from"] == {"host": "alpha", "peer_id": A}


def test_one_sender_per_tick_across_a_handover():
    live = {A: "alive", B: "alive", C: "alive"}
    # Steady: the notifier of the previous tick sends; nobody else.
    assert [nc.sender_role(p, A, A, live) for p in (A, B, C)] == [nc.SEND, None, None]
    # A died: B is the notifier now and takes over (with the kept events); A cannot send.
    dead_a = {**live, A: "dead"}
    assert [nc.sender_role(p, A, B, dead_a) for p in (B, C)] == [nc.TAKE_OVER, None]
    # A is back and takes its duty back: B, who saw it return, still sends this tick ("A is back").
    assert [nc.sender_role(p, B, A, live) for p in (A, B, C)] == [None, nc.SEND, None]
    assert nc.sender_role(A, A, A, live) == nc.SEND  # from the next tick on

"""Failure detection: SWIM probing with Lifeguard suspicion, sleep patience and graceful leave.

One member is probed per ``probe_interval_ms`` in a shuffled round-robin (so every member is
probed at least once every two rounds); no ack within ``probe_timeout_ms`` → ``indirect_probes_k``
helpers are asked to ping it (PING_REQ); still nothing by the end of the period → it is *suspected*.
A suspicion becomes *dead* after ``suspicion_timeout_ms(n, confirmations)``, which starts long and
shrinks as other members independently suspect the same incarnation (Lifeguard's "dogpile").
A death is each node's own verdict: another member's "dead" is taken as its suspicion (starting or
confirming ours), so the member has our whole timeout to refute — one member, honest but wrong or
compromised, cannot make the others hold a live host dead, even for a moment.

What each node believes about a member is a record (state, incarnation). Records merge by the
lexicographic maximum of (incarnation, rank) with rank alive < asleep < suspect < dead < left, a
join-semilattice, so every node converges whatever order records arrive in. Only the member
itself raises its incarnation: when it hears any non-alive claim about itself at its current
incarnation it *refutes* with incarnation + 1, and sends the refutation straight back to whoever
told it (which is what lets two halves of a healed partition find each other again).

Liveness about X is X's to end (``signing``): alive, asleep and left are X's own signed
statements; a suspicion or a death must carry X's statement at the same incarnation. So a record
can only raise X's incarnation to one X itself signed — the bound per round is X's own +1 — and a
forged record is refused (``on_forged``), never applied or relayed. A restarted X that starts at
an equal or lower incarnation hears its own older-life statement back (a correction) and refutes
above it.

Extras over plain SWIM, each for a failure the design notes name:
- a member that announced sleep is not probed; after its class's patience it is suspected;
- a graceful leave is a LEFT record (outranks dead), sent directly to every live member;
- a stale record from a peer is answered with our newer one ("correction"), and any frame from a
  member we do not hold alive is answered with what we believe, so it can refute (Lifeguard's
  buddy system, generalised);
- every ``reconnect_interval_ms`` one dead member is pinged, so a falsely-dead or rebooted host
  gets the chance to refute;
- a probe outstanding across a local stall (the process was suspended) is dropped, not blamed on
  its target;
- Lifeguard's local health awareness: ping-req helpers answer NACK when the target did not answer
  them either; a failed probe with missing nacks, or a refutation, says *we* are the slow one, so
  ``health`` rises and our probe timeout and interval stretch by (health + 1) until probes succeed;
- on a lossy link a lost ping or ack is the usual cause of silence: the target is pinged directly
  twice more beside the indirect probes (memberlist's fallback probe), and the prober tells the
  target of its suspicion at once, so a live one refutes within a round trip;
- the time-out is at least the retransmission time-out of our measured round trip (RFC 6298), and
  the period leaves the indirect probes two more: on a WAN a late ack must not become a false
  suspicion — each one costs a fleet-wide suspicion, refutation and presence (issue 19).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from .config import MeshConfig
from .frames import INCARNATION_MAX, Ack, Gossip, Item, MemberRecord, Nack, Ping, PingReq, PresenceRecord
from .outbox import BroadcastQueue, Outbox
from .signing import OWN_STATES, Signer, Verifier, member_proof_ok, own_member_record
from .types import Liveness, LivenessChanged, Rng

ALIVE, ASLEEP, SUSPECT, DEAD, LEFT = (Liveness.ALIVE, Liveness.ASLEEP, Liveness.SUSPECT, Liveness.DEAD,
                                      Liveness.LEFT)
CORRECTIONS_MAX = 32


class IndexedSet:
    """A set with O(1) add/remove and uniform O(k) random sampling in a deterministic order."""

    def __init__(self) -> None:
        self._items: list[str] = []
        self._pos: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, x: object) -> bool:
        return x in self._pos

    def add(self, x: str) -> None:
        if x not in self._pos:
            self._pos[x] = len(self._items)
            self._items.append(x)

    def discard(self, x: str) -> None:
        i = self._pos.pop(x, None)
        if i is None:
            return
        last = self._items.pop()
        if i < len(self._items):
            self._items[i] = last
            self._pos[last] = i

    def sample(self, rng: Rng, k: int, exclude: Iterable[str] = ()) -> list[str]:
        skip = set(exclude)
        want = min(len(self._items), k + len(skip))
        if want <= 0:
            return []
        return [x for x in rng.sample(self._items, want) if x not in skip][:k]


@dataclass
class Member:
    peer: str
    host_class: str
    state: Liveness = ALIVE
    incarnation: int = 0
    since_ms: int = 0
    suspectors: list[str] = field(default_factory=list)  # capped at indirect_probes_k + 1
    suspect_start_ms: int = 0
    # the member's own signed statement at this incarnation (none yet at incarnation 0)
    own: Liveness | None = None
    sig: bytes = b""

    def record(self) -> MemberRecord:
        # a suspicion names its first suspector, a death the node that declared it (us: see apply)
        origin = self.suspectors[0] if self.state in (SUSPECT, DEAD) and self.suspectors else ""
        return MemberRecord(self.state, self.peer, self.incarnation, origin, self.own, self.sig)

    def claim(self, state: Liveness, origin: str) -> MemberRecord:
        """Our suspicion (or verdict) about it, carrying its own statement as proof."""
        return MemberRecord(state, self.peer, self.incarnation, origin, self.own, self.sig)


@dataclass
class _Probe:
    target: str
    seq: int
    started_ms: int
    incarnation: int
    timeout_ms: int
    interval_ms: int
    acked: bool = False
    indirect_sent: bool = False
    retries: int = 0  # direct pings sent again after the time-out (see _probe_tick)
    nacks_expected: int = 0
    nacks: int = 0


@dataclass
class _Relay:
    origin: str
    origin_seq: int
    nack_due_ms: int
    expires_ms: int
    nacked: bool = False


class RoundTrip:
    """RFC 6298's smoothed round-trip time and its variation, from acks to our direct pings."""

    def __init__(self) -> None:
        self.srtt_ms: float | None = None
        self.rttvar_ms = 0.0

    def sample(self, rtt_ms: int) -> None:
        if self.srtt_ms is None:
            self.srtt_ms, self.rttvar_ms = float(rtt_ms), rtt_ms / 2
            return
        self.rttvar_ms = 0.75 * self.rttvar_ms + 0.25 * abs(self.srtt_ms - rtt_ms)
        self.srtt_ms = 0.875 * self.srtt_ms + 0.125 * rtt_ms

    def rto_ms(self, initial_ms: int) -> int:
        """A time-out that a late answer rarely beats (``initial_ms`` before the first sample)."""
        return initial_ms if self.srtt_ms is None else int(self.srtt_ms + 4 * self.rttvar_ms)


def _second_retry_ms(p: _Probe) -> int:
    return p.started_ms + (p.timeout_ms + p.interval_ms) // 2


Extras = Callable[[str, bool], tuple[PresenceRecord | None, tuple[Item, ...]]]  # (peer, with presence)


class Swim:
    def __init__(self, self_id: str, config: MeshConfig, rng: Rng, out: Outbox, queue: BroadcastQueue,
                 *, signer: Signer, verify: Verifier, extras: Extras, on_gone: Callable[[str], None],
                 incarnation: int = 0, on_newer: Callable[[str], None] = lambda _peer: None,
                 on_forged: Callable[[MemberRecord], None] = lambda _rec: None,
                 on_incarnation: Callable[[], None] = lambda: None,
                 on_record: Callable[[str], None] = lambda _peer: None) -> None:
        self.self_id, self.cfg, self.rng, self.out, self.queue = self_id, config, rng, out, queue
        self._signer, self._verify = signer, verify
        self._extras, self._on_gone, self._on_newer = extras, on_gone, on_newer
        self._on_forged, self._on_incarnation, self._on_record = on_forged, on_incarnation, on_record
        self.incarnation = incarnation
        self._own: MemberRecord | None = None  # signed once per (incarnation, state)
        self.self_state = ALIVE
        self.members: dict[str, Member] = {}
        self.alive = IndexedSet()
        self.dead = IndexedSet()
        self._order: list[str] = []
        self._order_pos = 0
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}  # the seq of our ping for someone else's ping-req
        self.health = 0  # Lifeguard local health score
        self.rtt = RoundTrip()  # of our direct probes: stretches probe time-outs on a slow network
        self._seq = 0
        self._deadlines: list[tuple[int, int, str, str, int]] = []
        self._tie = 0
        self._corrected_ms: dict[str, int] = {}
        self._corrections: list[Item] = []
        self._refuted = False
        self.next_probe_ms: int | None = None
        self.next_reconnect_ms: int | None = None

    # --- queries --------------------------------------------------------------------------------

    @property
    def n(self) -> int:
        return len(self.members) + 1

    def liveness(self) -> dict[str, Liveness]:
        return {p: m.state for p, m in self.members.items()}

    def next_deadline_ms(self) -> int | None:
        times = [t for t in (self.next_probe_ms, self.next_reconnect_ms) if t is not None]
        if self._probe is not None and not self._probe.acked:
            p = self._probe
            times.append(p.started_ms + (p.timeout_ms if not p.indirect_sent else
                                         _second_retry_ms(p) if p.retries == 1 else p.interval_ms))
        if self._relays:  # at most relays_max
            times.append(min(r.expires_ms if r.nacked else r.nack_due_ms for r in self._relays.values()))
        if self._deadlines:
            times.append(self._deadlines[0][0])
        return min(times) if times else None

    def own_record(self) -> MemberRecord:
        own = self._own
        if own is None or own.incarnation != self.incarnation or own.state is not self.self_state:
            own = self._own = own_member_record(self._signer, self.self_state, self.incarnation)
        return own

    # --- membership ------------------------------------------------------------------------------

    def set_members(self, members: frozenset[str], classes: dict[str, str], now: int) -> None:
        wanted = {p for p in members if p != self.self_id}
        for peer in [p for p in self.members if p not in wanted]:
            del self.members[peer]
            self.alive.discard(peer)
            self.dead.discard(peer)
            self._corrected_ms.pop(peer, None)
            self._on_gone(peer)
            self._on_record(peer)
        for peer in sorted(wanted - self.members.keys()):
            self.members[peer] = Member(peer, classes.get(peer, ""), since_ms=now)
            self.alive.add(peer)
            self.out.emit(LivenessChanged(peer, ALIVE, 0))
            self._on_record(peer)
        for peer, m in self.members.items():
            m.host_class = classes.get(peer, "")

    def _push_deadline(self, when: int, kind: str, peer: str, inc: int) -> None:
        self._tie += 1
        heapq.heappush(self._deadlines, (when, self._tie, kind, peer, inc))

    def apply(self, rec: MemberRecord, now: int, *, rebroadcast: bool = True) -> bool:
        """Merge one record; True when it changed what we hold (then it is re-broadcast, unless
        ``rebroadcast`` is off: anti-entropy answers are for their receiver only)."""
        if rec.peer == self.self_id:
            return self._about_self(rec)
        m = self.members.get(rec.peer)
        if m is None:
            self.out.count("records_about_nonmember")
            return False
        new, cur = (rec.incarnation, rec.state.rank), (m.incarnation, m.state.rank)
        if rec.state is DEAD and rec.origin != self.self_id and new > cur:
            # A death is each node's own verdict. Another's is a suspicion it holds (which is its
            # right): it starts or confirms ours, and the member has our whole timeout to refute.
            # So no single member — nor a compromised one — makes others hold a live host dead.
            self.out.count("dead_claims_taken_as_suspicion")
            rec = replace(rec, state=SUSPECT)
            new = (rec.incarnation, SUSPECT.rank)
        if new < cur:
            self._corrections.append(m.record())  # the sender is behind: tell it what we hold
            return False
        if new == cur:
            return self._confirm(m, rec, now, rebroadcast)
        if rec.incarnation > m.incarnation or rec.state in OWN_STATES:
            # a new statement of the member's own (or a claim resting on one): it must be signed
            if not member_proof_ok(self._verify, rec):
                self._on_forged(rec)
                return False
            m.own, m.sig = rec.own, rec.sig
        old = m.state
        if rec.incarnation > m.incarnation:
            self._on_newer(m.peer)  # a refutation or a restart: it may have lost what we told it
        m.state, m.incarnation, m.since_ms = rec.state, rec.incarnation, now
        m.suspectors = []
        self.alive.discard(m.peer)
        self.dead.discard(m.peer)
        if rec.state is ALIVE:
            self.alive.add(m.peer)
        elif rec.state is DEAD:
            self.dead.add(m.peer)
            m.suspectors = [self.self_id]  # only our own verdict gets here
        if rec.state is SUSPECT:
            m.suspectors = [rec.origin or self.self_id]
            m.suspect_start_ms = now
            self._push_deadline(now + self.cfg.suspicion_timeout_ms(self.n, 0), "suspect", m.peer,
                                m.incarnation)
        elif rec.state is ASLEEP:
            self._push_deadline(now + self.cfg.sleep_patience_for(m.host_class), "sleep", m.peer,
                                m.incarnation)
        if rec.state in (DEAD, LEFT) and old not in (DEAD, LEFT):
            self._on_gone(m.peer)
        self._on_record(m.peer)
        if rebroadcast:
            # relayed with the proof we verified, never one we merely received
            self.queue.put(("m", m.peer), m.record() if rec.state is not SUSPECT else m.claim(SUSPECT, rec.origin))
        if old is not rec.state:
            self.out.emit(LivenessChanged(m.peer, rec.state, rec.incarnation))
        return True

    def _confirm(self, m: Member, rec: MemberRecord, now: int, rebroadcast: bool = True) -> bool:
        # another member independently suspects the same incarnation: shorten the wait
        if rec.state is not SUSPECT or not rec.origin or rec.origin in m.suspectors:
            return False
        if len(m.suspectors) > self.cfg.indirect_probes_k:
            return False
        m.suspectors.append(rec.origin)
        due = m.suspect_start_ms + self.cfg.suspicion_timeout_ms(self.n, len(m.suspectors) - 1)
        self._push_deadline(max(due, now), "suspect", m.peer, m.incarnation)
        if rebroadcast:
            self.queue.put(("m", m.peer, rec.origin), m.claim(SUSPECT, rec.origin))
        return True

    def _about_self(self, rec: MemberRecord) -> bool:
        if self.self_state is LEFT:
            return False
        if rec.incarnation >= INCARNATION_MAX:
            self.out.count("records_refused_incarnation", notable=True)  # cannot outbid it on the wire
            return False
        if rec.incarnation < self.incarnation:
            if rec.state is not self.self_state:
                self._corrections.append(self.own_record())  # the sender holds an old claim about us
            return False
        if rec.state is self.self_state and rec.incarnation == self.incarnation:
            return False
        mine = self.own_record()
        carries_ours = rec.incarnation == mine.incarnation and rec.own is mine.state and rec.sig == mine.sig
        if not carries_ours and not member_proof_ok(self._verify, rec):
            # only we can have signed a statement at this incarnation: this one is forged
            self._on_forged(rec)
            return False
        self.refute_above(rec.incarnation)
        self._adjust_health(+1)  # being suspected while alive hints that we answer slowly
        return True

    def refute_above(self, incarnation: int) -> None:
        """Something of ours at ``incarnation`` (a claim, or a statement from before a restart)
        stands above what we say now: say it again at ``incarnation + 1``."""
        self.incarnation = min(max(self.incarnation, incarnation) + 1, INCARNATION_MAX)
        mine = self.own_record()
        self.queue.put(("m", self.self_id), mine)
        self._corrections.append(replace(mine))  # a reply to the claimant, apart from the rumour
        self._refuted = True
        self.out.count("refutations", notable=True)
        self._on_incarnation()

    def correct(self, item: Item | None) -> None:
        """Send ``item`` back to the sender of the current frame (rate-limited in end_frame)."""
        if item is not None:
            self._corrections.append(item)

    # --- per frame -------------------------------------------------------------------------------

    def begin_frame(self) -> None:
        self._corrections, self._refuted = [], False

    def end_frame(self, peer: str, now: int) -> None:
        """Answer the sender with corrections; always tell a member we do not hold alive."""
        m = self.members.get(peer)
        if m is not None and m.state is not ALIVE:
            self._corrections.append(m.record())
        if not self._corrections:
            return
        last = self._corrected_ms.get(peer)
        if self._refuted or last is None or now - last >= self.cfg.correction_interval_ms:
            self._corrected_ms[peer] = now
            unique = list(dict.fromkeys(self._corrections))[:CORRECTIONS_MAX]
            self.out.count("corrections_sent")
            self.out.send(peer, Gossip(tuple(unique)))
        self._corrections = []

    def on_ping(self, peer: str, ping: Ping) -> None:
        presence, items = self._extras(peer, True)
        self.out.send(peer, Ack(ping.seq, presence, items))

    def on_ack(self, peer: str, ack: Ack, now: int) -> None:
        p = self._probe
        if p is not None and ack.seq == p.seq:
            if not p.acked and not p.indirect_sent:  # the first ping's own answer: a round trip
                self.rtt.sample(now - p.started_ms)
            p.acked = True
            return
        relay = self._relays.pop(ack.seq, None)
        if relay is not None:
            self.out.send(relay.origin, Ack(relay.origin_seq))

    def on_nack(self, peer: str, nack: Nack) -> None:
        p = self._probe
        if p is not None and nack.seq == p.seq and p.nacks < p.nacks_expected:
            p.nacks += 1

    def on_ping_req(self, peer: str, req: PingReq, now: int) -> None:
        if req.target == self.self_id or req.target not in self.members:
            self.out.count("ping_req_refused", notable=True)
            return
        if len(self._relays) >= self.cfg.relays_max:
            self.out.count("ping_req_over_limit", notable=True)
            return
        seq = self._next_seq()
        self._relays[seq] = _Relay(peer, req.seq, now + self.cfg.probe_timeout_ms, now + self.cfg.probe_interval_ms)
        presence, items = self._extras(req.target, True)
        self.out.send(req.target, Ping(seq, presence, items))

    def peer_unreachable(self, peer: str, now: int) -> None:
        p = self._probe
        if p is not None and p.target == peer and not p.acked and not p.indirect_sent:
            self._send_ping_reqs(p)

    # --- timers ----------------------------------------------------------------------------------

    def tick(self, now: int) -> None:
        if self.self_state is not ALIVE:
            return
        self._probe_tick(now)
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, kind, peer, inc = heapq.heappop(self._deadlines)
            self._deadline(kind, peer, inc, now)
        if self.next_reconnect_ms is None:
            self.next_reconnect_ms = now + self.rng.randrange(self.cfg.reconnect_interval_ms)
        if now >= self.next_reconnect_ms:
            self.next_reconnect_ms = now + self.cfg.reconnect_interval_ms
            if len(self.dead):
                peer = self.dead.sample(self.rng, 1)[0]
                self.out.count("reconnect_pings")
                presence, items = self._extras(peer, True)
                self.out.send(peer, Ping(self._next_seq(), presence, items))
        if self._relays:
            for seq, r in list(self._relays.items()):
                if r.expires_ms <= now:
                    del self._relays[seq]
                elif not r.nacked and r.nack_due_ms <= now:
                    r.nacked = True  # the target did not answer us either: tell the origin
                    self.out.send(r.origin, Nack(r.origin_seq))

    def _deadline(self, kind: str, peer: str, inc: int, now: int) -> None:
        m = self.members.get(peer)
        if m is None or m.incarnation != inc:
            return
        if kind == "suspect" and m.state is SUSPECT:
            due = m.suspect_start_ms + self.cfg.suspicion_timeout_ms(self.n, len(m.suspectors) - 1)
            if due > now:
                self._push_deadline(due, kind, peer, inc)
            else:
                self.apply(m.claim(DEAD, self.self_id), now)
        elif kind == "sleep" and m.state is ASLEEP:
            due = m.since_ms + self.cfg.sleep_patience_for(m.host_class)
            if due > now:
                self._push_deadline(due, kind, peer, inc)
            else:
                self.apply(m.claim(SUSPECT, self.self_id), now)

    def _probe_tick(self, now: int) -> None:
        p = self._probe
        if p is not None and now - p.started_ms > 2 * p.interval_ms:
            self._probe = None  # we were stalled, not the target: do not suspect it
            self.out.count("probes_abandoned_after_stall")
        elif p is not None:
            if not p.acked and not p.indirect_sent and now >= p.started_ms + p.timeout_ms:
                self._send_ping_reqs(p)
                self._retry_direct(p)
            elif not p.acked and p.retries == 1 and now >= _second_retry_ms(p):
                self._retry_direct(p)
            if now >= p.started_ms + p.interval_ms:
                if p.acked:
                    self._adjust_health(-1)
                else:
                    # helpers that could not reach it either sent nacks; missing ones point at us
                    self._adjust_health(p.nacks_expected - p.nacks if p.nacks_expected else 1)
                    self._probe_failed(p, now)
                self._probe = None
        # Lifeguard's local health stretches both by (health + 1); the round trip we measure
        # stretches them where the network is slow (a WAN): the time-out is at least one
        # retransmission time-out, and the period leaves the indirect probes (two round trips, a
        # fallback ping in between) three more. On a LAN neither moves; on a 60 ms WAN with jitter
        # the fixed 500/1000 ms made a late ack a false suspicion, and each one a fleet-wide
        # suspicion, refutation and presence. Before the first sample the time-out is the guess.
        scale = self.health + 1
        rto = self.rtt.rto_ms(self.cfg.probe_timeout_ms)
        timeout = max(self.cfg.probe_timeout_ms, rto)
        interval = min(max(self.cfg.probe_interval_ms, timeout + 3 * rto),
                       self.cfg.probe_interval_ms * self.cfg.awareness_max) * scale
        if self.next_probe_ms is None:
            self.next_probe_ms = now + self.rng.randrange(interval)  # desynchronise the fleet
        if now >= self.next_probe_ms and self._probe is None:
            # from now, not from the missed deadline: the probe just started must finish first
            self.next_probe_ms = now + interval
            target = self._next_target()
            if target is not None:
                self._probe = _Probe(target, self._next_seq(), now, self.members[target].incarnation,
                                     timeout * scale, interval)
                self.out.count("probes")
                presence, items = self._extras(target, True)
                self.out.send(target, Ping(self._probe.seq, presence, items))

    def _retry_direct(self, p: _Probe) -> None:
        """memberlist's fallback probe, twice: direct pings beside the indirect ones, at the time-out
        and halfway to the period's end. On a lossy link a lost ping or ack is the usual cause of
        silence, and each false suspicion costs a fleet-wide suspicion and refutation — whose rate
        grows with the fleet. (Not after PeerUnreachable: the transport already failed to reach it.)"""
        p.retries += 1
        self.out.count("probes_retried")
        self.out.send(p.target, Ping(p.seq))

    def _send_ping_reqs(self, p: _Probe) -> None:
        p.indirect_sent = True
        helpers = self.alive.sample(self.rng, self.cfg.indirect_probes_k, exclude=(p.target,))
        p.nacks_expected = len(helpers)
        for h in helpers:
            # taken per frame (each copy of a rumour counts as a transmit); no presence slot here
            _, items = self._extras(h, False)
            self.out.send(h, PingReq(p.seq, p.target, items))

    def _adjust_health(self, delta: int) -> None:
        self.health = max(0, min(self.cfg.awareness_max - 1, self.health + delta))

    def _probe_failed(self, p: _Probe, now: int) -> None:
        m = self.members.get(p.target)
        # a refutation that arrived while the probe was out already answers for it
        if m is None or m.state not in (ALIVE, SUSPECT) or m.incarnation != p.incarnation:
            return
        self.out.count("probes_failed")
        self.apply(m.claim(SUSPECT, self.self_id), now)
        # Lifeguard's buddy system, at once: tell the suspect itself, so a live one refutes within a
        # round trip and its refutation replaces the suspicion in queues before it is sent much
        self.out.send(p.target, Gossip((self.members[p.target].record(),)))

    def _next_target(self) -> str | None:
        for _ in range(len(self._order) + 2):
            if self._order_pos >= len(self._order):
                self._order = list(self.members)
                self.rng.shuffle(self._order)
                self._order_pos = 0
                if not self._order:
                    return None
            peer = self._order[self._order_pos]
            self._order_pos += 1
            m = self.members.get(peer)
            if m is not None and m.state in (ALIVE, SUSPECT):
                return peer
        return None

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # --- own state -------------------------------------------------------------------------------

    def announce(self, state: Liveness, now: int) -> list[str]:
        """Become ``state`` (ASLEEP, ALIVE on wake, LEFT) with a new incarnation; return live peers
        the caller should tell directly."""
        self.self_state = state
        self.incarnation = min(self.incarnation + 1, INCARNATION_MAX)  # stays encodable
        self._probe = None
        self.queue.put(("m", self.self_id), self.own_record())
        self._on_incarnation()
        if state is ALIVE:
            self.next_probe_ms = now
        return [p for p, m in self.members.items() if m.state in (ALIVE, SUSPECT)]

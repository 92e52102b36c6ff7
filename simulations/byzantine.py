"""The ``byzantine-member`` scenario (issue 12): one admitted member of the simulated fleet is
compromised and does everything a rogue can with our own libraries, while the honest fleet runs
its ordinary workload (holdings churn, pins, probes) and the owner revokes one honest host.

The rogue (``RogueNode``, a real node with extra moves, tools in ``simulations.rogue``):
* **decisions beyond its rights**, signed with its own key and synced by its real mesh: admitting a
  key it controls, granting itself admin, revoking the owner and a member, re-admitting and
  "un-revoking" the revoked host, a public and a private fleet subnet, another host's override, a
  fleet-key rotation, a friend link; plus what a member *may* do (unpin a pin someone else set,
  pin, override itself), which honest nodes must follow;
* **forged liveness and presence** about honest hosts: LEFT at the maximum incarnation, a death
  with a forged statement, presence frozen at the maximum (no disk, portable, asleep); and, within
  the rules, a death claimed with the victim's real statement (honest nodes take it as the rogue's
  suspicion, which the victim refutes);
* **floods**: decisions up to its hourly budget and past it, its feed up to the byte limit and a
  hand-signed delta past it, garbage frames; ops no replica stores (a tampered signature, a key
  nobody admitted, an op over the size limit);
* **equivocation**: two decisions at one seq sent to two halves of the fleet, two feed heads at
  one version likewise;
* **forced downloads**: repair intents naming honest hosts for a huge item nobody pinned and for
  pinned items, with a lease of ten years.

Checkers (beside the common ones, which compare honest nodes only but every feed, the rogue's
too): every honest node holds the expected membership, roles, settings, friends, pins and other
hosts' overrides; no honest host is held left/dead or carries a forged presence at the end, and no
running host was ever held dead at its current incarnation (``no_false_dead``); no
honest host fetched what the rogue asked for (safety, at every step); honest replicas hold one
signed head per feed (equal version vectors are not enough after an equivocation); each honest
node counted the refusals (ineffective decisions, budget refusals, equivocations, forged records,
refused deltas and frames, refused intents). The rogue's moves and the refusal totals are
reported as metrics.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from agent.policy.actions import refused_intents as refused_intents_for
from crdt import records
from crdt.decision_log import RATE_OPS
from crdt.feed import FEED_BYTES_MAX, VALUE_BYTES_MAX
from crdt.identity import NodeKey
from mesh.core import LocalChanged, encode_frame
from mesh.core.frames import DeltaItem, DocMessage, Gossip
from mesh.core.types import Liveness
from simulations import rogue as tools
from simulations.adapter import Effect, Revoke, Send, infohash_of
from simulations.realnode import RealNode
from simulations.seeds import derive_bytes
from tva.errors import InvalidInput, TvaError

if TYPE_CHECKING:
    from simulations.scenarios import Params
    from simulations.sim import Simulation

ROGUE_INDEX = 1  # a bootstrap server: the best-connected place to attack from
REVOKED_INDEX = 3  # an honest host the owner revokes early (the rogue tries to bring it back)
GARBAGE_FRAMES = 200
HUGE_ITEM_BYTES = 10 * 1024**4
TEN_YEARS_MS = 10 * 365 * 24 * 3600 * 1000
PAST_BUDGET_OPS = 40


class RogueNode(RealNode):
    """A real node whose owner has the key and the source: every move below uses our libraries."""

    honest: list[str]
    made: dict[str, int]
    past_limit_targets: list[str] = []
    full_feed = None  # its feed as it was when it reached the byte limit

    def _finished_intents(self, plans, view, now_ms: int) -> list[str]:
        return []  # it keeps its forced intents alive

    def _policy(self, now_ms: int, out: list[Effect]) -> None:
        try:
            super()._policy(now_ms, out)
        except InvalidInput:
            self.own._clear_pending()  # its feed is full (its own flood): the agent logs and skips

    def _send_all(self, frame: object, to: list[str]) -> list[Effect]:
        data = encode_frame(frame)  # type: ignore[arg-type]
        return [Send(peer, data) for peer in to]

    def _synced(self, now_ms: int) -> list[Effect]:
        out: list[Effect] = []
        self._view = None
        self._handle(LocalChanged(doc_changed=True), now_ms, out)
        return out

    def beyond_rights(self, owner: str, member: str, revoked: str, seed: int, now_ms: int) -> list[Effect]:
        outsider = NodeKey(derive_bytes(seed, "rogue-outsider")).peer_id
        attempts = (
            ("admit", {"peer": outsider, "name": "mine", "role": "admin", "nonce": None}),
            ("grant", {"peer": self.peer_id, "role": "admin"}),
            ("revoke", {"peer": owner, "reason": "coup"}),
            ("revoke", {"peer": member, "reason": "coup"}),
            ("admit", {"peer": revoked, "name": "back", "role": "member", "nonce": None}),
            ("grant", {"peer": revoked, "role": "admin"}),
            ("unrevoke", {"peer": revoked}),
            ("setting", {"name": "ipv4_subnet", "value": "8.8.8.0/24"}),
            ("setting", {"name": "ipv4_subnet", "value": "10.66.0.0/24"}),
            ("override", {"peer": member, "class": "portable", "services": None, "duty": None}),
            ("psk", {"epoch": 99, "sealed": {self.peer_id: b"x" * 48}}),
            ("friend", {"fleet_id": "fleet-of-the-rogue", "name": "mine", "link": {}}),
        )
        for kind, body in attempts:
            tools.write_raw(self.doc, self.key, kind, body, now_ms)
        self.made["beyond_rights"] = len(attempts)
        return self._synced(now_ms)

    def within_rights(self, victim_pin: str, now_ms: int) -> list[Effect]:
        """What any member may do: honest nodes must follow it."""
        self.doc.unpin(victim_pin, now_ms)
        self.doc.pin("rogue-pin", 1, 1, now_ms)
        self.doc.set_override(self.peer_id, host_class="seedbox", now_ms=now_ms)
        return self._synced(now_ms)

    def forge_liveness(self, victims: list[str], incarnations: dict[str, int]) -> list[Effect]:
        out: list[Effect] = []
        for v in victims:
            items = (tools.forged_left(self.key, v), tools.forged_dead(self.key, v, incarnations[v]),
                     tools.forged_presence(self.key, v))
            out += self._send_all(Gossip(items), self.honest)
            held = self.mesh.swim.members.get(v)
            if held is not None:  # its real statement, relabelled as a death the rogue declares
                out += self._send_all(Gossip((held.claim(Liveness.DEAD, self.peer_id),)), self.honest)
            out += self._send_all(Gossip(items[:1]), self.honest)
            out += self._send_all(Gossip(items[2:]), self.honest)
        self.made["forged_records"] = 3 * len(victims)
        return out

    def _halves(self) -> tuple[list[str], list[str]]:
        half = len(self.honest) // 2
        return self.honest[:half], self.honest[half:]

    def equivocate_decisions(self, now_ms: int) -> list[Effect]:
        """Two different decisions at one seq of its chain, one to each half of the fleet."""
        a, b = self._halves()
        wires = [tools.next_ops(self.doc, self.key, "pin", [{"content": f"rogue-eq-{i}", "min": 1, "max": 1}],
                                now_ms)[0] for i in (1, 2)]
        self.made["decision_forks"] = 2
        return (self._send_all(DocMessage(tools.raw_sync_message(wires[:1])), a)
                + self._send_all(DocMessage(tools.raw_sync_message(wires[1:])), b))

    def equivocate_feed(self, now_ms: int) -> list[Effect]:
        """Two different heads of its feed at one version, one to each half of the fleet."""
        a, b = self._halves()
        feed = self.own.feed
        assert feed is not None
        forks = tools.feed_forks(self.key, feed, [("junk/eq", b"a"), ("junk/eq", b"b")], now_ms)
        self.made["feed_forks"] = 2
        return self._send_all(Gossip((DeltaItem(forks[0]),)), a) + self._send_all(Gossip((DeltaItem(forks[1]),)), b)

    def flood(self, now_ms: int) -> list[Effect]:
        """Decisions up to the hourly budget (overriding itself: within its rights) and past it;
        the feed up to its byte limit and a hand-signed delta past it; garbage frames."""
        stored = 0
        for i in range(RATE_OPS + 1):
            try:
                tools.write_raw(self.doc, self.key, "override",
                                {"peer": self.peer_id, "class": ("seedbox", "server")[i % 2], "services": None,
                                 "duty": None},
                                now_ms)
            except TvaError:
                break  # its own replica refuses past the budget, as every replica does
            stored += 1
        self.made["budget_ops_stored"] = stored
        out = self._synced(now_ms)
        past = tools.next_ops(self.doc, self.key, "override",
                              [{"peer": self.peer_id, "class": "server", "services": None, "duty": None}] * PAST_BUDGET_OPS,
                              now_ms)
        out += self._send_all(DocMessage(tools.raw_sync_message(past)), self.honest)
        stranger = NodeKey(derive_bytes(0, "rogue-stranger"))
        for wire in tools.unstorable_ops(self.doc, self.key, stranger, now_ms):  # one message each
            out += self._send_all(DocMessage(tools.raw_sync_message([wire])), self.honest)
        value = b"\xa5" * (VALUE_BYTES_MAX - 96)
        n = 0
        try:
            while n <= FEED_BYTES_MAX // len(value) + 1:
                self.own.put(f"junk/{n}", value)
                n += 1
        except InvalidInput:
            pass  # the feed is full: OwnFeed refuses, as the agent's would
        self.made["feed_entries_to_limit"] = n
        self._commit(now_ms, out)
        self.full_feed = tools.own_copy(self.key, self.own.feed).feed  # type: ignore[arg-type]
        junk = random.Random(derive_bytes(0, "garbage"))
        for i in range(GARBAGE_FRAMES):
            peer = self.honest[i % len(self.honest)]
            out.append(Send(peer, bytes([2]) + junk.randbytes(junk.randrange(1, 300))))
        return out

    def past_feed_limit(self, targets: list[str], now_ms: int) -> list[Effect]:
        """A hand-signed delta taking its full feed past the byte limit, to the ``targets`` that
        hold the full feed (it sees their version vectors); then it makes room again for its
        ordinary writes (by deleting its junk, as the agent would have to)."""
        feed = self.full_feed
        assert feed is not None
        value = b"\x5a" * (VALUE_BYTES_MAX - 96)
        over = tools.oversized_delta(self.key, feed, 64, value, now_ms)
        out = self._send_all(Gossip((DeltaItem(over),)), targets)
        self.past_limit_targets = targets
        for i in range(self.made.get("feed_entries_to_limit", 0)):
            self.own.delete(f"junk/{i}")
        self._commit(now_ms + 1, out)
        return out

    def force_downloads(self, pinned: list[str], now_ms: int) -> list[Effect]:
        out: list[Effect] = []
        hold = records.Holding("rogue-huge", infohash_of("rogue-huge"), HUGE_ITEM_BYTES, "complete", "public", "public")
        self.own.put(records.holding_key("rogue-huge"), records.encode_holding(hold))
        for i, target in enumerate(self.honest[:8]):
            for content in ("rogue-huge", *pinned[i % max(1, len(pinned)):][:1]):
                intent = records.RepairIntent(content, target, now_ms + TEN_YEARS_MS)
                self.own.put(records.intent_key(content, target), records.encode_intent(intent))
        self._commit(now_ms, out)
        self.made["forced_intents"] = len(self.honest[:8]) * 2
        return out


def setup(sim: Simulation, p: Params, rng: random.Random, heal_ms: int) -> None:
    from simulations import scenarios
    if sim.factory.core != "real":
        raise InvalidInput("byzantine-member needs the real cores", hint=f"they cannot run: {sim.factory.core_note}")
    sim.factory.node_classes[ROGUE_INDEX] = RogueNode
    scenarios._start_all(sim, p, p.nodes)
    scenarios._common(sim, p, rng, heal_ms)
    owner, rogue_peer, revoked = sim.by_index[0], sim.by_index[ROGUE_INDEX], sim.by_index[REVOKED_INDEX]
    honest = [q for q in sim.by_index if q not in (rogue_peer, revoked)]
    victim = sim.by_index[-1]
    watch = ByzantineWatch(sim, rogue_peer, honest)
    sim.at(2500, "revoke", lambda now: sim.change(owner, Revoke(revoked), now))

    def move(label: str, at_ms: int, fn) -> None:
        def act(now: int) -> None:
            node = sim.nodes.get(rogue_peer)
            if isinstance(node, RogueNode):
                node.honest, node.made = honest, watch.made
                sim._run(rogue_peer, fn(node, now), now)
                sim._pins_changed(now)
        sim.at(at_ms, label, act)

    span = max(1000, min(1500, (heal_ms - 16_000) // 8))

    def within(node: RogueNode, now: int) -> list[Effect]:
        mine = sorted(sim.pins)[0]
        sim.pins.pop(mine)  # a member may unpin any pin: the truth follows it
        sim.pins["rogue-pin"] = (1, 1)
        return node.within_rights(mine, now)

    def forge(node: RogueNode, now: int) -> list[Effect]:
        victims = [owner, victim]
        return node.forge_liveness(victims, {v: sim.nodes[v].mesh.incarnation() for v in victims if v in sim.nodes})

    move("rogue-beyond-rights", 3500,
         lambda node, now: node.beyond_rights(owner, victim, revoked, sim.seed, now))
    move("rogue-within-rights", 3500 + span, within)
    move("rogue-forge-liveness", 3500 + 2 * span, forge)
    def equivocate(node: RogueNode, now: int) -> list[Effect]:
        sim.pins.update({"rogue-eq-1": (1, 1), "rogue-eq-2": (1, 1)})  # pins: within its rights
        return node.equivocate_decisions(now)

    move("rogue-equivocate-decisions", 3500 + 3 * span, equivocate)
    move("rogue-force-downloads", 3500 + 4 * span,
         lambda node, now: node.force_downloads(sorted(q for q in sim.pins if q != "rogue-pin"), now))
    move("rogue-flood", 3500 + 5 * span, lambda node, now: node.flood(now))

    def past_limit(node: RogueNode, now: int) -> list[Effect]:
        # The full feed (4 MiB) takes seconds to spread at 10 Mbit/s: the rogue waits until some
        # honest replicas hold it (or the active phase is nearly over), then goes past the limit.
        full = node.full_feed.version if node.full_feed is not None else -1
        targets = [q for q in honest if q in sim.nodes
                   and sim.nodes[q].version_vector().get(rogue_peer) == full]  # type: ignore[attr-defined]
        if len(targets) < len(honest) // 2 and now < heal_ms - 3000:
            move("rogue-past-feed-limit", now + 500, past_limit)
            return []
        # last, on the feed it has made room in: two heads at one version, which honest replicas
        # must come back from (one_head_per_feed)
        move("rogue-equivocate-feed", now + 1000, lambda node, now: node.equivocate_feed(now))
        return node.past_feed_limit(targets, now)

    move("rogue-past-feed-limit", 3500 + 6 * span, past_limit)  # then the feed equivocation


class ByzantineWatch:
    """The scenario's own checkers and figures, registered with the simulation."""

    def __init__(self, sim: Simulation, rogue_peer: str, honest: list[str]) -> None:
        self.sim, self.rogue, self.honest = sim, rogue_peer, honest
        self.made: dict[str, int] = {}
        self.expected_roles = None
        sim.liveness_checks.update({
            "membership_unchanged": self.membership_unchanged,
            "liveness_unforged": self.liveness_unforged,
            "refusals_counted": self.refusals_counted,
            "one_head_per_feed": self.one_head_per_feed,
            "no_false_dead": self.sim.checker.no_false_dead,
        })
        sim.checker.false_dead_by_incarnation = True
        sim.metric_sources.append(self.figures)
        sim.checker.never_fetch.add("rogue-huge")
        sim.checker.rogues.add(rogue_peer)

    def _honest_up(self) -> list[tuple[str, RealNode]]:
        return [(q, self.sim.nodes[q]) for q in self.honest if q in self.sim.nodes]  # type: ignore[misc]

    def membership_unchanged(self) -> tuple[bool, str]:
        sim = self.sim
        template = sim.factory.real_shared().template
        expected_members = template.members() - set(sim.revoked)
        expected_roles = {q: r for q, r in template.roles().items() if q not in sim.revoked}
        bad = []
        for q, node in self._honest_up():
            doc = node.doc
            got = (doc.members() == expected_members, doc.roles() == expected_roles, doc.settings() == {},
                   sorted(doc.friends()) == sorted(sim.friends),
                   all(peer == self.rogue for peer in doc.overrides()),
                   set(doc.pins()) == set(sim.pins))
            if not all(got):
                bad.append(f"{q[-6:]}:{''.join('.' if ok else 'x' for ok in got)}")
        return not bad, ("members, roles, settings, friends, others' overrides, pins as expected on every "
                         "honest node" if not bad else "changed (members roles settings friends overrides "
                         "pins): " + ", ".join(bad[:5]))

    def liveness_unforged(self) -> tuple[bool, str]:
        sim = self.sim
        bad = []
        for q, node in self._honest_up():
            lv, pres = node.mesh.liveness(), node.mesh.presence()
            for peer in self.honest:
                other = sim.nodes.get(peer)
                if other is None or peer == q:
                    continue
                if lv.get(peer) in (Liveness.LEFT, Liveness.DEAD):
                    bad.append(f"{q[-6:]} holds {peer[-6:]} {lv[peer].name}")
                pr = pres.get(peer)
                if pr is not None and pr.incarnation > other.mesh.incarnation():  # type: ignore[attr-defined]
                    bad.append(f"{q[-6:]} holds a forged presence of {peer[-6:]}")
        return not bad, ("no honest host held left, dead or with a forged presence" if not bad
                         else "; ".join(bad[:5]))

    def one_head_per_feed(self) -> tuple[bool, str]:
        """Stronger than equal version vectors: equal signed heads (an equivocation gives two
        heads at one version), the rogue's feed included."""
        heads: set[tuple] = set()
        for _, node in self._honest_up():
            fs = node.feeds.inner
            heads.add(tuple(sorted((o, f.version, f.head.digest) for o in fs.owners()
                                   if (f := fs.feed(o)) is not None and not fs.is_revoked(o))))
        return len(heads) <= 1, f"{len(heads)} distinct sets of feed heads among honest nodes"

    def _counts(self, node: RealNode) -> dict[str, int]:
        st = node.doc.stats
        mesh = node.mesh.stats
        now = self.sim.world.now_ms
        shared = node._shared_view()
        plans = shared.plans(now, self.sim.factory.real_shared().custody)
        refused_intents = sum(1 for r in refused_intents_for(node.peer_id, plans, shared.view, now)
                              if r.author == self.rogue)
        return {
            "ineffective": sum(st.ineffective.values()),
            "budget_refused": st.refused.get("TooLarge", 0),
            # a tampered signature, an author never admitted (ops), an oversized op (its message)
            "unstorable_refused": st.refused.get("SignatureError", 0) + st.refused.get("Unauthorized", 0)
            + sum(v for k, v in mesh.items() if k.startswith("doc_refused")),
            "equivocations": st.equivocations,
            "member_records_forged": mesh.get("member_records_forged", 0),
            "presence_forged": mesh.get("presence_forged", 0),
            "deltas_refused": sum(v for k, v in mesh.items() if k.startswith("deltas_refused")),
            "frames_refused": sum(v for k, v in mesh.items() if k.startswith("frames_refused")),
            "intents_refused": refused_intents,
        }

    def refusals_counted(self) -> tuple[bool, str]:
        need = {"ineffective": self.made.get("beyond_rights", 0), "budget_refused": 1, "equivocations": 1,
                "member_records_forged": 1, "presence_forged": 1, "frames_refused": 1, "unstorable_refused": 3}
        rogue = self.sim.nodes.get(self.rogue)
        past_limit = set(getattr(rogue, "past_limit_targets", ()))
        short = [] if past_limit else ["no honest replica held the rogue's full feed: the limit was not tried"]
        for q, node in self._honest_up():
            c = self._counts(node)
            for k, n in {**need, **({"deltas_refused": 1} if q in past_limit else {})}.items():
                if c[k] < n:
                    short.append(f"{q[-6:]} {k}={c[k]}<{n}")
        targets = [self.sim.nodes[q] for q in self.honest[:8] if q in self.sim.nodes]
        if targets and not all(self._counts(t)["intents_refused"] > 0 for t in targets):  # type: ignore[arg-type]
            short.append("a named target did not refuse the rogue's intents")
        if not self.made:
            short.append("the rogue made no move")
        return not short, ("every honest node counted every kind of refusal" if not short
                           else "; ".join(short[:6]))

    def figures(self) -> dict:
        totals: dict[str, int] = {}
        for _, node in self._honest_up():
            for k, v in self._counts(node).items():
                totals[k] = totals.get(k, 0) + v
        return {"rogue_moves": dict(sorted(self.made.items())),
                "honest_refusals_total": dict(sorted(totals.items()))}

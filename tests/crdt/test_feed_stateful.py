"""Six replicas, three writing owners, an adversarial network; checked against a dict-per-owner model.

The network delivers in any order, duplicates and loses messages (all chosen by hypothesis).
Owners collect tombstones once every *member* has seen them; replica 5 is a late joiner that is
not yet a member, so it regularly falls behind the GC horizon and must catch up by snapshot.
Invariant at every step: whatever a replica holds for an owner is exactly a state that owner
committed. At any point, one all-pairs exchange brings every replica to the model's state.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from crdt.feedset import FeedSet, OwnFeed
from tests.crdt.test_feed_support import KEYS, T0_MS, live
from tva.errors import GapError, StaleData

REPLICAS = 6
OWNERS = 3  # replicas 0..2 each write their own feed
MEMBERS = range(5)  # replica 5 joins late: GC does not wait for it
KEYNAMES = ("card", "h/a", "h/b", "h/c", "claim/ipv4")

replica = st.integers(0, REPLICAS - 1)
owner = st.integers(0, OWNERS - 1)
pick = st.integers(0, 10_000)


class FeedNetwork(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sets = [FeedSet() for _ in range(REPLICAS)]
        self.writers = [OwnFeed(KEYS[o], self.sets[o]) for o in range(OWNERS)]
        self.pubs = [KEYS[o].public for o in range(OWNERS)]
        self.now_ms = T0_MS
        self.pending: list[dict[str, bytes | None]] = [{} for _ in range(OWNERS)]
        self.model: list[dict[str, bytes]] = [{} for _ in range(OWNERS)]
        # owner -> version -> the live state it signed at that version
        self.history: list[dict[int, dict[str, bytes]]] = [{} for _ in range(OWNERS)]
        self.inflight: list[tuple[int, bytes]] = []  # (destination replica, delta)
        self.refused = 0

    # --- owners ---------------------------------------------------------------------------------
    @initialize()
    def every_owner_starts_with_a_card(self):
        for o in range(OWNERS):
            self.write(o, [("card", b"card%d" % o)], 0)

    @rule(o=owner, ops=st.lists(st.tuples(st.sampled_from(KEYNAMES), st.none() | st.binary(max_size=6)),
                                max_size=4),
          tick_ms=st.integers(-50, 50))
    def write(self, o, ops, tick_ms):
        """A batch of puts (value) and deletes (None), then one commit."""
        for key, value in ops:
            if value is None:
                self.writers[o].delete(key)
            else:
                self.writers[o].put(key, value)
            self.pending[o][key] = value
        self.now_ms += tick_ms  # the clock may step back: versions must still grow
        data = self.writers[o].commit(self.now_ms)
        for k, v in self.pending[o].items():
            if v is None:
                self.model[o].pop(k, None)
            else:
                self.model[o][k] = v
        self.pending[o].clear()
        if data is not None:
            self._push(o, data)

    def _push(self, o: int, data: bytes) -> None:
        self.history[o][self.writers[o].version] = dict(self.model[o])
        # Eager pushes go to members only; the late joiner learns by pulling (request_sync).
        self.inflight.extend((dst, data) for dst in MEMBERS if dst != o)

    @rule(o=owner)
    def collect_tombstones(self, o):
        horizon = min(self.sets[r].version_vector().get(self.pubs[o], 0) for r in MEMBERS)
        data = self.writers[o].collect_tombstones(horizon)
        if data is not None:
            self._push(o, data)

    # --- network --------------------------------------------------------------------------------
    @rule(src=replica, dst=replica)
    def request_sync(self, src, dst):
        if src != dst:
            vv = self.sets[dst].version_vector()
            self.inflight.extend((dst, d) for d in self.sets[src].deltas_since(vv))

    @precondition(lambda self: self.inflight)
    @rule(i=pick)
    def deliver(self, i):
        dst, data = self.inflight.pop(i % len(self.inflight))
        before = self.sets[dst].state_key()
        try:
            self.sets[dst].apply_delta(data)
        except (StaleData, GapError):
            # Old or too-new deltas are expected on this network; they must change nothing.
            self.refused += 1
            assert self.sets[dst].state_key() == before

    @precondition(lambda self: self.inflight)
    @rule(i=pick)
    def duplicate(self, i):
        self.inflight.append(self.inflight[i % len(self.inflight)])

    @precondition(lambda self: self.inflight)
    @rule(i=pick)
    def lose(self, i):
        self.inflight.pop(i % len(self.inflight))

    @rule()
    def members_gossip(self):
        """Members (not the late joiner) catch up with each other, so GC horizons advance."""
        for dst in MEMBERS:
            for src in MEMBERS:
                if src != dst:
                    for data in self.sets[src].deltas_since(self.sets[dst].version_vector()):
                        self.sets[dst].apply_delta(data)

    @rule(o=owner)
    def members_gossip_then_collect(self, o):
        """The common production sequence: everyone has seen the deletes, so the owner collects."""
        self.members_gossip()
        self.collect_tombstones(o)

    @rule()
    def final_exchange_converges(self):
        """One all-pairs exchange (pull by version vector) brings everyone to the model."""
        for dst in range(REPLICAS):
            for src in range(REPLICAS):
                if src != dst:
                    for data in self.sets[src].deltas_since(self.sets[dst].version_vector()):
                        self.sets[dst].apply_delta(data)  # must never be refused
        keys = {fs.state_key() for fs in self.sets}
        assert len(keys) == 1
        for fs in self.sets:
            for o in range(OWNERS):
                assert live(fs, self.pubs[o]) == self.model[o]

    # --- invariants -----------------------------------------------------------------------------
    @invariant()
    def replicas_hold_only_signed_states(self):
        for fs in self.sets:
            assert set(fs.owners()) <= set(self.pubs)
            for o in range(OWNERS):
                f = fs.feed(self.pubs[o])
                if f is not None:
                    assert dict(f.live_items()) == self.history[o][f.version]
                    # Nothing under the GC horizon survives anywhere.
                    assert all(f.entry(k).version > f.gc_version for k in f.tombstone_keys())

    @invariant()
    def owners_hold_their_own_latest(self):
        for o in range(OWNERS):
            assert live(self.sets[o], self.pubs[o]) == self.model[o]

    def teardown(self):
        self.final_exchange_converges()


FeedNetwork.TestCase.settings = settings(
    max_examples=settings().max_examples, stateful_step_count=40, deadline=None,
)
test_feed_network = FeedNetwork.TestCase

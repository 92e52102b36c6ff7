"""MeshNode scenarios over the deterministic harness: spread time, traffic, failure detection."""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.core import (
    FRAME_VERSION,
    AnnounceSleep,
    Counter,
    FrameReceived,
    Leave,
    Liveness,
    LocalChanged,
    MembersChanged,
    MeshConfig,
    PeerUnreachable,
    Send,
    SetSoftState,
    StateChanged,
    Tick,
    Wake,
    decode_frame,
    encode_frame,
)
from mesh.core.antientropy import bucket_hashes
from mesh.core.frames import (
    INCARNATION_MAX,
    ITEMS_MAX,
    DeltaItem,
    Deltas,
    Digest,
    DocMessage,
    Gossip,
    MemberRecord,
    Ping,
    PingReq,
    Summary,
    Sync,
)
from tests.mesh.harness import Harness, MemDoc, MemFeeds, Net, make_node, signed_member, signed_presence
from tva.errors import InvalidInput, TooLarge

ROOT = Path(__file__).resolve().parents[2]
ALIVE, SUSPECT, DEAD, LEFT, ASLEEP = (Liveness.ALIVE, Liveness.SUSPECT, Liveness.DEAD, Liveness.LEFT,
                                      Liveness.ASLEEP)
SOFT = SetSoftState(2 * 10**12, 0.97, ("/ip4/10.44.0.3/tcp/4001", "/ip6/fd5e::3/tcp/4001"), "desktop")


def test_a_change_reaches_all_30_nodes_well_under_2s():
    # the lead's target: Serf's model gives ~1.8 s to 99.99% of 30 nodes at 200 ms / fanout 3
    spreads = []
    for seed in range(8):
        h = Harness(30, seed=seed, net=Net(delay_ms_min=1, delay_ms_max=20))
        h.run_until(3000)
        t0 = h.now
        h.change("node0003", b"fresh")
        done = h.run_until_true(lambda h=h: all(b"node0003" in h.feeds[p].heads for p in h.ids), 10_000, 5)
        assert done is not None
        spreads.append(done - t0)
    print(f"spread to 30 nodes (ms): {spreads}")
    assert max(spreads) < 1000


def test_idle_traffic_at_30_nodes_is_under_1kb_per_second_and_uses_only_digests():
    h = Harness(30, seed=5)
    for p in h.ids:
        h.handle(p, SOFT)
    h.change("node0001", b"some state")
    h.doc_add("node0002", b"pin")
    h.run_until(20_000)  # let the start-up rumours settle
    assert h.converged()
    before = {p: dict(h.nodes[p].stats) for p in h.ids}
    syncs: list[Sync] = []
    deliver = h._deliver

    def watch(src, send):
        if decode_frame(send.data, 10**7).__class__ is Sync:
            syncs.append(decode_frame(send.data, 10**7))
        deliver(src, send)
    h._deliver = watch
    h.run_until(20_000 + 300_000)  # covers three presence refreshes
    rates = [(h.nodes[p].stats["bytes_sent"] - before[p].get("bytes_sent", 0)) / 300 for p in h.ids]
    print(f"idle bytes/s per node: max {max(rates):.0f}, mean {statistics.mean(rates):.0f}; {len(syncs)} syncs")
    assert max(rates) <= 1024
    # in sync: routine exchanges are digests; a presence refresh still in flight makes a member
    # bucket differ now and then, which costs that bucket's entries — never a feed vector entry
    # and never the whole membership vector
    assert all(f.vv == {} and f.soft is not None and f.soft_scope is not None for f in syncs)
    assert sum(len(f.soft) for f in syncs) < 3 * len(syncs) * 30 / 4
    assert all(len(h.nodes[p].presence()) == 30 for p in h.ids)  # and presence stayed fresh


def test_a_silent_node_is_declared_dead_by_all_within_the_config_bound():
    for n in (8, 30):
        h = Harness(n, seed=n, net=Net(delay_ms_min=1, delay_ms_max=20))
        h.run_until(5000)
        x = h.ids[1]
        h.stop(x)
        t0 = h.now
        bound = h.config.dead_bound_ms(n)
        done = h.run_until_true(lambda x=x, h=h: all(h.view(p, x) is DEAD for p in h.live()), t0 + bound, 50)
        assert done is not None, f"not dead everywhere within {bound} ms at n={n}"
        print(f"n={n}: dead everywhere after {done - t0} ms (bound {bound})")
        assert not any(s in (SUSPECT, DEAD) and p != x for _, _, p, s, _ in h.liveness_log)


def test_a_suspected_node_that_is_alive_refutes_and_is_never_dead():
    h = Harness(8, seed=0)
    h.run_until(5000)
    x = h.ids[2]
    h.blocked = lambda s, d, t: x in (s, d) and 5000 <= t < 8500  # a short outage, shorter than suspicion
    h.run_until(60_000)
    assert h.ever(x, SUSPECT), "the scenario must actually get the node suspected"
    assert not h.ever(x, DEAD)
    assert h.nodes[x].incarnation() >= 1 and h.nodes[x].stats["refutations"] >= 1
    assert all(h.view(p, x) is ALIVE for p in h.ids if p != x)


def test_graceful_leave_is_left_not_dead_even_with_loss():
    for loss in (0.0, 0.2):
        h = Harness(8, seed=3, net=Net(loss=loss))
        h.run_until(5000)
        x = h.ids[3]
        h.handle(x, Leave())
        h.run_until(6000)
        h.stop(x)
        h.run_until(120_000)
        assert all(h.view(p, x) is LEFT for p in h.live())
        if loss == 0.0:
            assert not h.ever(x, DEAD) and not h.ever(x, SUSPECT)


def test_portable_host_that_announced_sleep_gets_patience_then_wakes():
    cfg = MeshConfig(portable_sleep_patience_ms=120_000, sleep_patience_ms=20_000)
    h = Harness(8, seed=1, config=cfg, classes={"node0004": "portable"})
    h.run_until(5000)
    lap, desk = "node0004", "node0005"
    for p in (lap, desk):
        h.handle(p, AnnounceSleep())
    h.run_until(5200)
    h.stop(lap)
    h.stop(desk)
    h.run_until(100_000)
    assert all(h.view(p, lap) is ASLEEP for p in h.live())  # portable: still patient
    assert all(h.view(p, desk) is DEAD for p in h.live())  # a desktop gets the short patience
    assert not h.ever(lap, SUSPECT)
    h.down.discard(lap)
    h.handle(lap, Wake())
    h.run_until(110_000)
    assert all(h.view(p, lap) is ALIVE for p in h.live() if p != lap)


def test_an_unannounced_sleeper_past_patience_is_suspected_then_dead():
    cfg = MeshConfig(portable_sleep_patience_ms=30_000)
    h = Harness(6, seed=2, config=cfg, classes={"node0001": "portable"})
    h.run_until(3000)
    h.handle("node0001", AnnounceSleep())
    h.run_until(3100)
    h.stop("node0001")
    h.run_until(30_000)
    assert not h.ever("node0001", SUSPECT)
    h.run_until(3100 + 30_000 + cfg.suspicion_max_ms(6) + 2000)
    assert all(h.view(p, "node0001") is DEAD for p in h.live())


def test_a_healed_partition_reconnects_and_converges():
    h = Harness(8, seed=4)
    h.run_until(3000)
    left, right = set(h.ids[:4]), set(h.ids[4:])
    h.blocked = lambda s, d, t: (s in left) != (d in left) and t < 80_000
    h.change("node0000", b"left side")
    h.change("node0005", b"right side")
    h.run_until(79_000)
    assert all(h.view(p, q) is DEAD for p in left for q in right)  # each half gave the other up
    assert not h.converged()
    h.run_until(140_000)  # reconnect pings (every 10 s) let the halves refute and resync
    assert all(s is ALIVE for p in h.ids for s in h.nodes[p].liveness().values())
    assert h.converged()


def test_gap_in_gossiped_deltas_triggers_sync_and_catch_up():
    h = Harness(2, seed=0)
    a, b = h.ids
    h.run_until(500)
    # b commits twice; only the second incremental delta reaches a by gossip
    h.feeds[b].commit(b"v1")
    d2 = h.feeds[b].commit(b"v2")
    effects = h.handle(a, FrameReceived(b, encode_frame(Gossip((DeltaItem(d2),)))))
    assert h.nodes[a].stats["deltas_gap"] == 1
    asked = [decode_frame(e.data, 10**6) for e in effects if isinstance(e, Send) and e.peer == b]
    assert any(isinstance(f, Sync) and not f.reply for f in asked)
    h.run_until(1500)
    assert h.feeds[a].heads[b.encode()] == (2, b"v2")


def test_lost_doc_message_is_repaired_by_restarting_the_doc_sync():
    h = Harness(2, seed=0)
    a, b = h.ids
    h.run_until(500)
    h.blocked = lambda s, d, t: t < 520  # the eager push of the change is lost
    h.doc_add(a, b"pin-1")
    h.run_until(10_000)
    assert h.docs[b].elems == {b"pin-1"}
    assert h.nodes[a].stats["doc_sync_restarts"] + h.nodes[b].stats.get("doc_sync_restarts", 0) >= 1


def _node(members=("me", "p1", "p2", "p3"), config=None):
    feeds, doc = MemFeeds(b"me"), MemDoc()
    node = make_node("me", config or MeshConfig(), feeds, doc, random.Random(1))
    node.handle(MembersChanged(frozenset(members)), 0)
    return node, feeds, doc


def test_non_member_and_malformed_frames_are_refused_counted_and_harmless():
    node, feeds, doc = _node()
    good_vv = dict(feeds.version_vector())
    cases = [
        ("stranger", encode_frame(Ping(1)), "frames_refused_nonmember"),
        ("p1", b"\x07garbage", "frames_refused_unsupported_version"),
        ("p1", bytes([FRAME_VERSION]) + b"\xc1", "frames_refused_decode_error"),
        ("p1", b"\x01" * (MeshConfig().frame_bytes_max + 1), "frames_refused_too_large"),
        ("p1", encode_frame(Gossip((DeltaItem(b"not a delta"),))), "deltas_refused_decode_error"),
    ]
    for peer, data, counter in cases:
        effects = node.handle(FrameReceived(peer, data), 10)
        assert Counter(counter, 1) in effects
        assert not any(isinstance(e, Send | StateChanged) for e in effects)
    assert feeds.version_vector() == good_vv and not doc.elems
    assert node.stats["frames_refused_nonmember"] == 1
    # and the node still works
    assert any(isinstance(e, Send) for e in node.handle(FrameReceived("p1", encode_frame(Ping(9))), 20))


def test_presence_arrives_by_ping_and_expires_after_its_ttl():
    node, _, _ = _node()
    rec = signed_presence("p1", 0, 3, 10**9, 0.5, ("/ip4/10.44.0.9/tcp/1",), "seedbox", remaining_ms=10**9)
    node.handle(FrameReceived("p1", encode_frame(Ping(1, rec))), 1000)
    got = node.presence()["p1"]
    assert (got.disk_free_bytes, got.host_class, got.expires_ms) == (10**9, "seedbox", 1000 + node.cfg.presence_ttl_ms)
    older = signed_presence("p1", 0, 2, 1, 0.1, (), "x")
    node.handle(FrameReceived("p1", encode_frame(Ping(2, older))), 2000)
    assert node.presence()["p1"].pseq == 3  # an older record does not replace a newer one
    node.handle(Tick(), 1000 + node.cfg.presence_ttl_ms)
    assert "p1" not in node.presence()


def test_digest_mismatch_answers_with_a_summary_and_match_answers_nothing():
    node, feeds, _ = _node()
    node.handle(LocalChanged(delta=feeds.commit(b"x")), 5)
    soft = node.soft.digest()
    own = [e for e in node.handle(FrameReceived("p1", encode_frame(Digest(b"\0" * 16, soft))), 10)
           if isinstance(e, Send)]
    frames = [decode_frame(e.data, 10**6) for e in own]
    digest = node.sync.digest()
    # only the feeds differ: their bucket hashes travel, the member part says "matched" (no hashes)
    assert frames == [Summary(digest, 0, bucket_hashes({b"me": 1}, 0), (), soft, 0, ())]
    again = node.handle(FrameReceived("p2", encode_frame(Digest(digest, soft))), 11)
    assert not any(isinstance(e, Send) for e in again)


TRACE_SCRIPT = """
import hashlib, sys
sys.path.insert(0, {root!r})
from tests.mesh.harness import Harness, Net
h = Harness(12, seed=7, net=Net(loss=0.1, dup=0.1, delay_ms_max=80))
seen = hashlib.sha256()
orig = h._deliver
def deliver(src, send):
    seen.update(src.encode() + send.peer.encode() + send.data + h.now.to_bytes(8, "big"))
    orig(src, send)
h._deliver = deliver
h.run_until(2000); h.change("node0003", b"a"); h.doc_add("node0005", b"b"); h.stop("node0007")
h.run_until(30000)
print(seen.hexdigest())
"""


def test_runs_are_deterministic_across_processes_and_hash_seeds():
    # no wall clock, no set-iteration order: the same seed gives byte-identical traffic
    script = TRACE_SCRIPT.format(root=str(ROOT))
    outs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
        assert res.returncode == 0, res.stderr
        outs.add(res.stdout.strip())
    assert len(outs) == 1


def test_fresh_gossip_is_forwarded_but_duplicates_are_not():
    node, _, _ = _node()
    other = MemFeeds(b"p1")
    d = other.commit(b"hello")
    node.handle(FrameReceived("p1", encode_frame(Gossip((DeltaItem(d),)))), 10)
    assert len(node.dqueue) == 1 and node.stats["deltas_applied"] == 1
    node.handle(FrameReceived("p2", encode_frame(Gossip((DeltaItem(d),)))), 11)
    assert node.stats["deltas_duplicate"] == 1
    # the forwarded frame carries exactly that delta
    node.handle(Tick(), 10_000)  # the first tick only starts the timers
    sends = [e for e in node.handle(Tick(), 10_000 + node.cfg.gossip_interval_ms) if isinstance(e, Send)]
    carried = [i for e in sends for i in getattr(decode_frame(e.data, 10**6), "items", ())]
    assert DeltaItem(d) in carried


def test_claims_about_self_are_refuted_up_to_the_incarnation_limit():
    # a statement of our own from an earlier life (signed by us) near the limit: refuted above it
    node, _, _ = _node()
    near = Gossip((signed_member(SUSPECT, "me", INCARNATION_MAX - 1),))
    effects = node.handle(FrameReceived("p1", encode_frame(near)), 10)
    assert node.incarnation() == INCARNATION_MAX
    back = [decode_frame(e.data, 10**6) for e in effects if isinstance(e, Send) and e.peer == "p1"]
    assert any(_said(f, ALIVE, "me", INCARNATION_MAX) for f in back if isinstance(f, Gossip))
    at_max = Gossip((signed_member(DEAD, "me", INCARNATION_MAX),))
    effects = node.handle(FrameReceived("p2", encode_frame(at_max)), 20)
    assert Counter("records_refused_incarnation", 1) in effects and node.incarnation() == INCARNATION_MAX


def _said(frame, state, peer, incarnation) -> bool:
    return any(isinstance(i, MemberRecord) and (i.state, i.peer, i.incarnation) == (state, peer, incarnation)
               for i in frame.items)


def _sent_frames(effects):
    return [(e.peer, decode_frame(e.data, 10**6)) for e in effects if isinstance(e, Send)]


def test_a_local_change_is_pushed_at_once_to_the_fanout():
    node, feeds, _ = _node(members=("me", *(f"p{i}" for i in range(10))))
    d = feeds.commit(b"now")
    sent = _sent_frames(node.handle(LocalChanged(delta=d), 5))
    carriers = {peer for peer, f in sent if isinstance(f, Gossip) and DeltaItem(d) in f.items}
    assert len(carriers) == node.cfg.eager_fanout_max > node.cfg.fanout_max


def test_a_fresh_delta_is_pushed_on_at_once_and_a_duplicate_is_not():
    node, _, _ = _node(members=("me", *(f"p{i}" for i in range(10))))
    d = MemFeeds(b"p1").commit(b"news")
    sent = _sent_frames(node.handle(FrameReceived("p1", encode_frame(Gossip((DeltaItem(d),)))), 5))
    carriers = {peer for peer, f in sent if isinstance(f, Gossip) and DeltaItem(d) in f.items}
    assert len(carriers) == node.cfg.eager_fanout_max
    again = _sent_frames(node.handle(FrameReceived("p2", encode_frame(Gossip((DeltaItem(d),)))), 6))
    assert not any(isinstance(f, Gossip) for _, f in again)


def test_leave_and_sleep_are_told_directly_to_every_live_member():
    members = ("me", *(f"p{i}" for i in range(10)))
    for event, state in ((Leave(), LEFT), (AnnounceSleep(), ASLEEP)):
        node, _, _ = _node(members=members)
        sent = _sent_frames(node.handle(event, 5))
        told = {peer for peer, f in sent if isinstance(f, Gossip) and _said(f, state, "me", 1)}
        assert told == set(members) - {"me"}


def test_a_peer_with_a_stale_record_is_corrected():
    node, _, _ = _node()
    node.handle(FrameReceived("p2", encode_frame(Gossip((signed_member(SUSPECT, "p1", 3, "p2"),)))), 10)
    assert node.liveness()["p1"] is SUSPECT
    sent = _sent_frames(node.handle(FrameReceived("p3", encode_frame(Gossip((signed_member(ALIVE, "p1", 1),)))), 20))
    assert ("p3", Gossip((signed_member(SUSPECT, "p1", 3, "p2"),))) in sent
    # rate-limited: the same staleness within correction_interval_ms gets no second answer
    again = node.handle(FrameReceived("p3", encode_frame(Gossip((signed_member(ALIVE, "p1", 2),)))), 30)
    assert not _sent_frames(again)


def test_many_small_deltas_are_split_into_frames_peers_accept():
    node, feeds, _ = _node(config=MeshConfig(broadcast_queue_max=4096))
    for i in range(1500):  # more owners than one DELTAS frame may carry
        feeds.heads[b"o%04d" % i] = (1, b"")
    sent = _sent_frames(node.handle(FrameReceived("p1", encode_frame(Sync({}, (), False))), 10))
    batches = [f.deltas for _, f in sent if isinstance(f, Deltas)]
    assert len(batches) >= 2 and sum(map(len, batches)) == 1500
    other = MemFeeds(b"p1")
    for batch in batches:
        for d in batch:
            other.apply_delta(d)
    assert other.heads == feeds.heads
    # and a gossip queue of tiny deltas never builds a frame over the item limit
    for i in range(3000):
        node.dqueue.put(i, DeltaItem(bytes([i % 256])))  # 5 bytes each: 1600 would fit the budget
    node.handle(Tick(), 20)
    frames = _sent_frames(node.handle(Tick(), 20 + node.cfg.gossip_interval_ms))
    assert frames and all(isinstance(f, Gossip) and len(f.items) <= ITEMS_MAX for _, f in frames)


def test_a_broken_direct_link_is_bridged_by_indirect_probes():
    h = Harness(6, seed=9)
    a, x = h.ids[0], h.ids[1]
    h.blocked = lambda s, d, t: {s, d} == {a, x}  # only the a<->x link is down
    h.run_until(60_000)
    assert h.nodes[a].stats["sent_pingreq"] >= 1
    assert not h.ever(x, SUSPECT) and not h.ever(a, SUSPECT)


def test_peer_unreachable_starts_indirect_probing_at_once():
    node, _, _ = _node()
    node.handle(Tick(), 0)
    t, pinged = 0, []
    while not pinged:  # tick until the first probe goes out
        t += 50
        pinged = [peer for peer, f in _sent_frames(node.handle(Tick(), t)) if isinstance(f, Ping)]
    sent = _sent_frames(node.handle(PeerUnreachable(pinged[0]), t + 1))
    assert sent and all(isinstance(f, PingReq) and f.target == pinged[0] for _, f in sent)
    assert {peer for peer, _ in sent} == {"p1", "p2", "p3"} - {pinged[0]}


def test_local_misuse_is_refused_with_a_hint_and_changes_nothing():
    node, _, _ = _node()
    for bad in (SetSoftState(-1, 0.5), SetSoftState(1, float("nan")), SetSoftState(1, 1.5),
                SetSoftState(1, 0.5, ("",)), SetSoftState(1, 0.5, ("e",) * 17), SetSoftState(1, 0.5, (), "c" * 33)):
        with pytest.raises(InvalidInput) as err:
            node.handle(bad, 5)
        assert err.value.hint
    assert "me" not in node.presence()
    with pytest.raises(InvalidInput):
        node.handle(MembersChanged(frozenset({"me", "x" * 65})), 6)
    with pytest.raises(InvalidInput):
        make_node("", MeshConfig(), MemFeeds(b"me"), MemDoc(), random.Random(1))


class _TooBigDoc(MemDoc):
    def sync_message_for(self, peer: str) -> bytes | None:
        raise TooLarge("sync message over its limit")


def test_a_document_that_cannot_produce_a_message_is_counted_not_fatal():
    node = make_node("me", MeshConfig(), MemFeeds(b"me"), _TooBigDoc(), random.Random(1))
    node.handle(MembersChanged(frozenset({"me", "p1", "p2"})), 0)
    effects = node.handle(LocalChanged(doc_changed=True), 5)
    effects += node.handle(FrameReceived("p1", encode_frame(Sync({}, (b"h" * 32,), True))), 6)
    assert Counter("doc_message_failed_too_large", 1) in effects
    assert not any(isinstance(f, DocMessage) for _, f in _sent_frames(effects))


def test_local_health_awareness_makes_a_node_with_a_bad_network_suspect_less():
    # 60% of node0000's own traffic is lost: without Lifeguard's local health it blames its peers,
    # and every healthy peer it wrongly suspects has to refute
    failed, refuted = {}, {}
    for awareness_max in (1, 8):  # 1 switches local health awareness off
        h = Harness(8, seed=0, config=MeshConfig(awareness_max=awareness_max))
        a, drop = h.ids[0], random.Random(0)
        h.blocked = lambda s, d, t, a=a, drop=drop: a in (s, d) and drop.random() < 0.6
        h.run_until(120_000)
        failed[awareness_max] = h.nodes[a].stats.get("probes_failed", 0)
        refuted[awareness_max] = sum(h.nodes[p].stats.get("refutations", 0) for p in h.ids[1:])
        assert h.nodes[a].swim.health > 0 or awareness_max == 1
    print(f"in 120 s, suspicions raised by the unhealthy node: {failed}; refutations by the others: {refuted}")
    assert failed[8] * 2 <= failed[1] and refuted[8] * 2 <= refuted[1]


def test_a_quick_restart_keeps_soft_state_flowing_both_ways():
    # Found by the simulator (churn): a node restarted before anyone declared it dead restarted its
    # presence sequence at 1, which peers ignored, and peers never re-sent theirs to it.
    h = Harness(5, seed=11)
    for i, p in enumerate(h.ids):
        h.handle(p, SetSoftState(10**9 + i, 0.5, (), "desktop"))
    assert h.run_until_true(lambda: all(len(h.nodes[p].presence()) == 5 for p in h.ids), 20_000) is not None
    victim = h.ids[3]
    h.stop(victim)
    h.run_until(h.now + 300)  # far below any suspicion time-out: nobody declares it dead
    old = h.nodes[victim]
    # Restart: a fresh core with a higher incarnation, as the runtime does (wall-clock seeded).
    h.nodes[victim] = make_node(victim, h.config, h.feeds[victim], h.docs[victim], random.Random(99),
                               incarnation=old.incarnation() + 1)
    h.down.discard(victim)
    h.handle(victim, MembersChanged(frozenset(h.ids), {}))
    h.handle(victim, SetSoftState(7 * 10**9, 0.9, (), "server"))

    def soft_state_flows() -> bool:
        others_see_new = all(h.nodes[p].presence().get(victim) is not None
                             and h.nodes[p].presence()[victim].disk_free_bytes == 7 * 10**9
                             for p in h.ids if p != victim)
        victim_sees_all = len(h.nodes[victim].presence()) == 5
        return others_see_new and victim_sees_all

    assert h.run_until_true(soft_state_flows, h.now + 30_000) is not None


# --- presence remembered across a restart ---------------------------------------------------------

def _remembered(peer, pseq=1, disk=2 * 10**12):
    """A presence as the agent remembers it (signed by its owner, at incarnation 0)."""
    from mesh.core.presence import as_presence
    return as_presence(signed_presence(peer, 0, pseq, disk, 0.97, SOFT.endpoints, SOFT.host_class), 0)


def test_restored_presence_counts_as_received_now_and_ignores_non_members_and_older_records():
    from mesh.core import RestorePresence
    node, _, _ = _node()
    node.handle(FrameReceived("p2", encode_frame(Ping(1, signed_presence("p2", 0, 9, 5, 0.5, (), "nas")))), 50)
    node.handle(RestorePresence((_remembered("p1"), _remembered("stranger"), _remembered("p2", pseq=3))), 100)
    got = node.presence()
    assert got["p1"].disk_free_bytes == 2 * 10**12 and got["p1"].expires_ms == 100 + node.cfg.presence_ttl_ms
    assert "stranger" not in got
    assert got["p2"].pseq == 9  # what we heard ourselves is newer than what was remembered


@given(st.lists(st.tuples(st.text(max_size=70), st.integers(-1, 2**62 + 1), st.integers(-1, 2**64),
                          st.floats(), st.booleans()), min_size=1, max_size=4))
def test_restore_presence_refuses_out_of_range_records_and_changes_nothing(rows):
    from mesh.core import Presence, RestorePresence
    node, _, _ = _node()
    records = tuple(Presence(peer, pseq, disk, score, (), "desktop", asleep, 0) for peer, pseq, disk, score, asleep in rows)
    valid = all(0 < len(peer) <= 64 and 0 <= pseq < 2**64 and 0 <= disk < 2**64 and 0 <= score <= 1
                for peer, pseq, disk, score, _ in rows)
    try:
        node.handle(RestorePresence(records), 10)
    except InvalidInput:
        assert not valid
        assert set(node.presence()) <= {"me"}
    else:
        assert valid


def test_a_fleet_restarting_with_remembered_presence_does_not_flood_itself():
    # every node re-issues presence at start; when peers already hold that sequence, the rumour
    # stops at the first hop instead of crossing the fleet n times over
    from mesh.core import RestorePresence

    def gossip_bytes(remember: bool) -> int:
        h = Harness(40, seed=4)
        for p in h.ids:
            if remember:
                h.handle(p, RestorePresence(tuple(_remembered(q) for q in h.ids if q != p)))
            h.handle(p, SOFT)
        h.run_until(20_000)
        assert all(len(h.nodes[p].presence()) == 40 for p in h.ids)
        return sum(h.nodes[p].stats.get("bytes_sent_gossip", 0) for p in h.ids)

    cold, warm = gossip_bytes(False), gossip_bytes(True)
    print(f"start-up gossip bytes: {cold} without remembered presence, {warm} with")
    assert warm * 5 < cold


def test_a_restarted_node_gets_every_peers_presence_within_seconds_not_probe_rounds():
    # Found by the simulator (churn, 500 nodes): a quick restart went unnoticed (nobody suspected
    # it), so no peer re-sent its presence and the node learned it only from pings, ~2 peers a second.
    n = 60
    h = Harness(n, seed=12)
    for i, p in enumerate(h.ids):
        h.handle(p, SetSoftState(10**9 + i, 0.5, (), "desktop"))
    # (a start-up rumour misses a node now and then, e^-retransmits per pair; pings fill it in)
    assert h.run_until_true(lambda: all(len(h.nodes[p].presence()) == n for p in h.ids), 90_000) is not None
    victim = h.ids[7]
    h.stop(victim)
    h.run_until(h.now + 300)
    h.nodes[victim] = make_node(victim, h.config, h.feeds[victim], h.docs[victim], random.Random(98),
                               incarnation=h.nodes[victim].incarnation() + 1)
    h.down.discard(victim)
    h.handle(victim, MembersChanged(frozenset(h.ids), {}))
    h.handle(victim, SetSoftState(7 * 10**9, 0.9, (), "server"))
    t0 = h.now
    done = h.run_until_true(lambda: len(h.nodes[victim].presence()) == n, t0 + 5_000)
    assert done is not None, f"after 5 s the restarted node knows {len(h.nodes[victim].presence())} of {n}"
    assert all(h.nodes[p].swim.members[victim].incarnation == h.nodes[victim].incarnation()
               for p in h.ids if p != victim)

"""Liveness about X is X's to end (issue 12, item 3), at the core.

A rogue *member* — it passed admission, it runs our own code, and it also sends frames built by
hand with ``mesh.core.frames`` — tries to end another member's life: a LEFT at the wire's maximum
incarnation (which the victim could never out-bid), forged suspicions, forged and frozen presence,
floods of records that each cost a signature check. Every honest node must refuse and count it,
keep the victim alive with its own presence, and spend bounded CPU on it.
"""

from __future__ import annotations

import random

from mesh.core import (
    FrameReceived,
    Liveness,
    Log,
    MembersChanged,
    MeshConfig,
    MeshNode,
    SetSoftState,
    encode_frame,
)
from mesh.core.frames import INCARNATION_MAX, Gossip, MemberRecord, Ping, PresenceRecord, Records
from mesh.core.signing import issue_presence, member_message, presence_message
from tests.mesh.harness import (
    Harness,
    MemDoc,
    MemFeeds,
    named_key,
    signed_member,
    signed_presence,
    verify_named,
)

ALIVE, SUSPECT, DEAD, LEFT = Liveness.ALIVE, Liveness.SUSPECT, Liveness.DEAD, Liveness.LEFT


def _fleet(n: int = 8, seed: int = 1) -> tuple[Harness, str, str, list[str]]:
    h = Harness(n, seed=seed)
    for i, p in enumerate(h.ids):
        h.handle(p, SetSoftState(10**9 + i, 0.5, (), "desktop"))
    h.run_until(10_000)
    assert all(len(h.nodes[p].presence()) == n for p in h.ids)
    rogue, victim = h.ids[-1], h.ids[2]
    honest = [p for p in h.ids if p != rogue]
    return h, rogue, victim, honest


def _inject(h: Harness, rogue: str, targets: list[str], frame, at_ms: int | None = None) -> None:
    data = encode_frame(frame)
    for t in targets:
        h.at(h.now if at_ms is None else at_ms, t, FrameReceived(rogue, data))


def _sum(h: Harness, nodes: list[str], counter: str) -> int:
    return sum(h.nodes[p].stats.get(counter, 0) for p in nodes)


def test_a_forged_left_at_the_maximum_incarnation_is_refused_everywhere():
    h, rogue, victim, honest = _fleet()
    before = {p: h.nodes[p].liveness()[victim] for p in honest if p != victim}
    inc = h.nodes[victim].incarnation()
    rogue_key = named_key(rogue)
    # signed by the rogue (it has only its own key), claimed as the victim's statement, and one
    # carrying the victim's statement at its *current* incarnation re-labelled as LEFT
    forged = [
        MemberRecord(LEFT, victim, INCARNATION_MAX, "", LEFT, rogue_key.sign(member_message(victim, INCARNATION_MAX, 4))),
        MemberRecord(LEFT, victim, INCARNATION_MAX - 1, "", LEFT, b"\0" * 64),
        MemberRecord(LEFT, victim, inc + 1, "", LEFT, b""),
        MemberRecord(DEAD, victim, INCARNATION_MAX - 1, rogue, ALIVE, rogue_key.sign(member_message(victim, 7, 0))),
    ]
    for rec in forged:  # one record per frame: each frame is judged on its own
        _inject(h, rogue, honest, Gossip((rec,)))
    h.run_until(h.now + 30_000)
    for p in honest:
        if p != victim:
            assert h.nodes[p].liveness()[victim] is ALIVE == before[p]
            assert h.nodes[p].swim.members[victim].incarnation == inc
            assert victim in h.nodes[p].presence()  # its soft state is still counted
    assert h.nodes[victim].incarnation() == inc  # nothing could push it towards the limit
    # (the victim itself counts the one at the maximum as beyond what it could ever refute)
    assert _sum(h, honest, "member_records_forged") + _sum(h, honest, "records_refused_incarnation") \
        == len(forged) * len(honest)
    assert not h.ever(victim, LEFT) and not h.ever(victim, DEAD) and not h.ever(victim, SUSPECT)


def test_the_victim_leaving_itself_still_works():
    h, _, victim, honest = _fleet()
    from mesh.core import Leave

    h.handle(victim, Leave())
    h.run_until(h.now + 5_000)
    assert all(h.nodes[p].liveness()[victim] is LEFT for p in honest if p != victim)


def test_suspicions_are_allowed_but_move_the_incarnation_by_one_step_each():
    # A member may suspect (that is failure detection), and its "dead" counts as no more than
    # that: a suspicion carrying the victim's own statement, so the victim refutes at +1 — never at
    # a number someone else chose — and no honest node holds the live victim dead, even once.
    h, rogue, victim, honest = _fleet()
    start = h.nodes[victim].incarnation()
    rounds = 20
    for i in range(rounds):
        inc = h.nodes[h.ids[0]].swim.members[victim].incarnation
        _inject(h, rogue, honest, Gossip((signed_member(DEAD, victim, inc, rogue),)))
        h.run_until(h.now + 3_000)
        assert h.nodes[victim].incarnation() <= start + i + 1
    assert not h.ever(victim, DEAD)
    assert _sum(h, honest, "dead_claims_taken_as_suspicion") >= rounds
    assert h.run_until_true(lambda: all(h.nodes[p].liveness()[victim] is ALIVE for p in honest if p != victim),
                            h.now + 10_000) is not None
    assert start < h.nodes[victim].incarnation() <= start + rounds
    assert _sum(h, honest, "member_records_forged") == 0  # these were within the rules


def test_forged_and_frozen_presence_is_refused_and_the_owners_own_keeps_flowing():
    h, rogue, victim, honest = _fleet()
    held = h.nodes[h.ids[0]].presence()[victim]
    rogue_key = named_key(rogue)
    inc = h.nodes[victim].incarnation()

    def by_rogue(pinc: int, pseq: int, disk: int) -> PresenceRecord:
        # the victim's presence, with the rogue's signature over it
        p = issue_presence(rogue_key, pinc, pseq, disk, 0.0, (), "portable", True)
        body = p.body.replace(rogue.encode(), victim.encode())
        return PresenceRecord(victim, pinc, pseq, disk, 0.0, (), "portable", True,
                              rogue_key.sign(presence_message(body)), body, 10**9)

    frozen = by_rogue(inc, 2**62, 0)  # "disk full" for ever
    frozen_high = by_rogue(INCARNATION_MAX, 2**64 - 1, 0)
    unsigned = PresenceRecord(victim, inc, 999, 0, 0.0, (), "", True, b"", b"", 10**9)
    for rec in (frozen, frozen_high, unsigned):
        _inject(h, rogue, honest, Gossip((rec,)))
        _inject(h, rogue, honest, Ping(1, rec))
        _inject(h, rogue, honest, Records((rec,)))
    h.run_until(h.now + 2_000)
    for p in honest:
        if p != victim:
            got = h.nodes[p].presence()[victim]
            assert (got.incarnation, got.pseq, got.disk_free_bytes) == (held.incarnation, held.pseq,
                                                                        held.disk_free_bytes)
    assert _sum(h, honest, "presence_forged") == 3 * 3 * len(honest)  # the victim refuses them too
    # the owner's own next presence is taken as usual: nothing was frozen
    h.handle(victim, SetSoftState(4 * 10**12, 0.9, (), "server"))
    assert h.run_until_true(lambda: all(h.nodes[p].presence()[victim].disk_free_bytes == 4 * 10**12
                                        for p in honest if p != victim), h.now + 5_000) is not None


def test_a_replayed_old_presence_of_the_victim_changes_nothing():
    h, rogue, victim, honest = _fleet()
    old = h.nodes[h.ids[0]].book.with_remaining(victim, h.now)
    h.handle(victim, SetSoftState(3 * 10**12, 0.9, (), "server"))
    h.run_until(h.now + 5_000)
    _inject(h, rogue, honest, Gossip((old,)))
    h.run_until(h.now + 2_000)
    assert all(h.nodes[p].presence()[victim].disk_free_bytes == 3 * 10**12 for p in honest if p != victim)
    assert _sum(h, honest, "presence_forged") == 0  # genuine, merely old: ignored, not "forged"


def test_forgeries_are_counted_every_time_but_logged_once_a_minute_per_sender():
    h, rogue, victim, _ = _fleet()
    target = h.ids[0]
    logs: list[str] = []
    handle = h.handle

    def watch(node, event):
        effects = handle(node, event)
        logs.extend(e.message for e in effects if isinstance(e, Log) and node == target and "forged" in e.message)
        return effects
    h.handle = watch
    for i in range(100):  # 100 frames over 50 s
        _inject(h, rogue, [target], Gossip((MemberRecord(LEFT, victim, i + 5, "", LEFT, b"\1" * 64),)),
                at_ms=h.now + i * 500)
    h.run_until(h.now + 51_000)
    assert h.nodes[target].stats["member_records_forged"] == 100
    assert len(logs) == 1 and rogue[:16] in logs[0]
    _inject(h, rogue, [target], Gossip((MemberRecord(LEFT, victim, 9, "", LEFT, b"\1" * 64),)), at_ms=h.now + 20_000)
    h.run_until(h.now + 21_000)
    assert len(logs) == 2 and "(100 refusals from it since" in logs[1]  # the next line says how many


def test_a_frame_buys_a_bounded_number_of_signature_checks():
    counted = {"n": 0}

    def counting(peer, sig, msg):
        counted["n"] += 1
        return verify_named(peer, sig, msg)

    node = MeshNode("me", MeshConfig(), MemFeeds(b"me"), MemDoc(), random.Random(1), signer=named_key("me"),
                    verify=counting)
    node.handle(MembersChanged(frozenset({"me", "rogue", "victim"})), 0)
    # 1000 forged records in one frame: the first forgery ends the frame's checks
    forged = tuple(PresenceRecord("victim", 0, i + 1, 1, 0.5, (), "", False, b"\1" * 64, b"", 10**6)
                   for i in range(1000))
    node.handle(FrameReceived("rogue", encode_frame(Gossip(forged))), 10)
    assert counted["n"] == 1 and node.stats["presence_forged"] == 1
    assert node.stats["records_unchecked"] == 999
    # 1000 *valid* presence records of the rogue's own, each newer than the last: capped per frame
    own = tuple(signed_presence("rogue", 0, i + 1) for i in range(1000))
    counted["n"] = 0
    node.handle(FrameReceived("rogue", encode_frame(Gossip(own))), 20)
    cap = node.cfg.signature_checks_per_frame_max
    assert counted["n"] == cap and node.stats["records_unchecked"] == 999 + 1000 - cap
    assert node.presence()["rogue"].pseq == cap  # what was checked counts; the rest waits

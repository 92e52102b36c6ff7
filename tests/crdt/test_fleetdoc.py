"""Fleet document: records, validation, merge semantics, genesis refusal, sync limits."""

from __future__ import annotations

import pytest
from automerge import core

from crdt.fleetdoc import FleetDoc, Pin
from crdt.identity import NodeKey
from tva.errors import DecodeError, ForeignFleet, InvalidInput, NotInitialised, TooLarge

KEYS = [NodeKey(bytes([i + 1]) * 32) for i in range(6)]
PEERS = [k.peer_id for k in KEYS]
ACTORS = [k.public for k in KEYS]
FLEET = "fleet-abc"


def genesis(i: int = 0, fleet_id: str = FLEET, **kw) -> FleetDoc:
    return FleetDoc.genesis(fleet_id, "Home", PEERS[i], ACTORS[i], 1_000, **kw)


def sync(*docs: FleetDoc, rounds_max: int = 30) -> int:
    """Exchange sync messages between every ordered pair until nobody has anything to say."""
    sent = 0
    for _ in range(rounds_max):
        quiet = True
        for i, a in enumerate(docs):
            for j, b in enumerate(docs):
                if i == j:
                    continue
                msg = a.sync_message_for(PEERS[j])
                if msg is not None:
                    quiet = False
                    sent += 1
                    b.receive_sync_message(PEERS[i], msg)
        if quiet:
            return sent
    raise AssertionError("sync did not go quiet")


def view(doc: FleetDoc) -> tuple:
    return (doc.pins(), doc.overrides(), doc.admissions(), doc.revocations(), doc.redeemed(),
            doc.friends(), doc.members())


# --- records and local validation -----------------------------------------------------------------


def test_genesis_records_fleet_and_founder():
    doc = genesis()
    assert (doc.fleet_id, doc.fleet_name) == (FLEET, "Home")
    assert doc.members() == {PEERS[0]}
    assert doc.admissions()[PEERS[0]].role == "founder"
    assert doc.pins() == {} and doc.overrides() == {} and doc.friends() == {}


def test_records_round_trip_through_save_and_load():
    doc = genesis()
    doc.pin("movie:dune", 2, 4, PEERS[0], 2_000)
    doc.pin("show:office", 1, None, PEERS[1], 2_001)
    doc.set_override(PEERS[1], host_class="seedbox", services={"seed", "play"},
                     duty_prefs={"custodian": "prefer", "research": "never"})
    doc.admit(PEERS[1], "den-pc", "member", "nonce-1", PEERS[0], 2_002)
    doc.admit(PEERS[2], "neighbour", "friend", None, PEERS[0], 2_003)
    assert doc.redeem_invite("nonce-1", PEERS[1], 2_004) is True
    assert doc.redeem_invite("nonce-1", PEERS[3], 2_005) is False
    doc.add_friend("fleet-xyz", "Smiths", {"bootstrap": "/ip6/fd00::1/udp/4001", "port": 4001,
                                          "open": True}, PEERS[0], 2_006)
    assert doc.revoke(PEERS[3], PEERS[0], "lost laptop", 2_007) is True
    assert doc.revoke(PEERS[3], PEERS[0], "again", 2_008) is False
    loaded = FleetDoc.load(doc.save(), ACTORS[1])
    assert view(loaded) == view(doc)
    assert loaded.heads() == doc.heads()
    assert doc.pins()["movie:dune"] == Pin("movie:dune", 2, 4, PEERS[0], 2_000)
    over = doc.overrides()[PEERS[1]]
    assert over.services == {"seed", "play"}
    assert over.duty_prefs_dict() == {"custodian": "prefer", "research": "never"}
    assert doc.friends()["fleet-xyz"].link_dict() == {"bootstrap": "/ip6/fd00::1/udp/4001",
                                                       "port": 4001, "open": True}
    assert doc.members() == {PEERS[0], PEERS[1]}  # friends are not members
    assert doc.redeemed() == {"nonce-1": PEERS[1]}


def test_updates_and_deletes():
    doc = genesis()
    doc.pin("c", 1, None, PEERS[0], 2_000)
    doc.pin("c", 3, 5, PEERS[1], 3_000)
    assert doc.pins()["c"] == Pin("c", 3, 5, PEERS[1], 3_000)
    heads = doc.heads()
    doc.pin("c", 3, 5, PEERS[1], 3_000)  # nothing changed: no new change (no history growth)
    assert doc.heads() == heads
    assert doc.unpin("c") is True and doc.unpin("c") is False
    doc.set_override(PEERS[1], host_class="nas")
    doc.set_override(PEERS[1], services=[])
    assert doc.overrides()[PEERS[1]].host_class == "nas"
    assert doc.overrides()[PEERS[1]].services == frozenset()
    assert doc.clear_override(PEERS[1]) and doc.overrides() == {}
    doc.add_friend("f2", "A", {"x": "1", "y": 2}, PEERS[0], 1)
    doc.add_friend("f2", "A", {"x": "3"}, PEERS[0], 2)
    assert doc.friends()["f2"].link_dict() == {"x": "3"}
    assert doc.remove_friend("f2") and doc.friends() == {}


@pytest.mark.parametrize("call", [
    lambda d: d.pin("c", 0, None, PEERS[0], 1),
    lambda d: d.pin("c", 3, 2, PEERS[0], 1),
    lambda d: d.pin("c", True, None, PEERS[0], 1),
    lambda d: d.pin("", 1, None, PEERS[0], 1),
    lambda d: d.pin("x" * 300, 1, None, PEERS[0], 1),
    lambda d: d.pin("a\nb", 1, None, PEERS[0], 1),
    lambda d: d.pin("c", 1, None, "not-a-peer", 1),
    lambda d: d.pin("c", 1, None, PEERS[0], -1),
    lambda d: d.set_override(PEERS[1]),
    lambda d: d.set_override("nobody", host_class="nas"),
    lambda d: d.set_override(PEERS[1], host_class="Bad Class"),
    lambda d: d.set_override(PEERS[1], services="seed"),
    lambda d: d.set_override(PEERS[1], duty_prefs={"custodian": "sometimes"}),
    # Outside the shared limits (tva.limits): more copies than any plan, an unknown class.
    lambda d: d.pin("c", 1, 65, PEERS[0], 1),
    lambda d: d.pin("c", 65, None, PEERS[0], 1),
    lambda d: d.pin("two words", 1, None, PEERS[0], 1),
    lambda d: d.set_override(PEERS[1], host_class="mainframe"),
    lambda d: d.set_override(PEERS[1], services={"fetch"}),
    lambda d: d.set_override(PEERS[1], duty_prefs={"juggling": "prefer"}),
    lambda d: d.admit(PEERS[1], "x", "king", None, PEERS[0], 1),
    lambda d: d.admit(PEERS[1], "x", "member", "bad nonce!", PEERS[0], 1),
    lambda d: d.redeem_invite("", PEERS[1], 1),
    lambda d: d.add_friend(FLEET, "self", {}, PEERS[0], 1),
    lambda d: d.add_friend("f2", "x", {"Bad Key": 1}, PEERS[0], 1),
    lambda d: d.add_friend("f2", "x", {"k": 1.5}, PEERS[0], 1),
    lambda d: d.add_friend("f2", "x", {f"k{i}": i for i in range(40)}, PEERS[0], 1),
])
def test_local_misuse_is_invalid_input_and_changes_nothing(call):
    doc = genesis()
    heads = doc.heads()
    with pytest.raises(InvalidInput) as info:
        call(doc)
    assert info.value.hint
    assert doc.heads() == heads


def test_constructor_arguments_are_checked():
    with pytest.raises(InvalidInput):
        FleetDoc.genesis("bad id!", "Home", PEERS[0], ACTORS[0], 1)
    with pytest.raises(InvalidInput):
        FleetDoc.genesis(FLEET, "Home", PEERS[0], b"", 1)
    with pytest.raises(InvalidInput):
        FleetDoc.empty_replica("not bytes")  # type: ignore[arg-type]


def test_empty_replica_cannot_write_before_genesis_arrives():
    joiner = FleetDoc.empty_replica(ACTORS[1])
    with pytest.raises(NotInitialised):
        joiner.pin("c", 1, None, PEERS[1], 1)
    with pytest.raises(NotInitialised):
        _ = joiner.fleet_id
    assert joiner.pins() == {} and not joiner.has_genesis


# --- merge semantics ------------------------------------------------------------------------------


def test_two_docs_converge_through_sync_only():
    a = genesis()
    b = FleetDoc.empty_replica(ACTORS[1], expected_fleet_id=FLEET)
    a.pin("c1", 2, None, PEERS[0], 2_000)
    sync(a, b)
    assert b.fleet_id == FLEET and b.pins() == a.pins()
    b.pin("c2", 1, 2, PEERS[1], 3_000)
    a.set_override(PEERS[1], host_class="nas")
    assert sync(a, b) > 0
    assert view(a) == view(b) and a.heads() == b.heads()
    assert sync(a, b) == 0  # quiet once converged


def test_concurrent_edits_of_different_fields_merge():
    a = genesis()
    b = FleetDoc.load(a.save(), ACTORS[1])
    a.set_override(PEERS[2], host_class="nas")
    sync(a, b)
    a.set_override(PEERS[2], host_class="seedbox")
    b.set_override(PEERS[2], services={"seed"})
    sync(a, b)
    assert a.overrides()[PEERS[2]].host_class == "seedbox"
    assert a.overrides()[PEERS[2]].services == {"seed"}
    assert view(a) == view(b)


def test_concurrent_creation_of_one_pin_keeps_one_whole_record():
    a = genesis()
    b = FleetDoc.load(a.save(), ACTORS[1])
    a.pin("c", 2, None, PEERS[0], 2_000)
    b.pin("c", 5, 7, PEERS[1], 2_001)
    sync(a, b)
    assert a.pins() == b.pins()
    assert a.pins()["c"] in (Pin("c", 2, None, PEERS[0], 2_000), Pin("c", 5, 7, PEERS[1], 2_001))


def test_unpin_wins_over_concurrent_field_update():
    a = genesis()
    a.pin("c", 2, None, PEERS[0], 2_000)
    b = FleetDoc.load(a.save(), ACTORS[1])
    a.unpin("c")
    b.pin("c", 3, None, PEERS[1], 2_001)  # updates fields of the existing record
    sync(a, b)
    assert a.pins() == b.pins() == {}


def test_revocation_wins_over_concurrent_admission():
    a = genesis()
    b = FleetDoc.load(a.save(), ACTORS[1])
    a.revoke(PEERS[3], PEERS[0], "stolen", 2_000)
    b.admit(PEERS[3], "laptop", "member", None, PEERS[1], 2_001)
    sync(a, b)
    for doc in (a, b):
        assert PEERS[3] in doc.admissions() and PEERS[3] in doc.revocations()
        assert PEERS[3] not in doc.members()
        with pytest.raises(InvalidInput):
            doc.admit(PEERS[3], "laptop", "member", None, PEERS[1], 3_000)


# --- genesis and peer data ------------------------------------------------------------------------


def test_peer_with_another_genesis_is_refused_and_changes_nothing():
    a = genesis()
    a.pin("c", 1, None, PEERS[0], 2_000)
    other = genesis(2)  # same fleet id, different founder: a second genesis
    before = (a.heads(), view(a))
    with pytest.raises(ForeignFleet):
        for _ in range(5):
            for msg_from, msg_to, frm in ((other, a, 2), (a, other, 0)):
                msg = msg_from.sync_message_for(PEERS[0] if frm == 2 else PEERS[2])
                if msg is not None:
                    msg_to.receive_sync_message(PEERS[frm], msg)
    assert (a.heads(), view(a)) == before
    with pytest.raises(ForeignFleet):
        a.merge(other)
    assert (a.heads(), view(a)) == before


def test_joiner_expecting_another_fleet_refuses_its_genesis():
    a = genesis()
    joiner = FleetDoc.empty_replica(ACTORS[1], expected_fleet_id="someone-else")
    with pytest.raises(ForeignFleet):
        sync(a, joiner)
    assert not joiner.has_genesis and joiner.heads() == []


def test_load_refuses_a_doc_with_two_geneses():
    raw = core.Document.load(genesis(0).save())
    raw.merge(core.Document.load(genesis(1).save()))
    with pytest.raises(ForeignFleet):
        FleetDoc.load(raw.save(), ACTORS[2])
    with pytest.raises(DecodeError):
        FleetDoc.load(core.Document(b"\x01").save(), ACTORS[2])  # no genesis at all / no meta


def test_malformed_records_from_a_peer_are_skipped_and_counted():
    good = genesis()
    good.pin("ok", 1, None, PEERS[0], 2_000)
    evil = core.Document.load(good.save())
    evil.set_actor(b"evil")
    pins = evil.get(core.ROOT, "pins")[1]
    with evil.transaction() as tx:
        bad = tx.put_object(pins, "text-min", core.ObjType.Map)
        for k, t, v in (("min", core.ScalarType.Str, "two"), ("max", core.ScalarType.Null, None),
                        ("by", core.ScalarType.Str, PEERS[0]), ("at_ms", core.ScalarType.Int, 1)):
            tx.put(bad, k, t, v)
        bad = tx.put_object(pins, "float-min", core.ObjType.Map)
        for k, t, v in (("min", core.ScalarType.F64, 1.0), ("max", core.ScalarType.Null, None),
                        ("by", core.ScalarType.Str, PEERS[0]), ("at_ms", core.ScalarType.Int, 1)):
            tx.put(bad, k, t, v)
        tx.put(pins, "scalar-pin", core.ScalarType.Int, 3)
        tx.put_object(pins, "empty", core.ObjType.Map)
        over = tx.put_object(evil.get(core.ROOT, "overrides")[1], "not-a-peer", core.ObjType.Map)
        tx.put(over, "class", core.ScalarType.Str, "nas")
        adm = tx.put_object(evil.get(core.ROOT, "admissions")[1], PEERS[4], core.ObjType.Map)
        tx.put(adm, "role", core.ScalarType.Str, "emperor")
    state = core.SyncState()
    for _ in range(6):  # the evil peer speaks the real sync protocol
        msg = evil.generate_sync_message(state)
        if msg is not None:
            good.receive_sync_message(PEERS[5], msg.encode())
        back = good.sync_message_for(PEERS[5])
        if back is not None:
            evil.receive_sync_message(state, core.Message.decode(back))
    before = good.malformed_records
    assert set(good.pins()) == {"ok"}
    assert good.overrides() == {} and PEERS[4] not in good.admissions()
    assert good.malformed_records - before == 6


# --- limits ---------------------------------------------------------------------------------------


def test_sync_messages_are_capped_on_send_and_receive():
    a = genesis(sync_message_bytes_max=2_000)
    for i in range(40):
        a.pin(f"content-{i}", 1, None, PEERS[0], 2_000 + i)
    b = FleetDoc.empty_replica(ACTORS[1], sync_message_bytes_max=2_000)
    with pytest.raises(TooLarge):
        sync(a, b)
    big = genesis(sync_message_bytes_max=10**7)
    for i in range(40):
        big.pin(f"content-{i}", 1, None, PEERS[0], 2_000 + i)
    with pytest.raises(TooLarge):
        sync(big, b)
    assert not b.has_genesis


def test_save_of_1k_pins_stays_small():
    doc = genesis()
    for i in range(1_000):
        doc.pin(f"movie:{i:05d}", 2, 4, PEERS[i % 5], 1_700_000_000_000 + i)
    data = doc.save()
    # Measured ~15 KB (automerge compresses the columns); 64 KiB leaves room for version drift.
    assert len(data) < 64 * 1024
    assert len(FleetDoc.load(data, ACTORS[1]).pins()) == 1_000


def test_change_count_parser_agrees_with_what_messages_do():
    from crdt.fleetdoc_schema import sync_change_count

    a = genesis()
    a.pin("c", 1, None, PEERS[0], 2_000)
    b = FleetDoc.empty_replica(ACTORS[1])
    counts = []
    for _ in range(4):
        for src, dst, frm, to in ((a, b, 0, 1), (b, a, 1, 0)):
            msg = src.sync_message_for(PEERS[to])
            if msg is not None:
                changed = dst.receive_sync_message(PEERS[frm], msg)
                counts.append((sync_change_count(msg), changed))
    assert (0, False) in counts  # the opening heads-only message
    assert any(n and n >= 1 and changed for n, changed in counts)  # the one that brought history
    assert all(changed is False for n, changed in counts if n == 0)
    assert sync_change_count(b"") is None and sync_change_count(b"\x42\x05") is None


def test_settings_are_validated_and_synced():
    doc = genesis()
    doc.set_setting("ipv4_subnet", "10.77.3.0/24", PEERS[0], 5)
    assert doc.settings() == {"ipv4_subnet": "10.77.3.0/24"}
    assert FleetDoc.load(doc.save(), ACTORS[1]).settings() == {"ipv4_subnet": "10.77.3.0/24"}
    for name, value in (("ipv4_subnet", "10.77.3.1/24"), ("ipv4_subnet", "nonsense"), ("colour", "red")):
        with pytest.raises(InvalidInput):
            doc.set_setting(name, value, PEERS[0], 6)
    assert doc.settings() == {"ipv4_subnet": "10.77.3.0/24"}

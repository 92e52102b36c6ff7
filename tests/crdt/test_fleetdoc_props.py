"""Garbage from a peer or a file never crashes the fleet document and never changes it wrongly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crdt.decision_ops import decode_op
from crdt.fleetdoc import FleetDoc
from crdt.identity import NodeKey
from tva.errors import RemoteDataError

KEYS = [NodeKey(bytes([i + 1]) * 32) for i in range(6)]
PEERS = [k.peer_id for k in KEYS]


def _base() -> FleetDoc:
    doc = FleetDoc.genesis("Home", KEYS[0], "founder", 1_000, b"\x02" * 16)
    doc.admit(PEERS[1], "nas", "member", None, 1_500)
    doc.pin("c", 2, None, 2_000)
    doc.set_override(PEERS[1], host_class="nas", services={"seed"}, now_ms=2_001)
    return doc


def _view(doc: FleetDoc) -> tuple:
    return (doc.heads(), doc.pins(), doc.overrides(), doc.admissions(), doc.revocations(),
            doc.members(), doc.friends(), doc.redeemed())


def _real_messages() -> list[bytes]:
    """Real sync messages (hello, ops, replies) from a doc with history to a new joiner."""
    a = _base()
    b = FleetDoc.empty_replica(KEYS[1])
    out = []
    for _ in range(4):
        for src, dst, frm, to in ((a, b, 0, 1), (b, a, 1, 0)):
            msg = src.sync_message_for(PEERS[to])
            if msg is not None:
                out.append(msg)
                dst.receive_sync_message(PEERS[frm], msg)
    return out


REAL = _real_messages()
SAVED = _base().save()
FID = _base().fleet_id


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    buf = bytearray(data)
    for pos, byte in edits:
        if buf:
            buf[pos % len(buf)] = byte
    return bytes(buf[:cut] if cut is not None else buf)


mutations = st.tuples(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
                      st.none() | st.integers(0, 4_000))


@given(st.binary(max_size=2_000) | st.sampled_from(REAL).flatmap(lambda m: mutations.map(lambda e: _mutate(m, *e))))
def test_garbage_sync_messages_never_crash_and_change_only_by_genuine_ops(data):
    for doc in (_base(), FleetDoc.empty_replica(KEYS[2])):
        before = _view(doc)
        try:
            changed = doc.receive_sync_message(PEERS[3], data)
        except RemoteDataError:
            assert _view(doc) == before
            continue
        assert changed == (_view(doc)[0] != before[0])
        # whatever was taken is exactly a genuine op of the base history (signatures hold)
        genuine = {op.hash for op in _base().ops()}
        assert {op.hash for op in doc.ops()} <= genuine
        doc.pins()


@given(st.binary(max_size=3_000) | mutations.map(lambda e: _mutate(SAVED, *e)))
def test_garbage_saved_bytes_give_a_remote_data_error(data):
    try:
        doc = FleetDoc.load(data, KEYS[1])
    except RemoteDataError:
        return
    assert doc.fleet_id == FID  # only an intact (or harmlessly altered) save loads
    doc.pins()


@given(st.binary(max_size=600))
def test_garbage_ops_never_decode_into_anything_but_a_remote_data_error(data):
    try:
        decode_op(data)
    except RemoteDataError:
        return
    raise AssertionError("random bytes decoded into a signed op")

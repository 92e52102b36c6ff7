"""A build one *minor* wire version ahead, made from this build's own encoder (issue 14, item 6):
a trailing field on every frame, item, presence body and vector entry, a new item kind in every
item list, a new frame kind now and then, and holdings with trailing fields. Used by the rolling
upgrade test (``tests/mesh/test_core_upgrade.py``) and the ``long-haul`` scenario's upgrade of half
the fleet (``NewerNode``)."""

from __future__ import annotations

from dataclasses import replace

import msgpack

from crdt import records
from mesh.core import FRAME_VERSION, decode_frame
from mesh.core.frames import frame_wire
from mesh.core.signing import issue_presence, presence_message
from simulations.adapter import AddHolding, Effect, RemoveHolding, Send
from simulations.realnode import RealNode

NEW_ITEM = [7, {"a field from the future": [1, 2, 3]}]
NEW_FRAME = [12, "a frame kind from the future", {"x": 1}]
NEW_FRAME_EVERY = 25  # the newer build sends a frame kind this build never heard of now and then


def newer_encoding(data: bytes) -> bytes:
    """What the newer build would have sent for the frame this build encoded as ``data``."""
    frame = decode_frame(data, 10**8)
    wire = frame_wire(frame)
    kind = wire[0]
    if kind in (1, 2):  # ping/ack: [kind, seq, presence|nil, items]
        presence = None if wire[2] is None else [*wire[2], "minor+1"]
        wire = [kind, wire[1], presence, [NEW_ITEM, *[[*i, "minor+1"] for i in wire[3]]]]
    elif kind in (3,):
        wire = [kind, wire[1], wire[2], [NEW_ITEM, *[[*i, "minor+1"] for i in wire[3]]]]
    elif kind in (4, 11):  # gossip, records
        wire = [kind, [NEW_ITEM, *[[*i, "minor+1"] for i in wire[1]]]]
    elif kind == 6 and wire[5] is not None:  # sync: the membership vector entries grow too
        wire[5] = {p: [*e, 99] for p, e in wire[5].items()}
    return bytes([FRAME_VERSION]) + msgpack.packb([*wire, "minor+1 frame field"], use_bin_type=True)


def new_frame_kind() -> bytes:
    return bytes([FRAME_VERSION]) + msgpack.packb(NEW_FRAME)


def newer_presence(book, signer):
    """The newer build's presence issuer: one more field in the signed body."""
    def issue(incarnation, disk, score, endpoints, host_class, asleep):
        pseq = book.own.pseq + 1 if book.own is not None else 1
        base = issue_presence(signer, incarnation, pseq, disk, score, endpoints, host_class, asleep)
        fields = msgpack.unpackb(base.body)
        body = msgpack.packb([*fields, {"load_avg": 0.42}], use_bin_type=True)
        book.own = replace(base, body=body, sig=signer.sign(presence_message(body)))
        return book.own
    return issue


def newer_holding(raw: bytes) -> bytes:
    """Same major, one more field (after the custody mark, this build's last optional one)."""
    fields = msgpack.unpackb(raw)
    if len(fields) < 8:
        fields = [*fields, False]
    return msgpack.packb([*fields, "codec:av1"], use_bin_type=True)


class NewerNode(RealNode):
    """A simulated host after its upgrade to the newer minor: the same cores, the newer wire."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.mesh.book.issue = newer_presence(self.mesh.book, self.key)
        self._sent = 0

    def _handle(self, event: object, now_ms: int, out: list[Effect]) -> None:
        mark = len(out)
        super()._handle(event, now_ms, out)
        for i in range(mark, len(out)):
            eff = out[i]
            if isinstance(eff, Send):
                self._sent += 1
                out[i] = replace(eff, frame=newer_encoding(eff.frame))
                if self._sent % NEW_FRAME_EVERY == 0:
                    out.append(Send(eff.dst, new_frame_kind()))

    def _write_holding(self, op: AddHolding | RemoveHolding) -> None:
        super()._write_holding(op)
        if isinstance(op, AddHolding):
            key = records.holding_key(op.item)
            self.own.put(key, newer_holding(self.own._pending[key]))  # type: ignore[arg-type]

"""The stand-in protocol's shared caches and its warm-start state (see ``simulations.standin``)."""

from __future__ import annotations

import hashlib

import msgpack

from crdt.identity import NodeKey
from simulations.adapter import AddHolding, SetPin
from tva.errors import DecodeError


class Shared:
    """Facts every simulated node could compute alike; shared only to save CPU, never state.

    A signature verifies the same on every node, so one verification per distinct commit is
    exactly equivalent to verifying it on each of a thousand nodes."""

    def __init__(self) -> None:
        self.peer_of: dict[bytes, str] = {}
        self.verified: dict[bytes, bool] = {}
        # Decoding is a pure function of the bytes: one decode per distinct commit, and one
        # canonical bytes object that every node's log shares (memory for 1000 nodes).
        self.decoded: dict[bytes, tuple[list, bytes]] = {}

    def decode_commit(self, raw: bytes) -> tuple[list, bytes]:
        hit = self.decoded.get(raw)
        if hit is not None:
            return hit
        c = msgpack.unpackb(raw)
        if not (isinstance(c, list) and len(c) == 5 and isinstance(c[0], bytes) and len(c[0]) == 32
                and isinstance(c[1], int) and isinstance(c[2], int) and c[2] == c[1] + 1
                and isinstance(c[3], list) and isinstance(c[4], bytes)):
            raise DecodeError("commit is not [owner, prev, version=prev+1, entries, sig]")
        hit = self.decoded[raw] = (c, raw)
        return hit


def _h(*parts: object) -> int:
    data = msgpack.packb(parts)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def warm_state(shared: Shared, keys: list[NodeKey], classes: list[str], holdings: list[list[AddHolding]],
               pins: list[SetPin], friends: list[str]) -> dict:
    """A converged fleet's disk state: one signed commit per host (card + holdings), the pins and
    friend links in the document."""
    log: dict[bytes, list[bytes]] = {}
    for key, host_class, holds in zip(keys, classes, holdings, strict=True):
        shared.peer_of[key.public] = key.peer_id
        entries = [["card", host_class]] + [["hold/" + h.item, [h.size_bytes, h.policy]] for h in holds]
        body = [key.public, 0, 1, entries]
        raw = msgpack.packb([*body, key.sign(msgpack.packb(body))])
        shared.verified[raw] = True
        log[key.public] = [raw]
    actor = keys[0].peer_id
    doc: dict[str, tuple[int, str, object]] = {}
    for pin in pins:
        doc["pin/" + pin.item] = (1, actor, [pin.copies_min, pin.copies_max])
    for f in friends:
        doc["friend/" + f] = (1, actor, True)
    return {"log": log, "doc": doc, "incarnation": -1, "members": [k.peer_id for k in keys]}

"""Decision changes ("ops"): signed, hash-linked records of what the fleet decided (pure).

Why our own log and not automerge (the spike's numbers are in docs/ENGINEERING.md, "Trust"):
authority needs every change bound to its author's key and checked against the author's rights
*in the change's causal past*. automerge 1.0.0rc1 offers neither half: its sync protocol carries
changes with no place for a signature, a change's actor id is any bytes anyone may claim, and the
binding cannot apply a single received change to inspect its effect (no incremental load). So a
decision is an op here, and the fleet document is a deterministic fold of the ops' DAG.

One op, as packed (msgpack, the exact bytes are what is hashed and signed):

    [FORMAT, author (32-byte Ed25519 key), seq, parents (sorted 32-byte hashes), at_ms, kind, body]

* ``seq`` numbers the author's own ops 1, 2, 3 …; op ``seq > 1`` names its author's previous op
  among its parents, so each author's ops form a chain (what makes version vectors exact).
* ``parents`` are the heads the author had seen: the op's causal past is everything reachable.
* ``hash`` = BLAKE2b-256(domain ‖ packed); the signature covers domain ‖ hash.
* wire/disk form: msgpack ``[packed, signature]``.

``kind`` and ``body`` are checked later, by the fold (an unknown kind from a newer build is kept
and synced, and simply has no effect here): this module checks only what every op must satisfy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from crdt.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, NodeKey, verify
from tva.errors import DecodeError, InvalidInput, SignatureError, TooLarge

FORMAT = 1
HASH_BYTES = 32
OP_BYTES_MAX = 256 * 1024  # a PSK rotation seals one key per member: ~112 B x 1,024 members
PARENTS_MAX = 32
BODY_FIELDS_MAX = 64
BODY_MAP_ENTRIES_MAX = 1100  # the sealed-key map of a PSK rotation (one entry per member)
BODY_TEXT_CHARS_MAX = 2048
BODY_BYTES_FIELD_MAX = 256
KIND_CHARS_MAX = 32
MS_MAX = 2**53
SEQ_MAX = 2**32
_HASH_DOMAIN = b"tva/decision/v1/hash"
_SIGN_DOMAIN = b"tva/decision/v1/sig"

Body = Mapping[str, Any]


@dataclass(frozen=True, eq=False)
class Op:
    author: bytes
    seq: int
    parents: tuple[bytes, ...]
    at_ms: int
    kind: str
    body: Body
    packed: bytes
    hash: bytes
    signature: bytes

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Op) and other.hash == self.hash

    def __hash__(self) -> int:
        return hash(self.hash)

    @property
    def wire(self) -> bytes:
        return msgpack.packb([self.packed, self.signature], use_bin_type=True)

    @property
    def size(self) -> int:
        return len(self.packed) + len(self.signature)


def _op_hash(packed: bytes) -> bytes:
    return hashlib.blake2b(_HASH_DOMAIN + packed, digest_size=HASH_BYTES).digest()


def make_op(key: NodeKey, *, seq: int, parents: list[bytes] | tuple[bytes, ...], at_ms: int, kind: str,
            body: Body) -> Op:
    """Sign a new op. Local misuse (a bad field) is InvalidInput; nothing is signed then."""
    parents_sorted = tuple(sorted(set(parents)))
    try:
        _check_shape(key.public, seq, parents_sorted, at_ms, kind, body)
    except DecodeError as exc:
        raise InvalidInput(f"cannot make a decision change: {exc.message}") from None
    packed = msgpack.packb([FORMAT, key.public, seq, list(parents_sorted), at_ms, kind, dict(body)],
                           use_bin_type=True)
    if len(packed) + SIGNATURE_BYTES > OP_BYTES_MAX:
        raise InvalidInput(f"a decision change is {len(packed)} bytes, limit {OP_BYTES_MAX}",
                           hint="fewer fields, or shorter values")
    digest = _op_hash(packed)
    return Op(key.public, seq, parents_sorted, at_ms, kind, body, packed, digest,
              key.sign(_SIGN_DOMAIN + digest))


def hash_of_wire(wire: bytes) -> bytes:
    """The hash of the op in ``wire``, without decoding its body or checking its signature: enough
    to skip an op already held (a replica hears the same ops from many peers). RemoteDataError
    when even the outer shape is wrong."""
    return _op_hash(_split_wire(wire)[0])


def _split_wire(wire: bytes) -> tuple[bytes, bytes]:
    if not isinstance(wire, bytes | bytearray):
        raise DecodeError("a decision change must be bytes")
    if len(wire) > OP_BYTES_MAX + 16:
        raise TooLarge(f"a decision change of {len(wire)} bytes, limit {OP_BYTES_MAX}")
    try:
        outer = msgpack.unpackb(bytes(wire), raw=False, use_list=True, max_bin_len=OP_BYTES_MAX,
                                max_str_len=64, max_array_len=2, max_map_len=0, max_ext_len=0)
    except Exception:
        raise DecodeError("a decision change does not decode") from None
    if not (isinstance(outer, list) and len(outer) == 2 and isinstance(outer[0], bytes)
            and isinstance(outer[1], bytes) and len(outer[1]) == SIGNATURE_BYTES):
        raise DecodeError("a decision change has an unknown structure")
    return outer[0], outer[1]


def decode_op(wire: bytes) -> Op:
    """Decode and verify one op from a peer or a file. RemoteDataError on anything wrong."""
    packed, signature = _split_wire(wire)
    try:
        fields = msgpack.unpackb(packed, raw=False, use_list=True, strict_map_key=True,
                                 max_bin_len=BODY_BYTES_FIELD_MAX * 2, max_str_len=BODY_TEXT_CHARS_MAX,
                                 max_array_len=PARENTS_MAX + 8, max_map_len=BODY_MAP_ENTRIES_MAX,
                                 max_ext_len=0)
    except Exception:
        raise DecodeError("a decision change's body does not decode") from None
    if not isinstance(fields, list) or len(fields) != 7:
        raise DecodeError("a decision change has an unknown structure")
    version, author, seq, parents, at_ms, kind, body = fields
    if version != FORMAT:
        raise DecodeError(f"decision change format {version!r:.20}, this build reads {FORMAT}")
    if not isinstance(parents, list):
        raise DecodeError("a decision change's parents must be a list")
    parents_t = tuple(parents)
    _check_shape(author, seq, parents_t, at_ms, kind, body)
    if list(parents_t) != sorted(set(parents_t)):
        raise DecodeError("a decision change's parents must be sorted and distinct")
    digest = _op_hash(packed)
    if not verify(author, signature, _SIGN_DOMAIN + digest):
        raise SignatureError("a decision change's signature does not verify")
    return Op(author, seq, parents_t, at_ms, kind, body, packed, digest, signature)


def _check_shape(author: object, seq: object, parents: tuple, at_ms: object, kind: object,
                 body: object) -> None:
    if not isinstance(author, bytes) or len(author) != PUBLIC_KEY_BYTES:
        raise DecodeError("a decision change's author must be a 32-byte Ed25519 key")
    if type(seq) is not int or not 1 <= seq <= SEQ_MAX:
        raise DecodeError(f"a decision change's seq must be in 1..{SEQ_MAX}")
    if len(parents) > PARENTS_MAX or not all(isinstance(p, bytes) and len(p) == HASH_BYTES for p in parents):
        raise DecodeError(f"a decision change has at most {PARENTS_MAX} parents of {HASH_BYTES} bytes")
    if type(at_ms) is not int or not 0 <= at_ms <= MS_MAX:
        raise DecodeError("a decision change's time must be an int in 0..2**53")
    if not isinstance(kind, str) or not 0 < len(kind) <= KIND_CHARS_MAX or not kind.isascii():
        raise DecodeError("a decision change's kind must be 1..32 ASCII characters")
    if not isinstance(body, Mapping) or len(body) > BODY_FIELDS_MAX:
        raise DecodeError(f"a decision change's body must be a map of at most {BODY_FIELDS_MAX} fields")
    for name, value in body.items():
        if not isinstance(name, str) or not 0 < len(name) <= KIND_CHARS_MAX:
            raise DecodeError("a decision change's field names must be 1..32 characters")
        if not _value_ok(value, nested=True):
            raise DecodeError(f"a decision change's field {name!r:.40} has an unsupported value")


def _value_ok(value: object, *, nested: bool) -> bool:
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -MS_MAX <= value <= MS_MAX
    if isinstance(value, str):
        return len(value) <= BODY_TEXT_CHARS_MAX
    if isinstance(value, bytes):
        return len(value) <= BODY_BYTES_FIELD_MAX
    if nested and isinstance(value, Mapping):  # one level only (a PSK rotation's sealed keys)
        return len(value) <= BODY_MAP_ENTRIES_MAX and all(
            isinstance(k, str) and 0 < len(k) <= 64 and _value_ok(v, nested=False) for k, v in value.items())
    return False

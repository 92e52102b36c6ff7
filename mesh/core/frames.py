"""The mesh wire format: one version byte, then a msgpack array ``[kind, field, ...]``.

Every field is type-checked and length-capped on decode; anything else is refused with a
``tva.errors`` RemoteDataError (``DecodeError``, ``TooLarge``, ``UnsupportedVersion``) so the node
can count it and carry on. Positional arrays (not maps) keep routine frames tiny: a ping is ~6
bytes, a digest ~21.

Frames (version 1):
  PING      [1, seq, presence|nil, [item...]]        probe; items piggyback membership/presence
  ACK       [2, seq, presence|nil, [item...]]        answer to a ping (or a relayed ping-req)
  PING_REQ  [3, seq, target, [item...]]              "ping target for me, ack me with seq"
  GOSSIP    [4, [item...]]                           rumour-mongered broadcasts
  DIGEST    [5, bin16]                               hash of (feed version vector, doc heads)
  SYNC      [6, {owner: version}, [head...], reply, scope|nil]
                                                     the vector (only the scope's buckets when
                                                     scope = [bucket_bits, [bucket...]])
  DELTAS    [7, [delta...]]                          exactly the deltas the other side lacks
  DOC       [8, bin]                                 one fleet-document sync message
  NACK      [9, seq]                                 ping-req helper: the target did not answer me
  SUMMARY   [10, bin16, bucket_bits, [bin8...], [head...]]
                                                     answer to a mismatched DIGEST: our digest, one
                                                     hash per owner bucket, our document heads
Items:
  member    [0, state_rank, peer, incarnation, origin]   origin: the suspector ("" otherwise)
  presence  [1, peer, pseq, disk_free_bytes, uptime_score, [endpoint...], host_class, asleep]
  delta     [2, bin]                                     a feed delta, opaque to the core
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import msgpack

from tva.errors import DecodeError, TooLarge, UnsupportedVersion

from .types import LIVENESS_BY_RANK, Liveness

FRAME_VERSION = 1
PEER_CHARS_MAX = 64
DIGEST_BYTES = 16
OWNER_BYTES_MAX = 64
HEAD_BYTES_MAX = 64
VV_ENTRIES_MAX = 4096
HEADS_MAX = 1024
ITEMS_MAX = 1024
DELTAS_MAX = 1024
ENDPOINTS_MAX = 16
ENDPOINT_CHARS_MAX = 256
HOST_CLASS_CHARS_MAX = 32
U64_MAX = 2**64 - 1
# incarnations stay far below u64 so a refutation (+1) can always be encoded
INCARNATION_MAX = 2**62

BUCKET_BITS_MAX = 8  # anti-entropy summaries: at most 256 owner buckets
BUCKET_HASH_BYTES = 8

PING, ACK, PING_REQ, GOSSIP, DIGEST, SYNC, DELTAS, DOC, NACK, SUMMARY = range(1, 11)
ITEM_MEMBER, ITEM_PRESENCE, ITEM_DELTA = range(3)


# --- values -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberRecord:
    state: Liveness
    peer: str
    incarnation: int
    origin: str = ""


@dataclass(frozen=True)
class PresenceRecord:
    peer: str
    pseq: int
    disk_free_bytes: int
    uptime_score: float
    endpoints: tuple[str, ...]
    host_class: str
    asleep: bool


@dataclass(frozen=True)
class DeltaItem:
    data: bytes


Item = MemberRecord | PresenceRecord | DeltaItem


@dataclass(frozen=True)
class Ping:
    seq: int
    presence: PresenceRecord | None = None
    items: tuple[Item, ...] = ()


@dataclass(frozen=True)
class Ack:
    seq: int
    presence: PresenceRecord | None = None
    items: tuple[Item, ...] = ()


@dataclass(frozen=True)
class PingReq:
    seq: int
    target: str
    items: tuple[Item, ...] = ()


@dataclass(frozen=True)
class Gossip:
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Digest:
    digest: bytes


@dataclass(frozen=True)
class Sync:
    vv: dict[bytes, int]
    heads: tuple[bytes, ...]
    reply: bool
    # None: vv is the whole vector; else (bucket_bits, buckets): vv covers only those buckets
    scope: tuple[int, tuple[int, ...]] | None = None


@dataclass(frozen=True)
class Summary:
    digest: bytes
    bucket_bits: int
    bucket_hashes: tuple[bytes, ...]
    heads: tuple[bytes, ...]


@dataclass(frozen=True)
class Deltas:
    deltas: tuple[bytes, ...]


@dataclass(frozen=True)
class DocMessage:
    data: bytes


@dataclass(frozen=True)
class Nack:
    seq: int


Frame = Ping | Ack | PingReq | Gossip | Digest | Sync | Deltas | DocMessage | Nack | Summary


# --- encoding ---------------------------------------------------------------------------------


def item_wire(item: Item) -> list:
    if isinstance(item, MemberRecord):
        return [ITEM_MEMBER, item.state.rank, item.peer, item.incarnation, item.origin]
    if isinstance(item, PresenceRecord):
        return [ITEM_PRESENCE, item.peer, item.pseq, item.disk_free_bytes, float(item.uptime_score),
                list(item.endpoints), item.host_class, item.asleep]
    return [ITEM_DELTA, item.data]


def item_size(item: Item) -> int:
    """Encoded bytes of one item, for budgeting piggybacks and gossip frames."""
    return len(msgpack.packb(item_wire(item), use_bin_type=True))


def _presence_wire(p: PresenceRecord | None) -> list | None:
    return None if p is None else item_wire(p)[1:]


def frame_wire(frame: Frame) -> list:
    if isinstance(frame, Ping | Ack):
        return [PING if isinstance(frame, Ping) else ACK, frame.seq, _presence_wire(frame.presence),
                [item_wire(i) for i in frame.items]]
    if isinstance(frame, PingReq):
        return [PING_REQ, frame.seq, frame.target, [item_wire(i) for i in frame.items]]
    if isinstance(frame, Gossip):
        return [GOSSIP, [item_wire(i) for i in frame.items]]
    if isinstance(frame, Digest):
        return [DIGEST, frame.digest]
    if isinstance(frame, Sync):
        scope = None if frame.scope is None else [frame.scope[0], list(frame.scope[1])]
        return [SYNC, frame.vv, list(frame.heads), frame.reply, scope]
    if isinstance(frame, Summary):
        return [SUMMARY, frame.digest, frame.bucket_bits, list(frame.bucket_hashes), list(frame.heads)]
    if isinstance(frame, Deltas):
        return [DELTAS, list(frame.deltas)]
    if isinstance(frame, Nack):
        return [NACK, frame.seq]
    return [DOC, frame.data]


def encode_frame(frame: Frame) -> bytes:
    return bytes([FRAME_VERSION]) + msgpack.packb(frame_wire(frame), use_bin_type=True)


# --- decoding ---------------------------------------------------------------------------------

KIND_NAMES = {PING: "ping", ACK: "ack", PING_REQ: "ping_req", GOSSIP: "gossip", DIGEST: "digest", SYNC: "sync",
              DELTAS: "deltas", DOC: "doc", NACK: "nack", SUMMARY: "summary"}


def peek_kind(data: bytes) -> str:
    """The kind of an encoded frame without decoding it (for traffic accounting; never validates)."""
    if len(data) >= 3 and data[0] == FRAME_VERSION and 0x91 <= data[1] <= 0x9F:
        return KIND_NAMES.get(data[2], "unknown")
    return "unknown"



def _int(x: object, what: str, hi: int = U64_MAX) -> int:
    # bool is an int subclass in Python; msgpack true/false must not pass as numbers
    if type(x) is not int or not 0 <= x <= hi:
        raise DecodeError(f"{what}: expected an int in 0..{hi}")
    return x


def _str(x: object, what: str, chars_max: int, *, empty_ok: bool = False) -> str:
    if type(x) is not str or len(x) > chars_max or (not x and not empty_ok):
        raise DecodeError(f"{what}: expected a string of 1..{chars_max} characters")
    return x


def _bin(x: object, what: str, bytes_max: int) -> bytes:
    if type(x) is not bytes or len(x) > bytes_max:
        raise DecodeError(f"{what}: expected bytes of at most {bytes_max}")
    return x


def _list(x: object, what: str, n_max: int, n: int | None = None) -> list:
    if type(x) is not list or len(x) > n_max or (n is not None and len(x) != n):
        want = f"exactly {n}" if n is not None else f"at most {n_max}"
        raise DecodeError(f"{what}: expected an array of {want} elements")
    return x


def _presence(x: object) -> PresenceRecord:
    # Fast path: one combined check for a well-formed record (a 1000-node fleet decodes millions
    # of these); anything it does not accept goes through the field-by-field checks below, which
    # name the bad field. NaN and infinities fail the range comparison.
    if type(x) is list and len(x) == 7:
        peer, pseq, disk, score, eps, cls, asleep = x
        if (type(peer) is str and 0 < len(peer) <= PEER_CHARS_MAX and type(pseq) is int
                and 0 <= pseq <= INCARNATION_MAX and type(disk) is int and 0 <= disk <= U64_MAX
                and (type(score) is float or type(score) is int) and 0.0 <= score <= 1.0
                and type(eps) is list and len(eps) <= ENDPOINTS_MAX
                and all(type(e) is str and 0 < len(e) <= ENDPOINT_CHARS_MAX for e in eps)
                and type(cls) is str and len(cls) <= HOST_CLASS_CHARS_MAX and type(asleep) is bool):
            return PresenceRecord(peer, pseq, disk, float(score), tuple(eps), cls, asleep)
    return _presence_checked(x)


def _presence_checked(x: object) -> PresenceRecord:
    f = _list(x, "presence", 7, 7)
    score = f[3]
    if type(score) not in (float, int) or not math.isfinite(score) or not 0.0 <= score <= 1.0:
        raise DecodeError("presence uptime_score: expected a number in 0..1")
    if type(f[6]) is not bool:
        raise DecodeError("presence asleep: expected a bool")
    endpoints = tuple(_str(e, "endpoint", ENDPOINT_CHARS_MAX) for e in _list(f[4], "endpoints", ENDPOINTS_MAX))
    return PresenceRecord(
        peer=_str(f[0], "presence peer", PEER_CHARS_MAX), pseq=_int(f[1], "pseq", INCARNATION_MAX),
        disk_free_bytes=_int(f[2], "disk_free_bytes"), uptime_score=float(score), endpoints=endpoints,
        host_class=_str(f[5], "host_class", HOST_CLASS_CHARS_MAX, empty_ok=True), asleep=f[6],
    )


def _item(x: object, delta_bytes_max: int) -> Item:
    f = _list(x, "item", 8)
    if not f:
        raise DecodeError("item: empty array")
    kind = f[0]
    if kind == ITEM_MEMBER and type(kind) is int:
        _list(f, "member item", 5, 5)
        rank = _int(f[1], "member state", 4)
        return MemberRecord(LIVENESS_BY_RANK[rank], _str(f[2], "member peer", PEER_CHARS_MAX),
                            _int(f[3], "incarnation", INCARNATION_MAX),
                            _str(f[4], "origin", PEER_CHARS_MAX, empty_ok=True))
    if kind == ITEM_PRESENCE and type(kind) is int:
        return _presence(f[1:])
    if kind == ITEM_DELTA and type(kind) is int:
        _list(f, "delta item", 2, 2)
        return DeltaItem(_bin(f[1], "delta", delta_bytes_max))
    raise DecodeError(f"item: unknown kind {kind!r}")


def _items(x: object, delta_bytes_max: int) -> tuple[Item, ...]:
    return tuple(_item(i, delta_bytes_max) for i in _list(x, "items", ITEMS_MAX))


def _digest(x: object) -> bytes:
    d = _bin(x, "digest", DIGEST_BYTES)
    if len(d) != DIGEST_BYTES:
        raise DecodeError(f"digest: expected {DIGEST_BYTES} bytes")
    return d


def _heads(x: object) -> tuple[bytes, ...]:
    return tuple(_bin(h, "head", HEAD_BYTES_MAX) for h in _list(x, "heads", HEADS_MAX))


def _scope(x: object) -> tuple[int, tuple[int, ...]]:
    f = _list(x, "sync scope", 2, 2)
    bits = _int(f[0], "scope bucket_bits", BUCKET_BITS_MAX)
    buckets = tuple(_int(b, "scope bucket", (1 << bits) - 1) for b in _list(f[1], "scope buckets", 1 << bits))
    if len(set(buckets)) != len(buckets):
        raise DecodeError("sync scope: a bucket is listed twice")
    return bits, buckets


def decode_frame(data: bytes, frame_bytes_max: int) -> Frame:
    """Parse one frame; raises TooLarge, UnsupportedVersion or DecodeError, nothing else."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("frame: expected bytes")
    data = bytes(data)
    if len(data) > frame_bytes_max:
        raise TooLarge(f"frame of {len(data)} bytes exceeds frame_bytes_max={frame_bytes_max}")
    if not data:
        raise DecodeError("frame: empty")
    if data[0] != FRAME_VERSION:
        raise UnsupportedVersion(f"frame version {data[0]} (this build speaks {FRAME_VERSION})")
    try:
        body = msgpack.unpackb(
            data[1:], raw=False, strict_map_key=False, use_list=True,
            max_bin_len=frame_bytes_max,
            max_str_len=4 * ENDPOINT_CHARS_MAX,  # bytes; the checks below count characters
            max_array_len=max(ITEMS_MAX, HEADS_MAX, DELTAS_MAX),
            max_map_len=VV_ENTRIES_MAX, max_ext_len=0,
        )
    except Exception as e:  # msgpack raises many types for garbage; every one means "bad frame"
        raise DecodeError(f"frame: not valid msgpack ({type(e).__name__})") from None
    f = _list(body, "frame", 5)
    if not f or type(f[0]) is not int:
        raise DecodeError("frame: missing kind")
    kind, delta_max = f[0], frame_bytes_max
    if kind in (PING, ACK):
        _list(f, "ping/ack", 4, 4)
        presence = None if f[2] is None else _presence(f[2])
        cls = Ping if kind == PING else Ack
        return cls(_int(f[1], "seq"), presence, _items(f[3], delta_max))
    if kind == PING_REQ:
        _list(f, "ping-req", 4, 4)
        return PingReq(_int(f[1], "seq"), _str(f[2], "target", PEER_CHARS_MAX), _items(f[3], delta_max))
    if kind == GOSSIP:
        _list(f, "gossip", 2, 2)
        return Gossip(_items(f[1], delta_max))
    if kind == DIGEST:
        _list(f, "digest", 2, 2)
        return Digest(_digest(f[1]))
    if kind == SYNC:
        _list(f, "sync", 5, 5)
        if type(f[1]) is not dict:
            raise DecodeError("sync: version vector must be a map")
        vv = {_bin(k, "owner", OWNER_BYTES_MAX): _int(v, "version") for k, v in f[1].items()}
        heads = _heads(f[2])
        if type(f[3]) is not bool:
            raise DecodeError("sync reply: expected a bool")
        return Sync(vv, heads, f[3], None if f[4] is None else _scope(f[4]))
    if kind == SUMMARY:
        _list(f, "summary", 5, 5)
        d = _digest(f[1])
        bits = _int(f[2], "bucket_bits", BUCKET_BITS_MAX)
        hashes = tuple(_bin(h, "bucket hash", BUCKET_HASH_BYTES) for h in _list(f[3], "bucket hashes", 1 << bits))
        if len(hashes) != 1 << bits or any(len(h) != BUCKET_HASH_BYTES for h in hashes):
            raise DecodeError(f"summary: expected {1 << bits} bucket hashes of {BUCKET_HASH_BYTES} bytes")
        return Summary(d, bits, hashes, _heads(f[4]))
    if kind == DELTAS:
        _list(f, "deltas", 2, 2)
        return Deltas(tuple(_bin(d, "delta", delta_max) for d in _list(f[1], "deltas", DELTAS_MAX)))
    if kind == DOC:
        _list(f, "doc", 2, 2)
        return DocMessage(_bin(f[1], "doc message", delta_max))
    if kind == NACK:
        _list(f, "nack", 2, 2)
        return Nack(_int(f[1], "seq"))
    raise DecodeError(f"frame: unknown kind {kind}")

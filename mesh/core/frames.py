"""The mesh wire format: one version byte, then a msgpack array ``[kind, field, ...]``.

Every field is type-checked and length-capped on decode; anything else is refused with a
``tva.errors`` RemoteDataError (``DecodeError``, ``TooLarge``, ``UnsupportedVersion``) so the node
can count it and carry on. Positional arrays (not maps) keep routine frames tiny: a ping is ~6
bytes, a digest ~37.

Rolling upgrades. The version byte is the *major* wire version: a build reads and writes
``FRAME_VERSION_MIN .. FRAME_VERSION_MAX``, and the transports' per-connection hello (see
``mesh.transport``) agrees on one per peer. Within a major, newer *minor* builds only add: new
frame kinds, new item kinds, new trailing fields in frames, items and records. This build
therefore decodes an unknown frame kind as ``UnknownFrame``, an unknown item kind as
``UnknownItem`` (the rest of the frame, and the ack on it, still count), and ignores trailing
fields it does not know. A presence body is signed as it travels, so fields a newer build adds
stay signed through older relays.

Frames (version 2):
  PING      [1, seq, presence|nil, [item...]]        probe; items piggyback membership/presence
  ACK       [2, seq, presence|nil, [item...]]        answer to a ping (or a relayed ping-req)
  PING_REQ  [3, seq, target, [item...]]              "ping target for me, ack me with seq"
  GOSSIP    [4, [item...]]                           rumour-mongered broadcasts
  DIGEST    [5, bin16, bin16]                        hashes of (feed vector, doc heads) and of the
                                                     membership/presence vector
  SYNC      [6, {owner: version}, [head...], reply, scope|nil, {peer: [inc, rank, pinc, pseq]}|nil,
               soft_scope|nil]                       the feed vector (only the scope's buckets when
                                                     scope = [bucket_bits, [bucket...]]) and the
                                                     membership vector (likewise; nil: not compared)
  DELTAS    [7, [delta...]]                          exactly the deltas the other side lacks
  DOC       [8, bin]                                 one fleet-document sync message
  NACK      [9, seq]                                 ping-req helper: the target did not answer me
  SUMMARY   [10, bin16, bin16, bits, [bin8...], [head...], soft_bits, [bin8...]]
                                                     answer to a mismatched DIGEST: our digests, one
                                                     hash per owner bucket and per member bucket (an
                                                     empty list where that part matched), our heads
  RECORDS   [11, [item...]]                          anti-entropy: the member/presence records the
                                                     other side lacks (not re-broadcast)
Items:
  member    [0, state_rank, peer, incarnation, origin, own_rank|nil, sig]
            origin: the suspector, or the node declaring a death ("" otherwise); (own_rank, sig):
            the peer's own signed statement at this incarnation (``signing.member_message``), nil/empty only at incarnation 0
  presence  [1, body, sig, remaining_ms]   body = msgpack [peer, incarnation, pseq, disk_free_bytes,
            uptime_score, [endpoint...], host_class, asleep], signed by the peer; remaining_ms: how
            long the sender still holds it valid (a relay cannot make it live longer)
  delta     [2, bin]                                     a feed delta, opaque to the core
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import msgpack

from tva.errors import DecodeError, TooLarge, UnsupportedVersion

from .types import LIVENESS_BY_RANK, Liveness

FRAME_VERSION_MIN = 2
FRAME_VERSION_MAX = 2
FRAME_VERSION = FRAME_VERSION_MIN  # what this build writes to a peer before its hello says more
WIRE_MINOR = 0  # additions within the major (informational: said in the hello, never required)
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
SIGNATURE_BYTES = 64
PRESENCE_BODY_BYTES_MAX = 8192
PRESENCE_BODIES_KEPT = 4096  # decoded presence bodies remembered (a few times a fleet's members)
MEMBER_RECORDS_KEPT = 4096  # decoded member records remembered (each ~0.3 KB)
PRESENCE_BODY_CACHED_BYTES_MAX = 1024  # bigger ones (many endpoints) are decoded each time: ≤ 4 MiB kept
FIELDS_MAX = 32  # trailing fields a newer minor may add to a frame, item or record
U64_MAX = 2**64 - 1
REMAINING_MS_MAX = 2**48
# incarnations stay far below u64 so a refutation (+1) can always be encoded
INCARNATION_MAX = 2**62

BUCKET_BITS_MAX = 8  # anti-entropy summaries: at most 256 buckets
BUCKET_HASH_BYTES = 8

PING, ACK, PING_REQ, GOSSIP, DIGEST, SYNC, DELTAS, DOC, NACK, SUMMARY, RECORDS = range(1, 12)
ITEM_MEMBER, ITEM_PRESENCE, ITEM_DELTA = range(3)


# --- values -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberRecord:
    state: Liveness
    peer: str
    incarnation: int
    origin: str = ""
    own: Liveness | None = None  # the state the peer itself signed at this incarnation
    sig: bytes = b""  # its signature of signing.member_message(peer, incarnation, own.rank)


@dataclass(frozen=True)
class PresenceRecord:
    peer: str
    incarnation: int
    pseq: int
    disk_free_bytes: int
    uptime_score: float
    endpoints: tuple[str, ...]
    host_class: str
    asleep: bool
    sig: bytes = b""
    # the signed encoding as received (empty: encode the fields above); not compared, since the
    # fields are decoded from it and the signature covers it
    body: bytes = field(default=b"", compare=False)
    remaining_ms: int = field(default=0, compare=False)

    def wire_body(self) -> bytes:
        return self.body or presence_body(self)

    @property
    def order(self) -> tuple[int, int]:
        return self.incarnation, self.pseq


@dataclass(frozen=True)
class DeltaItem:
    data: bytes


@dataclass(frozen=True)
class UnknownItem:
    """An item kind from a newer minor version: skipped, never relayed."""

    kind: object


Item = MemberRecord | PresenceRecord | DeltaItem | UnknownItem


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
class Records:
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Digest:
    digest: bytes
    soft: bytes = b"\0" * DIGEST_BYTES


SoftEntry = tuple[int, int, int, int]  # (incarnation, state rank, presence incarnation, pseq)
Scope = tuple[int, tuple[int, ...]]


@dataclass(frozen=True)
class Sync:
    vv: dict[bytes, int]
    heads: tuple[bytes, ...]
    reply: bool
    # None: vv is the whole vector; else (bucket_bits, buckets): vv covers only those buckets
    scope: Scope | None = None
    soft: dict[str, SoftEntry] | None = None  # None: membership is not compared
    soft_scope: Scope | None = None


@dataclass(frozen=True)
class Summary:
    digest: bytes
    bucket_bits: int
    bucket_hashes: tuple[bytes, ...]
    heads: tuple[bytes, ...]
    soft: bytes = b"\0" * DIGEST_BYTES
    soft_bits: int = 0
    soft_hashes: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Deltas:
    deltas: tuple[bytes, ...]


@dataclass(frozen=True)
class DocMessage:
    data: bytes


@dataclass(frozen=True)
class Nack:
    seq: int


@dataclass(frozen=True)
class UnknownFrame:
    """A frame kind from a newer minor version: counted and skipped."""

    kind: int


Frame = Ping | Ack | PingReq | Gossip | Digest | Sync | Deltas | DocMessage | Nack | Summary | Records | UnknownFrame


# --- encoding ---------------------------------------------------------------------------------


def presence_body(p: PresenceRecord) -> bytes:
    return msgpack.packb([p.peer, p.incarnation, p.pseq, p.disk_free_bytes, float(p.uptime_score),
                          list(p.endpoints), p.host_class, p.asleep], use_bin_type=True)


def _presence_wire(p: PresenceRecord) -> list:
    return [p.wire_body(), p.sig, min(max(0, p.remaining_ms), REMAINING_MS_MAX)]


def item_wire(item: Item) -> list:
    if isinstance(item, MemberRecord):
        return [ITEM_MEMBER, item.state.rank, item.peer, item.incarnation, item.origin,
                None if item.own is None else item.own.rank, item.sig]
    if isinstance(item, PresenceRecord):
        return [ITEM_PRESENCE, *_presence_wire(item)]
    if isinstance(item, DeltaItem):
        return [ITEM_DELTA, item.data]
    raise TypeError("unknown items are never sent")


def item_size(item: Item) -> int:
    """Encoded bytes of one item, for budgeting piggybacks and gossip frames."""
    return len(msgpack.packb(item_wire(item), use_bin_type=True))


def _scope_wire(scope: Scope | None) -> list | None:
    return None if scope is None else [scope[0], list(scope[1])]


def frame_wire(frame: Frame) -> list:
    if isinstance(frame, Ping | Ack):
        return [PING if isinstance(frame, Ping) else ACK, frame.seq,
                None if frame.presence is None else _presence_wire(frame.presence),
                [item_wire(i) for i in frame.items]]
    if isinstance(frame, PingReq):
        return [PING_REQ, frame.seq, frame.target, [item_wire(i) for i in frame.items]]
    if isinstance(frame, Gossip | Records):
        return [GOSSIP if isinstance(frame, Gossip) else RECORDS, [item_wire(i) for i in frame.items]]
    if isinstance(frame, Digest):
        return [DIGEST, frame.digest, frame.soft]
    if isinstance(frame, Sync):
        soft = None if frame.soft is None else {p: list(e) for p, e in frame.soft.items()}
        return [SYNC, frame.vv, list(frame.heads), frame.reply, _scope_wire(frame.scope), soft,
                _scope_wire(frame.soft_scope)]
    if isinstance(frame, Summary):
        return [SUMMARY, frame.digest, frame.soft, frame.bucket_bits, list(frame.bucket_hashes), list(frame.heads),
                frame.soft_bits, list(frame.soft_hashes)]
    if isinstance(frame, Deltas):
        return [DELTAS, list(frame.deltas)]
    if isinstance(frame, Nack):
        return [NACK, frame.seq]
    if isinstance(frame, DocMessage):
        return [DOC, frame.data]
    raise TypeError("unknown frames are never sent")


def encode_frame(frame: Frame, version: int = FRAME_VERSION) -> bytes:
    if not FRAME_VERSION_MIN <= version <= FRAME_VERSION_MAX:
        raise ValueError(f"this build cannot write frame version {version}")
    return bytes([version]) + msgpack.packb(frame_wire(frame), use_bin_type=True)


# --- decoding ---------------------------------------------------------------------------------

KIND_NAMES = {PING: "ping", ACK: "ack", PING_REQ: "ping_req", GOSSIP: "gossip", DIGEST: "digest", SYNC: "sync",
              DELTAS: "deltas", DOC: "doc", NACK: "nack", SUMMARY: "summary", RECORDS: "records"}


def peek_kind(data: bytes) -> str:
    """The kind of an encoded frame without decoding it (for traffic accounting; never validates)."""
    if len(data) >= 3 and FRAME_VERSION_MIN <= data[0] <= FRAME_VERSION_MAX and 0x91 <= data[1] <= 0x9F:
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


def _list(x: object, what: str, n_max: int, n_min: int = 0) -> list:
    """An array of n_min..n_max elements (fields past the known ones are a newer minor's)."""
    if type(x) is not list or not n_min <= len(x) <= n_max:
        raise DecodeError(f"{what}: expected an array of {n_min}..{n_max} elements")
    return x


def _fields(x: object, what: str, n: int) -> list:
    return _list(x, what, FIELDS_MAX, n)


def decode_presence_body(body: bytes) -> list:
    """The known fields of a presence body: [peer, incarnation, pseq, disk, score, endpoints, class,
    asleep]; anything after them (a newer minor's fields) is ignored."""
    try:
        # a newer minor's fields may hold any msgpack value; the body's size is already capped
        x = msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=False, max_ext_len=0,
                            max_bin_len=PRESENCE_BODY_BYTES_MAX, max_map_len=FIELDS_MAX,
                            max_str_len=PRESENCE_BODY_BYTES_MAX, max_array_len=max(FIELDS_MAX, ENDPOINTS_MAX))
    except Exception as e:  # msgpack raises many types for garbage; every one means "bad body"
        raise DecodeError(f"presence body: not valid msgpack ({type(e).__name__})") from None
    return _fields(x, "presence body", 8)[:8]


def _presence_fields(f: list) -> tuple:
    # Fast path: one combined check for a well-formed record (a 1000-node fleet decodes millions
    # of these); anything it does not accept goes through the field-by-field checks, which name
    # the bad field. NaN and infinities fail the range comparison.
    peer, inc, pseq, disk, score, eps, cls, asleep = f
    if (type(peer) is str and 0 < len(peer) <= PEER_CHARS_MAX and type(inc) is int and 0 <= inc <= INCARNATION_MAX
            and type(pseq) is int and 0 <= pseq <= U64_MAX and type(disk) is int and 0 <= disk <= U64_MAX
            and (type(score) is float or type(score) is int) and 0.0 <= score <= 1.0
            and type(eps) is list and len(eps) <= ENDPOINTS_MAX
            and all(type(e) is str and 0 < len(e) <= ENDPOINT_CHARS_MAX for e in eps)
            and type(cls) is str and len(cls) <= HOST_CLASS_CHARS_MAX and type(asleep) is bool):
        return peer, inc, pseq, disk, float(score), tuple(eps), cls, asleep
    return _presence_checked(f)


def _presence_checked(f: list) -> tuple:
    score = f[4]
    if type(score) not in (float, int) or not math.isfinite(score) or not 0.0 <= score <= 1.0:
        raise DecodeError("presence uptime_score: expected a number in 0..1")
    if type(f[7]) is not bool:
        raise DecodeError("presence asleep: expected a bool")
    endpoints = tuple(_str(e, "endpoint", ENDPOINT_CHARS_MAX) for e in _list(f[5], "endpoints", ENDPOINTS_MAX))
    return (_str(f[0], "presence peer", PEER_CHARS_MAX), _int(f[1], "presence incarnation", INCARNATION_MAX),
            _int(f[2], "pseq"), _int(f[3], "disk_free_bytes"), float(score), endpoints,
            _str(f[6], "host_class", HOST_CLASS_CHARS_MAX, empty_ok=True), f[7])


@functools.lru_cache(maxsize=PRESENCE_BODIES_KEPT)
def _presence_body_fields(body: bytes) -> tuple:
    # A pure function of the bytes (a refused body raises, and raising is not remembered). Each
    # presence reaches a node several times (rumour relays, piggybacks, anti-entropy), and a
    # process running many nodes (the simulator) decodes each body once instead of once per node.
    return _presence_fields(decode_presence_body(body))


def presence_from_body(body: object, sig: object, remaining_ms: object) -> PresenceRecord:
    """A presence record from its signed body (the fields come from the body, never beside it)."""
    body = _bin(body, "presence body", PRESENCE_BODY_BYTES_MAX)
    fields = (_presence_body_fields(body) if len(body) <= PRESENCE_BODY_CACHED_BYTES_MAX
              else _presence_fields(decode_presence_body(body)))
    return PresenceRecord(*fields, sig=_bin(sig, "presence signature",
                          SIGNATURE_BYTES), body=body,
                          remaining_ms=_int(remaining_ms, "presence remaining_ms", REMAINING_MS_MAX))


def _presence(x: object) -> PresenceRecord:
    f = _fields(x, "presence", 3)
    return presence_from_body(f[0], f[1], f[2])


def _member(f: list) -> MemberRecord:
    _fields(f, "member item", 7)
    # The same record reaches a node many times (relays, piggybacks) and a simulator's thousand
    # nodes alike: decoded ones are remembered by their fields. Only exact ints make a key (True
    # and 5.0 equal 1 and 5 as keys, yet are refused below); str and bytes equal only their kind.
    if type(f[1]) is int and type(f[3]) is int and (f[5] is None or type(f[5]) is int):
        try:
            return _member_cached(tuple(f[1:7]))
        except TypeError:  # an unhashable field (an array or map): decoded below, to its error
            pass
    return _member_checked(f)


@functools.lru_cache(maxsize=MEMBER_RECORDS_KEPT)
def _member_cached(fields: tuple) -> MemberRecord:
    return _member_checked([ITEM_MEMBER, *fields])


def _member_checked(f: list) -> MemberRecord:
    state = LIVENESS_BY_RANK[_int(f[1], "member state", 4)]
    own = None if f[5] is None else LIVENESS_BY_RANK[_int(f[5], "member own state", 4)]
    return MemberRecord(state, _str(f[2], "member peer", PEER_CHARS_MAX), _int(f[3], "incarnation", INCARNATION_MAX),
                        _str(f[4], "origin", PEER_CHARS_MAX, empty_ok=True), own,
                        _bin(f[6], "member signature", SIGNATURE_BYTES))


def _item(x: object, delta_bytes_max: int) -> Item:
    f = _list(x, "item", FIELDS_MAX, 1)
    kind = f[0]
    if type(kind) is not int:
        raise DecodeError("item: the kind must be an int")
    if kind == ITEM_MEMBER:
        return _member(f)
    if kind == ITEM_PRESENCE:
        return _presence(f[1:])
    if kind == ITEM_DELTA:
        _fields(f, "delta item", 2)
        return DeltaItem(_bin(f[1], "delta", delta_bytes_max))
    return UnknownItem(kind)


def _items(x: object, delta_bytes_max: int) -> tuple[Item, ...]:
    return tuple(_item(i, delta_bytes_max) for i in _list(x, "items", ITEMS_MAX))


def _digest(x: object) -> bytes:
    d = _bin(x, "digest", DIGEST_BYTES)
    if len(d) != DIGEST_BYTES:
        raise DecodeError(f"digest: expected {DIGEST_BYTES} bytes")
    return d


def _heads(x: object) -> tuple[bytes, ...]:
    return tuple(_bin(h, "head", HEAD_BYTES_MAX) for h in _list(x, "heads", HEADS_MAX))


def _scope(x: object) -> Scope | None:
    if x is None:
        return None
    f = _fields(x, "sync scope", 2)
    bits = _int(f[0], "scope bucket_bits", BUCKET_BITS_MAX)
    buckets = tuple(_int(b, "scope bucket", (1 << bits) - 1) for b in _list(f[1], "scope buckets", 1 << bits))
    if len(set(buckets)) != len(buckets):
        raise DecodeError("sync scope: a bucket is listed twice")
    return bits, buckets


def _soft_vector(x: object) -> dict[str, SoftEntry] | None:
    if x is None:
        return None
    if type(x) is not dict:
        raise DecodeError("sync: the membership vector must be a map")
    out = {}
    for peer, e in x.items():
        f = _fields(e, "membership vector entry", 4)
        out[_str(peer, "membership vector peer", PEER_CHARS_MAX)] = (
            _int(f[0], "vector incarnation", INCARNATION_MAX), _int(f[1], "vector state", 4),
            _int(f[2], "vector presence incarnation", INCARNATION_MAX), _int(f[3], "vector pseq"))
    return out


def _hashes(x: object, bits: int, what: str) -> tuple[bytes, ...]:
    hashes = tuple(_bin(h, what, BUCKET_HASH_BYTES) for h in _list(x, what, 1 << bits))
    if hashes and (len(hashes) != 1 << bits or any(len(h) != BUCKET_HASH_BYTES for h in hashes)):
        raise DecodeError(f"summary: expected none or {1 << bits} {what} of {BUCKET_HASH_BYTES} bytes")
    return hashes


def decode_frame(data: bytes, frame_bytes_max: int) -> Frame:
    """Parse one frame; raises TooLarge, UnsupportedVersion or DecodeError, nothing else."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("frame: expected bytes")
    data = bytes(data)
    if len(data) > frame_bytes_max:
        raise TooLarge(f"frame of {len(data)} bytes exceeds frame_bytes_max={frame_bytes_max}")
    if not data:
        raise DecodeError("frame: empty")
    if not FRAME_VERSION_MIN <= data[0] <= FRAME_VERSION_MAX:
        raise UnsupportedVersion(f"frame version {data[0]} (this build speaks "
                                 f"{FRAME_VERSION_MIN}..{FRAME_VERSION_MAX})")
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
    f = _list(body, "frame", FIELDS_MAX, 1)
    if type(f[0]) is not int:
        raise DecodeError("frame: missing kind")
    kind, delta_max = f[0], frame_bytes_max
    if kind in (PING, ACK):
        _fields(f, "ping/ack", 4)
        presence = None if f[2] is None else _presence(f[2])
        cls = Ping if kind == PING else Ack
        return cls(_int(f[1], "seq"), presence, _items(f[3], delta_max))
    if kind == PING_REQ:
        _fields(f, "ping-req", 4)
        return PingReq(_int(f[1], "seq"), _str(f[2], "target", PEER_CHARS_MAX), _items(f[3], delta_max))
    if kind in (GOSSIP, RECORDS):
        _fields(f, "gossip", 2)
        return (Gossip if kind == GOSSIP else Records)(_items(f[1], delta_max))
    if kind == DIGEST:
        _fields(f, "digest", 3)
        return Digest(_digest(f[1]), _digest(f[2]))
    if kind == SYNC:
        _fields(f, "sync", 7)
        if type(f[1]) is not dict:
            raise DecodeError("sync: version vector must be a map")
        vv = {_bin(k, "owner", OWNER_BYTES_MAX): _int(v, "version") for k, v in f[1].items()}
        heads = _heads(f[2])
        if type(f[3]) is not bool:
            raise DecodeError("sync reply: expected a bool")
        return Sync(vv, heads, f[3], _scope(f[4]), _soft_vector(f[5]), _scope(f[6]))
    if kind == SUMMARY:
        _fields(f, "summary", 8)
        bits, soft_bits = _int(f[3], "bucket_bits", BUCKET_BITS_MAX), _int(f[6], "soft bucket_bits", BUCKET_BITS_MAX)
        return Summary(_digest(f[1]), bits, _hashes(f[4], bits, "bucket hashes"), _heads(f[5]), _digest(f[2]),
                       soft_bits, _hashes(f[7], soft_bits, "member bucket hashes"))
    if kind == DELTAS:
        _fields(f, "deltas", 2)
        return Deltas(tuple(_bin(d, "delta", delta_max) for d in _list(f[1], "deltas", DELTAS_MAX)))
    if kind == DOC:
        _fields(f, "doc", 2)
        return DocMessage(_bin(f[1], "doc message", delta_max))
    if kind == NACK:
        _fields(f, "nack", 2)
        return Nack(_int(f[1], "seq"))
    return UnknownFrame(kind)

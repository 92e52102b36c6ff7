"""Typed, validated views of the entries in a host feed.

Keys: ``"card"`` → :class:`HostCard`, ``"h/<content_id>"`` → :class:`Holding`,
``"intent/<content_id>"`` → :class:`RepairIntent`, ``"claim/ipv4"`` → :class:`AddressClaim`.

Values are positional msgpack arrays led by a record-format number, with enums as small ints and
the infohash as 20 raw bytes: a holding costs ~45 bytes on the wire, which is what keeps the delta
for one changed holding under 300 bytes. The content id lives only in the key.

Constructing a record validates it (``InvalidInput`` for local misuse); decoding validates the same
rules and raises ``DecodeError`` (or ``UnsupportedVersion`` / ``TooLarge``) for anything a peer
could send: wrong types, lengths, ranges, unknown enum values. The feed signature says *who* wrote
a value; these checks say it is well-formed. Views skip malformed values of a validly signed feed
rather than failing the whole view: one buggy host must not blind the fleet.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from crdt.codec import expect_bool, expect_int, expect_list, expect_str, pack, unpack_bounded
from crdt.feed import VALUE_BYTES_MAX, Feed
from crdt.feedset import FeedSet
from crdt.identity import PUBLIC_KEY_BYTES, peer_id_from_public, public_from_peer_id
from tva import limits
from tva.errors import DecodeError, InvalidInput, RemoteDataError, UnsupportedVersion

RECORD_FORMAT = 1
CARD_KEY = "card"
HOLDING_PREFIX = "h/"
INTENT_PREFIX = "intent/"
CLAIM_IPV4_KEY = "claim/ipv4"

CONTENT_ID_CHARS_MAX = limits.CONTENT_ID_CHARS_MAX
NAME_CHARS_MAX = 64
TOKEN_CHARS_MAX = 32
SERVICES_MAX = 32
LISTEN_ADDRS_MAX = 16
LISTEN_ADDR_CHARS_MAX = 256
SIZE_BYTES_MAX = limits.HOLDING_SIZE_BYTES_MAX
LEASE_MS_MAX = (1 << 63) - 1

_CONTENT_ID_RE = limits.CONTENT_ID_RE
_TOKEN_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_INFOHASH_RE = re.compile(r"[0-9a-f]{40}")
_PRINTABLE_RE = re.compile(r"[\x20-\x7e]+")

STATES = ("complete", "partial")
POLICIES = ("public", "f2f_only", "search_only")
SOURCES = ("local", "public", "private-tracker", "friend")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise InvalidInput(message)


def check_content_id(content_id: Any) -> str:
    _require(isinstance(content_id, str) and _CONTENT_ID_RE.fullmatch(content_id) is not None,
             f"content id must be 1–{CONTENT_ID_CHARS_MAX} chars of [A-Za-z0-9._:-], got {content_id!r:.80}")
    return content_id


def _check_token(value: Any, what: str) -> None:
    _require(isinstance(value, str) and _TOKEN_RE.fullmatch(value) is not None,
             f"{what} must be a lower-case token of 1–{TOKEN_CHARS_MAX} chars [a-z0-9_-], got {value!r:.60}")


def _check_ip(value: Any, version: int, what: str) -> None:
    _require(isinstance(value, str), f"{what} must be a string")
    if value == "":
        return
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise InvalidInput(f"{what} is not an IP address: {value!r:.60}") from None
    _require(addr.version == version and str(addr) == value, f"{what} must be a canonical IPv{version} address")


@dataclass(frozen=True)
class HostCard:
    name: str
    host_class: str
    services: tuple[str, ...] = ()
    wg_public_key: str = ""  # base64 of the 32-byte X25519 key, or "" before WireGuard is set up
    overlay_ipv4: str = ""
    overlay_ipv6: str = ""
    listen_addrs: tuple[str, ...] = ()
    api_port: int = 0
    torrent_port: int = 0
    join_addrs: tuple[str, ...] = ()  # the join listener (agent.joining): joiners and key catch-up

    def __post_init__(self) -> None:
        _require(isinstance(self.name, str) and 0 < len(self.name) <= NAME_CHARS_MAX
                 and _PRINTABLE_RE.fullmatch(self.name) is not None,
                 f"host name must be 1–{NAME_CHARS_MAX} printable ASCII chars")
        _check_token(self.host_class, "host class")
        _require(isinstance(self.services, tuple) and len(self.services) <= SERVICES_MAX,
                 f"services must be a tuple of at most {SERVICES_MAX}")
        for s in self.services:
            _check_token(s, "service")
        _require(len(set(self.services)) == len(self.services), "services must not repeat")
        _require(isinstance(self.wg_public_key, str), "wg_public_key must be a string")
        if self.wg_public_key:
            try:
                raw = base64.b64decode(self.wg_public_key, validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            _require(len(raw) == 32 and base64.b64encode(raw).decode() == self.wg_public_key,
                     "wg_public_key must be the base64 of 32 bytes")
        _check_ip(self.overlay_ipv4, 4, "overlay_ipv4")
        _check_ip(self.overlay_ipv6, 6, "overlay_ipv6")
        for addrs in (self.listen_addrs, self.join_addrs):
            _require(isinstance(addrs, tuple) and len(addrs) <= LISTEN_ADDRS_MAX,
                     f"listen_addrs and join_addrs must be tuples of at most {LISTEN_ADDRS_MAX}")
            for a in addrs:
                _require(isinstance(a, str) and 0 < len(a) <= LISTEN_ADDR_CHARS_MAX
                         and _PRINTABLE_RE.fullmatch(a) is not None,
                         f"listen address must be 1–{LISTEN_ADDR_CHARS_MAX} printable ASCII chars")
        for port, what in ((self.api_port, "api_port"), (self.torrent_port, "torrent_port")):
            _require(type(port) is int and 0 <= port <= 65535, f"{what} must be 0–65535")


@dataclass(frozen=True)
class Holding:
    content_id: str
    infohash: str  # 40 lower-case hex chars (BitTorrent v1)
    size_bytes: int
    state: str = "complete"
    policy: str = "search_only"
    source: str = "local"
    bytes_done: int = 0
    # Made by custody (a repair copy), not added by a user: only such copies may be trimmed.
    custody: bool = False

    def __post_init__(self) -> None:
        check_content_id(self.content_id)
        _require(isinstance(self.infohash, str) and _INFOHASH_RE.fullmatch(self.infohash) is not None,
                 "infohash must be 40 lower-case hex chars")
        _require(type(self.size_bytes) is int and 0 <= self.size_bytes <= SIZE_BYTES_MAX, "size_bytes out of range")
        _require(type(self.bytes_done) is int and 0 <= self.bytes_done <= self.size_bytes,
                 "bytes_done must be between 0 and size_bytes")
        _require(self.state in STATES, f"state must be one of {STATES}")
        _require(self.policy in POLICIES, f"policy must be one of {POLICIES}")
        _require(self.source in SOURCES, f"source must be one of {SOURCES}")
        _require(type(self.custody) is bool, "custody must be a bool")
        # Private-tracker content never goes public, whatever a host (or a forged record) says.
        _require(not (self.source == "private-tracker" and self.policy == "public"),
                 "private-tracker content cannot have the public policy")


@dataclass(frozen=True)
class RepairIntent:
    content_id: str
    target_peer_id: str
    lease_until_ms: int

    def __post_init__(self) -> None:
        check_content_id(self.content_id)
        try:
            public_from_peer_id(self.target_peer_id)
        except RemoteDataError:
            raise InvalidInput(f"not a peer id: {self.target_peer_id!r:.60}") from None
        _require(type(self.lease_until_ms) is int and 0 <= self.lease_until_ms <= LEASE_MS_MAX,
                 "lease_until_ms out of range")


@dataclass(frozen=True)
class AddressClaim:
    ipv4: str

    def __post_init__(self) -> None:
        _check_ip(self.ipv4, 4, "claimed ipv4")
        _require(self.ipv4 != "", "claimed ipv4 must not be empty")


# --- keys ----------------------------------------------------------------------------------------

def holding_key(content_id: str) -> str:
    return HOLDING_PREFIX + check_content_id(content_id)


def intent_key(content_id: str, target_peer_id: str | None = None) -> str:
    """``intent/<content>`` or, for one of several repairs of one item, ``intent/<content>/<target>``
    (content ids never contain "/", so the split is unambiguous)."""
    key = INTENT_PREFIX + check_content_id(content_id)
    if target_peer_id is None:
        return key
    try:
        public_from_peer_id(target_peer_id)
    except RemoteDataError:
        raise InvalidInput(f"not a peer id: {target_peer_id!r:.60}") from None
    return key + "/" + target_peer_id


# --- encoding ------------------------------------------------------------------------------------

def encode_card(card: HostCard) -> bytes:
    wg = base64.b64decode(card.wg_public_key) if card.wg_public_key else b""
    return pack([RECORD_FORMAT, card.name, card.host_class, list(card.services), wg, card.overlay_ipv4,
                 card.overlay_ipv6, list(card.listen_addrs), card.api_port, card.torrent_port,
                 list(card.join_addrs)])


def encode_holding(h: Holding) -> bytes:
    fields = [RECORD_FORMAT, bytes.fromhex(h.infohash), h.size_bytes, STATES.index(h.state),
              POLICIES.index(h.policy), SOURCES.index(h.source), h.bytes_done]
    # The custody mark is a trailing field written only when set: a user's holding keeps the
    # seven-field form byte for byte.
    return pack([*fields, True] if h.custody else fields)


def encode_intent(i: RepairIntent) -> bytes:
    return pack([RECORD_FORMAT, public_from_peer_id(i.target_peer_id), i.lease_until_ms])


def encode_claim(c: AddressClaim) -> bytes:
    return pack([RECORD_FORMAT, c.ipv4])


# --- decoding ------------------------------------------------------------------------------------

def _fields(data: bytes, what: str, count: int | tuple[int, ...]) -> list:
    obj = unpack_bounded(data, what=what, bytes_max=VALUE_BYTES_MAX, str_bytes_max=VALUE_BYTES_MAX,
                         bin_bytes_max=VALUE_BYTES_MAX, array_len_max=64)
    f = expect_list(obj, what)
    if not f or type(f[0]) is not int:
        raise DecodeError(f"{what}: missing record format")
    if f[0] != RECORD_FORMAT:
        raise UnsupportedVersion(f"{what}: record format {f[0]} (this build speaks {RECORD_FORMAT})")
    # RECORD_FORMAT is the major version; a newer minor build only appends fields, which this one
    # ignores (rolling upgrades: a mixed fleet reads each other's feeds). ``count``: the field counts
    # this build knows (optional trailing fields such as a holding's custody mark).
    counts = count if isinstance(count, tuple) else (count,)
    if len(f) < min(counts):
        raise DecodeError(f"{what}: expected at least {min(counts)} fields, got {len(f)}")
    return f[:max(counts)]


def _build(cls: type, what: str, *args: Any) -> Any:
    try:
        return cls(*args)
    except InvalidInput as exc:
        raise DecodeError(f"{what}: {exc.message}") from None


def _str_tuple(obj: Any, what: str) -> tuple[str, ...]:
    return tuple(expect_str(s, what, LISTEN_ADDR_CHARS_MAX) for s in expect_list(obj, what))


def _bin(obj: Any, what: str, lengths: tuple[int, ...]) -> bytes:
    if type(obj) is not bytes or len(obj) not in lengths:
        raise DecodeError(f"{what}: expected {' or '.join(map(str, lengths))} bytes")
    return obj


def decode_card(data: bytes) -> HostCard:
    f = _fields(data, "host card", (10, 11))
    if len(f) == 10:
        f = [*f, []]  # a card from before the join listener
    wg = _bin(f[4], "host card wg key", (0, 32))
    return _build(
        HostCard, "host card", expect_str(f[1], "host name", NAME_CHARS_MAX), expect_str(f[2], "host class", 64),
        _str_tuple(f[3], "services"), base64.b64encode(wg).decode() if wg else "",
        expect_str(f[5], "overlay_ipv4", 64, allow_empty=True), expect_str(f[6], "overlay_ipv6", 64, allow_empty=True),
        _str_tuple(f[7], "listen_addrs"), expect_int(f[8], "api_port", 0, 65535),
        expect_int(f[9], "torrent_port", 0, 65535), _str_tuple(f[10], "join_addrs"),
    )


def _enum(obj: Any, names: tuple[str, ...], what: str) -> str:
    return names[expect_int(obj, what, 0, len(names) - 1)]


def decode_holding(content_id: str, data: bytes) -> Holding:
    """The holding stored under ``h/<content_id>`` (the id comes from the key)."""
    f = _fields(data, "holding", (7, 8))
    ih = _bin(f[1], "holding infohash", (20,))
    # Written only when set; read as a bool either way, since a newer minor version appending its own
    # fields must fill this slot for a user's holding too.
    custody = len(f) == 8 and expect_bool(f[7], "holding custody mark")
    return _build(
        Holding, "holding", content_id, ih.hex(), expect_int(f[2], "size_bytes", 0, SIZE_BYTES_MAX),
        _enum(f[3], STATES, "holding state"), _enum(f[4], POLICIES, "holding policy"),
        _enum(f[5], SOURCES, "holding source"), expect_int(f[6], "bytes_done", 0, SIZE_BYTES_MAX), custody,
    )


def decode_intent(content_id: str, data: bytes) -> RepairIntent:
    f = _fields(data, "repair intent", 3)
    target = _bin(f[1], "repair intent target", (PUBLIC_KEY_BYTES,))
    return _build(RepairIntent, "repair intent", content_id, peer_id_from_public(target),
                  expect_int(f[2], "lease_until_ms", 0, LEASE_MS_MAX))


def decode_claim(data: bytes) -> AddressClaim:
    f = _fields(data, "address claim", 2)
    return _build(AddressClaim, "address claim", expect_str(f[1], "claimed ipv4", 64))


# --- views over a FeedSet ------------------------------------------------------------------------

def _feeds(feedset: FeedSet) -> list[tuple[str, Feed]]:
    return [(peer_id_from_public(o), feedset.feed(o)) for o in feedset.owners()]


def card_of(feed: Feed) -> HostCard | None:
    raw = feed.get(CARD_KEY)
    if raw is None:
        return None
    try:
        return decode_card(raw)
    except RemoteDataError:
        return None


def holdings_of(feed: Feed) -> dict[str, Holding]:
    out = {}
    for key, raw in feed.live_items():
        if key.startswith(HOLDING_PREFIX):
            cid = key[len(HOLDING_PREFIX):]
            try:
                out[cid] = decode_holding(cid, raw)
            except RemoteDataError:
                continue
    return out


def intents_of(feed: Feed) -> dict[str, RepairIntent]:
    """Key suffix (``<content>`` or ``<content>/<target>``) → intent; an intent whose key names a
    target other than the one inside it is malformed and skipped."""
    out = {}
    for key, raw in feed.live_items():
        if key.startswith(INTENT_PREFIX):
            suffix = key[len(INTENT_PREFIX):]
            cid, _, target = suffix.partition("/")
            try:
                intent = decode_intent(cid, raw)
            except RemoteDataError:
                continue
            if target and target != intent.target_peer_id:
                continue
            out[suffix] = intent
    return out


def claim_of(feed: Feed) -> AddressClaim | None:
    raw = feed.get(CLAIM_IPV4_KEY)
    if raw is None:
        return None
    try:
        return decode_claim(raw)
    except RemoteDataError:
        return None


def cards(feedset: FeedSet) -> dict[str, HostCard]:
    """peer id → its host card, for every held feed with a valid card."""
    return {pid: c for pid, f in _feeds(feedset) if (c := card_of(f)) is not None}


def holdings(feedset: FeedSet) -> dict[str, dict[str, Holding]]:
    """peer id → content id → holding (valid records only)."""
    return {pid: holdings_of(f) for pid, f in _feeds(feedset)}


def intents(feedset: FeedSet) -> dict[str, dict[str, RepairIntent]]:
    return {pid: intents_of(f) for pid, f in _feeds(feedset)}


def claims(feedset: FeedSet) -> dict[str, AddressClaim]:
    return {pid: c for pid, f in _feeds(feedset) if (c := claim_of(f)) is not None}

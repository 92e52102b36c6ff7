"""Peer-to-peer queries over the transport's request/response: peers_for, status, own_feed, revoked.

``own_feed`` (body ``{"version": int}``): the asker's *own* feed as the answering member holds
it, when newer than ``version`` — how a restarted node recovers a commit it pushed but did not
save (agent.feed_upkeep). ``revoked`` (body ``{"fleet_id", "decisions"}``): a revoker tells the
host it revoked, with the signed decisions that say so (agent.revocation). ``friend_views`` and
``torrent_file``: see agent.friends_wire. Joins go to the join listener (agent.joining), not here.

Request:  msgpack ``[1, kind, body]``; reply: msgpack of a map. Each kind has its own decoder
that checks every field, so a malformed query is refused with a ``DecodeError`` (and the
transport reports it to the asker as a refused request) instead of reaching the service.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from tva.errors import DecodeError, RequestRefused

RPC_VERSION = 1
KINDS = ("join", "peers_for", "status", "own_feed", "revoked", "media_url", "player",  # agent.playback
         "friend_views", "torrent_file")  # agent.friends
VERSION_MAX = (1 << 63) - 1
NOTICE_DECISIONS_MAX = 256
REQUEST_BYTES_MAX = 60 * 1024
REPLY_BYTES_MAX = 4 * 1024 * 1024


@dataclass(frozen=True)
class Query:
    kind: str
    body: dict[str, Any]


def encode_query(kind: str, body: dict[str, Any]) -> bytes:
    return msgpack.packb([RPC_VERSION, kind, body], use_bin_type=True)


def decode_query(data: bytes) -> Query:
    if len(data) > REQUEST_BYTES_MAX:
        raise DecodeError("query too large")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=REQUEST_BYTES_MAX,
                              max_str_len=8192, max_array_len=NOTICE_DECISIONS_MAX, max_map_len=32, max_ext_len=0)
    except Exception:
        raise DecodeError("query does not decode") from None
    if not (isinstance(obj, list) and len(obj) == 3 and obj[0] == RPC_VERSION and obj[1] in KINDS
            and isinstance(obj[2], dict)):
        raise DecodeError("query has an unknown shape or kind")
    kind, body = obj[1], obj[2]
    if kind == "join":
        _field(body, "invite", str, 4096)
        _field(body, "card_delta", bytes, 16384)
    elif kind == "revoked":
        _field(body, "fleet_id", str, 128)
        decisions = body.get("decisions")
        if (not isinstance(decisions, list) or len(decisions) > NOTICE_DECISIONS_MAX
                or not all(isinstance(d, bytes) for d in decisions)):
            raise DecodeError("query field 'decisions' is missing or invalid")
    elif kind == "peers_for":
        ih = _field(body, "infohash", str, 40)
        if len(ih) != 40 or any(c not in "0123456789abcdef" for c in ih):
            raise DecodeError("peers_for needs a 40-hex infohash")
    elif kind in ("friend_views", "torrent_file"):  # agent.friends_wire
        from agent.friends_wire import check_request

        check_request(kind, body)
    elif kind == "own_feed":
        version = body.get("version")
        if type(version) is not int or not 0 <= version <= VERSION_MAX:
            raise DecodeError("own_feed needs a version (0..2**63-1)")
    return Query(kind, body)


def _field(body: dict, name: str, kind: type, size_max: int) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or len(value) > size_max:
        raise DecodeError(f"query field {name!r} is missing or invalid")
    return value


def encode_reply(body: dict[str, Any]) -> bytes:
    return msgpack.packb(body, use_bin_type=True)


def decode_reply(data: bytes) -> dict[str, Any]:
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=REPLY_BYTES_MAX,
                              max_str_len=REPLY_BYTES_MAX, max_array_len=100_000, max_map_len=100_000,
                              max_ext_len=0)
    except Exception:
        raise DecodeError("reply does not decode") from None
    if not isinstance(obj, dict):
        raise DecodeError("reply is not a map")
    return obj


def encode_refusal(message: str, hint: str = "") -> bytes:
    """An expected refusal (bad invite, not a member…): the asker shows the message and hint."""
    return encode_reply({"error": message[:300], "hint": hint[:300]})


def raise_if_refused(reply: dict[str, Any]) -> None:
    if "error" in reply:
        raise RequestRefused(str(reply.get("error"))[:300], hint=str(reply.get("hint", ""))[:300])


def decode_join_reply(data: bytes) -> tuple[bytes, list[bytes]]:
    reply = decode_reply(data)
    raise_if_refused(reply)
    doc, deltas = reply.get("doc"), reply.get("deltas")
    if not isinstance(doc, bytes) or not isinstance(deltas, list) or not all(isinstance(d, bytes) for d in deltas):
        raise DecodeError("join reply lacks the fleet document or feeds")
    return doc, deltas

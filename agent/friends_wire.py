"""The friend-facing requests and their checks: on the join network, and between our own members.

**On our join network** (``agent.joining``; its private-network key is derived from our fleet id,
not our fleet key), asked by a friend fleet's gateway, whose peer id Noise authenticates:

* ``friend_link`` {invite, fleet_id, fleet_name, gateways, custody_bytes, shares} — redeem one of
  our friend invites: an admin of ours records the link and answers with our side of it;
* ``friend_view`` {fleet_id, gateways?} — our signed view for that fleet (agent.policy.friend_view),
  or ``{"linked": false}`` when we hold no link naming the asker among that fleet's gateways; the
  asker may say where its fleet's gateways listen now (we believe it only for gateways of the link);
* ``friend_unlink`` {fleet_id} — the friend ended the link; an admin of ours records it.

**Among our members** (mesh request/response, members only, ``agent.rpc``): ``friend_views``
{fleet_id, issued_ms} — a member asks one of our gateways for the friend's latest view (the signed
bytes, which it checks itself); ``torrent_file`` {infohash} — a holder's .torrent of an item, with
every tracker stripped (a private tracker's passkey never travels), for a repair of a closed item.
"""

from __future__ import annotations

from typing import Any

from agent.policy.friend_links import ADDRS_MAX, GATEWAYS_MAX, SHAREABLE
from mesh import invites
from tva.errors import DecodeError

FRIEND_KINDS = ("friend_link", "friend_view", "friend_unlink")
MEMBER_KINDS = ("friend_views", "torrent_file")
FLEET_ID_CHARS_MAX = 128
FLEET_NAME_CHARS_MAX = 64
MULTIADDR_CHARS_MAX = 256
CUSTODY_BYTES_MAX = 2**53 - 1


def _text(body: dict, name: str, chars_max: int) -> str:
    v = body.get(name)
    if not isinstance(v, str) or not 0 < len(v) <= chars_max or not v.isprintable():
        raise DecodeError(f"friend request field {name!r} is missing or invalid")
    return v


def _int(body: dict, name: str, hi: int) -> int:
    v = body.get(name)
    if type(v) is not int or not 0 <= v <= hi:
        raise DecodeError(f"friend request field {name!r} is missing or out of range")
    return v


def gateways_field(raw: object) -> list[tuple[str, list[str]]]:
    """[[peer id, [multiaddr, …]], …] → checked pairs (shape only; peer ids are checked by use)."""
    if not isinstance(raw, list) or not 0 < len(raw) <= GATEWAYS_MAX:
        raise DecodeError(f"gateways must list 1..{GATEWAYS_MAX} hosts")
    out = []
    for entry in raw:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                and 0 < len(entry[0]) <= 64 and isinstance(entry[1], list) and len(entry[1]) <= ADDRS_MAX):
            raise DecodeError("a gateway entry is malformed")
        addrs = entry[1]
        if not all(isinstance(a, str) and a.startswith("/") and len(a) <= MULTIADDR_CHARS_MAX and a.isprintable()
                   for a in addrs):
            raise DecodeError("a gateway address is not a multiaddr")
        out.append((entry[0], list(addrs)))
    return out


def check_request(kind: str, body: dict) -> dict[str, Any]:
    """Validate a friend request's body field by field (``DecodeError`` on anything off)."""
    if kind == "friend_link":
        _text(body, "invite", invites.TOKEN_CHARS_MAX)
        _text(body, "fleet_id", FLEET_ID_CHARS_MAX)
        _text(body, "fleet_name", FLEET_NAME_CHARS_MAX)
        body["gateways"] = gateways_field(body.get("gateways"))
        _int(body, "custody_bytes", CUSTODY_BYTES_MAX)
        shares = body.get("shares")
        if not isinstance(shares, list) or not shares or not set(shares) <= set(SHAREABLE):
            raise DecodeError(f"shares must be a non-empty list of {', '.join(SHAREABLE)}")
    elif kind in ("friend_view", "friend_unlink"):
        _text(body, "fleet_id", FLEET_ID_CHARS_MAX)
        if "gateways" in body:  # where the asker's gateways listen now (their addresses move)
            body["gateways"] = gateways_field(body["gateways"])
    elif kind == "friend_views":
        _text(body, "fleet_id", FLEET_ID_CHARS_MAX)
        _int(body, "issued_ms", 2**62)
    elif kind == "torrent_file":
        ih = _text(body, "infohash", 40)
        if len(ih) != 40 or any(c not in "0123456789abcdef" for c in ih):
            raise DecodeError("torrent_file needs a 40-hex infohash")
    else:
        raise DecodeError(f"unknown friend request {kind!r:.40}")
    return body


def link_reply(raw: dict) -> dict[str, Any]:
    """The inviter's answer to ``friend_link``, checked."""
    _text(raw, "fleet_id", FLEET_ID_CHARS_MAX)
    _text(raw, "fleet_name", FLEET_NAME_CHARS_MAX)
    raw["gateways"] = gateways_field(raw.get("gateways"))
    _int(raw, "custody_bytes", CUSTODY_BYTES_MAX)
    shares = raw.get("shares")
    if not isinstance(shares, list) or not set(shares) <= set(SHAREABLE):
        raise DecodeError("the friend's shares are malformed")
    return raw

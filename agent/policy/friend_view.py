"""What a fleet shows a friend fleet: a read-only, signed view of its shareable holdings (pure).

Built by one of our gateways from its own replica (``build_view``), signed with its node key
(``sign_view``), fetched by the friend's gateway and relayed inside the friend fleet, where every
member checks it again (``open_view``): the signer must be one of *our* gateways as the friend's
link records them, the view must name the friend as its audience (no replay to a third fleet),
and every field is checked against its domain and limits.

What is in it, and nothing else:

* the items we share with this friend — an item's policy is the most closed any holder, its
  source or another friend says (``agent.policy.peers``), and only ``public`` / ``f2f_only`` ones
  the link shares cross; ``search_only`` never does;
* their holders: peer id, underlay addresses and torrent port of live hosts holding a complete
  copy — never overlay addresses, never any other host of ours;
* a friend-custody copy we keep for one friend (holding source ``friend``) is shown only to the
  fleets that asked for it (``their_asks``), so one friend's f2f_only item never reaches another;
* our gateways' join addresses (where to ask next time), our custody offer to them, and the
  copies we ask *them* to keep (``asks``, agent.policy.friend_custody).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise

from crdt.codec import pack, unpack_bounded
from crdt.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, NodeKey, peer_id_from_public, verify
from tva.errors import DecodeError, ForeignFleet, InvalidInput, SignatureError, StaleData

from . import checks
from .classes import SRC_PRIVATE, SRC_PRIVATE_TRACKER
from .friend_links import ADDRS_MAX, GATEWAYS_MAX, SHAREABLE
from .inputs import FriendPeer
from .peers import _item_policy
from .view import FleetView

VIEW_FORMAT = 1
ITEMS_MAX = 5000
HOLDERS_MAX = 256
HOLDER_ADDRS_MAX = 4
ITEM_HOLDERS_MAX = 8
ASKS_MAX = 256
VIEW_BYTES_MAX = 2 * 1024 * 1024
MULTIADDR_CHARS_MAX = 256
FLEET_ID_CHARS_MAX = 128
SIZE_MAX = 2**62
_DOMAIN = b"tva/friend-view/v1"


@dataclass(frozen=True, slots=True)
class ViewHolder:
    peer_id: str
    addrs: tuple[str, ...]  # IP literals (underlay)
    port: int


@dataclass(frozen=True, slots=True)
class ViewItem:
    infohash: str
    size_bytes: int
    policy: str
    holders: tuple[int, ...]  # indexes into SharedView.holders
    private: bool = False  # from a private tracker: friends may find it, never ask for it


@dataclass(frozen=True, slots=True)
class Ask:
    """A copy the issuer asks the audience to keep for one of its pins (friend custody)."""

    infohash: str
    size_bytes: int
    policy: str
    content: str


@dataclass(frozen=True, slots=True)
class Gateway:
    peer_id: str
    addrs: tuple[str, ...]  # join-listener multiaddrs


@dataclass(frozen=True, slots=True)
class SharedView:
    issuer_fleet: str
    for_fleet: str
    issued_ms: int
    holders: tuple[ViewHolder, ...]
    items: tuple[ViewItem, ...]
    asks: tuple[Ask, ...] = ()
    gateways: tuple[Gateway, ...] = ()
    custody_bytes: int = 0  # what the issuer offers the audience
    truncated: int = 0  # shareable items left out by ITEMS_MAX
    signer: str = ""

    def item(self, infohash: str) -> ViewItem | None:
        for it in self.items:
            if it.infohash == infohash:
                return it
        return None

    def summary(self) -> dict:
        return {"items": len(self.items), "holders": len(self.holders), "asks": len(self.asks),
                "custody_bytes": self.custody_bytes, "issued_ms": self.issued_ms, "signer": self.signer,
                "truncated": self.truncated}


# --- building -----------------------------------------------------------------------------------


def build_view(view: FleetView, *, issuer_fleet: str, for_fleet: str, shares: Iterable[str], issued_ms: int,
               asks: Iterable[Ask] = (), gateways: Iterable[Gateway] = (), custody_bytes: int = 0,
               their_asks: Iterable[str] = (), friends: Mapping[str, tuple[FriendPeer, ...]] | None = None
               ) -> SharedView:
    """The view ``for_fleet`` may see (see the module docstring). ``friends``: infohash → what our
    other friends say of it (their policy can only close an item further)."""
    checks.instance(view, "view", FleetView)
    share_set = frozenset(shares) & frozenset(SHAREABLE)
    asked = frozenset(their_asks)
    friends = friends or {}
    holders: list[ViewHolder] = []
    index: dict[str, int] = {}
    items: list[ViewItem] = []
    truncated = 0
    for ih in sorted(view.by_infohash):
        policy = _item_policy(view, ih, friends.get(ih, ()), None)
        if policy not in share_set:
            continue
        per_peer = view.by_infohash[ih]
        private = any(h.source == SRC_PRIVATE_TRACKER for per in per_peer.values() for h in per.values())
        chosen: list[int] = []
        size = 0
        for peer in sorted(per_peer):
            complete = [h for h in per_peer[peer].values() if h.complete]
            host = view.hosts.get(peer)
            if not complete or host is None or not view.is_live(peer) or host.torrent_port is None:
                continue
            if not host.underlay_addrs:
                continue
            if all(h.source == SRC_PRIVATE for h in complete) and ih not in asked:
                continue  # a copy kept for another friend: only the fleet that asked sees it
            if peer not in index:
                if len(holders) >= HOLDERS_MAX:
                    continue
                index[peer] = len(holders)
                holders.append(ViewHolder(peer, tuple(host.underlay_addrs[:HOLDER_ADDRS_MAX]), host.torrent_port))
            chosen.append(index[peer])
            size = max(size, max(h.size_bytes for h in complete))
            if len(chosen) >= ITEM_HOLDERS_MAX:
                break
        if not chosen:
            continue
        if len(items) >= ITEMS_MAX:
            truncated += 1
            continue
        items.append(ViewItem(ih, size, policy, tuple(chosen), private))
    ask_list = sorted(set(asks), key=lambda a: a.infohash)[:ASKS_MAX]
    gw = tuple(sorted(gateways, key=lambda g: g.peer_id))[:GATEWAYS_MAX]
    return SharedView(issuer_fleet, for_fleet, issued_ms, tuple(holders), tuple(items), tuple(ask_list), gw,
                      custody_bytes, truncated)


# --- wire -------------------------------------------------------------------------------------------


def encode_body(v: SharedView) -> bytes:
    return pack([
        VIEW_FORMAT, v.issuer_fleet, v.for_fleet, v.issued_ms,
        [[h.peer_id, list(h.addrs), h.port] for h in v.holders],
        [[bytes.fromhex(i.infohash), i.size_bytes, SHAREABLE.index(i.policy), list(i.holders), i.private]
         for i in v.items],
        [[bytes.fromhex(a.infohash), a.size_bytes, SHAREABLE.index(a.policy), a.content] for a in v.asks],
        [[g.peer_id, list(g.addrs)] for g in v.gateways],
        v.custody_bytes, v.truncated,
    ])


def sign_view(v: SharedView, key: NodeKey) -> bytes:
    body = encode_body(v)
    return pack([body, key.public, key.sign(_DOMAIN + body)])


def open_view(data: bytes, *, issuer_fleet: str, for_fleet: str, signers: Iterable[str],
              loopback_ok: bool = False) -> SharedView:
    """Check and decode a signed view (``RemoteDataError`` family on anything wrong; nothing else)."""
    outer = unpack_bounded(data, what="friend view", bytes_max=VIEW_BYTES_MAX, str_bytes_max=64,
                           bin_bytes_max=VIEW_BYTES_MAX, array_len_max=3)
    if not (isinstance(outer, list) and len(outer) == 3 and all(isinstance(x, bytes) for x in outer)):
        raise DecodeError("friend view: not [body, key, signature]")
    body, public, sig = outer
    if len(public) != PUBLIC_KEY_BYTES or len(sig) != SIGNATURE_BYTES:
        raise DecodeError("friend view: malformed key or signature")
    signer = peer_id_from_public(public)
    if signer not in frozenset(signers):
        raise SignatureError(f"friend view signed by {signer[:16]}…, not a gateway of fleet {issuer_fleet[:16]}")
    if not verify(public, sig, _DOMAIN + body):
        raise SignatureError("friend view: the signature does not verify")
    v = decode_body(body, loopback_ok=loopback_ok)
    if v.issuer_fleet != issuer_fleet:
        raise ForeignFleet(f"friend view of fleet {v.issuer_fleet[:16]}, expected {issuer_fleet[:16]}")
    if v.for_fleet != for_fleet:
        raise ForeignFleet("friend view made for another fleet (a replay?)")
    return SharedView(v.issuer_fleet, v.for_fleet, v.issued_ms, v.holders, v.items, v.asks, v.gateways,
                      v.custody_bytes, v.truncated, signer)


def newer(candidate: SharedView, held: SharedView | None) -> SharedView:
    """Views only move forward: an older one (replayed, or from a gateway behind) is refused."""
    if held is not None and candidate.issued_ms < held.issued_ms:
        raise StaleData("friend view older than the one held")
    return candidate


def decode_body(body: bytes, *, loopback_ok: bool = False) -> SharedView:
    f = unpack_bounded(body, what="friend view body", bytes_max=VIEW_BYTES_MAX, str_bytes_max=4096,
                       bin_bytes_max=64, array_len_max=ITEMS_MAX)
    if not isinstance(f, list) or len(f) < 10 or f[0] != VIEW_FORMAT:
        raise DecodeError("friend view body: unknown format")
    issuer, audience, issued = _text(f[1], "issuer"), _text(f[2], "audience"), _int(f[3], "issued_ms")
    holders = tuple(_holder(h, loopback_ok) for h in _list(f[4], "holders", HOLDERS_MAX))
    if len({h.peer_id for h in holders}) != len(holders):
        raise DecodeError("friend view: a holder is listed twice")
    items = tuple(_item(i, len(holders)) for i in _list(f[5], "items", ITEMS_MAX))
    if any(a.infohash >= b.infohash for a, b in pairwise(items)):
        raise DecodeError("friend view: items are not in canonical order")
    asks = tuple(_ask(a) for a in _list(f[6], "asks", ASKS_MAX))
    gateways = tuple(_gateway(g) for g in _list(f[7], "gateways", GATEWAYS_MAX))
    return SharedView(issuer, audience, issued, holders, items, asks, gateways, _int(f[8], "custody_bytes"),
                      _int(f[9], "truncated"))


def _list(obj: object, what: str, n_max: int) -> list:
    if not isinstance(obj, list) or len(obj) > n_max:
        raise DecodeError(f"friend view: {what} must be a list of at most {n_max}")
    return obj


def _text(obj: object, what: str, chars_max: int = FLEET_ID_CHARS_MAX) -> str:
    if not isinstance(obj, str) or not 0 < len(obj) <= chars_max or not obj.isprintable():
        raise DecodeError(f"friend view: {what} is not valid text")
    return obj


def _int(obj: object, what: str, lo: int = 0, hi: int = SIZE_MAX) -> int:
    if type(obj) is not int or not lo <= obj <= hi:
        raise DecodeError(f"friend view: {what} out of range")
    return obj


def _peer(obj: object) -> str:
    try:
        return checks.peer_id(obj, "friend view peer")
    except InvalidInput:
        raise DecodeError("friend view: a peer id is malformed") from None


def _ip(obj: object, loopback_ok: bool) -> str:
    try:
        ip = ipaddress.ip_address(obj if isinstance(obj, str) else "")
    except ValueError:
        raise DecodeError("friend view: a holder address is not an IP") from None
    # A friend must not turn our engines toward our own machine or odd ranges (loopback is
    # allowed only where our own fleet lives on it: one machine, tests).
    if ip.is_unspecified or ip.is_multicast or ip.is_link_local or ip.is_reserved or (ip.is_loopback and not loopback_ok):
        raise DecodeError(f"friend view: holder address {ip} is not one a friend may name")
    return ip.compressed


def _holder(obj: object, loopback_ok: bool) -> ViewHolder:
    if not isinstance(obj, list) or len(obj) != 3:
        raise DecodeError("friend view: malformed holder")
    addrs = tuple(_ip(a, loopback_ok) for a in _list(obj[1], "holder addresses", HOLDER_ADDRS_MAX))
    if not addrs:
        raise DecodeError("friend view: a holder without an address")
    return ViewHolder(_peer(obj[0]), addrs, _int(obj[2], "port", 1, 65535))


def _infohash(obj: object) -> str:
    if type(obj) is not bytes or len(obj) != 20:
        raise DecodeError("friend view: malformed infohash")
    return obj.hex()


def _policy(obj: object) -> str:
    return SHAREABLE[_int(obj, "policy", 0, len(SHAREABLE) - 1)]


def _item(obj: object, n_holders: int) -> ViewItem:
    if not isinstance(obj, list) or len(obj) != 5 or type(obj[4]) is not bool:
        raise DecodeError("friend view: malformed item")
    idx = tuple(_int(i, "holder index", 0, max(0, n_holders - 1)) for i in _list(obj[3], "item holders",
                                                                                  ITEM_HOLDERS_MAX))
    if not idx or n_holders == 0 or len(set(idx)) != len(idx):
        raise DecodeError("friend view: an item without valid holders")
    policy = _policy(obj[2])
    if obj[4] and policy != SHAREABLE[1]:
        raise DecodeError("friend view: private-tracker content shown as public")
    return ViewItem(_infohash(obj[0]), _int(obj[1], "size"), policy, idx, obj[4])


def _ask(obj: object) -> Ask:
    if not isinstance(obj, list) or len(obj) != 4:
        raise DecodeError("friend view: malformed ask")
    content = _text(obj[3], "ask content", 128)
    return Ask(_infohash(obj[0]), _int(obj[1], "ask size", 1), _policy(obj[2]), content)


def _gateway(obj: object) -> Gateway:
    if not isinstance(obj, list) or len(obj) != 2:
        raise DecodeError("friend view: malformed gateway")
    addrs = tuple(_text(a, "gateway address", MULTIADDR_CHARS_MAX) for a in _list(obj[1], "gateway addresses",
                                                                                  ADDRS_MAX))
    if not all(a.startswith("/") for a in addrs):
        raise DecodeError("friend view: a gateway address is not a multiaddr")
    return Gateway(_peer(obj[0]), addrs)


# --- using a friend's view ----------------------------------------------------------------------


def friend_peers(v: SharedView) -> dict[str, tuple[FriendPeer, ...]]:
    """infohash → the friend's holders of it, one ``FriendPeer`` per address (peers_for's input)."""
    out: dict[str, tuple[FriendPeer, ...]] = {}
    for it in v.items:
        peers = []
        for i in it.holders:
            h = v.holders[i]
            peers.extend(FriendPeer(v.issuer_fleet, h.peer_id, a, h.port, it.infohash, it.policy) for a in h.addrs)
        out[it.infohash] = tuple(peers)
    return out


def gateway_addrs(v: SharedView | None, link_gateways: Iterable[str], link_addrs: Iterable[str],
                  learnt: Mapping[str, Iterable[str]] | None = None) -> list[tuple[str, list[str]]]:
    """Where to reach the friend's gateways: what they told us most recently (``learnt``, from
    their own requests), then the latest view's addresses, then the link's; only peers the link
    names (neither a view nor a request can add gateways of its own)."""
    allowed = list(dict.fromkeys(link_gateways))
    by_peer: dict[str, list[str]] = {p: [] for p in allowed}
    for a in link_addrs:
        peer = a.rsplit("/p2p/", 1)[-1] if "/p2p/" in a else None
        if peer in by_peer:
            by_peer[peer].append(a)
    newest = [(g.peer_id, list(g.addrs)) for g in v.gateways] if v is not None else []
    newest += [(p, list(addrs)) for p, addrs in (learnt or {}).items()]
    for peer, addrs in newest:
        if peer in by_peer and addrs:
            by_peer[peer] = addrs + [a for a in by_peer[peer] if a not in addrs]
    return [(p, by_peer[p][: 2 * ADDRS_MAX]) for p in allowed if by_peer[p]]

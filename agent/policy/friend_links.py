"""Friend links: what a fleet's decision log says about another fleet it federates with (pure).

A link is one ``friend`` decision (``crdt.fleetdoc.FleetDoc.add_friend``), written by an admin of
*each* side when an invite is redeemed: both fleets record it, each in its own log. The decision
carries a small ``link`` map (str/int/bool values, at most 32 fields); this module is the one place
that writes and reads it:

========================  ======================================================================
field                     meaning
========================  ======================================================================
``v``                     format of the map (1)
``side``                  ``inviter`` (we issued the friend invite) or ``invitee``
``nonce``                 the invite's one-time secret, redeemed by this link (hex)
``their_gateways``        peer ids of *their* hosts that serve the link (space-separated): the only
                          peers whose requests we answer and whose signed views we believe
``their_addrs``           where their gateways' join listeners were at link time (multiaddrs)
``our_gateways``          peer ids of *our* hosts that serve it: they fetch the friend's view and
                          relay it to our members; nobody else of ours ever talks to the friend
``shares``                the policies we share with them (``public``, ``f2f_only``; never
                          ``search_only``)
``custody_bytes``         bytes of our disks we offer them for their pins (0: none; a gift, no
                          ratio, no accounting beyond this number)
========================  ======================================================================

The friend never sees our decisions, our fleet key or our member list: only the gateways it talks
to and the holders of what we share with it (``agent.policy.friend_view``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from . import checks
from .classes import F2F_ONLY, PUBLIC

LINK_FORMAT = 1
GATEWAYS_MAX = 4
ADDRS_MAX = 8
VALUE_CHARS_MAX = 2048  # crdt.fleetdoc_schema.LINK_VALUE_CHARS_MAX
SHAREABLE = (PUBLIC, F2F_ONLY)  # search_only is metadata only: it never crosses
DEFAULT_SHARES = frozenset(SHAREABLE)
CUSTODY_BYTES_MAX = 2**53 - 1  # the decision log's integer domain
SIDES = ("inviter", "invitee")


@dataclass(frozen=True, slots=True)
class FriendLinkView:
    fleet_id: str
    name: str
    side: str
    nonce: str
    their_gateways: tuple[str, ...]
    their_addrs: tuple[str, ...]
    our_gateways: tuple[str, ...]
    shares: frozenset[str]
    custody_bytes: int
    by: str = ""
    since_ms: int = 0

    def to_json_dict(self) -> dict:
        return {"fleet_id": self.fleet_id, "name": self.name, "side": self.side,
                "their_gateways": list(self.their_gateways), "our_gateways": list(self.our_gateways),
                "shares": sorted(self.shares), "custody_bytes": self.custody_bytes, "by": self.by,
                "since_ms": self.since_ms}


def _words(values: Iterable[str], what: str, count_max: int) -> str:
    items = list(dict.fromkeys(values))
    if len(items) > count_max:
        raise checks.fail(f"{what}: {len(items)} entries (max {count_max})", f"give at most {count_max}")
    for v in items:
        if not isinstance(v, str) or not v or any(c.isspace() for c in v) or not v.isprintable():
            raise checks.fail(f"{what}: {v!r:.60} is not a single printable word", "no spaces inside an entry")
    text = " ".join(items)
    if len(text) > VALUE_CHARS_MAX:
        raise checks.fail(f"{what} is {len(text)} characters (max {VALUE_CHARS_MAX})", "give fewer entries")
    return text


def fit_addrs(addrs: Iterable[str]) -> tuple[str, ...]:
    """As many of ``addrs`` (in order) as fit in one link value."""
    out: list[str] = []
    used = 0
    for a in dict.fromkeys(addrs):
        if not isinstance(a, str) or not a or any(c.isspace() for c in a) or not a.isprintable():
            continue
        if len(out) >= ADDRS_MAX or used + len(a) + 1 > VALUE_CHARS_MAX:
            break
        out.append(a)
        used += len(a) + 1
    return tuple(out)


def link_fields(*, side: str, nonce: str, their_gateways: Iterable[str], their_addrs: Iterable[str],
                our_gateways: Iterable[str], shares: Iterable[str] = DEFAULT_SHARES,
                custody_bytes: int = 0) -> dict[str, str | int | bool]:
    """The ``link`` map of a friend decision (validated: local misuse raises ``InvalidInput``)."""
    checks.choice(side, "side", SIDES)
    checks.text(nonce, "nonce", chars_max=128)
    theirs = tuple(checks.peer_id(p, "their gateway") for p in their_gateways)
    ours = tuple(checks.peer_id(p, "our gateway") for p in our_gateways)
    if not theirs or not ours:
        raise checks.fail("a link needs at least one gateway on each side", "the linking admins are gateways")
    share_set = frozenset(shares)
    if not share_set <= frozenset(SHAREABLE):
        raise checks.fail(f"shares {sorted(share_set)} may only hold {', '.join(SHAREABLE)}",
                          "search_only items never cross to friends")
    checks.integer(custody_bytes, "custody_bytes", maximum=CUSTODY_BYTES_MAX)
    return {"v": LINK_FORMAT, "side": side, "nonce": nonce,
            "their_gateways": _words(theirs, "their_gateways", GATEWAYS_MAX),
            "their_addrs": " ".join(fit_addrs(their_addrs)),
            "our_gateways": _words(ours, "our_gateways", GATEWAYS_MAX),
            "shares": ",".join(sorted(share_set)), "custody_bytes": custody_bytes}


def parse_link(fleet_id: str, name: str, link: Mapping[str, object], *, by: str = "",
               since_ms: int = 0) -> FriendLinkView | None:
    """A stored friend decision as a link, or None when its map is not one this build can use
    (written by a newer or a misbehaving build): such a link is shown but never served."""
    try:
        if link.get("v") != LINK_FORMAT or link.get("side") not in SIDES:
            return None
        nonce = link.get("nonce")
        custody = link.get("custody_bytes", 0)
        if not isinstance(nonce, str) or type(custody) is not int or not 0 <= custody <= CUSTODY_BYTES_MAX:
            return None
        theirs = _split(link.get("their_gateways"))
        ours = _split(link.get("our_gateways"))
        addrs = _split(link.get("their_addrs"))
        shares = frozenset(s for s in str(link.get("shares", "")).split(",") if s)
        if (not theirs or not ours or len(theirs) > GATEWAYS_MAX or len(ours) > GATEWAYS_MAX
                or not shares <= frozenset(SHAREABLE)):
            return None
        for p in (*theirs, *ours):
            checks.peer_id(p)
        return FriendLinkView(fleet_id, name, str(link["side"]), nonce, theirs, addrs[:ADDRS_MAX], ours, shares,
                              custody, by, since_ms)
    except (checks.InvalidInput, TypeError, ValueError):
        return None


def _split(value: object) -> tuple[str, ...]:
    if not isinstance(value, str):
        return ()
    return tuple(dict.fromkeys(w for w in value.split() if w))


def with_offer(link: FriendLinkView, custody_bytes: int) -> dict[str, str | int | bool]:
    """The same link with another custody offer (``tva-agent friend set``)."""
    return link_fields(side=link.side, nonce=link.nonce, their_gateways=link.their_gateways,
                       their_addrs=link.their_addrs, our_gateways=link.our_gateways, shares=link.shares,
                       custody_bytes=custody_bytes)


def choose_gateways(me: str, admins: Iterable[str], live: Iterable[str], always_on: Iterable[str],
                    gateways_max: int = GATEWAYS_MAX) -> tuple[str, ...]:
    """Our hosts that serve a new link: this admin first, then other live, always-on admins (by peer
    id, so a retry picks the same ones). Gateways are admins because a gateway told by the friend
    that the link ended must be able to record it."""
    checks.peer_id(me, "me")
    live_set, on_set = frozenset(live), frozenset(always_on)
    others = sorted(p for p in set(admins) if p != me and p in live_set and p in on_set)
    return (me, *others[: max(0, gateways_max - 1)])


def used_nonces(friend_ops: Iterable[Mapping[str, object]]) -> frozenset[str]:
    """Invite nonces redeemed by any friend decision ever stored (bodies of ``friend`` ops): an
    invite links once, even after the link it made was removed."""
    out = set()
    for body in friend_ops:
        link = body.get("link") if isinstance(body, Mapping) else None
        if isinstance(link, Mapping) and isinstance(link.get("nonce"), str):
            out.add(link["nonce"])
    return frozenset(out)

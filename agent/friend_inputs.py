"""What friend fleets contribute to this agent's answers right now, in one immutable value.

The service (peers_for, custody), the torrent manager (swarm modes, friend-custody copies) and the
view we serve read it; ``agent.friends.FriendsManager.inputs`` builds it from the usable links and
the fresh, verified views. Without a daemon (or any friend) it is empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.policy.friend_links import FriendLinkView
from agent.policy.friend_view import SharedView, friend_peers
from agent.policy.inputs import FriendPeer


@dataclass(frozen=True)
class FriendInputs:
    links: Mapping[str, FriendLinkView] = field(default_factory=dict)  # usable links, by fleet id
    views: Mapping[str, SharedView] = field(default_factory=dict)  # fresh views of linked fleets
    peers: Mapping[str, tuple[FriendPeer, ...]] = field(default_factory=dict)  # infohash → their holders

    @classmethod
    def build(cls, links: Mapping[str, FriendLinkView], views: Mapping[str, SharedView]) -> FriendInputs:
        peers: dict[str, list[FriendPeer]] = {}
        for fleet in sorted(views):
            if fleet not in links:
                continue
            for ih, found in friend_peers(views[fleet]).items():
                peers.setdefault(ih, []).extend(found)
        return cls(dict(links), {f: v for f, v in views.items() if f in links},
                   {ih: tuple(p) for ih, p in peers.items()})

    @property
    def offering(self) -> int:
        """Linked friends that offer us custody: how many more copies a ``--friends`` pin may ask for."""
        return sum(1 for v in self.views.values() if v.custody_bytes > 0)

    def peers_of(self, infohash: str) -> tuple[FriendPeer, ...]:
        return self.peers.get(infohash, ())

    @classmethod
    def from_doc(cls, doc) -> FriendInputs:
        """The links alone (no daemon, so no views): what the offline CLI knows."""
        from agent.policy.friend_links import parse_link

        links = {}
        for fid, link in doc.friends().items():
            parsed = parse_link(fid, link.name, link.link_dict(), by=link.by, since_ms=link.at_ms)
            if parsed is not None:
                links[fid] = parsed
        return cls(links)


EMPTY = FriendInputs()

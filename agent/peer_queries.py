"""What this agent answers on the mesh's request channel, and what it asks there.

Queries (``agent.rpc``) come only from members, but ``revoked`` (a revoked host is no member any
more, and that is the news); a join goes to the join listener (``agent.joining``), never here.
"""

from __future__ import annotations

from functools import partial

from agent import feed_upkeep, rpc
from mesh.transport import Transport
from tva.errors import RemoteDataError, TvaError

REQUEST_TIMEOUT_MS = 10_000


async def answer(agent, peer: str, payload: bytes) -> bytes:
    """The reply to ``peer``'s query ``payload``; ``agent`` is the daemon (agent.runtime.Agent)."""
    try:
        query = rpc.decode_query(payload)
        if query.kind == "join":
            raise RemoteDataError("joins go to the join listener", hint="use an invite from tva-agent 0.2+")
        if query.kind == "revoked":
            return agent.revocations.answer_notice(peer, query.body, partial(agent.on_remote_state, False, True))
        if peer not in agent.state.members():
            raise RemoteDataError("only members may query this agent")
    except TvaError as exc:
        # An expected refusal travels as data, so the asker can show why (not just "refused").
        return rpc.encode_refusal(exc.message, exc.hint)
    if query.kind in ("media_url", "player"):  # [media] agent.playback
        return await agent.playback.handle_rpc(peer, query.kind, query.body)
    if query.kind == "peers_for":
        ih = query.body["infohash"]
        return rpc.encode_reply(agent.service.peers_for(ih, external=agent.torrents.external_peers(ih)))
    if query.kind == "own_feed":
        return rpc.encode_reply(feed_upkeep.answer_own_feed(agent.state, peer, query.body))
    if query.kind == "friend_views":  # [friends] a member asks a gateway for a friend's view
        return rpc.encode_reply(agent.friends.answer_member(peer, query.body))
    if query.kind == "torrent_file":  # a repair of a private item asks a holder for its .torrent
        return rpc.encode_reply({"torrent": await agent.torrents.shareable_torrent(query.body["infohash"])})
    return rpc.encode_reply(agent.service.status())


async def fetch_torrent_file(transport: Transport, peer: str, infohash: str) -> bytes | None:
    """Ask holder ``peer`` for the .torrent of ``infohash`` (a repair of a private item needs it)."""
    reply = rpc.decode_reply(await transport.request(peer, rpc.encode_query("torrent_file", {
        "infohash": infohash}), REQUEST_TIMEOUT_MS))
    rpc.raise_if_refused(reply)
    data = reply.get("torrent")
    return data if isinstance(data, bytes) else None

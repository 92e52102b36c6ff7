"""Two fleets of two real `tva-agent` processes each, on loopback, linked as friends.

Fleet alpha (a1 admin, a2 member) and fleet beta (b1 admin, b2 member). An admin of alpha issues a
friend invite, an admin of beta redeems it: both fleets record the link. A public item held by b2
shows on a2 (never a gateway) as a `friend` peer, through a1's relay of beta's signed view; a
search_only item does not. beta's own gateway, acting as a rogue with its real identity, cannot
change alpha's decisions nor read alpha's document. `friend rm` ends the link on both sides within
the sync interval.
"""

from __future__ import annotations

import trio

from tests.agent.procs import AgentProc, wait_until

SYNC_MS = 1000
PUBLIC_IH, CLOSED_IH, F2F_IH = "aa" * 20, "bb" * 20, "cc" * 20


def make(tmp_path, name: str, port: int) -> AgentProc:
    return AgentProc(tmp_path, name, env={"TVA_FRIEND_SYNC_INTERVAL_MS": str(SYNC_MS), "TVA_TORRENT_PORT": str(port)})


def start_fleet(founder: AgentProc, fleet: str, *joiners: AgentProc) -> dict[str, str]:
    founder.cli("init", "--name", fleet)
    founder.start()
    for j in joiners:
        j.start_join(founder.cli("invite", "--json")["invite"])
    everyone = (founder, *joiners)
    for p in everyone:
        wait_until(lambda p=p: sorted(h["state"] for h in p.cli("hosts", "--json")) == ["alive"] * len(everyone),
                   30, f"{p.name} to see every host of {fleet} alive")
    return {p.name: p.peer_id for p in everyone}


def friend_peers(p: AgentProc, infohash: str) -> list[dict]:
    return [x for x in p.cli("peers-for", infohash, "--json")["peers"] if x["source"] == "friend"]


def test_friend_fleets_link_share_refuse_and_unlink(tmp_path):
    a1, a2, b1, b2 = (make(tmp_path, "a1", 17001), make(tmp_path, "a2", 17002), make(tmp_path, "b1", 17003),
                      make(tmp_path, "b2", 17004))
    procs = (a1, a2, b1, b2)
    try:
        ids = start_fleet(a1, "alpha", a2)
        ids |= start_fleet(b1, "beta", b2)
        alpha_id, beta_id = a1.cli("status", "--json")["fleet_id"], b1.cli("status", "--json")["fleet_id"]

        # A member cannot issue a friend invite; an admin can. A member cannot redeem one.
        refused = a2.run_cli("invite", "--role", "friend")
        assert refused.returncode == 2 and "admin" in refused.stderr
        token = a1.cli("invite", "--role", "friend", "--json")["invite"]
        refused = b2.run_cli("friend", "add", token)
        assert refused.returncode == 2 and "admin" in refused.stderr, refused.stderr
        linked = b1.cli("friend", "add", token, "--json")
        assert linked["fleet_id"] == alpha_id and linked["name"] == "alpha"
        assert linked["their_gateways"] == [ids["a1"]] and linked["our_gateways"] == [ids["b1"]]

        # Both fleets recorded the link, on every member (members learn it by gossip).
        for p, other, fid in ((a1, "beta", beta_id), (a2, "beta", beta_id), (b1, "alpha", alpha_id),
                              (b2, "alpha", alpha_id)):
            rows = wait_until(lambda p=p: p.cli("friends", "--json"), 15, f"{p.name} to see the link")
            assert [(r["fleet_id"], r["name"]) for r in rows] == [(fid, other)]
        # The same invite never links twice.
        again = b1.run_cli("friend", "add", token)
        assert again.returncode != 0

        b2.cli("holdings", "add", "open-film", "--infohash", PUBLIC_IH, "--size", "1000", "--policy", "public")
        b2.cli("holdings", "add", "closed-film", "--infohash", CLOSED_IH, "--size", "1000", "--policy", "search_only")
        b2.cli("holdings", "add", "f2f-film", "--infohash", F2F_IH, "--size", "1000", "--policy", "f2f_only")

        # a2 is no gateway: it sees beta's holder through a1's relay of beta's signed view.
        found = wait_until(lambda: friend_peers(a2, PUBLIC_IH), 20, "a2 to see b2 as a friend peer")
        assert found == [{"peer_id": ids["b2"], "host": beta_id, "addr": "127.0.0.1", "port": 17004,
                          "source": "friend"}]
        assert friend_peers(a1, PUBLIC_IH) == found
        f2f = wait_until(lambda: friend_peers(a2, F2F_IH) and a2.cli("peers-for", F2F_IH, "--json"), 10,
                         "the f2f item")
        assert f2f["policy"] == "f2f_only" and [p["source"] for p in f2f["peers"]] == ["friend"]
        assert a2.cli("peers-for", CLOSED_IH, "--json")["peers"] == []  # search_only never crosses
        states = {r["name"]: r["state"] for p in (a1, a2) for r in p.cli("friends", "--json")}
        assert states == {"beta": "linked"}
        row = next(r for r in a1.cli("friends", "--json"))
        assert row["shared_with_us"] == 2 and row["serving"] is True  # the public and the f2f item

        # beta's gateway, with its own identity, as a rogue on alpha's join listener (its agent
        # stopped, so that the rogue has the listener's one-request-a-second-per-peer to itself).
        b1.stop()
        verdicts = trio.run(_rogue_attempts, b1, a1, token, alpha_id, beta_id, ids)
        b1.start()
        # Its join listener moved (a new port): its next poll tells alpha where it listens now.
        wait_until(lambda: b1.cli("friends", "--json")[0]["state"] == "linked", 20, "b1 to poll alpha again")
        assert verdicts["join"] == "refused" and verdicts["rekey"] == "refused"
        assert verdicts["unknown_kind"] == "refused"
        assert verdicts["view_keys"] == ["linked", "view"]
        assert verdicts["view_peers"] <= {ids["a1"]}  # gateways and holders of shared items only
        assert verdicts["unlink_from_stranger"] == "refused"
        hosts = a1.cli("hosts", "--json")
        assert sorted(h["peer_id"] for h in hosts) == sorted([ids["a1"], ids["a2"]])
        assert a1.cli("friends", "--json")[0]["state"] == "linked"

        # friend rm on alpha ends it on both sides within the sync interval.
        ended = a1.cli("friend", "rm", "beta", "--json")
        assert ended["told_them"] is True
        for p in procs:
            wait_until(lambda p=p: p.cli("friends", "--json") == [], 3 * SYNC_MS / 1000 + 5,
                       f"{p.name} to drop the link")
        wait_until(lambda: friend_peers(a2, PUBLIC_IH) == [], 5, "a2 to forget beta's peers")
        assert friend_peers(a1, PUBLIC_IH) == []
    finally:
        for p in procs:
            p.kill()


async def _rogue_attempts(b1: AgentProc, a1: AgentProc, token: str, alpha_id: str, beta_id: str,
                          ids: dict) -> dict:
    """What beta's gateway gets from alpha's join listener when it asks for more than a view."""
    from agent import rpc, secrets
    from agent.joining import encode_join_query
    from agent.policy.friend_view import decode_body
    from agent.store import StateStore, load_or_create_identity
    from crdt.codec import unpack_bounded
    from mesh.libp2p_transport import Libp2pTransport

    key = load_or_create_identity(StateStore(b1.state_dir))
    card = a1.cli("status", "--json")
    target = ids["a1"]
    addrs = [a for a in card["join_addrs"] if a.startswith("/ip4/127.0.0.1/")]
    transport = Libp2pTransport(key.seed, secrets.join_psk(alpha_id), listen_addrs=("/ip4/127.0.0.1/tcp/0",),
                                serve_frames=False)
    out: dict = {}

    async def asked(kind: str, body: dict, raw: bytes | None = None) -> dict:
        data = raw if raw is not None else encode_join_query(kind, body)
        for _ in range(10):  # the listener takes one request a second per peer (b1's agent polls too)
            await trio.sleep(1.1)
            reply = rpc.decode_reply(await transport.request(target, data, 10_000))
            if "busy" not in str(reply.get("error", "")):
                return reply
        raise AssertionError("alpha's join listener stayed busy")

    async with trio.open_nursery() as nursery:
        await nursery.start(transport.run)
        transport.add_peer_addrs(target, addrs)
        reply = await asked("join", {"invite": token, "card_delta": b"\x00"})
        out["join"] = "refused" if "error" in reply else "answered"
        reply = await asked("rekey", {"epoch": 0, "vector": []})
        out["rekey"] = "refused" if "error" in reply else "answered"
        reply = await asked("", {}, raw=rpc.encode_query("status", {}))
        out["unknown_kind"] = "refused" if "error" in reply else "answered"
        reply = await asked("friend_view", {"fleet_id": beta_id})
        out["view_keys"] = sorted(reply)
        outer = unpack_bounded(reply["view"], what="v", bytes_max=1 << 21, str_bytes_max=64, bin_bytes_max=1 << 21,
                               array_len_max=3)
        body = decode_body(outer[0], loopback_ok=True)
        out["view_peers"] = {h.peer_id for h in body.holders} | {g.peer_id for g in body.gateways}
        nursery.cancel_scope.cancel()
    # A host that is none of beta's gateways cannot end the link either.
    from crdt.identity import NodeKey

    stranger = Libp2pTransport(NodeKey(bytes(range(32))).seed, secrets.join_psk(alpha_id),
                               listen_addrs=("/ip4/127.0.0.1/tcp/0",), serve_frames=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(stranger.run)
        stranger.add_peer_addrs(target, addrs)
        reply = rpc.decode_reply(await stranger.request(target, encode_join_query("friend_unlink",
                                                                                 {"fleet_id": beta_id}), 10_000))
        out["unlink_from_stranger"] = "refused" if "error" in reply else "answered"
        nursery.cancel_scope.cancel()
    return out

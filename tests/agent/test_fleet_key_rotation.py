"""The fleet key rotates on revoke (real agent processes over libp2p on loopback).

Four agents: the founder revokes one member while another is offline. Then: the live members
switch to the new key by themselves; a libp2p host holding only the old key cannot even complete
a handshake with a member any more (one with the new key can — built from the project's own
transport, as a rogue would); and the member that was offline comes back with the old key, learns
the new one from a join listener by itself and rejoins the mesh.
"""

from __future__ import annotations

import os

import trio

from tests.agent.procs import AgentProc, wait_until


async def _handshake(psk: bytes, peer: str, addr: str) -> bool:
    """Can a fresh libp2p host holding ``psk`` complete a connection to ``peer``?"""
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import PeerInfo
    from multiaddr import Multiaddr

    from mesh.libp2p_transport import Libp2pTransport

    transport = Libp2pTransport(os.urandom(32), psk, listen_addrs=("/ip4/127.0.0.1/tcp/0",))
    ok = False
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.run)
        with trio.move_on_after(8):
            try:
                await transport._host.connect(PeerInfo(ID.from_base58(peer), [Multiaddr(addr)]))
                ok = True
            except Exception:
                ok = False
        nursery.cancel_scope.cancel()
    return ok


def _mesh_addr(agent: AgentProc) -> str:
    return next(a for a in agent.cli("status", "--json")["listen_addrs"] if "/ip4/127.0.0.1/" in a)


def test_revoke_rotates_the_key_members_follow_the_revoked_cannot_connect_the_absent_catch_up(tmp_path):
    names = ("founder", "alpha", "beta", "gamma")
    agents = [AgentProc(tmp_path, n) for n in names]
    founder, alpha, beta, gamma = agents
    try:
        founder.start()
        for joiner in agents[1:]:
            joiner.start_join(founder.cli("invite", "--json")["invite"])
        wait_until(lambda: all(h["state"] == "alive" for h in founder.cli("hosts", "--json")), 60,
                   "four live hosts")
        old_psk = _fleet_psk(founder)
        gamma_id, beta_id = gamma.peer_id, beta.peer_id
        gamma.stop()  # offline during the rotation

        out = founder.cli("revoke", "beta", "--json")
        assert out["psk_epoch"] == 1
        for agent in (founder, alpha):
            wait_until(lambda a=agent: a.cli("status", "--json")["fleet_key"]["epoch"] == 1, 40,
                       f"{agent.name} on the new fleet key")
        new_psk = _fleet_psk(founder)
        assert new_psk != old_psk and _fleet_psk(alpha) == new_psk
        # the revoked host's key (the old one) no longer opens a connection to a member …
        addr = _mesh_addr(alpha)
        alpha_id = alpha.peer_id
        assert not trio.run(_handshake, old_psk, alpha_id, addr)
        # … while the new one does (the member then refuses a non-member, but the handshake completes)
        assert trio.run(_handshake, new_psk, alpha_id, addr)
        assert beta_id not in {h["peer_id"] for h in founder.cli("hosts", "--json") if h["state"] != "revoked"}

        gamma.start()  # back with the old key: it finds the new one by itself
        wait_until(lambda: gamma.cli("status", "--json")["fleet_key"]["epoch"] == 1, 60,
                   "gamma to learn the rotated key from a join listener")
        wait_until(lambda: {h["peer_id"]: h["state"] for h in founder.cli("hosts", "--json")}.get(gamma_id)
                   == "alive", 60, "gamma alive again on the founder")
        assert _fleet_psk(gamma) == new_psk
    finally:
        for a in agents:
            a.kill()


def _fleet_psk(agent: AgentProc) -> bytes:
    """The fleet key in the agent's 0600 state dir (what its transport uses), read without a
    StateStore (which would tidy the directory under the running daemon)."""
    from agent.state import FleetInfo
    from agent.store import HEADER

    return FleetInfo.decode((agent.state_dir / "fleet").read_bytes()[HEADER.size:]).psk

"""Which transport each part of the daemon speaks over, beside the mesh's own.

The join listener and the friend clients are requests-only libp2p hosts on a *join network* (the
fleet's, or a friend fleet's: the join key as pre-shared key, this node's identity). Beside an
in-memory mesh (tests, the simulator) they are the same peers' in-memory join network instead.
"""

from __future__ import annotations

from agent import rpc, secrets
from agent.config import Config
from agent.state import NodeState
from mesh.transport import Transport

FRAME_BYTES_MAX_DEFAULT = 4 * 1024 * 1024


def frame_bytes_max(transport: Transport) -> int:
    limits = getattr(transport, "limits", None)
    return getattr(limits, "frame_bytes_max", FRAME_BYTES_MAX_DEFAULT)


def _in_memory_network(transport: Transport):
    network = getattr(transport, "network", None)
    return network if network is not None and hasattr(network, "sibling") else None


def join_network_host(seed: bytes, fleet_id: str, listen_addrs: tuple[str, ...]) -> Transport:
    """A requests-only libp2p host on ``fleet_id``'s join network (its public join key, our identity)."""
    from mesh.libp2p_transport import Libp2pTransport

    return Libp2pTransport(seed, secrets.join_psk(fleet_id), listen_addrs=listen_addrs, serve_frames=False)


def join_transport(cfg: Config, state: NodeState, mesh_transport: Transport) -> Transport:
    """The join listener's transport on the fleet's join network."""
    network = _in_memory_network(mesh_transport)
    if network is not None:
        return network.sibling("join").transport(state.peer_id)
    return join_network_host(state.key.seed, state.fleet.fleet_id, cfg.join_listen_addrs())


def friend_client(state: NodeState, fleet_id: str, mesh_transport: Transport,
                  join_listener_transport: Transport) -> tuple[Transport, bool]:
    """A requests-only host on a friend fleet's join network (their join key, our identity), and
    whether it is new (the caller runs and closes it); beside an in-memory mesh, our join
    listener's own in-memory transport."""
    if _in_memory_network(mesh_transport) is not None:
        return join_listener_transport, False
    transport = join_network_host(state.key.seed, fleet_id, ("/ip4/127.0.0.1/tcp/0",))
    transport.set_peer_filter(lambda _peer: True)
    transport.set_request_handler(_refuse_requests)
    return transport, True


async def _refuse_requests(_peer: str, _payload: bytes) -> bytes:
    return rpc.encode_refusal("this host asks; it answers nothing here")

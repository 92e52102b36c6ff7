"""Building the py-libp2p host every ``Libp2pTransport`` runs: our key, Noise only, the pre-shared
key, nothing that reaches outside (no mDNS, UPnP, AutoTLS, bootstrap), and our own dial policy
(the swarm's retries off, its auto-connector kept stopped). Why each: FIELD-NOTES "py-libp2p 0.8.1".

libp2p is imported here, inside the function: it costs ~1 s and ~85 MB.
"""

from __future__ import annotations

from typing import Any

from crdt.identity import NodeKey
from mesh.transport import TransportLimits
from tva.errors import InvalidInput


def make_host(key: NodeKey, psk_hex: str, limits: TransportLimits, *, one_connection_per_peer: bool) -> Any:
    """A libp2p host whose peer id is ``key.peer_id``. ``one_connection_per_peer`` for a
    requests-only host (the join network): it needs one connection per peer, and with one allowed a
    dial returns as soon as it connects instead of waiting out libp2p's 250 ms happy-eyeballs pause
    for a second address it does not have. Mesh hosts keep the default: simultaneous dials there
    must not be trimmed."""
    from libp2p import new_host
    from libp2p.crypto.ed25519 import Ed25519PrivateKey
    from libp2p.crypto.keys import KeyPair
    from libp2p.crypto.x25519 import create_new_key_pair as new_x25519
    from libp2p.network.config import ConnectionConfig, RetryConfig
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
    from libp2p.security.noise.transport import Transport as NoiseTransport

    private = Ed25519PrivateKey.from_bytes(key.seed)
    key_pair = KeyPair(private, private.get_public_key())
    dial_s = limits.dial_timeout_ms / 1000
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_ID: NoiseTransport(key_pair, noise_privkey=new_x25519().private_key)},
        psk=psk_hex,
        enable_mDNS=False,
        enable_upnp=False,
        enable_autotls=False,
        bootstrap=None,
        connection_config=ConnectionConfig(
            dial_timeout=dial_s,
            # A peer with the wrong PSK stalls the handshake; don't hold its socket for 10 s.
            inbound_upgrade_timeout=dial_s,
            outbound_upgrade_timeout=dial_s,
            outbound_stream_protocol_negotiation_timeout=dial_s,
            inbound_stream_protocol_negotiation_timeout=dial_s,
            **({"max_connections_per_peer": 1} if one_connection_per_peer else {}),
        ),
    )
    got = host.get_id().to_base58()
    if got != key.peer_id:  # would mean libp2p changed how peer ids are derived
        raise InvalidInput(f"libp2p peer id {got} differs from crdt.identity's {key.peer_id}")
    swarm = host.get_network()
    swarm.retry_config = RetryConfig(max_retries=0)

    async def _stay_stopped() -> None:
        return None

    swarm.auto_connector.start = _stay_stopped
    return host

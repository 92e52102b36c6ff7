"""A test fleet: keys, cards and desired ``tva0`` configs computed from plain inputs.

What the agent runtime will do from replicated state, done here from a list of node names so the
netns tests and the bench can drive :class:`wg.fabric.WgFabric` without the daemon.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address

from wg.plan.addressing import Ipv4Claim, host_ipv6, overlay_prefix64, preferred_ipv4, resolve_claims
from wg.plan.desired import DesiredInterface, PeerCard, render_desired
from wg.plan.keys import WgKey

LISTEN_PORT = 51820


@dataclass
class LabFleet:
    fleet_id: bytes
    names: Sequence[str]
    underlay: Sequence[str]  # node i's underlay IP (its endpoint host)
    ipv4_subnet: IPv4Network | None
    keys: dict[str, WgKey] = field(init=False)

    def __post_init__(self) -> None:
        # Deterministic keys: a test fleet is reproducible; real nodes draw os.urandom(32).
        self.keys = {n: WgKey(hashlib.sha256(self.fleet_id + n.encode()).digest()) for n in self.names}
        self.prefix64 = overlay_prefix64(self.fleet_id)

    @property
    def assigned(self) -> dict[str, IPv4Address]:
        if self.ipv4_subnet is None:
            return {}
        return resolve_claims(
            [Ipv4Claim(n, preferred_ipv4(self.ipv4_subnet, n), i) for i, n in enumerate(self.names)],
            self.ipv4_subnet,
        )

    def ipv4(self, name: str) -> IPv4Address:
        return self.assigned[name]

    def ipv6(self, name: str) -> IPv6Address:
        return host_ipv6(self.prefix64, self.keys[name].public)

    def cards(self) -> dict[str, PeerCard]:
        return {n: PeerCard(n, self.keys[n].public_b64, (f"{self.underlay[i]}:{LISTEN_PORT}",))
                for i, n in enumerate(self.names)}

    def desired(self, name: str, *, revoked: Collection[str] = ()) -> DesiredInterface:
        r = render_desired(
            self_peer=name, private_key=self.keys[name].private, members=self.names, revoked=set(revoked),
            cards=self.cards(), prefix64=self.prefix64, ipv4_subnet=self.ipv4_subnet,
            ipv4_assigned=self.assigned, listen_port=LISTEN_PORT,
        )
        assert r.skipped == (), r.skipped
        return r.interface

"""One honest mesh node in its own OS process: the production stack minus the agent around it.

    python -m tests.mesh.mesh_peer --seed HEX --psk HEX --genesis FILE --fleet-id ID [--disk N]

Real ``MeshNode`` (signed by its ``NodeKey``), ``MeshDriver``, ``Libp2pTransport`` (Noise + PSK,
loopback), a ``FeedSet`` restricted to the fleet's members and the fleet's real ``FleetDoc``.
Prints ``{"event": "listening", "peer", "addrs"}`` once up, then one line per liveness change
(``{"event": "liveness", "peer", "state"}``). Commands, one JSON object per line on stdin:
  {"cmd": "peers", "peers": {peer: [addrs]}}   learn addresses
  {"cmd": "report"}                           -> {"event": "report", "liveness", "presence", "core",
                                                  "driver", "transport", "incarnation"}
  {"cmd": "quit"} (or end of input)           clean shutdown
"""

from __future__ import annotations

import argparse
import json
import random
import sys

import trio

from agent.mesh_driver import MeshDriver
from crdt.feedset import FeedSet, OwnFeed
from crdt.fleetdoc import FleetDoc
from crdt.identity import NodeKey, public_from_peer_id
from mesh.core import LocalChanged, MembersChanged, MeshConfig, MeshNode, SetSoftState
from mesh.libp2p_transport import Libp2pTransport
from mesh.transport import TransportLimits

LIMITS = TransportLimits(dial_timeout_ms=5_000, backoff_initial_ms=200, backoff_max_ms=2_000)
CONFIG = MeshConfig(gossip_interval_ms=200, sync_interval_ms=1000, probe_interval_ms=1000, probe_timeout_ms=500)


def emit(**event: object) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


async def main(seed: bytes, psk: bytes, genesis: bytes, fleet_id: str, disk: int) -> None:
    key = NodeKey(seed)
    doc = FleetDoc.load(genesis, key, expected_fleet_id=fleet_id)
    members = doc.members()
    feeds = FeedSet(allowed={public_from_peer_id(m) for m in members})
    own = OwnFeed(key, feeds)
    own.put("card", b"a mesh peer")
    delta = own.commit(1_800_000_000_000)
    transport = Libp2pTransport(seed, psk, limits=LIMITS)
    node = MeshNode(key.peer_id, CONFIG, feeds, doc, random.Random(seed), signer=key, incarnation=7)
    driver = MeshDriver(node, transport, on_liveness=lambda peer, state: emit(event="liveness", peer=peer,
                                                                            state=state))
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.run)
        await nursery.start(driver.run)
        emit(event="listening", peer=key.peer_id, addrs=transport.listen_addrs())
        stdin = trio.wrap_file(sys.stdin)
        async for line in stdin:
            cmd = json.loads(line)
            if cmd["cmd"] == "peers":
                for peer, addrs in cmd["peers"].items():
                    if peer != key.peer_id:
                        transport.add_peer_addrs(peer, addrs)
                driver.submit(MembersChanged(members, {m: "server" for m in members}))
                driver.submit(SetSoftState(disk, 0.9, (), "server"))
                driver.submit(LocalChanged(delta=delta))
            elif cmd["cmd"] == "report":
                emit(event="report", liveness={p: s.value for p, s in node.liveness().items()},
                     presence={p: [v.incarnation, v.pseq, v.disk_free_bytes] for p, v in node.presence().items()},
                     core=dict(node.stats), driver=dict(driver.counters), transport=transport.stats(),
                     incarnation=node.incarnation())
            elif cmd["cmd"] == "quit":
                break
        nursery.cancel_scope.cancel()
    emit(event="bye")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", required=True)
    ap.add_argument("--psk", required=True)
    ap.add_argument("--genesis", required=True)
    ap.add_argument("--fleet-id", required=True)
    ap.add_argument("--disk", type=int, default=10**12)
    args = ap.parse_args()
    with open(args.genesis, "rb") as f:
        genesis_bytes = f.read()
    trio.run(main, bytes.fromhex(args.seed), bytes.fromhex(args.psk), genesis_bytes, args.fleet_id, args.disk)

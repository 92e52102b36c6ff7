"""A compromised member against real agent processes over libp2p (issue 12's adversarial suite).

Three honest agents (owner, two members) and a member gone rogue: its daemon is stopped and its
key and fleet key are taken by a rogue built from the project's own modules — a real MeshNode and
MeshDriver over a real libp2p transport (so it is a member the mesh talks to), which also makes
decisions no honest replica would take and frames no honest node would send:

* decisions beyond a member's rights, signed by its own key (they are stored and synced, and
  change nothing): admitting a key it controls, granting itself admin, revoking the owner and a
  member, a public fleet subnet, another host's override, a fleet-key rotation, re-admitting a
  revoked host and an "unrevoke" no build knows; and a flood of them past its hourly budget;
* decisions no replica stores: a tampered signature, a key nobody admitted, an oversized op;
* mesh records: a LEFT about an honest host at the maximum incarnation, and its presence frozen.

Then: every honest node holds the same members, roles, liveness, overrides, pins and custody as
before, counts the refusals, and the fleet keeps working. Finally the owner revokes the rogue: the
fleet key rotates and a host holding only the old key can no longer complete a handshake with any
member — twenty tries in a row — while the honest fleet goes on.
"""

from __future__ import annotations

import os
import random
import time

import msgpack
import trio

from agent.mesh_driver import MeshDriver
from agent.runtime import INCARNATION_EPOCH_S
from agent.state import NodeState
from agent.store import StateStore
from crdt import records
from crdt.decision_ops import make_op
from crdt.decision_sync import FORMAT as SYNC_FORMAT
from crdt.identity import NodeKey
from mesh.core import LocalChanged, MembersChanged, MeshConfig, MeshNode, encode_frame
from mesh.core.frames import INCARNATION_MAX, DocMessage, Gossip, MemberRecord, PresenceRecord
from mesh.core.signing import member_message, presence_message
from mesh.core.types import Liveness
from mesh.libp2p_transport import Libp2pTransport
from simulations.rogue import unstorable_ops
from tests.agent.procs import AgentProc, wait_until
from tests.agent.raw_decisions import write_raw
from tests.agent.test_fleet_key_rotation import _fleet_psk, _handshake, _mesh_addr


def _view(agent: AgentProc) -> dict:
    hosts = {h["peer_id"]: (h["role"], h["state"], h["class"]) for h in agent.cli("hosts", "--json")}
    custody = [(c["content"], c["min"], c["max"], c["status"]) for c in agent.cli("custody", "--json")]
    return {"hosts": hosts, "custody": custody}


def _same_hosts(view: dict, before: dict, rogue: str) -> dict | None:
    """``view`` when its hosts but the rogue are as ``before``, else None."""
    def others(v: dict) -> dict:
        return {p: x for p, x in v["hosts"].items() if p != rogue}

    return view if others(view) == others(before) else None


def _forged_decisions(state: NodeState, victims: dict[str, str], now_ms: int) -> int:
    """Decisions beyond a member's rights, made with the rogue's own key into its own replica (the
    mesh then syncs them like any others). Returns how many were made."""
    doc, key, made = state.doc, state.key, 0
    outsider = NodeKey(os.urandom(32)).peer_id
    for kind, body in (
        ("admit", {"peer": outsider, "name": "mine", "role": "admin", "nonce": None}),  # a key it controls
        ("grant", {"peer": state.peer_id, "role": "admin"}),
        ("revoke", {"peer": victims["owner"], "reason": "coup"}),
        ("revoke", {"peer": victims["member"], "reason": "coup"}),
        ("setting", {"name": "ipv4_subnet", "value": "8.8.8.0/24"}),
        ("override", {"peer": victims["member"], "class": "seedbox", "services": None, "duty": None}),
        ("psk", {"epoch": 99, "sealed": {state.peer_id: b"x" * 48}}),
        ("admit", {"peer": victims["revoked"], "name": "back", "role": "member", "nonce": None}),
        ("unrevoke", {"peer": victims["revoked"]}),
    ):
        assert write_raw(doc, key, kind, body, now_ms)
        made += 1
    return made


def _unstorable(state: NodeState, now_ms: int) -> list[bytes]:
    """Ops every replica refuses to store: a tampered signature, an author nobody admitted, one
    over the op size limit (packed by hand: make_op refuses to sign it)."""
    return unstorable_ops(state.doc, state.key, NodeKey(os.urandom(32)), now_ms)


def _mesh_forgeries(rogue: NodeKey, victim: str) -> list:
    left = MemberRecord(Liveness.LEFT, victim, INCARNATION_MAX, "", Liveness.LEFT,
                        rogue.sign(member_message(victim, INCARNATION_MAX, Liveness.LEFT.rank)))
    body = msgpack.packb([victim, INCARNATION_MAX, 2**62, 0, 0.0, [], "portable", True])
    frozen = PresenceRecord(victim, INCARNATION_MAX, 2**62, 0, 0.0, (), "portable", True,
                            rogue.sign(presence_message(body)), body, 10**9)
    return [Gossip((left,)), Gossip((frozen,)), Gossip((left, frozen))]


async def _play_rogue(state: NodeState, honest: dict[str, list[str]], victims: dict[str, str]) -> None:
    transport = Libp2pTransport(state.key.seed, state.fleet.psk, listen_addrs=("/ip4/127.0.0.1/tcp/0",))
    incarnation = int(time.time()) - INCARNATION_EPOCH_S + 60  # above its daemon's last (it left)
    node = MeshNode(state.peer_id, MeshConfig(probe_interval_ms=1000, probe_timeout_ms=500), state.feeds, state.doc,
                    random.Random(7), signer=state.key, incarnation=incarnation)
    driver = MeshDriver(node, transport)
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.run)
        await nursery.start(driver.run)
        for peer, addrs in honest.items():
            transport.add_peer_addrs(peer, addrs)
        members = state.members()
        driver.submit(MembersChanged(members, {m: "server" for m in members}))
        await trio.sleep(3)
        now = 2_000_000_000_000
        _forged_decisions(state, victims, now)
        driver.submit(LocalChanged(doc_changed=True))  # pushed and synced by the real mesh
        for i in range(2_100):  # past the budget: 2,000 an hour of its own clock
            try:
                write_raw(state.doc, state.key, "grant", {"peer": victims["member"], "role": "admin"}, now + i)
            except Exception:
                break
        driver.submit(LocalChanged(doc_changed=True))
        flood_tail = [make_op(state.key, seq=s, parents=[state.doc._log.chains[state.key.public][-1].op.hash],
                              at_ms=now + 3_000, kind="grant", body={"peer": victims["member"], "role": "admin"}).wire
                      for s in (len(state.doc._log.chains[state.key.public]) + 1,)]
        for peer in honest:
            for wire in [*_unstorable(state, now + 5_000), *flood_tail]:
                message = msgpack.packb([SYNC_FORMAT, [], [], [], [wire]], use_bin_type=True)  # raw op bytes
                await transport.send(peer, encode_frame(DocMessage(message)), bulk=True)
            for frame in _mesh_forgeries(state.key, victims["member"]):
                await transport.send(peer, encode_frame(frame))
        await trio.sleep(12)  # sync rounds, probes, past a suspicion time-out
        nursery.cancel_scope.cancel()


async def _flood_of_handshakes(psk: bytes, peer: str, addr: str, n: int) -> list[bool]:
    """``n`` hosts holding ``psk`` try to connect to ``peer`` at once."""
    results: list[bool] = []

    async def one() -> None:
        results.append(await _handshake(psk, peer, addr))

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
    return results


def test_a_compromised_member_changes_nothing_beyond_its_rights_and_the_fleet_goes_on(tmp_path):
    names = ("owner", "alpha", "beta", "spare", "rogue")
    agents = {n: AgentProc(tmp_path, n) for n in names}
    owner, alpha, beta, spare, rogue = (agents[n] for n in names)
    try:
        owner.start()
        for n in names[1:]:
            agents[n].start_join(owner.cli("invite", "--json")["invite"])
        wait_until(lambda: len([h for h in owner.cli("hosts", "--json") if h["state"] == "alive"]) == 5, 60,
                   "five live hosts")
        ids = {n: agents[n].peer_id for n in names}
        spare.stop()
        owner.cli("revoke", "spare", "--json")  # a revoked host the rogue will try to bring back
        owner.cli("pin", "film", "--copies", "2", "--json")
        honest = (owner, alpha, beta)
        wait_until(lambda: all(any(c["content"] == "film" for c in a.cli("custody", "--json")) for a in honest), 30,
                   "the pin everywhere")
        for a in (*honest, rogue):  # the revoke rotated the fleet key: everyone on it before the theft
            wait_until(lambda a=a: a.cli("status", "--json")["fleet_key"]["epoch"] == 1, 40, f"{a.name} on key 1")
        rogue.stop()  # its key and fleet key are the rogue's now
        wait_until(lambda: all(_view(a)["hosts"][ids["rogue"]][1] in ("left", "dead") for a in honest), 30,
                   "the rogue's daemon gone")
        honest_ids = [ids[a.name] for a in honest]

        def settled(a: AgentProc) -> dict | None:  # the honest hosts all alive (a suspicion under load passes)
            view = _view(a)
            return view if all(view["hosts"][p][1] == "alive" for p in honest_ids) else None

        before = {a.name: wait_until(lambda a=a: settled(a), 30, f"{a.name} to see the honest hosts alive")
                  for a in honest}

        state = NodeState.load(StateStore(rogue.state_dir))
        cards = records.cards(state.feeds)
        addrs = {p: list(cards[p].listen_addrs) for p in (ids["owner"], ids["alpha"], ids["beta"])}
        victims = {"owner": ids["owner"], "member": ids["beta"], "revoked": ids["spare"]}
        trio.run(_play_rogue, state, addrs, victims)

        for a in honest:
            # Its liveness is the rogue's own. A forged LEFT or frozen presence would last; a passing
            # suspicion (a loaded machine) clears within the wait.
            view = wait_until(lambda a=a: _same_hosts(_view(a), before[a.name], ids["rogue"]), 20,
                              f"{a.name}'s view of the honest hosts unchanged")
            assert view["hosts"][ids["rogue"]][0] == "member"
            assert view["custody"] == before[a.name]["custody"], a.name
            status = a.cli("status", "--json")
            decisions = status["decisions"]
            assert sum(decisions["ineffective"].values()) >= 9, (a.name, decisions)
            for why in ("SignatureError", "Unauthorized", "TooLarge"):
                assert decisions["refused"].get(why, 0) >= 1, (a.name, why, decisions)
            if a is not beta:  # the victim of the forged records does not count forgeries about itself
                assert status["mesh"].get("member_records_forged", 0) >= 1, (a.name, status["mesh"])
                assert status["mesh"].get("presence_forged", 0) >= 1, (a.name, status["mesh"])
        # the fleet keeps working
        owner.cli("pin", "after", "--copies", "1", "--json")
        wait_until(lambda: all(any(c["content"] == "after" for c in a.cli("custody", "--json")) for a in honest), 30,
                   "a new pin everywhere")

        # revoked, the rogue's key no longer opens a connection to any member
        old_psk = _fleet_psk(owner)
        owner.cli("revoke", "rogue", "--json")
        for a in honest:
            wait_until(lambda a=a: a.cli("status", "--json")["fleet_key"]["epoch"] == 2, 40, f"{a.name} on key 2")
        tries = trio.run(_flood_of_handshakes, old_psk, ids["alpha"], _mesh_addr(alpha), 20)
        assert tries == [False] * 20
        assert all(h["state"] == "alive" for h in alpha.cli("hosts", "--json")
                   if h["peer_id"] in (ids["owner"], ids["beta"]))
    finally:
        for a in agents.values():
            a.kill()

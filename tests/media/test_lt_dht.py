"""A private DHT of three libtorrent sessions on loopback: no bootstrap node, nothing outside."""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio

from media.lt_engine import open_lt_engine
from media.lt_settings import SwarmFlags, build_settings

# The public_swarm_face host's DHT, pointed at nobody: nodes are added by hand (add_dht_node).
PRIVATE_DHT = SwarmFlags(
    listen_addresses=("127.0.0.1",),
    public_swarm_face=True,
    dht=True,
    lsd=False,
    upnp=False,
    natpmp=False,
    local_dht=True,
    utp=False,
)


def test_private_dht_flags_have_no_bootstrap_and_no_port_mapping():
    s = build_settings(PRIVATE_DHT)
    assert s["enable_dht"] is True and s["dht_bootstrap_nodes"] == ""
    assert not (s["enable_lsd"] or s["enable_upnp"] or s["enable_natpmp"])


async def test_dht_get_peers_answers_with_the_seeding_sessions_endpoints(tmp_path):
    roots = []
    for name in ("s1", "s2", "asker"):
        (tmp_path / name).mkdir()
        roots.append(tmp_path / name)
    payload = bytes(range(256)) * 1024
    (roots[0] / "shared.bin").write_bytes(payload)
    (roots[1] / "shared.bin").write_bytes(payload)
    async with AsyncExitStack() as stack:
        engines = [await stack.enter_async_context(open_lt_engine(str(r), PRIVATE_DHT)) for r in roots]
        ports = [e.listen_port() for e in engines]
        for e in engines:
            e.add_dht_nodes(tuple(("127.0.0.1", p) for p in ports if p != e.listen_port()))
        ih1, _ = await engines[0].seed_path("shared.bin", public=True)
        ih2, _ = await engines[1].seed_path("shared.bin", public=True)
        assert ih1 == ih2  # same bytes, same v1 torrent (no creation-time dependence in info)
        seeders = {("127.0.0.1", ports[0]), ("127.0.0.1", ports[1])}
        found: set[tuple[str, int]] = set()
        with trio.move_on_after(30):
            while not seeders <= found:
                for e in engines[:2]:
                    await e.reannounce(ih1)  # force_dht_announce once the DHT has nodes
                found |= set(await engines[2].dht_peers(ih1, timeout_ms=500))
        assert seeders <= found, f"DHT answered {found}, expected the seeders {seeders}"
        # The asker itself does not seed it, so it must not be in its own answer.
        assert ("127.0.0.1", ports[2]) not in found
        # An infohash nobody announced gets no peers.
        assert await engines[2].dht_peers("ab" * 20, timeout_ms=300) == []


async def test_dht_follows_the_duty_when_flags_are_reapplied(tmp_path):
    async with open_lt_engine(str(tmp_path), SwarmFlags(utp=False)) as engine:
        assert not engine._ses.is_dht_running()
        port = engine.listen_port()
        engine.apply_flags(PRIVATE_DHT)  # the public_swarm_face duty moved to this host
        with trio.fail_after(5):
            while not engine._ses.is_dht_running():
                await trio.sleep(0.05)
        engine.apply_flags(SwarmFlags(utp=False))  # and away again
        with trio.fail_after(5):
            while engine._ses.is_dht_running():
                await trio.sleep(0.05)
        assert await engine.dht_peers("ab" * 20, timeout_ms=100) == []
        assert engine.listen_port() == port  # same listen settings: the socket was kept

"""BEP 27 where bytes move: a private local DHT of three libtorrent sessions on loopback.

The public_swarm_face host (a TorrentManager with a real session, DHT on) holds two ``f2f_only``
torrents — one it seeds, one it is downloading that the reaper finds dead and nudges. No peer ever
learns either through the DHT, even after ``reaper --apply`` (which used to force a DHT announce
whatever the policy), while a control item seeded publicly by another session is found at once.
Then the very same infohash, re-added as ``public``, is found after one ``reaper --apply``.
"""

from __future__ import annotations

import base64
import os
from contextlib import AsyncExitStack
from dataclasses import replace

import trio

from agent.policy.reaper import ReaperThresholds
from agent.torrent_index import TorrentTuning
from agent.torrents import TorrentManager
from media.engine import now_ms
from media.lt_engine import open_lt_engine
from media.torrent_make import make_torrent_v1
from tests.agent.test_torrents_lt import KIB, PRIVATE_DHT, factory, make_node, running, verdict, wait_for


async def _found_by_dht(asker, infohash: str, endpoint: tuple[str, int]) -> bool:
    return endpoint in set(await asker.dht_peers(infohash, timeout_ms=400))


async def test_f2f_only_on_the_face_never_reaches_the_dht_even_after_reaper_apply(tmp_path):
    cfg, state, service = make_node(tmp_path / "face")
    tuning = TorrentTuning(sample_interval_ms=100, auto_reaper=False, swarm=PRIVATE_DHT,
                           reaper=ReaperThresholds(stalled_after_ms=300, dead_after_ms=600))
    manager = TorrentManager(cfg, state, service, clock_ms=now_ms, tuning=tuning, engine_factory=factory(PRIVATE_DHT))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "nobody.bin").write_bytes(os.urandom(512 * KIB))  # a download no one seeds
    nobody = make_torrent_v1(str(tmp_path / "elsewhere" / "nobody.bin"), (), None)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(running(manager))
        helpers = []
        for name in ("control", "asker"):
            (tmp_path / name).mkdir()
            helpers.append(await stack.enter_async_context(open_lt_engine(str(tmp_path / name), PRIVATE_DHT)))
        control, asker = helpers
        await wait_for(lambda: manager._face, 10, "the face duty (one-node fleet, public_swarm on)")
        assert manager.engine._ses.is_dht_running()
        ports = [manager.listen_port(), control.listen_port(), asker.listen_port()]
        for e in (manager.engine, control, asker):
            e.add_dht_nodes(tuple(("127.0.0.1", p) for p in ports if p != e.listen_port()))
        face = ("127.0.0.1", manager.listen_port())

        (tmp_path / "control" / "ctrl.bin").write_bytes(os.urandom(64 * KIB))
        ctrl_ih = (await control.seed_path("ctrl.bin", public=True))[0]
        (cfg.media_dir() / "film.bin").write_bytes(os.urandom(256 * KIB))
        seeded = await manager.add(source=str(cfg.media_dir() / "film.bin"), policy="f2f_only")
        download = await manager.add(torrent_b64=base64.b64encode(nobody).decode(), policy="f2f_only")
        closed = (seeded["infohash"], download["infohash"])
        assert not any(manager.engine.is_public(ih) for ih in closed)
        await wait_for(lambda: (verdict(manager, download["infohash"]) or {}).get("state") == "dead", 10,
                       "the f2f download to be dead")

        control_found = False
        leaked: set[str] = set()
        with trio.move_on_after(25):
            while not control_found:
                result = await manager.apply_reaper()  # reannounce: never to the DHT for a closed item
                assert any(a["infohash"] == download["infohash"] and a["actions"] == ["reannounce"]
                           for a in result["applied"])
                await control.reannounce(ctrl_ih)
                control_found = await _found_by_dht(asker, ctrl_ih, ("127.0.0.1", control.listen_port()))
                leaked |= {ih for ih in closed if await _found_by_dht(asker, ih, face)}
                await trio.sleep(0.5)
        assert control_found, "the private DHT never worked: the negative below would prove nothing"
        for _ in range(10):  # and a while longer, now that announces certainly travel
            await manager.apply_reaper()
            leaked |= {ih for ih in closed if await _found_by_dht(asker, ih, face)}
            await trio.sleep(0.5)
        assert leaked == set(), "an f2f_only torrent of the face host reached the DHT"

        # The same infohash as public: one reaper --apply announces it, and the asker finds the face.
        await manager.engine.remove(download["infohash"])
        manager.entries.pop(download["infohash"])
        reopened = await manager.add(torrent_b64=base64.b64encode(nobody).decode(), policy="public")
        assert reopened["infohash"] == download["infohash"] and manager.engine.is_public(reopened["infohash"])
        await wait_for(lambda: (verdict(manager, reopened["infohash"]) or {}).get("state") == "dead", 10,
                       "the public download to be dead")
        found = False
        with trio.move_on_after(30):
            while not found:
                await manager.apply_reaper()
                found = await _found_by_dht(asker, reopened["infohash"], face)
                await trio.sleep(0.3)
        assert found, "a public item's reannounce should reach the DHT"


async def test_a_holding_that_closes_closes_the_torrent_at_once(tmp_path):
    """An item another holder (or a friend) declares f2f_only is closed here too, on the next tick."""
    from tests.agent.test_torrents_lt import LOOPBACK, add_fleet_holder

    cfg, state, service = make_node(tmp_path / "node")
    tuning = TorrentTuning(sample_interval_ms=100, auto_reaper=False, swarm=LOOPBACK)
    manager = TorrentManager(cfg, state, service, clock_ms=now_ms, tuning=tuning,
                             engine_factory=factory(replace(LOOPBACK)))
    async with running(manager):
        (cfg.media_dir() / "show.bin").write_bytes(os.urandom(64 * KIB))
        added = await manager.add(source=str(cfg.media_dir() / "show.bin"))
        ih = added["infohash"]
        assert added["policy"] == "public" and manager.engine.is_public(ih)
        add_fleet_holder(state, service, "show-elsewhere", ih, 64 * KIB, 9, policy="f2f_only")
        await wait_for(lambda: not manager.engine.is_public(ih), 5, "the torrent to close")
        assert service.item_policy(ih) == "f2f_only"

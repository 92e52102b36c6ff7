"""TorrentManager with real libtorrent sessions on loopback, in one process.

* Reaper: a torrent whose only source disappears goes stalled, then dead; ``apply_reaper`` sends
  nudges only (nothing removed, no data lost); once a fleet holder exists, applying the reaper
  dials it and the download completes — and the completed item is published as a holding.
* DHT: a private DHT of three sessions. ``peers_for`` on a public item includes the seeders
  tagged ``dht``; the same infohash held as ``f2f_only`` gets none and is not even looked up.
"""

from __future__ import annotations

import base64
import os
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path

import trio

from agent.config import Config
from agent.policy.reaper import ReaperThresholds
from agent.service import Service
from agent.state import NodeState
from agent.store import StateStore
from agent.torrent_index import TorrentTuning
from agent.torrents import TorrentManager
from crdt import records
from crdt.feedset import OwnFeed
from crdt.identity import NodeKey
from media.engine import now_ms
from media.lt_engine import open_lt_engine
from media.lt_settings import SwarmFlags

LOOPBACK = SwarmFlags(listen_addresses=("127.0.0.1",), upnp=False, natpmp=False, lsd=False, dht=False, utp=False)
PRIVATE_DHT = replace(LOOPBACK, public_swarm_face=True, dht=True, local_dht=True)
KIB = 1024


def make_node(root: Path, name: str = "home") -> tuple[Config, NodeState, Service]:
    cfg = Config(state_dir=root / "state", media_root=root / "media", host_name=name, host_class="server",
                 listen=("/ip4/127.0.0.1/tcp/0",), torrent_engine="libtorrent", public_swarm=True)
    (root / "media").mkdir(parents=True, exist_ok=True)
    card = records.HostCard(name=name, host_class="server")
    state = NodeState.found(StateStore(cfg.state_dir), fleet_name=name, card=card, now_ms=now_ms())
    return cfg, state, Service(state, media_dir=cfg.media_dir())


def add_fleet_holder(state: NodeState, service: Service, content: str, infohash: str, size: int,
                     port: int, policy: str = "public") -> str:
    """A second member whose own signed feed says it holds the item at 127.0.0.1:port."""
    key = NodeKey(os.urandom(32))
    now = now_ms()
    state.doc.admit(key.peer_id, "holder", "member", None, now)
    state.refresh_membership()
    own = OwnFeed(key, state.feeds)
    own.put(records.CARD_KEY, records.encode_card(records.HostCard(
        name="holder", host_class="server", listen_addrs=("/ip4/127.0.0.1/tcp/1",), torrent_port=port)))
    own.put(records.holding_key(content), records.encode_holding(
        records.Holding(content, infohash, size, "complete", policy, "local", size)))
    own.commit(now)
    service.invalidate()
    return key.peer_id


@asynccontextmanager
async def running(manager: TorrentManager):
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        try:
            yield manager
        finally:
            nursery.cancel_scope.cancel()


def factory(flags: SwarmFlags):
    return lambda media, _flags: open_lt_engine(media, replace(flags, listen_port=0))


async def wait_for(check, timeout_s: float, what: str):
    last = None
    with trio.move_on_after(timeout_s):
        while True:
            last = check()
            if last:
                return last
            await trio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r:.400}")


def verdict(manager: TorrentManager, ih: str) -> dict | None:
    return next((v for v in manager.verdicts() if v["infohash"] == ih), None)


async def test_reaper_stalled_then_dead_nudges_only_then_fleet_recovery(tmp_path):
    cfg, state, service = make_node(tmp_path / "leecher")
    tuning = TorrentTuning(sample_interval_ms=100, auto_reaper=False, swarm=LOOPBACK,
                           reaper=ReaperThresholds(stalled_after_ms=1500, dead_after_ms=3000))
    manager = TorrentManager(cfg, state, service, clock_ms=now_ms, tuning=tuning, engine_factory=factory(LOOPBACK))
    payload = os.urandom(2 * 1024 * KIB)
    for d in ("src", "fleet"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "clip.bin").write_bytes(payload)
    slow = replace(LOOPBACK, upload_rate_limit_bps=256 * KIB)
    async with AsyncExitStack() as stack:
        source = await stack.enter_async_context(open_lt_engine(str(tmp_path / "src"), slow))
        await stack.enter_async_context(running(manager))
        ih, data = await source.seed_path("clip.bin")
        added = await manager.add(torrent_b64=base64.b64encode(data).decode())
        assert added["infohash"] == ih and added["kind"] == "download" and added["policy"] == "public"
        await manager.engine.connect_peers(ih, (("127.0.0.1", source.listen_port()),))
        await wait_for(lambda: 0 < manager._last[ih].progress < 0.8 if ih in manager._last else False, 15,
                       "some data to arrive")

        await source.remove(ih)  # the only source disappears
        v = await wait_for(lambda: (verdict(manager, ih) or {}).get("state") == "stalled" and verdict(manager, ih),
                           10, "stalled")
        assert v["actions"] == ["reannounce"] and any("no progress" in r for r in v["reasons"])
        v = await wait_for(lambda: (verdict(manager, ih) or {}).get("state") == "dead" and verdict(manager, ih),
                           10, "dead")
        assert "no peers" in v["reasons"] and v["fleet_endpoints"] == []
        done_before = manager._last[ih].bytes_done

        # --apply with no fleet holder: the nudge only; the torrent and its data stay as they were.
        result = await manager.apply_reaper()
        assert result["applied"] == [{"infohash": ih, "state": "dead", "actions": ["reannounce"],
                                      "fleet_peers_dialled": 0}]
        rows = await manager.listing()
        assert [r["infohash"] for r in rows] == [ih] and rows[0]["bytes_done"] >= done_before
        assert (cfg.media_dir() / "clip.bin").exists()

        # A fleet member holds it: recovery dials that holder and the download completes.
        fleet = await stack.enter_async_context(open_lt_engine(str(tmp_path / "fleet"), LOOPBACK))
        assert (await fleet.seed_path("clip.bin"))[0] == ih
        holder = add_fleet_holder(state, service, added["content"], ih, len(payload), fleet.listen_port())
        v = verdict(manager, ih)
        assert v["fleet_endpoints"] == [f"127.0.0.1:{fleet.listen_port()}"]
        assert [s["kind"] for s in v["recovery"]][-1] == "research"  # after the mesh steps, not before
        result = await manager.apply_reaper()
        assert result["applied"][0]["fleet_peers_dialled"] == 1
        await wait_for(lambda: (verdict(manager, ih) or {}).get("reasons") == ["complete"], 30,
                       "the download to complete")
        assert (cfg.media_dir() / "clip.bin").read_bytes() == payload
        mine = records.holdings_of(state.feeds.feed(state.key.public))
        assert mine[added["content"]].state == "complete" and mine[added["content"]].bytes_done == len(payload)
        assert holder != state.peer_id


async def test_dht_peers_for_public_items_only(tmp_path):
    cfg, state, service = make_node(tmp_path / "face")
    tuning = TorrentTuning(sample_interval_ms=100, auto_reaper=False, swarm=PRIVATE_DHT, dht_timeout_ms=500,
                           dht_refresh_ms=300)
    manager = TorrentManager(cfg, state, service, clock_ms=now_ms, tuning=tuning, engine_factory=factory(PRIVATE_DHT))

    def peers_for(ih: str) -> dict:  # as the route (agent.api_core) and the peer query do it
        return service.peers_for(ih, external=manager.external_peers(ih))

    payload = os.urandom(256 * KIB)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(running(manager))
        seeders = []
        for name in ("s1", "s2"):
            (tmp_path / name).mkdir()
            (tmp_path / name / "open.bin").write_bytes(payload)
            seeders.append(await stack.enter_async_context(open_lt_engine(str(tmp_path / name), PRIVATE_DHT)))
        await wait_for(lambda: manager._face, 10, "the face duty (one-node fleet, public_swarm on)")
        ports = [manager.listen_port()] + [s.listen_port() for s in seeders]
        for e in [manager.engine, *seeders]:
            e.add_dht_nodes(tuple(("127.0.0.1", p) for p in ports if p != e.listen_port()))
        ih = (await seeders[0].seed_path("open.bin", public=True))[0]
        assert (await seeders[1].seed_path("open.bin", public=True))[0] == ih
        wanted = {("127.0.0.1", s.listen_port()) for s in seeders}

        def dht_peers() -> set:
            return {(p["addr"], p["port"]) for p in peers_for(ih)["peers"] if p["source"] == "dht"}

        with trio.move_on_after(30):
            while not wanted <= dht_peers():
                for s in seeders:
                    await s.reannounce(ih)
                await trio.sleep(0.5)
        assert wanted <= dht_peers(), dht_peers()
        assert peers_for(ih)["policy"] == "public"

        # The same infohash, now held as f2f_only: no dht peers, and no further DHT lookups.
        service.add_holding("open-item", ih, len(payload), "f2f_only", "local")
        lookups = manager.dht_lookups
        for _ in range(5):
            answer = peers_for(ih)
            assert answer["policy"] == "f2f_only" and not [p for p in answer["peers"] if p["source"] == "dht"]
            await trio.sleep(0.4)
        assert manager.dht_lookups == lookups


async def test_engine_off_and_dht_without_the_duty(tmp_path):
    cfg, state, service = make_node(tmp_path / "plain")
    off = TorrentManager(replace(cfg, torrent_engine="off"), state, service, clock_ms=now_ms)
    async with running(off):
        assert off.listen_port() == 0 and off.external_peers("ab" * 20) == [] and off.verdicts() == []
        try:
            await off.listing()
        except Exception as exc:  # a clear Conflict, not a crash
            assert "no torrent engine" in str(exc)
        else:
            raise AssertionError("listing without an engine must refuse")
    # public_swarm off: the host never becomes the face, so the DHT is never asked.
    tuning = TorrentTuning(sample_interval_ms=100, auto_reaper=False, swarm=PRIVATE_DHT)
    quiet = TorrentManager(replace(cfg, public_swarm=False), state, service, clock_ms=now_ms, tuning=tuning,
                           engine_factory=factory(LOOPBACK))
    async with running(quiet):
        await trio.sleep(0.5)
        assert quiet.external_peers("ab" * 20) == [] and quiet.dht_lookups == 0 and not quiet._face

"""BEP 27 in the Transmission adapter, against a real transmission-daemon the test starts.

Transmission 3's RPC has no per-torrent DHT/PEX/LPD switch, so the adapter reads the daemon's
``dht-enabled``, ``pex-enabled`` and ``lpd-enabled`` and refuses to hand it a closed item (anything
not ``public``) while any is on — unless the .torrent carries BEP 27's private flag, which
libtransmission honours by itself. A torrent whose policy closes later is stopped, not left
announcing.

* PEX is turned on over RPC on the loopback daemon: PEX only talks to peers already connected, so
  nothing leaves the machine.
* DHT and LPD are turned on only inside a network namespace this test makes (a bridge and one
  veth, no route out): the daemon's DHT bootstrap and LPD multicast cannot reach anything real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import trio

from media.bencode import decode, encode
from media.torrent_make import make_torrent_v1
from media.transmission_engine import open_transmission_engine
from tests.conftest import require_root
from tests.media.tr_daemon import file_with, transmission_daemon
from tva.errors import Conflict

REPO = Path(__file__).resolve().parents[2]
LEAKS = ("dht-enabled", "pex-enabled", "lpd-enabled")


def torrent_for(path: str, private: bool) -> bytes:
    raw = make_torrent_v1(path, ())
    if not private:
        return raw
    top = decode(raw, bytes_max=1 << 22)
    top[b"info"][b"private"] = 1
    return encode(top)


async def _states(tr) -> dict[str, str]:
    return {s.infohash: s.state for s in await tr.samples()}


async def _closed_items_meet_the_daemons_settings(tmp_path: Path, tr_root: Path, settings_extra: dict) -> dict:
    """Everything the adapter does with closed and open items while ``settings_extra`` is on; the
    observations (what was refused, what the daemon holds) as a dict."""
    out: dict = {}
    for name in ("open.bin", "closed.bin", "magnet.bin", "private.bin", "later.bin"):
        file_with(tr_root / name, 64 * 1024 + len(name), seed=len(name))
    async with transmission_daemon(tmp_path, str(tr_root), settings_extra) as daemon, \
            open_transmission_engine(daemon.cfg) as tr:
        out["leaks"] = await tr.swarm_leaks()
        open_ih, _ = await tr.seed_path("open.bin", public=True)  # public: the daemon's settings apply
        refused = []
        try:
            await tr.seed_path("closed.bin")  # closed by default
        except Conflict as exc:
            refused.append(("seed", exc.message))
        closed_bytes = torrent_for(str(tr_root / "closed.bin"), private=False)
        try:
            await tr.add_torrent(closed_bytes, public=False)
        except Conflict as exc:
            refused.append(("torrent", exc.message))
        magnet_ih = decode_ih(torrent_for(str(tr_root / "magnet.bin"), private=False))
        try:
            await tr.add_magnet(f"magnet:?xt=urn:btih:{magnet_ih}", hold=True, public=False)
        except Conflict as exc:
            refused.append(("magnet", exc.message))
        out["refused"] = refused
        # A private .torrent is closed by libtransmission itself: accepted whatever the settings.
        private_ih = await tr.add_torrent(torrent_for(str(tr_root / "private.bin"), private=True), public=False)
        # An open torrent whose policy closes: stopped while the daemon would keep announcing it.
        later_ih, _ = await tr.seed_path("later.bin", public=True)
        # Closed once it seeds: a stop issued while Transmission 3 still verifies the data does
        # not hold (it starts when the check ends); the agent re-applies a refused close each tick.
        with trio.move_on_after(10):
            while (await _states(tr)).get(later_ih) != "seeding":
                await trio.sleep(0.1)
        try:
            await tr.set_public(later_ih, False)
            out["closing"] = "closed"
        except Conflict:
            out["closing"] = "refused"

        async def settled():
            states = await _states(tr)
            return states if states.get(later_ih) == "paused" or out["closing"] == "closed" else None

        with trio.move_on_after(10):
            while not await settled():
                await trio.sleep(0.1)
        states = await _states(tr)
        out["held"] = sorted(states)
        out["expected_held"] = sorted({open_ih, private_ih, later_ih})
        out["later_state"] = states.get(later_ih)
        out["closed_ih"] = decode_ih(closed_bytes)
        out["magnet_ih"] = magnet_ih
    return out


def decode_ih(torrent: bytes) -> str:
    from media.torrent_input import parse_torrent

    return parse_torrent(torrent).infohash


async def test_closed_items_are_refused_while_pex_is_on_and_accepted_once_off(tmp_path):
    tr_root = tmp_path / "tr"
    tr_root.mkdir()
    seen = await _closed_items_meet_the_daemons_settings(tmp_path, tr_root, {"pex-enabled": True})
    assert seen["leaks"] == ["pex-enabled"]
    assert [kind for kind, _ in seen["refused"]] == ["seed", "torrent", "magnet"]
    assert all("pex-enabled" in msg and "public swarm" in msg for _, msg in seen["refused"])
    assert seen["held"] == seen["expected_held"]  # nothing refused reached the daemon
    assert seen["closed_ih"] not in seen["held"] and seen["magnet_ih"] not in seen["held"]
    assert seen["closing"] == "refused" and seen["later_state"] == "paused"

    # The same items with everything off: all accepted, the closing one keeps seeding.
    tr_root2 = tmp_path / "tr2"
    tr_root2.mkdir()
    (tmp_path / "off").mkdir()
    seen = await _closed_items_meet_the_daemons_settings(tmp_path / "off", tr_root2, {})
    assert seen["leaks"] == [] and seen["refused"] == [] and seen["closing"] == "closed"
    assert seen["closed_ih"] in seen["held"] and seen["magnet_ih"] in seen["held"]
    assert seen["later_state"] != "paused"


def test_dht_and_lpd_on_refuse_closed_items_inside_a_namespace(tmp_path):
    require_root("ip", "transmission-daemon")
    from tests.wg.netns import NetnsLab

    lab = NetnsLab(1)
    with lab:
        res = subprocess.run(["ip", "netns", "exec", lab.ns(0), sys.executable, "-c",
                              "import sys, trio; from pathlib import Path; "
                              "from tests.media.test_transmission_bep27 import _in_namespace; "
                              "trio.run(_in_namespace, Path(sys.argv[1]))", str(tmp_path)],
                             cwd=REPO, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    assert lab.leftovers() == []
    assert res.returncode == 0, res.stderr[-3000:]
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    assert seen["leaks"] == list(LEAKS)
    assert [kind for kind, _ in seen["refused"]] == ["seed", "torrent", "magnet"]
    assert all(all(leak in msg for leak in LEAKS) for _, msg in seen["refused"])
    assert seen["held"] == seen["expected_held"]
    assert seen["closing"] == "refused" and seen["later_state"] == "paused"


async def _in_namespace(tmp: Path) -> None:
    tr_root = tmp / "tr"
    tr_root.mkdir()
    on = {"dht-enabled": True, "lpd-enabled": True, "pex-enabled": True}
    print(json.dumps(await _closed_items_meet_the_daemons_settings(tmp, tr_root, on)))


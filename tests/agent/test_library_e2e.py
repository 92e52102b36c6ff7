"""The library across two real `tva-agent` processes (loopback, embedded libtorrent).

* A holding added on beta appears in alpha's `library list --fleet`, titled from its content id,
  with beta as its holder.
* alpha scans through its daemon (`library scan` follows the daemon's scan), then publishes a
  local clip (`library publish ITEM`): the engine seeds it, the holding reaches beta, and beta's
  fleet list shows it with alpha as holder; alpha's own list shows the file with its holding.
* The same answers over the HTTP API; bad input gets a 4xx with a hint, never a 500.
"""

from __future__ import annotations

import json

import pytest

from cli.client import call
from tests.agent.procs import AgentProc, two_agent_fleet, wait_until
from tests.media.library_support import make_clip
from tva.errors import InvalidInput, NotFound

TORRENT_ENV = {"TVA_TORRENT_ENGINE": "libtorrent", "TVA_LIBRARY_SCAN_INTERVAL_MS": "0"}
HEAT_IH = "c0ffee12" + "3" * 32


@pytest.fixture
def fleet(tmp_path):
    with two_agent_fleet(tmp_path, TORRENT_ENV) as agents:
        yield agents


def fleet_item(p: AgentProc, content: str) -> dict | None:
    rows = [i for i in p.cli("library", "list", "--fleet", "--json") if i["content"] == content]
    return rows[0] if rows else None


def test_fleet_holdings_and_publish_across_two_agents(fleet):
    alpha, beta = fleet
    ids = {"alpha": alpha.peer_id, "beta": beta.peer_id}

    # 1. A holding declared on beta: alpha lists it, titled, with beta as holder.
    beta.cli("holdings", "add", f"Heat.1995.1080p.BluRay-{HEAT_IH[:8]}", "--infohash", HEAT_IH, "--size", "4096")
    item = wait_until(lambda: fleet_item(alpha, f"Heat.1995.1080p.BluRay-{HEAT_IH[:8]}"), 20,
                      "alpha to list beta's holding")
    assert (item["title"], item["year"], item["kind"], item["local"]) == ("Heat", 1995, "movie", False)
    assert [(h["peer_id"], h["host"], h["state"]) for h in item["holders"]] == [(ids["beta"], "beta", "complete")]
    assert item["infohash"] == HEAT_IH and item["size_bytes"] == 4096 and item["id"] == item["content"]
    assert alpha.cli("library", "list", "--local", "--json") == []  # nothing on alpha's disk yet
    assert "beta" in alpha.cli("library", "list", "--fleet")  # the table names the holder

    # 2. A clip on alpha's disk: scan through the daemon, then publish it.
    make_clip("h264_aac.mp4", alpha.state_dir / "media" / "Films" / "The.Matrix.1999.1080p.mp4")
    report = alpha.cli("library", "scan", "--json")
    assert (report["phase"], report["files_seen"], report["probed"]) == ("done", 1, 1), report
    [local] = alpha.cli("library", "list", "--local", "--json")
    assert (local["title"], local["year"], local["video_codec"], local["content"]) == ("The Matrix", 1999, "h264",
                                                                                      None)
    shown = alpha.cli("library", "show", "Films/The.Matrix.1999.1080p.mp4", "--json")
    assert shown == local
    published = alpha.cli("library", "publish", local["id"], "--policy", "f2f_only", "--json")
    assert published["kind"] == "seed" and published["policy"] == "f2f_only" and published["item"] == local["id"]
    content = published["content"]
    assert content.startswith("The.Matrix.1999.1080p.mp4-")

    seen = wait_until(lambda: fleet_item(beta, content), 30, "beta to list alpha's published item")
    assert (seen["title"], seen["year"], seen["local"]) == ("The Matrix", 1999, False)
    assert [(h["peer_id"], h["host"]) for h in seen["holders"]] == [(ids["alpha"], "alpha")]
    mine = wait_until(lambda: [i for i in alpha.cli("library", "list", "--fleet", "--json") if i["content"] == content
                               and i["holders"]], 20, "alpha's own item to carry its holding")
    assert mine[0]["local"] and mine[0]["id"] == local["id"] and mine[0]["path"] == local["path"]
    again = alpha.cli("library", "publish", local["id"], "--json")
    assert again["already"] is True and again["content"] == content

    # 3. The HTTP API answers the same; bad input is refused with a reason.
    info = alpha.daemon_info()
    by_api = call(info, "GET", "/library/items?where=fleet")
    assert {i["content"] for i in by_api} == {content, f"Heat.1995.1080p.BluRay-{HEAT_IH[:8]}"}
    assert call(info, "GET", "/library/items/" + local["id"])["title"] == "The Matrix"
    assert call(info, "GET", "/library/scan")["phase"] == "done"
    assert call(info, "GET", "/library")["local_items"] == 1
    with pytest.raises(InvalidInput):
        call(info, "GET", "/library/items?kind=documentary")
    with pytest.raises(NotFound):
        call(info, "GET", "/library/items/no-such-thing")
    with pytest.raises(InvalidInput):
        call(info, "POST", "/library/publish", {"item": local["id"], "policy": "everyone"})
    res = beta.run_cli("library", "publish", f"Heat.1995.1080p.BluRay-{HEAT_IH[:8]}", "--json")
    assert res.returncode == 2 and "not held here" in json.loads(res.stdout)["error"]

    # 4. A restart keeps seeding the published file where it lies (in a sub-folder of the media root).
    alpha.stop()
    alpha.start()

    def seeding() -> bool:
        rows = {r["infohash"]: r for r in alpha.cli("torrent", "list", "--json")}
        row = rows.get(published["infohash"])
        return bool(row) and row["state"] == "seeding" and row["progress"] == 1.0

    wait_until(seeding, 30, "alpha to seed the published file again after a restart")
    assert [i["content"] for i in alpha.cli("library", "list", "--local", "--json")] == [content]


def test_offline_commands_work_on_the_state_dir(tmp_path):
    # No daemon: list, show and status read the state dir (holdings included); publish refuses clearly.
    p = AgentProc(tmp_path, "solo")
    p.cli("init", "--name", "home")
    p.cli("holdings", "add", f"Sherlock.S04E01.1080p-{HEAT_IH[:8]}", "--infohash", HEAT_IH, "--size", "10")
    make_clip("hevc_flac.mkv", p.state_dir / "media" / "Dark.S01E01.GERMAN.mkv")
    report = p.cli("library", "scan", "--json")
    assert (report["files_seen"], report["probed"]) == (1, 1)
    items = p.cli("library", "list", "--json")
    assert [(i["title"], i["season"], i["episode"], i["local"]) for i in items] == [
        ("Dark", 1, 1, True), ("Sherlock", 4, 1, False)]
    fleet = p.cli("library", "list", "--fleet", "--json")
    assert [(i["title"], [h["host"] for h in i["holders"]]) for i in fleet] == [("Sherlock", ["solo"])]
    assert p.cli("library", "show", items[0]["id"], "--json")["audio_codecs"] == ["flac"]
    assert p.cli("library", "status", "--json")["local_items"] == 1
    res = p.run_cli("library", "publish", items[0]["id"])
    assert res.returncode == 3 and "needs the running daemon" in res.stderr
    res = p.run_cli("library", "show", "nothing-like-it", "--json")
    assert res.returncode == 2 and json.loads(res.stdout)["hint"]
    res = p.run_cli("library", "list", "--limit", "0")
    assert res.returncode == 2 and "limit" in res.stderr

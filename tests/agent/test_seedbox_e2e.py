"""`tva-agent join INVITE --class seedbox` on real agents (issue 15 item 5): one command makes the
rented box a seedbox for good — its class is kept in its state dir, so the later `run` (or the
service) without any flag still publishes it; the fleet makes it the public-swarm face and a
first-tier custodian; `peers-for` tags its copies `seedbox`."""

from __future__ import annotations

from agent.config import load_config
from tests.agent.procs import AgentProc, wait_until

IH = "5e" * 20


def test_join_class_seedbox_lands_in_the_card_and_survives_a_plain_run(tmp_path):
    home = AgentProc(tmp_path, "home", "desktop", env={"TVA_TORRENT_PORT": "17101"})
    box = AgentProc(tmp_path, "box", env={"TVA_TORRENT_PORT": "17102"})
    del box.env["TVA_HOST_CLASS"]  # nothing but the join flag says what it is
    try:
        home.cli("init", "--name", "household")
        home.start()
        token = home.cli("invite", "--json")["invite"]
        joined = box.cli("join", token, "--class", "seedbox", "--json")
        assert joined["fleet_name"] == "household"
        box.start()  # a plain `run`: no --class
        assert box.cli("status", "--json")["host_class"] == "seedbox"
        kept = load_config(file=None, env={"XDG_CONFIG_HOME": str(tmp_path / "cfg")},
                           flags={"state_dir": box.state_dir})
        assert kept.host_class == "seedbox" and kept.public_swarm is True

        def seen_as_seedbox() -> bool:
            hosts = {h["name"]: h for h in home.cli("hosts", "--json")}
            return hosts.get("box", {}).get("class") == "seedbox" and hosts["box"]["state"] == "alive"
        wait_until(seen_as_seedbox, 30, "home to see the box as a live seedbox")
        duties = {d["duty"]: d for d in home.cli("duties", "--json")}
        assert duties["public_swarm_face"]["primary_name"] == "box"
        assert duties["custodian"]["primary_name"] == "box"  # the only always-on storage host

        for p in (home, box):
            p.cli("holdings", "add", "film", "--infohash", IH, "--size", "1000")
        def sources() -> dict:
            return {(x["host"], x["port"]): x["source"] for x in home.cli("peers-for", IH, "--json")["peers"]}
        wait_until(lambda: ("box", 17102) in sources(), 30, "the box's copy in peers-for")
        got = sources()
        assert got[("box", 17102)] == "seedbox"

        # an unknown class is refused before anything is written
        bad = box.run_cli("join", token, "--class", "toaster")
        assert bad.returncode == 2 and "invalid choice" in bad.stderr
    finally:
        for p in (home, box):
            p.stop()

"""`--fleet NAME` (one agent per fleet on a machine) and the settings a state dir keeps (issue 15
items 4 and 5): resolution, slots that never collide, the layer order, and the CLI's errors."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import fleet_dirs
from agent.config import STATE_CONFIG_FILE, load_config
from tests.agent.procs import BIN
from tva.errors import ConfigError, InvalidInput


def _claims_of(fleets_dir, name):
    return fleet_dirs._claims(fleet_dirs.read_settings(fleets_dir / name))


@settings(max_examples=20, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=40))
def test_fleet_slots_never_share_an_interface_or_a_port(tmp_path_factory, busy):
    # busy[i]: slot i+1 is taken on this host by something else (a port bound, an interface present)
    fleets = tmp_path_factory.mktemp("fleets")
    default = fleet_dirs._claims(fleet_dirs.slot_settings(0))

    def probe(claims):
        slot = int(next(c for c in claims if c.startswith("if:"))[len("if:tva"):])
        return not (slot - 1 < len(busy) and busy[slot - 1])

    names = [f"f{i}" for i in range(5)]
    for name in names:
        values = fleet_dirs.choose_slot(fleets, "/ip4/0.0.0.0", "127.0.0.1", probe=probe)
        assert probe(fleet_dirs._claims(values))
        fleet_dirs.remember(fleets / name, values)
    seen = set(default)
    for name in names:
        mine = _claims_of(fleets, name)
        assert len(mine) == 6 and not mine & seen, (name, mine & seen)
        seen |= mine
    assert fleet_dirs.known_fleets(fleets) == names


def test_resolve_makes_a_fleet_only_on_a_creating_command(tmp_path):
    fleets = tmp_path / "fleets"
    with pytest.raises(InvalidInput, match="no fleet named 'home'") as exc:
        fleet_dirs.resolve(fleets, "home", "status", ("/ip4/127.0.0.1/tcp/4810",), "127.0.0.1:4811")
    assert "--fleet home join INVITE" in exc.value.hint
    assert not (fleets / "home").exists()  # nothing written for a read
    state_dir = fleet_dirs.resolve(fleets, "home", "join", ("/ip4/127.0.0.1/tcp/4810",), "127.0.0.1:4811")
    assert state_dir == fleets / "home"
    s = fleet_dirs.read_settings(state_dir)
    assert s["listen"][0].startswith("/ip4/127.0.0.1/tcp/") and s["api"].startswith("127.0.0.1:")
    assert fleet_dirs.resolve(fleets, "home", "status", (), "") == state_dir  # known now
    with pytest.raises(InvalidInput) as exc:
        fleet_dirs.resolve(fleets, "other", "hosts", (), "")
    assert exc.value.hint.startswith("known: home;")
    for bad in ("", "Home", "../x", "a b", "x" * 33, "-x"):
        with pytest.raises(InvalidInput):
            fleet_dirs.resolve(fleets, bad, "init", (), "")


def test_state_dir_settings_sit_between_the_config_file_and_the_environment(tmp_path):
    state = tmp_path / "state"
    fleet_dirs.remember(state, {"host_class": "seedbox", "api": "127.0.0.1:9100", "public_swarm": True})
    fleet_dirs.remember(state, {"wg_interface": "tva3"})  # merged, not replaced
    f = tmp_path / "c.toml"
    f.write_text('host_class = "server"\napi = "127.0.0.1:9000"\nwg_interface = "tva0"\n')
    cfg = load_config(file=f, env={"TVA_STATE_DIR": str(state)}, flags={})
    assert (cfg.host_class, cfg.api, cfg.wg_interface, cfg.public_swarm) == ("seedbox", "127.0.0.1:9100", "tva3", True)
    cfg = load_config(file=f, env={"TVA_STATE_DIR": str(state), "TVA_API": "127.0.0.1:9200"},
                      flags={"host_class": "nas"})
    assert (cfg.host_class, cfg.api) == ("nas", "127.0.0.1:9200")


@pytest.mark.parametrize(("text", "needle"), [
    ('state_dir = "/elsewhere"', "cannot be set inside a state dir"),
    ('host_class = "toaster"', "host_class"),
    ("api = [", "not valid TOML"),
])
def test_bad_state_dir_settings_name_the_file(tmp_path, text, needle):
    (tmp_path / STATE_CONFIG_FILE).write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(file=None, env={"TVA_STATE_DIR": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}, flags={})


def _cli(tmp_path, *args):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "TVA_STATE_DIR": str(tmp_path / "main"),
           "TVA_FLEETS_DIR": str(tmp_path / "fleets"), "TVA_WG_BACKEND": "off", "TVA_TORRENT_ENGINE": "off"}
    env.pop("TVA_FLEET", None)
    return subprocess.run([BIN, *args], env=env, capture_output=True, text=True, timeout=60)


def test_cli_fleet_selects_each_fleet_and_refuses_unknown_names(tmp_path):
    r = _cli(tmp_path, "--fleet", "home", "status")
    assert r.returncode == 2 and "no fleet named 'home'" in r.stderr and "hint:" in r.stderr
    for name in ("home", "friends"):
        r = _cli(tmp_path, "--fleet", name, "init", "--name", f"fleet-{name}", "--json")
        assert r.returncode == 0, r.stderr
    for name in ("home", "friends"):
        r = _cli(tmp_path, "--fleet", name, "status", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["fleet_name"] == f"fleet-{name}"
    r = _cli(tmp_path, "--fleet", "home", "holdings", "add", "only-home", "--infohash", "ab" * 20, "--size", "5")
    assert r.returncode == 0, r.stderr
    homes = json.loads(_cli(tmp_path, "--fleet", "home", "holdings", "list", "--json").stdout)
    friends = json.loads(_cli(tmp_path, "--fleet", "friends", "holdings", "list", "--json").stdout)
    assert [h["content"] for h in homes] == ["only-home"] and friends == []
    rows = json.loads(_cli(tmp_path, "fleets", "--json").stdout)
    assert [r["name"] for r in rows] == ["friends", "home"]
    assert len({r["wg_interface"] for r in rows}) == 2 and len({r["api"] for r in rows}) == 2
    r = _cli(tmp_path, "--fleet", "nope", "hosts", "--json")
    assert r.returncode == 2 and json.loads(r.stdout)["hint"].startswith("known: friends, home")
    r = _cli(tmp_path, "--fleet", "home", "--state-dir", str(tmp_path / "x"), "status")
    assert r.returncode == 2 and "--fleet and --state-dir" in r.stderr
    r = _cli(tmp_path, "--fleet", "home", "service", "install", "--dry-run")  # would replace the default's unit
    assert r.returncode == 2 and "default agent only" in r.stderr
    r = _cli(tmp_path, "--fleet", "home", "init", "--name", "again")  # a fleet's state dir holds one fleet
    assert r.returncode != 0
    assert not (tmp_path / "main").exists()  # the default agent's state dir was never touched

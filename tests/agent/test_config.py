"""Config layering (defaults < file < env < flags) and validation of every layer."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import Config, load_config
from tva.errors import ConfigError


def test_defaults_need_no_file(tmp_path):
    cfg = load_config(file=None, env={"XDG_CONFIG_HOME": str(tmp_path)}, flags={})
    assert cfg.api == "127.0.0.1:4811"
    assert cfg.host_class == "desktop"
    assert cfg.media_dir() == cfg.state_dir / "media"


def test_layers_override_in_order(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('api = "127.0.0.1:9000"\nhost_class = "server"\ngossip_interval_ms = 300\n')
    env = {"TVA_API": "127.0.0.1:9001", "TVA_STATE_DIR": str(tmp_path / "s")}
    cfg = load_config(file=f, env=env, flags={"api": "127.0.0.1:9002", "media_root": None})
    assert cfg.api == "127.0.0.1:9002"  # flag beats env beats file
    assert cfg.host_class == "server"  # from the file
    assert cfg.gossip_interval_ms == 300
    assert cfg.state_dir == Path(tmp_path / "s")  # from the environment
    cfg = load_config(file=f, env=env, flags={})
    assert cfg.api == "127.0.0.1:9001"


@pytest.mark.parametrize(("text", "needle"), [
    ('api = "nonsense"', "HOST:PORT"),
    ('host_class = "toaster"', "host_class"),
    ("gossip_interval_ms = -5", "gossip_interval_ms"),
    ("gossip_interval_ms = 1", "between"),
    ('listen = ["/ip4/1.2.3.4/udp/1"]', "TCP"),
    ("no_such_key = 1", "unknown setting"),
    ("api = [", "not valid TOML"),
    ('wg_backend = "magic"', "wg_backend"),
])
def test_bad_file_values_name_the_problem(tmp_path, text, needle):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(file=f, env={}, flags={})


def test_bad_environment_value_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="TVA_PROBE_INTERVAL_MS"):
        load_config(file=None, env={"TVA_PROBE_INTERVAL_MS": "soon", "XDG_CONFIG_HOME": str(tmp_path)})


def test_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(file=tmp_path / "nope.toml", env={}, flags={})


@given(st.binary(max_size=300))
def test_garbage_files_give_config_errors_only(tmp_path_factory, data):
    f = tmp_path_factory.mktemp("cfg") / "c.toml"
    f.write_bytes(data)
    try:
        cfg = load_config(file=f, env={}, flags={})
    except ConfigError:
        return
    assert isinstance(cfg, Config)

"""Route parity: every write gives the same result, message and exit code online and offline.

Two one-host fleets made alike: one state dir served by a real daemon process, one with no daemon.
Hypothesis generates sequences of valid and invalid writes; each runs through the CLI's own entry
point (``cli.main.main``) against both — over HTTP to the daemon, and in-process through the same
route table on the other state dir — and the exit code, the JSON printed and the error line must
be identical. (Invites are left out: offline there are no listen addresses to put in one.)
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cli.main import main
from tests.agent.procs import AgentProc

CONTENT = st.sampled_from(["film", "show-2", "tmdb:603", "film", "a.b_c:d", "", "a/b", "bad id", "x" * 129, "é"])
INFOHASH = st.sampled_from(["ab" * 20, "AB" * 20, "ab" * 19, "zz" * 20, ""])
SIZE = st.sampled_from(["0", "10", "-1", str(1 << 50), str((1 << 50) + 1)])
HOST = st.sampled_from(["box", "nobody", "", "12D3KooWnotapeer", "a b"])

WRITE = st.one_of(
    st.tuples(st.just("holdings"), st.just("add"), CONTENT, st.just("--infohash"), INFOHASH, st.just("--size"), SIZE,
              st.sampled_from([(), ("--policy", "f2f_only"), ("--source", "private-tracker"),
                               ("--source", "private-tracker", "--policy", "public")])),
    st.tuples(st.just("holdings"), st.just("rm"), CONTENT),
    st.tuples(st.just("pin"), CONTENT, st.just("--copies"), st.sampled_from(["1", "1", "2", "0", "1001"]),
              st.sampled_from([(), ("--max", "1"), ("--max", "0")])),
    st.tuples(st.just("unpin"), CONTENT),
    st.tuples(st.just("revoke"), HOST, st.sampled_from([(), ("--reason", "lost"), ("--reason", "r" * 201)])),
)


def flatten(op) -> list[str]:
    out: list[str] = []
    for part in op:
        out.extend(part if isinstance(part, tuple) else [part])
    return out


@pytest.fixture(scope="module")
def fleets(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    config = root / "empty.toml"
    config.write_text("")
    online = AgentProc(root, "box")
    online.cli("init", "--name", "parity")
    online.start()
    offline_dir = root / "offline"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in online.env.items():
            if key.startswith("TVA_") or key.startswith("XDG_"):
                mp.setenv(key, value)
        assert run(["--state-dir", str(offline_dir), "--config", str(config), "init", "--name", "parity"])[0] == 0
        ids = {online.peer_id: "<self>", json.loads(run(["--state-dir", str(offline_dir), "status", "--json"])[1])[
            "peer_id"]: "<self>"}
        yield online, offline_dir, config, ids, mp
    online.kill()


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse refusing an argument
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def normal(text: str, ids: dict[str, str]) -> str:
    for peer, alias in ids.items():
        text = text.replace(peer, alias)
    return "\n".join(line for line in text.splitlines() if line.startswith(("tva-agent: error", "  hint", "{", " ",
                                                                            "}", "[", "]", "usage")))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=st.lists(WRITE, min_size=1, max_size=4))
def test_every_write_ends_the_same_online_and_offline(fleets, ops):
    online, offline_dir, config, ids, _mp = fleets
    for op in ops:
        argv = [*flatten(op), "--json"]
        on = run(["--state-dir", str(online.state_dir), "--config", str(config), *argv])
        off = run(["--state-dir", str(offline_dir), "--config", str(config), *argv])
        event(f"{argv[0]}: exit {on[0]}")
        assert on[0] == off[0], (argv, on, off)
        assert normal(on[1], ids) == normal(off[1], ids), (argv, on, off)
        assert normal(on[2], ids) == normal(off[2], ids), (argv, on, off)
    # The two fleets went through the same changes: the same holdings and pins.
    lists = [json.loads(run(["--state-dir", str(d), "--config", str(config), "holdings", "list", "--json"])[1])
             for d in (online.state_dir, offline_dir)]
    assert [(h["content"], h["policy"]) for h in lists[0]] == [(h["content"], h["policy"]) for h in lists[1]]


def test_the_daemon_really_answered_the_online_half(fleets):
    online, _offline_dir, config, _ids, _mp = fleets
    code, out, _err = run(["--state-dir", str(online.state_dir), "--config", str(config), "status", "--json"])
    assert code == 0 and json.loads(out)["daemon"] is True

"""``python -m simulations``: clear errors for bad arguments, machine output, replay on failure,
the plot; and nodes that take garbage frames from peers without crashing."""

from __future__ import annotations

import json
import string

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulations.__main__ import main
from simulations.nodes import CoreConfig, NodeFactory, real_core_missing
from simulations.scenarios import Params
from simulations.seeds import derive_rng
from simulations.standin import F_GOSSIP
from tva.errors import InvalidInput

QUICK = ["--nodes", "6", "--seed", "1", "--set", "duration_s=4", "--set", "bound_s=5", "--set", "core=standin"]


def test_human_output_starts_with_seed_and_parameters(capsys):
    assert main(["--scenario", "steady", *QUICK]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "seed=1 scenario=steady"
    assert out[1].startswith("params scenario=steady nodes=6 seed=1 duration_s=4.0")
    assert out[-1] == "PASS"


def test_json_output_and_trace_file(capsys, tmp_path):
    trace = tmp_path / "t.txt"
    assert main(["--scenario", "sleepy-laptops", *QUICK, "--json", "--trace", str(trace)]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["seed"] == 1 and r["params"]["nodes"] == 6 and r["ok"] is True
    assert len(trace.read_text().splitlines()) == r["events"]


def test_a_failing_run_prints_the_replay_command_and_exits_1(capsys):
    args = ["--scenario", "partition-heal", "--nodes", "12", "--seed", "3", "--set", "duration_s=12",
            "--set", "bound_s=10", "--set", "core=standin", "--set", "link=lossy", "--set", "anti_entropy=false"]
    assert main(args) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("FAIL — replay: python -m simulations --scenario partition-heal --nodes 12 --seed 3")
    assert "--set anti_entropy=False" in last


def test_the_command_exits_with_its_code_and_all_its_output_through_a_pipe():
    # ``python -m simulations`` leaves without tearing its heap down (os._exit): what it printed
    # must still all arrive, and the exit code must be the run's
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a pipe's buffered output
    ok = subprocess.run([sys.executable, "-m", "simulations", "--scenario", "steady", *QUICK, "--json"],
                        capture_output=True, text=True, check=False, env=env)
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True
    failing = ["--scenario", "partition-heal", "--nodes", "12", "--seed", "3", "--set", "duration_s=12",
               "--set", "bound_s=10", "--set", "core=standin", "--set", "link=lossy", "--set", "anti_entropy=false"]
    bad = subprocess.run([sys.executable, "-m", "simulations", *failing], capture_output=True, text=True,
                         check=False, env=env)
    assert bad.returncode == 1 and bad.stdout.splitlines()[-1].startswith("FAIL — replay: ")


def test_a_run_tunes_the_cyclic_collector_and_gives_the_callers_thresholds_back():
    import gc

    from simulations.run import GC_THRESHOLDS, collector_tuned
    before = gc.get_threshold()
    try:
        gc.set_threshold(123, 4, 5)
        with pytest.raises(RuntimeError), collector_tuned():
            assert gc.get_threshold() == GC_THRESHOLDS
            raise RuntimeError("a run that fails")
        assert gc.get_threshold() == (123, 4, 5)
        assert main(["--scenario", "steady", *QUICK]) == 0
        assert gc.get_threshold() == (123, 4, 5)
    finally:
        gc.set_threshold(*before)


@pytest.mark.parametrize("args", [
    ["--set", "warp=9"], ["--set", "duration_s"], ["--set", "duration_s=soon"], ["--set", "link=carrier-pigeon"],
    ["--set", "anti_entropy=maybe"], ["--nodes", "2"], ["--set", "copies_min=0"], ["--set", "core=quantum"],
    ["--set", "seed=4"], ["--set", "portable_fraction=0.95"], ["--nodes", "100000"],
    ["--nodes", "2000", "--set", "core=real"], ["--set", "changes_per_s=0"], ["--set", "duration_s=1e9"],
])
def test_bad_arguments_give_one_clear_line_and_exit_2(args, capsys):
    assert main(["--scenario", "steady", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


@settings(max_examples=40)
@given(st.text(alphabet=string.printable, max_size=30))
def test_garbage_set_items_never_crash(item):
    names = {f for f in Params.__dataclass_fields__}
    name, sep, _ = item.partition("=")
    if sep and name in names:
        return  # a well-formed override may be valid: not garbage
    assert main(["--scenario", "steady", "--set", item]) == 2


def test_plot_writes_a_png(tmp_path, capsys):
    png = tmp_path / "conv.png"
    code = main(["--scenario", "steady", "--seed", "2", "--set", "duration_s=4", "--set", "bound_s=5",
                 "--set", "core=standin", "--plot", str(png), "--sizes", "6,10"])
    assert code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "serf_model_ms=" in capsys.readouterr().out


def _node(core: str, index: int = 1):
    factory = NodeFactory(5, core, CoreConfig(), 4)
    node = factory.make(index, "server", 0, [factory.peer_id(0)], None)
    node.tick(0)
    return factory, node


@pytest.mark.parametrize("core", ["standin", "real"])
@settings(max_examples=60)
@given(data=st.binary(max_size=300))
def test_garbage_frames_are_refused_not_fatal(core, data):
    if core == "real" and real_core_missing() is not None:
        pytest.skip(real_core_missing())
    factory, node = _node(core)
    before = node.version_vector()
    node.receive(factory.peer_id(0), data, 10)
    node.receive(factory.peer_id(2), msgpack.packb([F_GOSSIP, 0, False, [], [data], []]), 20)
    assert node.version_vector() == before  # nothing got in


def test_standin_refuses_a_forged_commit():
    factory, node = _node("standin")
    victim = factory.key(2)
    body = [victim.public, 0, 1, [["hold/x", [1, "public"]]]]
    forged = msgpack.packb([*body, b"\x00" * 64])
    refused = node.refused
    node.receive(factory.peer_id(0), msgpack.packb([F_GOSSIP, 0, False, [], [forged], []]), 5)
    assert node.refused == refused + 1
    assert factory.peer_id(2) not in node.version_vector()


def test_derived_rngs_feed_the_cores():
    # Per-node randomness comes from the root seed: two factories with one seed agree.
    assert derive_rng(9, "node", 3, 0).random() == derive_rng(9, "node", 3, 0).random()


def test_auto_says_which_core_ran_and_why():
    from simulations.nodes import AUTO_REAL_NODES_MAX
    big = NodeFactory(1, "auto", CoreConfig(), AUTO_REAL_NODES_MAX + 1)
    assert big.core == "standin" and "feed limit" in big.core_note
    for n in (10, 1000):  # the 1000-node runs go through the real cores
        assert NodeFactory(1, "auto", CoreConfig(), n).core == ("real" if real_core_missing() is None else "standin")
    with pytest.raises(InvalidInput, match="at most 1024 feeds"):
        NodeFactory(1, "real", CoreConfig(), AUTO_REAL_NODES_MAX + 1)
    assert NodeFactory(1, "standin", CoreConfig(), 10).core == "standin"

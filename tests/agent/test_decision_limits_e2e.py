"""One set of limits: a decision outside them never takes a read down, on any node.

Before: `pin x --copies 1 --max 65` was accepted (the API and the document allowed 1000), the
policy views refused 65, and `custody`, `hosts` and `peers-for` failed on every node once the
document synced. Now the API refuses it (tva.limits), and decisions written straight into the
document — as an older build, a newer one or a misbehaving member could — are skipped and
reported in `status.invalid_pins` / `invalid_overrides` with one log line each, while every
command keeps working on the node that holds them and on the node they sync to.
Real `tva-agent` processes on loopback.
"""

from __future__ import annotations

import pytest

from agent.state import NodeState
from agent.store import StateStore
from tests.agent.procs import AgentProc, wait_until

IH = "ab" * 20


def write_raw_decisions(state: NodeState, other_peer: str) -> None:
    """Decisions no check of ours would write, put into the stored fleet document directly."""
    from automerge import core

    doc = state.doc._doc
    pins = doc.get(core.ROOT, "pins")[1]
    overrides = doc.get(core.ROOT, "overrides")[1]
    ints, null, text = core.ScalarType.Int, core.ScalarType.Null, core.ScalarType.Str
    by = (("by", text, state.peer_id), ("at_ms", ints, 1))
    raw_pins = {
        "max65": (("min", ints, 1), ("max", ints, 65)),
        "fuzzed": (("min", ints, 2), ("max", ints, 510)),
        "zero": (("min", ints, 0), ("max", null, None)),
        "inverted": (("min", ints, 3), ("max", ints, 2)),
        "two words": (("min", ints, 1), ("max", null, None)),
        "float": (("min", core.ScalarType.F64, 1.0), ("max", null, None)),
        IH.upper(): (("min", ints, 1), ("max", null, None)),  # the same item as the next one
        IH: (("min", ints, 2), ("max", null, None)),
        "fine": (("min", ints, 1), ("max", ints, 2)),
    }
    with doc.transaction() as tx:
        for key, fields in raw_pins.items():
            rec = tx.put_object(pins, key, core.ObjType.Map)
            for name, kind, value in (*fields, *by):
                tx.put(rec, name, kind, value)
        rec = tx.put_object(overrides, other_peer, core.ObjType.Map)
        tx.put(rec, "class", text, "mainframe")
        tx.put(rec, "duty", text, "juggling=prefer")
    state.save()


READS = (("status",), ("hosts",), ("holdings", "list"), ("custody",), ("duties",), ("reaper",),
         ("peers-for", IH), ("custodians-of", "fine"), ("wg", "status"))


def every_read_works(p: AgentProc) -> dict:
    out = {}
    for cmd in READS:
        res = p.run_cli(*cmd, "--json")
        assert res.returncode == 0, f"{p.name}: {cmd} failed: {res.stderr}"
        out[cmd[0]] = res.stdout
    for cmd in READS:  # the human tables too
        res = p.run_cli(*cmd)
        assert res.returncode == 0 and "Traceback" not in res.stderr, f"{p.name}: {cmd}: {res.stderr}"
    return out


@pytest.fixture
def fleet(tmp_path):
    alpha, beta = AgentProc(tmp_path, "alpha"), AgentProc(tmp_path, "beta")
    try:
        yield alpha, beta
    finally:
        for p in (alpha, beta):
            p.kill()


def test_out_of_limit_decisions_are_skipped_and_reported_and_every_command_works(fleet):
    alpha, beta = fleet
    alpha.cli("init", "--name", "home")
    alpha.start()
    beta.start_join(alpha.cli("invite", "--json")["invite"])
    beta_id = beta.peer_id

    # The door refuses what the limits refuse: nothing is stored.
    res = alpha.run_cli("pin", "x", "--copies", "1", "--max", "65")
    assert res.returncode != 0 and "max_copies" in res.stderr
    assert alpha.cli("status", "--json")["invalid_pins"] == []

    alpha.stop()
    write_raw_decisions(NodeState.load(StateStore(alpha.state_dir)), beta_id)
    alpha.start()
    bad = {"max65", "fuzzed", "zero", "inverted", "two words", "float", IH.upper()}
    for p in (alpha, beta):  # beta gets them by the ordinary document sync
        wait_until(lambda p=p: {x["content"] for x in p.cli("status", "--json")["invalid_pins"]} == bad, 30,
                   f"{p.name} to report the bad pins")
        every_read_works(p)
        status = p.cli("status", "--json")
        assert [o["peer_id"] for o in status["invalid_overrides"]] == [beta_id]
        planned = {r["content"]: r for r in p.cli("custody", "--json")}
        assert set(planned) == {"fine", IH} and planned[IH]["min"] == 2  # the valid ones still planned
        hosts = {h["peer_id"]: h for h in p.cli("hosts", "--json")}
        assert hosts[beta_id]["class"] == "server"  # the unusable override is not applied
    # Reported once per process, not on every read.
    log = alpha.log.read_text()
    assert log.count("skipping the pin 'max65'") == 1 and log.count("skipping the override") == 1
    # Writes still work and are still checked.
    alpha.cli("pin", "fine", "--copies", "1", "--max", "64")
    assert {r["content"]: r["max"] for r in alpha.cli("custody", "--json")}["fine"] == 64

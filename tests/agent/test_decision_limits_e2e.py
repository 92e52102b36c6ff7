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
from tests.agent.raw_decisions import write_raw

IH = "ab" * 20


def write_raw_decisions(state: NodeState, other_peer: str) -> None:
    """Decisions no check of ours would write, signed by this host (the owner) straight into its log."""
    raw_pins = {
        "max65": (1, 65), "fuzzed": (2, 510), "zero": (0, None), "inverted": (3, 2), "two words": (1, None),
        IH.upper(): (1, None),  # the same item as the next one
        IH: (2, None), "fine": (1, 2),
    }
    for i, (content, (lo, hi)) in enumerate(raw_pins.items()):
        assert write_raw(state.doc, state.key, "pin", {"content": content, "min": lo, "max": hi}, 10 + i)
    assert write_raw(state.doc, state.key, "override",
                     {"peer": other_peer, "class": "mainframe", "services": None, "duty": "juggling=prefer"}, 30)
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
    write_raw_decisions(NodeState.load(StateStore(alpha.state_dir)), beta_id)  # (a float is not even an op)
    alpha.start()
    bad = {"max65", "fuzzed", "zero", "inverted", "two words", IH.upper()}
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

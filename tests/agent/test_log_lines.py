"""A peer killed for 60 s costs a survivor a handful of log lines about it, all formatted.

Wave 1 measured 55 of a survivor's 105 lines as py-libp2p's bare "Failed to open TCP stream"
prints in such a run. Three real agents; one is SIGKILLed, stays down 60 s (the issue's rule),
and comes back; every line the founder wrote meanwhile is read.
"""

from __future__ import annotations

import re
import signal
import time

import pytest

from tests.agent.procs import AgentProc, wait_until

DOWN_S = 60
LINES_ABOUT_IT_MAX = 6  # unreachable, suspect, dead; alive, reachable again (+1 spare)
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: \S")


@pytest.fixture
def fleet(tmp_path):
    procs = [AgentProc(tmp_path, name) for name in ("founder", "alpha", "beta")]
    yield procs
    for p in procs:
        p.kill()


def states(p: AgentProc) -> dict[str, str]:
    return {h["name"]: h["state"] for h in p.cli("hosts", "--json")}


def test_a_peer_down_for_a_minute_is_a_handful_of_readable_lines(fleet):
    founder, alpha, beta = fleet
    founder.cli("init", "--name", "quiet")
    founder.start()
    for joiner in (alpha, beta):
        joiner.start_join(founder.cli("invite", "--json")["invite"])
    wait_until(lambda: set(states(founder).values()) == {"alive"} and len(states(founder)) == 3, 30, "all alive")
    beta_id = beta.peer_id
    time.sleep(3)  # let the join-time chatter settle
    offset = len(founder.log.read_bytes())

    beta.kill(signal.SIGKILL)
    wait_until(lambda: states(founder)["beta"] == "dead", 45, "the founder to declare beta dead")
    time.sleep(max(0.0, DOWN_S - 15))
    beta.start()
    wait_until(lambda: states(founder)["beta"] == "alive", 45, "beta alive again")
    time.sleep(5)

    new = founder.log.read_bytes()[offset:].decode().splitlines()
    assert new, "the founder said nothing at all"
    assert all(TEXT_LINE.match(line) for line in new), [line for line in new if not TEXT_LINE.match(line)]
    about = [line for line in new if "beta" in line or beta_id[:16] in line or "libp2p" in line]
    assert any("beta is dead" in line for line in about) and any("beta is alive" in line for line in about)
    assert len(about) <= LINES_ABOUT_IT_MAX, "\n".join(about)
    assert not any("Failed to open" in line or "Traceback" in line for line in new)

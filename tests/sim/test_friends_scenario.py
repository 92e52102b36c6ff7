"""The `friends` scenario (issue 15 item 7): three real fleets in one simulated world, links made
and broken, friend custody on — one seed one trace; and the friend checkers catching a broken
variant of the rules they guard. (Every checker passing on seeds 1 and 2: test_scenarios.py.)"""

from __future__ import annotations

import json

import pytest

import agent.policy.friend_custody as friend_custody
import simulations.friends as sim_friends
from simulations.run import deterministic_part, run_scenario
from simulations.scenarios import params_for
from tva.errors import InvalidInput

CI = dict(nodes=24, duration_s=12.0)  # three fleets of 8: seconds


def _run(seed: int, **kw) -> dict:
    return run_scenario(params_for("friends", seed=seed, **{**CI, **kw}))


def test_the_scenario_runs_in_the_ci_job_and_replays():
    # every checker on seeds 1 and 2: tests/sim/test_scenarios.py (the CI job runs every scenario)
    r = _run(3)
    assert r["ok"], (r["checks"], r["replay"])
    assert r["core"] == "real" and r["params"]["fleets"] == 3
    assert r["metrics"]["changes_converged"] > 0  # convergence is tracked per fleet
    assert r["replay"].startswith("python -m simulations --scenario friends --nodes 24 --seed 3")


def test_same_seed_same_trace():
    a, b, c = _run(5), _run(5), _run(6)
    assert json.dumps(deterministic_part(a), sort_keys=True) == json.dumps(deterministic_part(b), sort_keys=True)
    assert a["trace_sha256"] != c["trace_sha256"]


def test_a_link_end_that_never_reaches_the_documents_is_caught(monkeypatch):
    """Broken variant: `friend rm` recorded nowhere — views keep crossing, holders keep answering."""
    def unlink_in_truth_only(self, a, b, now_ms):
        self.link_ended[frozenset((a, b))] = now_ms
        self.stats["links_ended"] += 1
    monkeypatch.setattr(sim_friends.FriendWorld, "unlink", unlink_in_truth_only)
    r = _run(1)
    rules = {line.split()[1].rstrip(":") for line in r["checks"]["safety"]["first"]}
    assert not r["ok"] and {"view-unlinked", "closed-item-left"} <= rules, r["checks"]["safety"]


def test_counting_friends_copies_of_a_private_trackers_item_is_caught(monkeypatch):
    """Broken variant: every --friends pin counts friends' copies, a private tracker's included."""
    def any_pin(view, plan):
        pin = view.pins.get(plan.content)
        return "public" if pin is not None and pin.friends and plan.infohash is not None else None
    monkeypatch.setattr(friend_custody, "shareable_pin", any_pin)
    r = _run(1, duration_s=20.0)  # long enough for the copy to land before fleets 0 and 1 unlink
    rules = {line.split()[1].rstrip(":") for line in r["checks"]["safety"]["first"]}
    assert "friend-count-policy" in rules, r["checks"]["safety"]


def test_parameters_are_checked():
    with pytest.raises(InvalidInput, match="fleets"):
        params_for("friends", nodes=12)  # three fleets need 8 nodes each
    with pytest.raises(InvalidInput, match="friends scenario"):
        params_for("steady", nodes=30, fleets=3)
    with pytest.raises(InvalidInput, match="friends scenario"):
        params_for("friends", nodes=30, fleets=1)
    with pytest.raises(InvalidInput, match="real cores"):
        run_scenario(params_for("friends", core="standin", **CI))

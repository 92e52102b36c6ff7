"""Playback across two real `tva-agent` processes on loopback, with real headless mpv in each daemon.

* alpha plays a clip only beta holds: mpv on alpha streams it through beta's media plane (beta's
  log shows the range requests), never copying it first.
* The player over the CLI: status reports position and pause state; pause, resume, seek, stop.
* Stop saves the position in alpha's feed; `library list` shows the item first ("continue
  watching"), on beta too (the record travels); playing again without --start resumes within 2 s
  of it; watched at ≥ 90 %.
* `play --on beta` plays on beta's own player (its local file), driven from alpha.
"""

from __future__ import annotations

import re

import pytest

from tests.agent.procs import AgentProc, two_agent_fleet, wait_until
from tests.media.clips import make_clip

ENV = {"TVA_TORRENT_ENGINE": "libtorrent", "TVA_LIBRARY_SCAN_INTERVAL_MS": "0",
       "TVA_WATCH_SAVE_INTERVAL_MS": "1000"}
CLIP_S = 24


@pytest.fixture
def fleet(tmp_path):
    with two_agent_fleet(tmp_path, ENV) as agents:
        yield agents


def status(p: AgentProc, *on: str) -> dict:
    return p.cli("player", "status", *(["--on", on[0]] if on else []), "--json")


def position_past(p: AgentProc, seconds: float, *on: str) -> dict:
    def check():
        s = status(p, *on)
        return s if s["state"] == "playing" and (s["position_s"] or 0) >= seconds else None
    return wait_until(check, 30, f"{p.name}'s player to pass {seconds} s")


def test_play_stream_control_and_resume_across_two_agents(fleet):
    alpha, beta = fleet
    make_clip(beta.state_dir / "media" / "Sintel.2010.720p.mkv", seconds=CLIP_S, audio="flac")
    assert beta.cli("library", "scan", "--json")["probed"] == 1
    [local] = beta.cli("library", "list", "--local", "--json")
    content = beta.cli("library", "publish", local["id"], "--json")["content"]

    def listed():
        rows = [i for i in alpha.cli("library", "list", "--json") if i["content"] == content]
        return rows[0] if rows and rows[0]["holders"] and rows[0]["holders"][0]["liveness"] == "alive" else None

    item = wait_until(listed, 40, "alpha to see beta's published clip")
    assert not item["local"] and item["watch"] is None

    # 1. alpha streams it from beta's media plane (mpv headless in alpha's daemon).
    started = alpha.cli("play", content, "--headless", "--json")
    assert started["state"] in ("playing", "paused") and started["via"] == "beta" and started["host"] == "alpha"
    assert started["resumed_from"] is None
    position_past(alpha, 2)
    log = beta.log.read_text()
    assert re.search(rf"media: 20[06] GET /media/{re.escape(content)} (range bytes=\d+-\d* )?from 127\.0\.0\.1", log), \
        log[-2000:]
    assert "range bytes=" in log  # mpv reads by ranges
    assert not list((alpha.state_dir / "media").glob("**/*.mkv"))  # nothing was copied to alpha

    # 2. Transport control, with the status following.
    paused = alpha.cli("player", "pause", "--json")
    assert paused["paused"] is True and paused["state"] == "paused"
    held = status(alpha)["position_s"]
    wait_until(lambda: status(alpha)["paused"], 5, "the pause to show")
    assert abs(status(alpha)["position_s"] - held) < 0.5
    assert alpha.cli("player", "resume", "--json")["paused"] is False
    alpha.cli("player", "seek", "10", "--json")
    s = position_past(alpha, 10)
    assert s["position_s"] < 14 and s["duration_s"] == pytest.approx(CLIP_S, abs=0.5)

    # 3. Stop saves the position; the list puts it first, on both hosts ("continue watching").
    stopped = alpha.cli("player", "stop", "--json")
    saved_at = stopped["position_s"]
    assert stopped["state"] == "idle" and 10 <= saved_at < 16
    first = alpha.cli("library", "list", "--json")[0]
    assert first["content"] == content and first["watch"]["resumable"] and not first["watch"]["watched"]
    assert first["watch"]["position_s"] == pytest.approx(saved_at, abs=0.6) and first["watch"]["host"] == "alpha"

    def beta_sees_it():
        rows = beta.cli("library", "list", "--json")
        return rows[0]["watch"] if rows and rows[0]["watch"] else None

    travelled = wait_until(beta_sees_it, 20, "alpha's watch state to reach beta")
    assert travelled["host"] == "alpha" and travelled["position_s"] == pytest.approx(saved_at, abs=0.6)
    assert "▶" in alpha.cli("library", "list")

    # 4. Playing again without --start resumes within 2 s of where it stopped.
    again = alpha.cli("play", content, "--headless", "--json")
    assert again["resumed_from"]["host"] == "alpha"
    s = wait_until(lambda: (x := status(alpha))["state"] == "playing" and x["position_s"] is not None and x, 20,
                   "the resumed playback")
    assert abs(s["position_s"] - saved_at) <= 2.0, (s, saved_at)

    # 5. Watched at ≥ 90 %: play to the end; it leaves "continue watching".
    alpha.cli("player", "seek", str(CLIP_S - 3), "--json")
    wait_until(lambda: status(alpha)["state"] == "ended", 20, "the end of the clip")
    done = wait_until(lambda: (w := alpha.cli("library", "show", content, "--json")["watch"]) and w["watched"] and w,
                      10, "the item to be marked watched")
    assert not done["resumable"] and "✓" in alpha.cli("library", "list")

    # 6. Remote play: beta's own player, driven from alpha; beta plays its local file.
    remote = alpha.cli("play", content, "--on", "beta", "--headless", "--start", "1", "--json")
    assert remote["host"] == "beta" and remote["via"] == "local"
    position_past(alpha, 2, "beta")
    assert alpha.cli("player", "pause", "--on", "beta", "--json")["paused"] is True
    assert status(beta)["paused"] is True and status(alpha)["state"] == "ended"  # alpha's own player untouched
    assert "asks this host to pause" in beta.log.read_text()
    assert alpha.cli("player", "stop", "--on", "beta", "--json")["state"] == "idle"

    # 7. Refusals are clear: nothing playing, an unknown host, an item nobody holds.
    res = alpha.run_cli("player", "pause")
    assert res.returncode != 0 and "nothing is playing" in res.stderr
    res = alpha.run_cli("player", "status", "--on", "gamma")
    assert res.returncode == 2 and "unknown host" in res.stderr
    res = alpha.run_cli("play", "No.Such.Film-deadbeef", "--headless")
    assert res.returncode == 2 and "no host holds" in res.stderr

"""Long work is a job: `torrent add` of a large path answers at once and shows hashing progress.

A real daemon with the embedded libtorrent engine seeds a 1 GiB file (sparse: no disk used, but
every byte is hashed). The API answers ``202`` with a running job at once; polling the job shows
the bytes hashed grow to the total; the CLI follows the job to its end and ``--json`` prints it.
"""

from __future__ import annotations

import os

import pytest

from cli.client import call
from tests.agent.procs import AgentProc, wait_until

SIZE = 1 << 30


@pytest.fixture
def seeder(tmp_path):
    agent = AgentProc(tmp_path, "seeder", env={"TVA_TORRENT_ENGINE": "libtorrent"})
    agent.cli("init", "--name", "jobs")
    media = agent.state_dir / "media"
    media.mkdir(parents=True, exist_ok=True)
    for name in ("big.bin", "other.bin"):
        with open(media / name, "wb") as f:
            f.truncate(SIZE)
    agent.start()
    yield agent
    agent.kill()


def test_a_big_path_is_a_job_with_progress(seeder):
    info = seeder.daemon_info()
    answer = call(info, "POST", "/torrents", {"source": "big.bin"})
    job = answer["job"]
    assert job["state"] == "running" and job["kind"] == "torrent add" and job["result"] is None
    seen: list[int] = []

    def finished() -> bool:
        current = call(info, "GET", f"/jobs/{job['id']}")
        seen.append(current["progress"]["bytes_done"])
        return current["state"] != "running" and current

    final = wait_until(finished, 120, "the hashing job to finish", interval_s=0.05)
    assert final["state"] == "done" and final["error"] is None, final
    assert final["progress"] == {"bytes_done": SIZE, "bytes_total": SIZE}
    assert any(0 < done < SIZE for done in seen), seen[:20]  # progress seen part-way, not just 0 and 100 %
    assert seen == sorted(seen)
    assert final["result"]["kind"] == "seed" and len(final["result"]["infohash"]) == 40
    assert [j["id"] for j in call(info, "GET", "/jobs")] == [job["id"]]

    # The CLI follows the job until it ends; --json prints the finished job.
    out = seeder.cli("torrent", "add", str(seeder.state_dir / "media" / "other.bin"), "--json")
    assert out["state"] == "done" and out["progress"]["bytes_total"] == SIZE and out["result"]["infohash"]
    # A failing job fails the command with the job's error and the same exit code as a direct refusal.
    res = seeder.run_cli("torrent", "add", str(seeder.state_dir.parent / "outside.bin"))
    assert res.returncode == 2 and "media root" in res.stderr, res
    assert os.path.getsize(seeder.state_dir / "media" / "big.bin") == SIZE

"""The live daemon passes schemathesis with every check, run as its CLI (`st run … --checks all`).

schemathesis 4's pytest plugin does not run under pytest 9 (FIELD-NOTES), so the test runs the
`st` command against a real `tva-agent run` with the API token. Every check: no 5xx, documented
status codes, content types and headers, response schemas, schema-violating requests rejected
and schema-valid ones accepted, `Allow` on every 405 (RFC 9110), and so on. Whatever the fuzzer
managed to store (pins, holdings) must leave every read answering afterwards: before one set of
limits, a fuzzed pin with max_copies 510 made every read answer 400.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.agent.procs import AgentProc

ST = str(Path(sys.executable).with_name("st"))
READS = (("status",), ("hosts",), ("holdings", "list"), ("custody",), ("duties",), ("peers-for", "ab" * 20))


def test_live_daemon_passes_every_schemathesis_check(tmp_path):
    agent = AgentProc(tmp_path, "fuzzed")
    agent.cli("init", "--name", "fuzz")
    agent.start()
    try:
        info = agent.daemon_info()
        res = subprocess.run(
            [ST, "run", f"http://{info['api']}/openapi.json", "--checks", "all", "--max-examples", "100",
             "-H", f"Authorization: Bearer {info['token']}", "--no-color", "--generation-database", "none",
             "--report-dir", str(tmp_path / "report")],
            capture_output=True, text=True, timeout=900, cwd=tmp_path)
        assert res.returncode == 0, res.stdout[-8000:] + res.stderr[-2000:]
        assert " passed" in res.stdout and "failure" not in res.stdout.split("SUMMARY")[-1]
        for cmd in READS:
            out = agent.run_cli(*cmd, "--json")
            assert out.returncode == 0, f"{cmd} after fuzzing: {out.stderr}"
        assert agent.proc.poll() is None
    finally:
        agent.kill()

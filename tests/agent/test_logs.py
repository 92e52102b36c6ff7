"""Logs people can read (agent.logs): formatted lines only, library noise demoted, one line per
change of a peer's state."""

from __future__ import annotations

import io
import json
import logging
import re
import sys

import pytest

from agent import logs

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: \S")


@pytest.fixture
def configured():
    """Configure logging as the daemon does, into a buffer; restore everything afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, sys.stdout, sys.stderr)
    lib = logging.getLogger("libp2p")
    lib_saved = (list(lib.handlers), lib.level, lib.propagate)
    buf = io.StringIO()

    def setup(level: str = "info", fmt: str = "text") -> io.StringIO:
        logs.setup(level, fmt, stream=buf, capture_prints=True)
        return buf

    yield setup
    sys.stdout, sys.stderr = saved[2], saved[3]
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    lib.handlers[:] = lib_saved[0]
    lib.setLevel(lib_saved[1])
    lib.propagate = lib_saved[2]


def dial_failures(n: int) -> None:
    """What py-libp2p logs, several times a second, while a peer is down."""
    dial = logging.getLogger("libp2p.transport.tcp.tcp")
    for _ in range(n):
        dial.error("Failed to open TCP stream: all attempts to connect to %s failed", "/ip4/127.0.0.1/tcp/9")


def test_library_noise_and_prints_become_formatted_lines_or_nothing(configured):
    buf = configured("info")
    dial_failures(50)
    logging.getLogger("libp2p.protocol_muxer").error("MultiselectClient handshake:\n  read failed:\n  EOF")
    print("Registry Stats: None")  # a library's print to stdout
    print("a library shouting on stderr", file=sys.stderr)
    logging.warning("Error getting transport addresses: %r", "peer ID not found")  # the root logger
    logging.getLogger("tva.mesh").warning("cannot reach beta at 3 address(es); retrying with back-off")
    lines = buf.getvalue().splitlines()
    # At the default level the library's dial failures and handshake dumps say nothing; a print to
    # stderr is one formatted line; what the agent says is there.
    assert all(TEXT_LINE.match(line) for line in lines), lines
    assert not any("Failed to open TCP stream" in line or "Multiselect" in line for line in lines)
    assert any("tva.stderr: a library shouting on stderr" in line for line in lines)
    assert any("cannot reach beta" in line for line in lines)
    assert len(lines) == 2


def test_in_debug_the_library_speaks_once_per_message_in_one_line(configured):
    buf = configured("debug")
    dial_failures(50)
    logging.getLogger("libp2p.host").error("Failed to open stream:\n  Error: x\n  Registry Stats: None")
    lines = [line for line in buf.getvalue().splitlines() if "tva.libp2p" in line]
    assert len(lines) == 2 and all(TEXT_LINE.match(line) for line in lines), lines
    assert "Error: x | Registry Stats: None" in lines[1]


def test_json_format_is_one_object_per_line(configured):
    buf = configured("info", "json")
    log = logging.getLogger("tva.supervisor")
    log.warning("component %s failed", "mesh")
    try:
        raise ValueError("boom")
    except ValueError:
        log.error("with a traceback", exc_info=True)
    records = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert [r["msg"] for r in records] == ["component mesh failed", "with a traceback"]
    assert records[0]["level"] == "warning" and records[0]["component"] == "tva.supervisor" and records[0]["ts"]
    assert "ValueError: boom" in records[1]["exc"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_peer_log_says_one_line_per_change_of_state(caplog):
    clock = Clock()
    caplog.set_level(logging.DEBUG, logger="tva.test")
    plog = logs.PeerLog(logging.getLogger("tva.test"), describe=lambda p: ("beta", 3), clock=clock)
    plog.reachability("B", False)  # the first try: not news (a joiner is often not dialable yet)
    plog.reachability("B", True)
    for _ in range(100):  # a dead peer: every send fails, one line
        plog.reachability("B", False)
        clock.now += 0.5
    plog.liveness("B", "suspect", 7)
    plog.liveness("B", "dead", 7)
    clock.now += 60
    plog.reachability("B", True)
    plog.liveness("B", "alive", 8)
    assert [r.getMessage() for r in caplog.records] == [
        "cannot reach beta at 3 address(es); retrying with back-off", "host beta is suspect (incarnation 7)",
        "host beta is dead (incarnation 7)", "beta reachable again after 110 s", "host beta is alive (incarnation 8)"]


def test_a_flapping_peer_is_rate_limited_and_the_next_line_says_so(caplog):
    clock = Clock()
    caplog.set_level(logging.DEBUG, logger="tva.test")
    plog = logs.PeerLog(logging.getLogger("tva.test"), clock=clock, interval_s=10)
    plog.reachability("B", True)
    plog.reachability("B", True)
    for _ in range(20):  # flapping every 0.1 s for 2 s
        plog.reachability("B", False)
        plog.reachability("B", True)
        clock.now += 0.1
    assert len(caplog.records) == 2
    clock.now += 10
    plog.reachability("B", False)
    assert len(caplog.records) == 3 and "+19 earlier change(s) not shown" in caplog.records[-1].getMessage()

"""Logs people can read: every line through ``logging`` with time, level and component.

Measured on wave 1: in a three-agent run where one peer was killed, 55 of a survivor's 105 log
lines were py-libp2p's own — "Failed to open TCP stream: all attempts to connect to … failed",
several a second, with no time or level (its ``libp2p`` logger has no handler and does not
propagate, so Python's last-resort handler printed bare messages), plus multi-line handshake
dumps. So:

* ``setup`` gives the root logger one handler (text: ``time LEVEL component: message``; json: one
  object per line for journald), and gives ``libp2p`` a handler that demotes its records to DEBUG
  under ``tva.libp2p``, one line each (newlines folded), at most once per message template per
  ``LIBRARY_REPEAT_S``.
* Anything printed to stdout/stderr by a library while the daemon runs becomes a log record too
  (``capture_prints``), rate-limited the same way, and so does what a library logs through the
  root logger (the agent itself never does).
* What matters about a peer is said by ``PeerLog``: one line when it becomes unreachable ("cannot
  reach B at 3 addresses; retrying with back-off"), one when it answers again, one per liveness
  change — and never the same state of the same peer twice within ``PEER_LINE_INTERVAL_S`` (a
  flapping peer's extra lines are counted and mentioned in the next one).
"""

from __future__ import annotations

import io
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LIBRARY_REPEAT_S = 60.0
PEER_LINE_INTERVAL_S = 10.0
LINE_CHARS_MAX = 2000
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
               "level": record.levelname.lower(), "component": record.name, "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class RateLimit:
    """At most one pass per key per ``interval_s``; counts what it held back."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[object, float] = {}
        self.suppressed: dict[object, int] = {}

    def allow(self, key: object) -> bool:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self.suppressed[key] = self.suppressed.get(key, 0) + 1
            return False
        if len(self._last) > 4096:  # bounded: a flood of distinct messages cannot grow this for ever
            self._last.clear()
        self._last[key] = now
        return True

    def take_suppressed(self, key: object) -> int:
        return self.suppressed.pop(key, 0)


class RootRecords(logging.Filter):
    """py-libp2p also logs through the root logger (``logging.warning(…)``), where nothing says it
    is a library talking; the agent itself never logs there. Such records become DEBUG records of
    ``tva.lib``, once per message template per ``LIBRARY_REPEAT_S``."""

    def __init__(self) -> None:
        super().__init__()
        self.limit = RateLimit(LIBRARY_REPEAT_S)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "root":
            return True
        if not logging.getLogger().isEnabledFor(logging.DEBUG) or not self.limit.allow(record.msg):
            return False
        record.name, record.levelno, record.levelname = "tva.lib", logging.DEBUG, "DEBUG"
        record.msg, record.args = _one_line(record.getMessage()), None
        return True


class LibraryHandler(logging.Handler):
    """Re-emits a library's records as one-line DEBUG records of ``tva.<library>``, rate-limited."""

    def __init__(self, name: str, repeat_s: float = LIBRARY_REPEAT_S) -> None:
        super().__init__(logging.DEBUG)
        self.target = logging.getLogger(f"tva.{name}")
        self.limit = RateLimit(repeat_s)

    def emit(self, record: logging.LogRecord) -> None:
        if not self.target.isEnabledFor(logging.DEBUG) or not self.limit.allow((record.name, record.msg)):
            return
        try:
            text = record.getMessage()
        except Exception:  # a library's bad format string: not our crash
            text = str(record.msg)
        self.target.debug("%s: %s", record.name, _one_line(text))


class PrintCapture(io.TextIOBase):
    """A stand-in for sys.stdout/sys.stderr: each line printed becomes a log record."""

    def __init__(self, logger: logging.Logger, level: int) -> None:
        self.logger = logger
        self.level = level
        self.limit = RateLimit(LIBRARY_REPEAT_S)
        self._buf = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buf += text
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            if line.strip() and self.limit.allow(line):
                self.logger.log(self.level, "%s", _one_line(line))
        if len(self._buf) > LINE_CHARS_MAX:
            self.logger.log(self.level, "%s", _one_line(self._buf))
            self._buf = ""
        return len(text)

    def flush(self) -> None:
        pass


def _one_line(text: str) -> str:
    text = " | ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return text if len(text) <= LINE_CHARS_MAX else text[:LINE_CHARS_MAX] + "…"


def setup(level: str = "info", fmt: str = "text", *, stream: TextIO | None = None,
          capture_prints: bool = False) -> None:
    """Configure logging for this process (the daemon, or a command). Idempotent."""
    stream = stream or sys.__stderr__ or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RootRecords())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(level, logging.INFO))
    if capture_prints:
        take_over_library_logs()
        sys.stdout = PrintCapture(logging.getLogger("tva.stdout"), logging.DEBUG)  # type: ignore[assignment]
        sys.stderr = PrintCapture(logging.getLogger("tva.stderr"), logging.INFO)  # type: ignore[assignment]


def take_over_library_logs() -> None:
    """Route py-libp2p's loggers through ``LibraryHandler``. Its import resets its own logger (no
    handler, no propagation: Python's last-resort handler then prints bare lines), so it is
    imported first; call this wherever libp2p gets used (the daemon, `join`)."""
    import libp2p  # noqa: F401 — for its import-time logging set-up, which this then replaces

    library = logging.getLogger("libp2p")
    for old in list(library.handlers):
        library.removeHandler(old)
    library.addHandler(LibraryHandler("libp2p"))
    library.propagate = False
    library.setLevel(logging.DEBUG if logging.getLogger().level <= logging.DEBUG else logging.CRITICAL)


class PeerLog:
    """One line per change of a peer's state (see the module docstring)."""

    def __init__(self, logger: logging.Logger, *,
                 describe: Callable[[str], tuple[str, int]] = lambda peer: (peer[:16], 0),
                 interval_s: float = PEER_LINE_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.describe = describe
        self.clock = clock
        self.limit = RateLimit(interval_s, clock)
        self._reachable: dict[str, tuple[bool, float, bool]] = {}
        self._errors = RateLimit(300.0, clock)

    def _line(self, key: tuple, level: int, message: str, *args: object) -> None:
        if not self.limit.allow(key):
            return
        held = self.limit.take_suppressed(key)
        if held:
            message += f" (+{held} earlier change(s) not shown)"
        self.logger.log(level, message, *args)

    def reachability(self, peer: str, ok: bool) -> None:
        was = self._reachable.get(peer)  # (reachable, since, reached at least once)
        if was is not None and was[0] == ok:
            return
        now = self.clock()
        ever = ok or (was is not None and was[2])
        self._reachable[peer] = (ok, now, ever)
        if was is None or not was[2]:
            return  # not news until the peer was reached once (a joiner is often not dialable yet)
        name, addrs = self.describe(peer)
        if not ok:
            where = f" at {addrs} address(es)" if addrs else ""
            self._line((peer, "unreachable"), logging.WARNING, "cannot reach %s%s; retrying with back-off",
                       name, where)
        else:
            self._line((peer, "reachable"), logging.INFO, "%s reachable again after %.0f s", name, now - was[1])

    def liveness(self, peer: str, state: str, incarnation: int) -> None:
        name, _ = self.describe(peer)
        self._line((peer, state), logging.INFO, "host %s is %s (incarnation %d)", name, state, incarnation)

    def send_error(self, peer: str, exc: Exception) -> None:
        if self._errors.allow((peer, type(exc))):
            self.logger.error("sending to %s failed inside the transport", self.describe(peer)[0], exc_info=exc)

    def forget(self, peer: str) -> None:
        self._reachable.pop(peer, None)

"""The discrete-event loop: virtual time, an exactly replayable event order, and a trace.

Events are ordered by (time, sequence number). The sequence number is the order in which events
were scheduled, which is itself a function of the seed only — so two runs with one seed pop
events in the same order, and their traces are byte-identical. Nothing here reads a clock.
"""

from __future__ import annotations

import hashlib
import heapq
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from tva.errors import InvalidInput

Handler = Callable[[int, str, Any], None]


@dataclass(frozen=True)
class Event:
    at_ms: int
    seq: int
    kind: str
    target: str
    data: Any


class Trace:
    """A running SHA-256 over one line per event (and optionally the lines themselves)."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self._hash = hashlib.sha256()
        self._out = out
        self.events = 0

    def record(self, line: str) -> None:
        self.events += 1
        line += "\n"
        self._hash.update(line.encode())  # the digest of the lines, one update each
        if self._out is not None:
            self._out.write(line)

    def digest(self) -> str:
        return self._hash.hexdigest()


def describe(data: Any) -> str:
    """A short, deterministic fingerprint of an event's payload for the trace."""
    if isinstance(data, bytes | bytearray):
        return f"{len(data)}:{zlib.crc32(data):08x}"
    if isinstance(data, tuple):
        if len(data) == 2 and type(data[0]) is str and type(data[1]) is bytes:
            # a delivery, (sender, frame): most events; the general case's line, made at once
            return f"{data[0]},{len(data[1])}:{zlib.crc32(data[1]):08x}"
        return ",".join(describe(x) for x in data)
    if data is None:
        return "-"
    return str(data)


class World:
    """Virtual clock + event queue. Handlers are registered per event kind."""

    def __init__(self, trace: Trace | None = None) -> None:
        self.now_ms = 0
        self._queue: list[tuple[int, int, str, str, Any]] = []
        self._seq = 0
        self._handlers: dict[str, Handler] = {}
        self.trace = trace or Trace()
        self.after_event: Callable[[int], None] | None = None

    def on(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    def schedule(self, at_ms: int, kind: str, target: str = "", data: Any = None) -> None:
        if at_ms < self.now_ms:
            raise InvalidInput(f"event {kind} scheduled in the past ({at_ms} < {self.now_ms})")
        if kind not in self._handlers:
            raise InvalidInput(f"no handler for event kind {kind!r}")
        self._seq += 1
        heapq.heappush(self._queue, (int(at_ms), self._seq, kind, target, data))

    def pending(self) -> int:
        return len(self._queue)

    def run(self, until_ms: int, stop: Callable[[], bool] | None = None) -> int:
        """Process events with time <= until_ms; returns the number processed."""
        processed = 0
        queue = self._queue
        handlers = self._handlers
        record = self.trace.record
        while queue and queue[0][0] <= until_ms:
            at_ms, seq, kind, target, data = heapq.heappop(queue)
            self.now_ms = at_ms
            record(f"{at_ms} {seq} {kind} {target} {describe(data)}")
            handlers[kind](at_ms, target, data)
            processed += 1
            if self.after_event is not None:
                self.after_event(at_ms)
            if stop is not None and stop():
                break
        else:
            self.now_ms = max(self.now_ms, until_ms)
        return processed

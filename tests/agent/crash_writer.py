"""Child process for the SIGKILL test: writes generation after generation of one state file.

Usage: python crash_writer.py STATE_DIR PAYLOAD_BYTES (or ``run`` in a forked child).
Prints ``ready <gen>`` once it has read the current generation, then ``done <gen>`` after each
write returns. The parent kills it with SIGKILL at a moment of its choosing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.store import StateStore  # noqa: E402

NAME = "blob"


def payload(gen: int, size: int) -> bytes:
    """Generation ``gen``: its number, then a body that differs per generation in every byte."""
    return gen.to_bytes(8, "big") + bytes([gen % 251]) * (size - 8)


def generation_of(data: bytes, size: int) -> int:
    gen = int.from_bytes(data[:8], "big")
    if data != payload(gen, size):
        raise AssertionError(f"payload of generation {gen} is not intact")
    return gen


def run(state_dir: Path, size: int, out: TextIO) -> None:
    """Write generations forever (until killed), reporting on ``out``."""
    store = StateStore(state_dir)
    data = store.read(NAME)
    gen = 0 if data is None else generation_of(data, size)
    out.write(f"ready {gen}\n")
    out.flush()
    while True:
        gen += 1
        store.write(NAME, payload(gen, size))
        out.write(f"done {gen}\n")
        out.flush()


if __name__ == "__main__":
    run(Path(sys.argv[1]), int(sys.argv[2]), sys.stdout)

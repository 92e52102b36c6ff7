"""`tva-agent` entry point (filled in by the agent/CLI work)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("tva-agent: not built yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())

"""Human tables and machine JSON for every read command."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO


def emit_json(data: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout  # looked up per call: a caller may have redirected it
    json.dump(data, out, indent=2, sort_keys=True, default=str)
    out.write("\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(_cell(v) for v in value) or "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def table(rows: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]], out: TextIO | None = None,
          empty: str = "(none)") -> None:
    """Print ``rows`` as an aligned table; ``columns`` are (key, heading) pairs."""
    out = out or sys.stdout
    body = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    if not body:
        out.write(empty + "\n")
        return
    headings = [heading for _, heading in columns]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headings)]
    out.write("  ".join(h.upper().ljust(w) for h, w in zip(headings, widths, strict=True)).rstrip() + "\n")
    for r in body:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")


def short_id(peer_id: str | None) -> str:
    if not peer_id:
        return "-"
    return peer_id if len(peer_id) <= 16 else peer_id[:8] + "…" + peer_id[-6:]


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def key_values(pairs: Sequence[tuple[str, Any]], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        out.write(f"{key.ljust(width)}  {_cell(value)}\n")

"""Canonical JSON of the policy outputs, so every agent serves byte-identical answers.

Outputs are frozen dataclasses whose tuples are already in canonical order; this module only
turns them into plain JSON values (tuples → lists, frozensets → sorted lists) and bytes.
"""

from __future__ import annotations

import dataclasses
import json


def jsonable(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, frozenset | set):
        return sorted(jsonable(v) for v in value)  # type: ignore[type-var]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in sorted(value.items())}
    return value


def encode(value: object) -> bytes:
    """Deterministic bytes of an output (sorted keys, no whitespace, floats in repr form)."""
    return json.dumps(jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class JsonOutput:
    """Mixin for output dataclasses: ``to_json_dict()`` for the CLI and the HTTP API."""

    __slots__ = ()

    def to_json_dict(self) -> dict:
        out = jsonable(self)
        assert isinstance(out, dict)
        return out

"""Direct routes for the hottest reads: the same answers as the FastAPI routes, without FastAPI.

The server (``agent.http_server``) asks ``match(path)`` for a plain ``GET`` without a query or a
body that the door lets through. A match calls the very function the FastAPI route calls and
serializes the result with the same pydantic serializer FastAPI uses for the route's return type,
so the bytes are the same (``tests/agent/test_http_server.py`` compares them route by route). The
FastAPI routes stay: they answer everything else — a path parameter outside its pattern (FastAPI's
422), errors, HEAD, queries — and describe these routes in ``/openapi.json``.

A function that raises is not answered here: the request goes through FastAPI, whose exception
handlers give the error its usual status and JSON (reads change nothing, so running one twice is
harmless).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any

from pydantic import TypeAdapter

from agent import api_core

_OBJECT = TypeAdapter(dict)
_LIST = TypeAdapter(list[dict])
Answer = Callable[[], tuple[int, bytes]]


def _read(fn: Callable[..., Any], adapter: TypeAdapter) -> Callable[..., tuple[int, bytes]]:
    def answer(*args: Any) -> tuple[int, bytes]:
        return 200, adapter.dump_json(fn(*args))

    return answer


class FastRoutes:
    """``agent.http_server.DirectRoutes`` over an ``ApiContext``."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        service = lambda: ctx.service  # noqa: E731 — a context's service never changes, but stay late-bound
        self.fixed: dict[str, Callable[[], tuple[int, bytes]]] = {
            "/health": _read(lambda: {"ok": True}, _OBJECT),
            "/status": _read(lambda: service().status(), _OBJECT),
            "/hosts": _read(lambda: service().hosts(), _LIST),
            "/holdings": _read(lambda: service().holdings(), _LIST),
            "/custody": _read(lambda: service().custody(), _LIST),
            "/duties": _read(lambda: service().duties(), _LIST),
        }
        self.param: list[tuple[str, str, re.Pattern[str], Callable[[str], tuple[int, bytes]]]] = [
            ("/peers_for/", "/peers_for/{infohash}", re.compile(api_core.INFOHASH_PATTERN),
             _read(lambda ih: api_core.peers_for_answer(ctx, ih), _OBJECT)),
            ("/custodians_of/", "/custodians_of/{content}", re.compile(api_core.CONTENT_PATTERN),
             _read(lambda content: service().custodians_of(content), _OBJECT)),
        ]

    def match(self, path: str) -> tuple[str, Answer] | None:
        fn = self.fixed.get(path)
        if fn is not None:
            return path, fn
        for prefix, template, pattern, fn_ in self.param:
            if path.startswith(prefix):
                value = path[len(prefix):]
                if pattern.match(value):
                    return template, partial(fn_, value)
                return None  # outside the pattern: FastAPI's 422
        return None

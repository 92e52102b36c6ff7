"""Serving the route table over HTTP inside the daemon's nursery (``agent.http_server``: trio + h11),
behind the door (``agent.door``): the door is plain ASGI middleware in front of the app, and the
server's direct routes ask the same pure check."""

from __future__ import annotations

import json
import logging
import time

import trio

from agent import door
from agent.logs import RateLimit

log = logging.getLogger("tva.http")
REFUSAL_LOG_INTERVAL_S = 60.0


def os_error_in(exc: BaseException) -> OSError | None:
    """The OSError inside ``exc`` (servers raise it wrapped in exception groups), if any."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := os_error_in(inner)) is not None:
                return found
    return None


def bind_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class DoorMiddleware:
    """Applies ``agent.door.check`` to every HTTP request, reads the body within the route's limit
    (413 as soon as it is over, whatever the Content-Length said) and hands it on."""

    def __init__(self, app, token: str, body_limit) -> None:
        self.app = app
        self.token = token
        self.body_limit = body_limit  # (method, path) -> bytes
        self._logged = RateLimit(REFUSAL_LOG_INTERVAL_S)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        server = scope.get("server")
        req = door.Request(scope["method"], scope["path"], door.headers_from_asgi(scope.get("headers") or ()),
                           (str(server[0]), int(server[1])) if server else None)
        limit = self.body_limit(req.method, req.path)
        refusal = door.check(req, token=self.token, body_bytes_max=limit, now_ms=time.time_ns() // 1_000_000)
        body = bytearray()
        while refusal is None:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            refusal = door.too_large(len(body), limit)
            if not message.get("more_body", False):
                break
        if refusal is not None:
            client = (scope.get("client") or ("?",))[0]
            if self._logged.allow((refusal.status, client)):
                log.info("api: refused %s %s from %s: %s", req.method, req.path[:80], client, refusal.error)
            await _answer(send, refusal)
            return
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _answer(send, refusal: door.Refusal) -> None:
    payload = json.dumps({"error": refusal.error, "hint": refusal.hint}).encode()
    await send({"type": "http.response.start", "status": refusal.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})


def door_app(app, token: str):
    """``app`` (the route table) behind the door."""
    from agent.api import body_limits

    return DoorMiddleware(app, token, body_limits(app))


async def serve_api(app, binds: list[str], token: str, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` (the route table, put behind the door here) until cancelled, on our own trio +
    h11 server (``agent.http_server``) with the direct routes of the hottest reads
    (``agent.api_fast``) and the request observer ``app.state.observe_request`` if one is set
    (metrics). ``started(port)`` with the first bound port (a bind may ask for port 0)."""
    from agent.api_fast import FastRoutes
    from agent.http_server import HttpServer

    ctx = getattr(app.state, "ctx", None)
    server = HttpServer(door_app(app, token), token=token, direct=FastRoutes(ctx) if ctx is not None else None,
                        observe=getattr(app.state, "observe_request", None))
    pairs = []
    for bind in binds:
        host, _, port = bind.rpartition(":")
        pairs.append((host.strip("[]"), int(port)))
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(server.serve, pairs)
        task_status.started(int(bound[0][1]) if bound else pairs[0][1])

"""Serving the route table over HTTP inside the daemon's nursery (hypercorn's trio worker), behind
the door (``agent.door``): the door is plain ASGI middleware, so a faster server can take
hypercorn's place without touching it."""

from __future__ import annotations

import json
import logging

import trio

from agent import door
from agent.logs import RateLimit

log = logging.getLogger("tva.http")
REFUSAL_LOG_INTERVAL_S = 60.0


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
        refusal = door.check(req, token=self.token, body_bytes_max=limit)
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
    """Serve until cancelled; ``started(port)`` with the first bound port (a bind may ask for port 0)."""
    from hypercorn.config import Config as HyperConfig
    from hypercorn.trio import serve

    port = int(binds[0].rsplit(":", 1)[1])
    hc = HyperConfig()
    hc.bind = list(binds)
    hc.accesslog = None
    hc.errorlog = logging.getLogger("tva.http.hypercorn")
    hc.graceful_timeout = 1.0
    hc.keep_alive_timeout = 30
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(lambda task_status: serve(door_app(app, token), hc, task_status=task_status))
        task_status.started(int(bound[0].rsplit(":", 1)[1]) if bound else port)

"""Serving the API inside the daemon's nursery (hypercorn's trio worker)."""

from __future__ import annotations

import logging

import trio

from agent.api import AgentService, build_app

log = logging.getLogger("tva.http")


def bind_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve_api(service: AgentService, binds: list[str], token: str, *,
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
    app = build_app(service, token)
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(lambda task_status: serve(app, hc, task_status=task_status))
        bound = binds[0].rsplit(":", 1)[1] if binds else str(port)
        task_status.started(int(bound))

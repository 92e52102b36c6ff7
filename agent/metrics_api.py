"""``GET /metrics``: the route over ``agent.metrics`` (the token, as everywhere: see there)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from agent.api import Ctx
from tva.errors import DaemonUnavailable

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text format"}})
async def metrics(ctx: Ctx, request: Request) -> Response:
    """This daemon's metrics in the Prometheus text format (the token, as everywhere)."""
    ctx.need_daemon("metrics")
    m = getattr(request.app.state, "metrics", None)
    if m is None:
        raise DaemonUnavailable("this app serves no metrics", hint="the daemon's API does: tva-agent run")
    return Response(m.render(), media_type=CONTENT_TYPE_LATEST)

"""The agent's one route table: a FastAPI app that the daemon serves and the offline CLI calls.

Every command goes through these handlers, whether it reaches them over HTTP (the daemon, behind
``agent.door``) or in-process (``agent.inproc``: the CLI on a state dir with no daemon). So a
command validates the same way, says the same thing and maps to the same exit code online and
offline. Every error is JSON ``{"error": …, "hint": …}`` with a 4xx/5xx status — never a stack
trace.

Routes live in routers, one module each, listed in ``ROUTER_MODULES``; a module exposes
``router: fastapi.APIRouter`` and reaches the agent through the ``Ctx`` dependency. To add routes,
write such a module and append its name here. A route whose body may be larger than
``agent.door.BODY_BYTES_MAX`` declares ``openapi_extra={BODY_LIMIT_KEY: n}``.

FastAPI is chosen over bare Starlette for validated parameters and the OpenAPI document the tests
check the live server against; FIELD-NOTES puts its cost at ~25 % of raw Starlette throughput.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.api_context import ApiContext
from agent.door import BODY_BYTES_MAX
from tva.errors import Conflict, DaemonUnavailable, Forbidden, LocalError, NotFound, TvaError

log = logging.getLogger("tva.api")

ROUTER_MODULES: list[str] = ["agent.api_core", "agent.api_torrents", "agent.library_api", "agent.dashboard_api",
                              "agent.metrics_api", "agent.media_api", "agent.friends_api"]
DEBUG_ROUTER_MODULE = "agent.api_debug"  # only with fault injection enabled (tests, soak)
BODY_LIMIT_KEY = "x-body-bytes-max"


def get_ctx(request: Request) -> ApiContext:
    return request.app.state.ctx


Ctx = Annotated[ApiContext, Depends(get_ctx)]


class ErrorOut(BaseModel):
    error: str
    hint: str = ""


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": why} for status, why in (
        (400, "invalid request (the hint says how to fix it)"), (401, "bearer token required"),
        (403, "refused: wrong Host, a request from a web page, or this host's role does not allow it"),
        (404, "no such host, holding, pin or route"), (409, "refused: conflicting or untrustworthy data"),
        (413, "request body over the route's limit"), (415, "bodies must be application/json"),
        (422, "a parameter or body field is out of its domain"), (503, "needs the running daemon"),
    )
}


# What a person should type instead, by field name (the same for every route that has the field).
FIELD_HINTS = {
    "infohash": "40 hex characters (BitTorrent v1)",
    "content": "a content id: 1–128 letters, digits, '.', '_', ':' or '-'",
    "host": "a peer id or a host name (`tva-agent hosts` lists them)",
    "copies": "a whole number from 1 to 64", "max_copies": "a whole number from 1 to 64",
    "size_bytes": "a size in bytes, 0 or more", "ttl_ms": "from 1 s to 30 days",
    "policy": "public, f2f_only or search_only", "source": "local, public or private-tracker",
    "role": "admin, member or friend", "action": "up or down",
}


def error_response(status: int, message: str, hint: str = "") -> JSONResponse:
    return JSONResponse({"error": message, "hint": hint}, status_code=status)


def status_for(exc: TvaError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, DaemonUnavailable):
        return 503
    if isinstance(exc, Forbidden):
        return 403  # this host's role in the fleet does not allow it
    if isinstance(exc, LocalError) and not isinstance(exc, Conflict):
        return 400
    return 409  # a conflict, bad remote data, or a state of the fleet (e.g. this host was revoked)


def build_app(ctx: ApiContext, *, routers: list[str] | None = None) -> FastAPI:
    app = FastAPI(title="tva-agent", version="1", docs_url=None, redoc_url=None, responses=ERROR_RESPONSES)
    app.state.ctx = ctx

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "path", "query")]
        field = loc[-1] if loc else "request"
        return error_response(422, f"invalid {'.'.join(loc) or 'request'}: {first.get('msg', 'bad value')}",
                              FIELD_HINTS.get(field, ""))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        response = error_response(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            # RFC 9110 §15.5.6: Allow lists every method of the resource. Starlette names only
            # those of the first route matching the path, and a path here may have several.
            methods = {m for r in app.routes if getattr(r, "path_regex", None) is not None
                       and r.path_regex.match(request.url.path) for m in (getattr(r, "methods", None) or ())}
            response.headers["Allow"] = ", ".join(sorted(methods))
        return response

    @app.exception_handler(TvaError)
    async def tva_error(_request: Request, exc: TvaError):
        return error_response(status_for(exc), exc.message, exc.hint)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):  # a handler bug: logged, never a stack trace out
        log.error("api: %s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(500, f"internal error: {type(exc).__name__}", "the agent's log has the traceback")

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True}

    names = list(ROUTER_MODULES if routers is None else routers)
    if ctx.faults:
        names.append(DEBUG_ROUTER_MODULE)
    table: list[tuple[re.Pattern[str], frozenset[str], int]] = []
    for name in names:
        router = importlib.import_module(name).router
        app.include_router(router)
        for route in router.routes:
            if isinstance(route, APIRoute):
                limit = int((route.openapi_extra or {}).get(BODY_LIMIT_KEY, BODY_BYTES_MAX))
                table.append((route.path_regex, frozenset(route.methods or ()), limit))
    app.state.body_limits = table
    return app


def body_limits(app: FastAPI) -> Callable[[str, str], int]:
    """(method, path) -> the route's body limit in bytes, from the routes' declarations."""
    table: list[tuple[re.Pattern[str], frozenset[str], int]] = app.state.body_limits

    def limit_for(method: str, path: str) -> int:
        for regex, methods, limit in table:
            if method in methods and regex.match(path):
                return limit
        return BODY_BYTES_MAX

    return limit_for

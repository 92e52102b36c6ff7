"""The local HTTP API (FastAPI on hypercorn's trio worker, inside the daemon's nursery).

Reads are open to loopback clients and need ``Authorization: Bearer <token>`` from anywhere
else (the overlay address); writes are accepted only from loopback, or with the token.
Every error is JSON ``{"error": …, "hint": …}`` with a 4xx status — never a stack trace.
FastAPI is chosen over bare Starlette for its validated parameters and the OpenAPI document
that the tests check the live server against; FIELD-NOTES puts its cost at ~25% of raw
Starlette throughput, which the bench measures against a plain ``/health`` route.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
from typing import Any, Protocol

from fastapi import Body, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from tva.errors import Conflict, NotFound, RemoteDataError, TvaError

log = logging.getLogger("tva.api")

INFOHASH_PATTERN = r"^[0-9a-fA-F]{40}$"
CONTENT_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
HOST_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"


class AgentService(Protocol):
    """What the API (and the CLI's offline mode) can ask of an agent."""

    def status(self) -> dict[str, Any]: ...
    def hosts(self) -> list[dict[str, Any]]: ...
    def holdings(self) -> list[dict[str, Any]]: ...
    def custody(self) -> list[dict[str, Any]]: ...
    def duties(self) -> list[dict[str, Any]]: ...
    def reaper(self) -> list[dict[str, Any]]: ...
    def peers_for(self, infohash: str) -> dict[str, Any]: ...
    def custodians_of(self, content: str) -> dict[str, Any]: ...
    def add_holding(self, content: str, infohash: str, size_bytes: int, policy: str, source: str) -> dict: ...
    def remove_holding(self, content: str) -> dict[str, Any]: ...
    def pin(self, content: str, copies: int, max_copies: int | None) -> dict[str, Any]: ...
    def unpin(self, content: str) -> dict[str, Any]: ...
    def revoke(self, host: str, reason: str) -> dict[str, Any]: ...
    def invite(self, role: str, ttl_ms: int) -> dict[str, Any]: ...
    def wg_status(self) -> dict[str, Any]: ...
    async def wg_control(self, action: str) -> dict[str, Any]: ...


class ErrorOut(BaseModel):
    error: str
    hint: str = ""


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": why} for status, why in (
        (400, "invalid request (the hint says how to fix it)"), (401, "bearer token required off loopback"),
        (404, "no such host, holding, pin or route"), (409, "refused: conflicting or untrustworthy data"),
        (422, "a parameter or body field is out of its domain"),
    )
}


class HoldingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(pattern=CONTENT_PATTERN)
    infohash: str = Field(pattern=INFOHASH_PATTERN)
    size_bytes: int = Field(ge=0, le=1 << 50)
    # None: public for public sources, search_only (closed) for a private tracker until opened.
    policy: str | None = Field(default=None, pattern="^(public|f2f_only|search_only)$")
    source: str = Field(default="local", pattern="^(local|public|private-tracker)$")


class TorrentIn(BaseModel):  # [torrents] exactly one of source (magnet or path) and torrent_b64
    model_config = ConfigDict(extra="forbid")
    source: str | None = Field(default=None, min_length=1, max_length=8192)
    torrent_b64: str | None = Field(default=None, min_length=1, max_length=23 * 1024 * 1024)
    policy: str | None = Field(default=None, pattern="^(public|f2f_only|search_only)$")


class PinIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(pattern=CONTENT_PATTERN)
    copies: int = Field(ge=1, le=1000)
    max_copies: int | None = Field(default=None, ge=1, le=1000)


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = Field(pattern=HOST_PATTERN)
    reason: str = Field(default="", max_length=200)


class InviteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str = Field(default="member", pattern="^(member|friend)$")
    ttl_ms: int = Field(default=24 * 3600 * 1000, ge=1000, le=30 * 24 * 3600 * 1000)


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _error(status: int, message: str, hint: str = "") -> JSONResponse:
    return JSONResponse({"error": message, "hint": hint}, status_code=status)


def build_app(service: AgentService, token: str) -> FastAPI:
    app = FastAPI(title="tva-agent", version="1", docs_url=None, redoc_url=None, responses=ERROR_RESPONSES)
    bearer = re.compile(r"^Bearer ([A-Za-z0-9_\-]{16,128})$")

    @app.middleware("http")
    async def auth(request: Request, call_next):
        client = request.client.host if request.client else None
        if request.url.path != "/health" and not _is_loopback(client):
            match = bearer.match(request.headers.get("authorization", ""))
            if not match or not hmac.compare_digest(match.group(1), token):
                log.info("api: refused %s %s from %s (no valid token)", request.method, request.url.path, client)
                return _error(401, "a bearer token is required off loopback",
                              "send Authorization: Bearer <token> (tva-agent status --json shows where it lives)")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, f"invalid {where}: {first.get('msg', 'bad value')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(TvaError)
    async def tva_error(_request: Request, exc: TvaError):
        status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict | RemoteDataError) else 400
        return _error(status, exc.message, exc.hint)

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True}

    @app.get("/status")
    async def status() -> dict:
        return service.status()

    @app.get("/hosts")
    async def hosts() -> list[dict]:
        return service.hosts()

    @app.get("/holdings")
    async def holdings() -> list[dict]:
        return service.holdings()

    @app.get("/custody")
    async def custody() -> list[dict]:
        return service.custody()

    @app.get("/duties")
    async def duties() -> list[dict]:
        return service.duties()

    @app.get("/reaper")
    async def reaper() -> list[dict]:
        return service.reaper()

    @app.get("/peers_for/{infohash}")
    async def peers_for(infohash: str = Path(pattern=INFOHASH_PATTERN)) -> dict:
        return service.peers_for(infohash.lower())

    @app.get("/custodians_of/{content}")
    async def custodians_of(content: str = Path(pattern=CONTENT_PATTERN)) -> dict:
        return service.custodians_of(content)

    @app.get("/wg")
    async def wg_status() -> dict:
        return service.wg_status()

    @app.post("/wg/{action}")
    async def wg_control(action: str = Path(pattern="^(up|down)$")) -> dict:
        return await service.wg_control(action)

    # [torrents] the daemon's torrent engine (agent.torrents.TorrentManager as service.torrents)
    def _torrents():
        manager = getattr(service, "torrents", None)
        if manager is None:
            raise Conflict("this agent runs no torrent engine", hint="start the daemon: tva-agent run")
        return manager

    @app.get("/torrents")
    async def torrents_list() -> list[dict]:
        return await _torrents().listing()

    @app.post("/torrents", status_code=201)
    async def torrents_add(body: TorrentIn = Body()) -> dict:
        return await _torrents().add(body.source, body.torrent_b64, body.policy)

    @app.post("/reaper/apply")
    async def reaper_apply() -> dict:
        return await _torrents().apply_reaper()

    @app.post("/holdings", status_code=201)
    async def add_holding(body: HoldingIn = Body()) -> dict:
        return service.add_holding(body.content, body.infohash.lower(), body.size_bytes, body.policy, body.source)

    @app.delete("/holdings/{content}")
    async def remove_holding(content: str = Path(pattern=CONTENT_PATTERN)) -> dict:
        return service.remove_holding(content)

    @app.post("/pins", status_code=201)
    async def pin(body: PinIn = Body()) -> dict:
        return service.pin(body.content, body.copies, body.max_copies)

    @app.delete("/pins/{content}")
    async def unpin(content: str = Path(pattern=CONTENT_PATTERN)) -> dict:
        return service.unpin(content)

    @app.post("/revocations", status_code=201)
    async def revoke(body: RevokeIn = Body()) -> dict:
        return service.revoke(body.host, body.reason)

    @app.post("/invites", status_code=201)
    async def invite(body: InviteIn = Body()) -> dict:
        return service.invite(body.role, body.ttl_ms)

    from agent.library_api import library_router  # [library] /library/…: service.library

    app.include_router(library_router(service))
    return app

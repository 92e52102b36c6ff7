"""The dashboard: a static page served at ``/`` on the API's own address, and its login.

Same origin as the API, so the door (``agent.door``) stands in front of everything the page asks
for. The page itself (``agent/dashboard_ui``: HTML, one script, one style sheet, shipped in the
package; no CDN, no build step) shows nothing of the fleet: every figure comes from the API's
JSON routes, with a session.

Login (see ``agent.door`` for why a bearer session and not a cookie):

    POST /dashboard/login-codes   the token only (the CLI's `tva-agent dashboard`): a one-time code
    POST /login                   {"code": …} → {"session", "expires_at_ms"}: once per code, within
                                  ``LOGIN_CODE_MS``; the door lets it through without a token

Codes live in the daemon's memory only (a restart forgets them: ask for a new link); at most
``LOGIN_CODES_MAX`` wait at once (the oldest goes).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from importlib import resources
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from agent import door
from agent.api import Ctx, error_response

log = logging.getLogger("tva.dashboard")
router = APIRouter(tags=["dashboard"])

LOGIN_CODE_MS = 5 * 60 * 1000
LOGIN_CODES_MAX = 16
UI_FILES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
# The page runs only its own script and talks only to its own origin: what keeps a session in
# localStorage out of reach of anything injected.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache",
    "X-Frame-Options": "DENY",
}


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class LoginCodes:
    """One-time codes waiting to be traded for a session (the daemon's memory only)."""

    def __init__(self, clock_ms=_wall_ms) -> None:
        self.clock_ms = clock_ms
        self._codes: dict[str, int] = {}  # code -> expires_ms

    def mint(self) -> tuple[str, int]:
        now = self.clock_ms()
        self._codes = {c: exp for c, exp in self._codes.items() if exp > now}
        while len(self._codes) >= LOGIN_CODES_MAX:
            self._codes.pop(next(iter(self._codes)))
        code = secrets.token_urlsafe(24)
        self._codes[code] = now + LOGIN_CODE_MS
        return code, now + LOGIN_CODE_MS

    def redeem(self, code: str) -> bool:
        """True once for a code minted here and not expired; it is gone afterwards either way."""
        now = self.clock_ms()
        for known in list(self._codes):
            if hmac.compare_digest(known.encode(), code.encode()):
                return self._codes.pop(known) > now
        return False


def _codes(request: Request) -> LoginCodes:
    state = request.app.state
    if getattr(state, "login_codes", None) is None:
        state.login_codes = LoginCodes()
    return state.login_codes


def _ui(name: str) -> bytes:
    return resources.files("agent").joinpath("dashboard_ui", name).read_bytes()


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class LoginCodeOut(BaseModel):
    code: str
    expires_at_ms: int


class SessionOut(BaseModel):
    session: str
    expires_at_ms: int


@router.get("/", include_in_schema=False)
async def page() -> Response:
    return Response(_ui("index.html"), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.get("/ui/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    kind = UI_FILES.get(name)
    if kind is None:
        return Response(b'{"error":"no such file","hint":""}', status_code=404, media_type="application/json")
    return Response(_ui(name), media_type=kind, headers=PAGE_HEADERS)


@router.post("/dashboard/login-codes", status_code=201)
async def login_code(ctx: Ctx, request: Request) -> LoginCodeOut:
    """A one-time code for ``/#login=CODE`` (the token only: a dashboard session cannot mint one)."""
    ctx.need_daemon("the dashboard")
    code, expires_ms = _codes(request).mint()
    log.info("dashboard: a login link was made (valid %d s, once)", LOGIN_CODE_MS // 1000)
    return LoginCodeOut(code=code, expires_at_ms=expires_ms)


@router.post("/login", status_code=201, response_model=SessionOut,
             responses={401: {"description": "unknown, used or expired code"}})
async def login(ctx: Ctx, request: Request, body: LoginIn = Body()) -> Any:
    """Trade a one-time code for a dashboard session (a bearer value the door accepts)."""
    ctx.need_daemon("the dashboard")
    if not _codes(request).redeem(body.code):
        log.info("dashboard: a login with an unknown, used or expired code was refused")
        return error_response(401, "this login link is used, expired or unknown",
                              "run `tva-agent dashboard` for a new one (each link works once, for 5 minutes)")
    token = ctx.service.state.local.api_token
    session, expires_ms = door.new_session(token, _wall_ms(), secrets.token_hex(16))
    log.info("dashboard: a browser logged in")
    return SessionOut(session=session, expires_at_ms=expires_ms)


def login_url(api: str, code: str) -> str:
    """The link the CLI prints: the daemon's address (a wildcard bind shown as loopback)."""
    host, _, port = api.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", "::", ""):
        host = "::1" if host == "::" else "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/#login={code}"


def dashboard_info(result: dict[str, Any], api: str) -> dict[str, Any]:
    return {"url": login_url(api, result["code"]), "expires_at_ms": result["expires_at_ms"]}

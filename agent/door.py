"""The local API's door: which HTTP requests may reach a handler at all (pure; no server inside).

Verified on the wave-1 daemon: any web page could drive the API (a cross-origin form POST took the
fabric down; a DNS-rebound ``Host: evil.example`` read ``/status``), and any local user needed no
token. So, like Syncthing (API key + Host check + CSRF) and Tailscale's LocalAPI (only its own
clients), every request passes these checks before routing, in this order:

1. **Host** must name the address the connection arrived on (``server`` in ASGI terms) with its
   port — or, on loopback, ``localhost``/``127.0.0.1``/``[::1]`` with that port. A rebound domain
   name never matches, so a page cannot read answers through DNS rebinding.
2. **Browser context**: an ``Origin`` that is not the agent's own, or ``Sec-Fetch-Site`` saying
   cross-site/same-site, is refused: the CLI and scripts send neither.
3. **Token** (``Authorization: Bearer …``) on every request but the open ones (``GET /health``, the
   dashboard's static page and its login exchange) — loopback too: a local user or container without
   access to the 0600 state dir gets nothing. A *dashboard session* (below) is accepted in its place.
4. **Body**: any body must be ``application/json`` (a form or ``text/plain`` POST is what a page can
   send without a CORS preflight) and within the route's size limit.

**Dashboard sessions.** ``tva-agent dashboard`` (holding the token) asks the daemon for a one-time
login code and prints ``http://ADDR/#login=CODE``. The fragment never reaches a server, a proxy log or
the Referer; the page (served by this agent, so same origin) trades the code once, within minutes,
at ``POST /login`` for a session: ``s1.<expires_ms>.<nonce>.<mac>`` with mac = HMAC-SHA256(API
token, expiry and nonce). The page keeps it in ``localStorage`` (per origin: scheme, host *and port*)
and sends it as ``Authorization: Bearer`` like the CLI sends the token. No cookie, on purpose:
cookies are not isolated by port, so another local web server (another user's, on 127.0.0.1:8080)
would receive a session cookie on every visit, and a cookie is an ambient credential (CSRF); a bearer
header is sent only by our own page's code, so a forged cross-site request carries nothing. Sessions
are stateless (they survive a daemon restart), expire (``SESSION_MS``) and all end when the API token
changes. The page's Content-Security-Policy allows only its own scripts (no inline script, no other
origin), which is what keeps the stored session out of reach of injected code.

This module decides; the server shell (``agent.http``) applies it and counts the body's bytes as
they arrive. It is kept free of any HTTP library so a faster server can reuse it unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

BODY_BYTES_MAX = 64 * 1024  # every route's default; a route may declare its own (a .torrent upload)
# Open: liveness, and the dashboard's static page and login exchange (none shows anything of the fleet).
OPEN_PATHS = frozenset({("GET", "/health"), ("HEAD", "/health"), ("GET", "/"), ("HEAD", "/"),
                        ("POST", "/login")})
OPEN_PREFIXES = ("/ui/",)  # the dashboard's static assets (GET/HEAD only)
# A session may not mint login codes: only a holder of the token itself extends access.
TOKEN_ONLY_PATHS = frozenset({("POST", "/dashboard/login-codes")})
SESSION_MS = 12 * 3600 * 1000  # a dashboard session lasts this long after its login
SESSION_PREFIX = "s1"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_BEARER = re.compile(r"Bearer ([A-Za-z0-9_\-]{16,128})")
_SESSION = re.compile(r"Bearer (s1\.([0-9]{1,15})\.([0-9a-f]{32})\.([0-9a-f]{64}))")
TOKEN_HINT = "send Authorization: Bearer <token>; it is in daemon.json in the state dir (0600)"


@dataclass(frozen=True)
class Refusal:
    status: int  # 401, 403, 413, 415
    error: str
    hint: str = ""


@dataclass(frozen=True)
class Request:
    """What the door looks at. ``headers``: (lower-case name, value) pairs as received."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    server: tuple[str, int] | None  # the local address the connection arrived on


def header(req: Request, name: str) -> str | None:
    for key, value in req.headers:
        if key == name:
            return value
    return None


@lru_cache(maxsize=64)
def _host_forms(server: tuple[str, int]) -> frozenset[str]:
    """Every spelling of ``Host`` that names ``server`` (lower case, port included)."""
    host, port = server[0].lower(), server[1]
    names = {host}
    try:
        if ipaddress.ip_address(host.split("%")[0]).is_loopback:
            names.update(LOOPBACK_NAMES)
    except ValueError:
        pass
    forms = set()
    for name in names:
        shown = f"[{name}]" if ":" in name else name
        forms.add(f"{shown}:{port}")
        if port == 80:
            forms.add(shown)
    return frozenset(forms)


@lru_cache(maxsize=64)
def _own_origins(server: tuple[str, int]) -> frozenset[str]:
    return frozenset(f"http://{form}" for form in _host_forms(server))


def check(req: Request, *, token: str, body_bytes_max: int = BODY_BYTES_MAX,
          now_ms: int | None = None) -> Refusal | None:
    """None when the request may go on to its handler; else why not (and the status to answer).
    ``now_ms``: the wall clock, to accept dashboard sessions (None: the token alone)."""
    if req.server is not None:
        host = (header(req, "host") or "").strip().lower()
        if host not in _host_forms(req.server):
            return Refusal(403, f"refused: Host {host[:80]!r} is not this agent's address",
                           "use the address the agent listens on (tva-agent status shows it)")
        origin = header(req, "origin")
        if origin is not None and origin.strip().lower() not in _own_origins(req.server):
            return Refusal(403, "refused: a request from a web page of another origin",
                           "the API answers the CLI and scripts, not other web sites")
    if (header(req, "sec-fetch-site") or "").strip().lower() in ("cross-site", "same-site"):
        return Refusal(403, "refused: a cross-site browser request",
                       "the API answers the CLI and scripts, not other web sites")
    if not is_open(req.method, req.path):
        authorization = header(req, "authorization")
        if not token_ok(authorization, token) and not (
                now_ms is not None and (req.method, req.path) not in TOKEN_ONLY_PATHS
                and session_ok(authorization, token, now_ms)):
            return Refusal(401, "a bearer token is required", TOKEN_HINT)
    return check_body(req, body_bytes_max)


def is_open(method: str, path: str) -> bool:
    return (method, path) in OPEN_PATHS or (method in ("GET", "HEAD") and path.startswith(OPEN_PREFIXES))


def session_mac(token: str, expires_ms: int, nonce_hex: str) -> str:
    message = f"tva-dashboard-session|{expires_ms}|{nonce_hex}".encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def new_session(token: str, now_ms: int, nonce_hex: str) -> tuple[str, int]:
    """A dashboard session (the bearer value) and when it expires; ``nonce_hex``: 32 random hex
    digits from the shell."""
    if not token or not re.fullmatch(r"[0-9a-f]{32}", nonce_hex):
        raise ValueError("a session needs the API token and a 16-byte hex nonce")
    expires_ms = now_ms + SESSION_MS
    return f"{SESSION_PREFIX}.{expires_ms}.{nonce_hex}.{session_mac(token, expires_ms, nonce_hex)}", expires_ms


def session_ok(authorization: str | None, token: str, now_ms: int) -> bool:
    """A dashboard session minted with ``token`` and not expired (nor dated absurdly far ahead)."""
    match = _SESSION.fullmatch((authorization or "").strip())
    if not match or not token:
        return False
    expires_ms = int(match.group(2))
    if not now_ms < expires_ms <= now_ms + SESSION_MS:
        return False
    expected = session_mac(token, expires_ms, match.group(3))
    return hmac.compare_digest(match.group(4).encode(), expected.encode())


def token_ok(authorization: str | None, token: str) -> bool:
    match = _BEARER.fullmatch((authorization or "").strip())
    return bool(match and token and hmac.compare_digest(match.group(1).encode(), token.encode()))


def check_body(req: Request, body_bytes_max: int) -> Refusal | None:
    length_text = header(req, "content-length")
    chunked = "chunked" in (header(req, "transfer-encoding") or "").lower()
    length: int | None = None
    if length_text is not None:
        if not length_text.strip().isdigit():
            return Refusal(400, "invalid Content-Length")
        length = int(length_text)
    kind = header(req, "content-type")
    has_body = chunked or bool(length)
    if kind is not None or has_body:
        if kind is None or kind.split(";")[0].strip().lower() != "application/json":
            return Refusal(415, f"bodies must be application/json, not {(kind or 'none')[:60]!r}",
                           "send Content-Type: application/json")
    if length is not None and length > body_bytes_max:
        return Refusal(413, f"request body of {length} bytes is over this route's limit of {body_bytes_max}")
    return None


def too_large(received_bytes: int, body_bytes_max: int) -> Refusal | None:
    """For bodies without a Content-Length: called as bytes arrive."""
    if received_bytes > body_bytes_max:
        return Refusal(413, f"request body is over this route's limit of {body_bytes_max} bytes")
    return None


def headers_from_asgi(raw: Iterable[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    return tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw)

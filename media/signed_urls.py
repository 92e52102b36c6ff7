"""Signed, expiring media URLs (pure): the media plane's only credential.

Players — Roku's Video node, mpv, VLC, a TV's browser — fetch a URL and follow the relative URIs of
an HLS playlist; they cannot all send a header. So access rides in the query string:
``/media/<item>[/…]?exp=<unix seconds>&sig=<token>``, where ``sig`` is HMAC-SHA256 (truncated to
128 bits, base64url) under the serving host's own media key over the item and the expiry. One
signature covers the item's file and every HLS resource of it, so a playlist can hand its
segments the same query; it never opens another item, and it stops working at ``exp``.

The key never leaves its host: only the host that serves an item signs URLs for it (members ask
it over the mesh), so a URL says "the holder agreed, until then".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

KEY_BYTES = 32
SIG_BYTES = 16
TTL_S_MIN = 10
TTL_S_MAX = 7 * 24 * 3600
TTL_S_DEFAULT = 6 * 3600
QUERY_CHARS_MAX = 512
_SIG_RE = re.compile(r"[A-Za-z0-9_-]{22}")
_EXP_RE = re.compile(r"\d{1,12}")
DOMAIN = b"tva-media-url-v1\x00"


def _mac(key: bytes, item: str, expires_s: int) -> bytes:
    msg = DOMAIN + item.encode("utf-8") + b"\x00" + str(expires_s).encode()
    return hmac.new(key, msg, hashlib.sha256).digest()[:SIG_BYTES]


def sign(key: bytes, item: str, expires_s: int) -> str:
    """The ``exp=…&sig=…`` query that opens ``item`` until ``expires_s``."""
    if len(key) != KEY_BYTES:
        raise ValueError("media key must be 32 bytes")
    sig = base64.urlsafe_b64encode(_mac(key, item, expires_s)).rstrip(b"=").decode()
    return f"exp={expires_s}&sig={sig}"


def query_params(query: str) -> dict[str, str]:
    """``a=b&c=d`` → dict (first value wins; no percent-decoding: our values never need it)."""
    out: dict[str, str] = {}
    if len(query) > QUERY_CHARS_MAX:
        return out
    for part in query.split("&"):
        name, _, value = part.partition("=")
        out.setdefault(name, value)
    return out


def check(key: bytes, item: str, query: str, now_s: int) -> str | None:
    """None when the query opens ``item`` now; otherwise why not (for the log, never the client)."""
    params = query_params(query)
    exp, sig = params.get("exp", ""), params.get("sig", "")
    if not _EXP_RE.fullmatch(exp) or not _SIG_RE.fullmatch(sig):
        return "no valid signature in the URL"
    expected = base64.urlsafe_b64encode(_mac(key, item, int(exp))).rstrip(b"=").decode()
    # Compared as text: one canonical spelling per signature (no variants in the unused low bits).
    if not hmac.compare_digest(sig.encode(), expected.encode()):
        return "signature does not match this item"
    if int(exp) <= now_s:
        return "URL expired"
    return None


def clamp_ttl_s(ttl_s: int) -> int:
    return max(TTL_S_MIN, min(TTL_S_MAX, int(ttl_s)))

"""Talking to the daemon (HTTP over loopback, stdlib only) or, offline, to the same route table
in-process — and reading both answers the same way, so a command ends the same whichever it took.

Why stdlib here: `tva-agent status` against a running daemon must answer in well under a second,
so this path imports neither libp2p nor automerge nor an HTTP client library.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from agent.discovery import DAEMON_FILE, daemon_info  # noqa: F401 — re-exported for scripts and benches
from tva.errors import (
    Conflict,
    DaemonUnavailable,
    Forbidden,
    InvalidInput,
    NotFound,
    RemoteDataError,
    TvaError,
)

REQUEST_TIMEOUT_S = 10.0
RESPONSE_BYTES_MAX = 16 * 1024 * 1024


def call(info: dict[str, Any], method: str, path: str, body: dict | None = None,
         timeout_s: float = REQUEST_TIMEOUT_S) -> Any:
    """One request to the running daemon described by ``info`` (its daemon.json)."""
    return interpret(*_http(info, method, path, body, timeout_s))


def interpret(status: int, raw: bytes) -> Any:
    """The answer's JSON; an error status becomes the TvaError that fixes the command's exit code."""
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        raise RemoteDataError(f"the agent answered HTTP {status} with invalid JSON") from None
    if status < 400:
        return data
    message = data.get("error", f"HTTP {status}") if isinstance(data, dict) else f"HTTP {status}"
    hint = data.get("hint", "") if isinstance(data, dict) else ""
    raise error_for(status)(str(message), hint=str(hint))


def error_for(status: int) -> type[TvaError]:
    if status == 404:
        return NotFound
    if status == 403:
        return Forbidden
    if status == 409:
        return Conflict
    if status == 503:
        return DaemonUnavailable
    if 400 <= status < 500:
        return InvalidInput
    return RemoteDataError


def _http(info: dict[str, Any], method: str, path: str, body: dict | None, timeout_s: float) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a fresh loopback connection (no urllib: its imports cost ~200 ms)."""
    host, _, port = str(info["api"]).rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", "::", ""):  # a wildcard bind: talk to it on loopback, and say so in Host
        host = "::1" if host == "::" else "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    payload = json.dumps(body).encode() if body is not None else b""
    head = [f"{method} {path} HTTP/1.1", f"Host: {shown}:{port}", "Connection: close",
            "Accept: application/json", f"Content-Length: {len(payload)}"]
    if body is not None:
        head.append("Content-Type: application/json")
    if info.get("token"):
        head.append(f"Authorization: Bearer {info['token']}")
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
    sent = False
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
            sock.sendall(request)
            sent = True
            chunks, size = [], 0
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > RESPONSE_BYTES_MAX:
                    raise RemoteDataError("daemon answer is too large")
    except (OSError, ValueError) as exc:
        if sent and method != "GET":  # it has the request: it may still carry it out
            raise DaemonUnavailable(f"the daemon at {info['api']} took the request but did not answer ({exc})",
                                    hint="it may still carry it out when it catches up; check before retrying "
                                         "(nothing was written beside it)") from None
        raise DaemonUnavailable(f"cannot reach the daemon at {info['api']} ({exc})",
                                hint="is `tva-agent run` still running? its log says why it stopped") from None
    raw = b"".join(chunks)
    header, _, content = raw.partition(b"\r\n\r\n")
    try:
        status = int(header.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise RemoteDataError("daemon sent a malformed HTTP answer") from None
    if b"transfer-encoding: chunked" in header.lower():
        content = _dechunk(content)
    return status, content


def _dechunk(data: bytes) -> bytes:
    out, pos = [], 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            raise RemoteDataError("daemon sent a malformed chunked answer")
        try:
            size = int(data[pos:end].split(b";")[0], 16)
        except ValueError:
            raise RemoteDataError("daemon sent a malformed chunked answer") from None
        if size == 0:
            return b"".join(out)
        out.append(data[end + 2:end + 2 + size])
        pos = end + 2 + size + 2

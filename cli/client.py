"""Talking to a running daemon: discovery through the state dir, HTTP over loopback (stdlib only).

Why stdlib: `tva-agent status` against a running daemon must answer in well under a second, so
this path imports neither libp2p nor automerge nor an HTTP client library.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from tva.errors import Conflict, DaemonUnavailable, InvalidInput, NotFound, RemoteDataError

DAEMON_FILE = "daemon.json"
REQUEST_TIMEOUT_S = 10.0
RESPONSE_BYTES_MAX = 16 * 1024 * 1024


def daemon_info(state_dir: Path) -> dict[str, Any] | None:
    """The running daemon's API address and token, or None when no live daemon owns this state dir."""
    path = state_dir / DAEMON_FILE
    try:
        info = json.loads(path.read_text())
        pid = int(info["pid"])
        str(info["api"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # a stale file from a daemon that died
    except PermissionError:
        pass  # alive, owned by another user
    return info


def call(info: dict[str, Any], method: str, path: str, body: dict | None = None) -> Any:
    status, raw = _http(info, method, path, body)
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        raise RemoteDataError(f"daemon answered HTTP {status} with invalid JSON") from None
    if 400 <= status < 500:
        message = data.get("error", f"HTTP {status}") if isinstance(data, dict) else f"HTTP {status}"
        hint = data.get("hint", "") if isinstance(data, dict) else ""
        raise (NotFound if status == 404 else Conflict if status == 409 else InvalidInput)(str(message), hint=str(hint))
    if status not in (200, 201, 202):  # 202: accepted, e.g. a library scan started
        raise RemoteDataError(f"daemon error: HTTP {status}", hint="its log says more")
    return data


def _http(info: dict[str, Any], method: str, path: str, body: dict | None) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a fresh loopback connection (no urllib: its imports cost ~200 ms)."""
    host, _, port = str(info["api"]).rpartition(":")
    payload = json.dumps(body).encode() if body is not None else b""
    head = [f"{method} {path} HTTP/1.1", f"Host: {info['api']}", "Connection: close",
            "Accept: application/json", f"Content-Length: {len(payload)}"]
    if body is not None:
        head.append("Content-Type: application/json")
    if info.get("token"):
        head.append(f"Authorization: Bearer {info['token']}")
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=REQUEST_TIMEOUT_S) as sock:
            sock.sendall(request)
            chunks, size = [], 0
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > RESPONSE_BYTES_MAX:
                    raise RemoteDataError("daemon answer is too large")
    except (OSError, ValueError) as exc:
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

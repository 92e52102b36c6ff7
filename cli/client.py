"""Talking to a running daemon: discovery through the state dir, HTTP over loopback (stdlib only).

Why stdlib: `tva-agent status` against a running daemon must answer in well under a second, so
this path imports neither libp2p nor automerge nor an HTTP client library.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tva.errors import DaemonUnavailable, InvalidInput, RemoteDataError

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
    url = f"http://{info['api']}{path}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if info.get("token"):
        req.add_header("Authorization", f"Bearer {info['token']}")
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as resp:
            raw = resp.read(RESPONSE_BYTES_MAX + 1)
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read(65536))
            message, hint = str(err.get("error", exc.reason)), str(err.get("hint", ""))
        except (ValueError, AttributeError):
            message, hint = f"HTTP {exc.code} {exc.reason}", ""
        if 400 <= exc.code < 500:
            raise InvalidInput(message, hint=hint) from None
        raise RemoteDataError(f"daemon error: {message}", hint=hint) from None
    except (urllib.error.URLError, OSError) as exc:
        raise DaemonUnavailable(f"cannot reach the daemon at {info['api']} ({exc})",
                                hint="is `tva-agent run` still running? its log says why it stopped") from None
    if len(raw) > RESPONSE_BYTES_MAX:
        raise RemoteDataError("daemon answer is too large")
    try:
        return json.loads(raw)
    except ValueError:
        raise RemoteDataError("daemon answered with invalid JSON") from None

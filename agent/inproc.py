"""Calling the route table in-process: what the CLI does on a state dir with no daemon.

The same ASGI app the daemon serves (``agent.api.build_app``) answers a request given as
(method, path, JSON body); the CLI reads its status and JSON exactly as it reads a daemon's, so
a command's validation, message and exit code are the same online and offline. The door is not
in this path: the caller already holds the state dir itself (0700) and its writer lock.
"""

from __future__ import annotations

import json
from typing import Any

INPROC_SERVER = ("inproc", 0)


async def call_app(app, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    """One request through ``app``; returns (status, response body)."""
    payload = json.dumps(body).encode() if body is not None else b""
    raw_path, _, query = path.partition("?")
    headers = [(b"host", b"inproc"), (b"accept", b"application/json"),
               (b"content-length", str(len(payload)).encode())]
    if body is not None:
        headers.append((b"content-type", b"application/json"))
    from urllib.parse import unquote

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": unquote(raw_path), "raw_path": raw_path.encode(),
             "query_string": query.encode(), "root_path": "", "headers": headers,
             "client": ("inproc", 0), "server": INPROC_SERVER}
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}
        return {"type": "http.disconnect"}

    status = 500
    chunks: list[bytes] = []

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))

    await app(scope, receive, send)
    return status, b"".join(chunks)

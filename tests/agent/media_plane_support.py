"""A real media plane over a real library on loopback, and a raw HTTP/1.1 client that sends paths
exactly as written (URL libraries would normalise ``..`` away before it reaches the server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import trio

from agent.library_service import LibraryService
from agent.media_plane import MediaPlane
from media.hls_session import HlsLimits
from tests.media.library_support import library_config


@asynccontextmanager
async def running_plane(tmp: Path, hls: HlsLimits | None = None, **cfg) -> AsyncIterator[tuple[MediaPlane, LibraryService]]:
    config = library_config(tmp, media_port=0, listen=("/ip4/127.0.0.1/tcp/0",), **cfg)
    library = LibraryService(config)
    await library.scan_now()
    plane = MediaPlane(config, library)
    if hls is not None:
        plane.hls.limits = hls
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(plane.run)
            yield plane, library
            nursery.cancel_scope.cancel()
    finally:
        await library.aclose()


def url_of(plane: MediaPlane, key: str, *, hls: bool = False, ttl_s: int = 600) -> str:
    return plane.urls_for(key, ttl_s=ttl_s, hls=hls)["urls"][-1]["url"]  # loopback is last


def target_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


async def http(port: int, target: str, headers: dict[str, str] | None = None, *, method: str = "GET",
               host: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection; the whole answer (status, lower-case headers, body)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = bytearray()
        while chunk := await stream.receive_some(1 << 20):
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), fields, body


def limits(**kw) -> HlsLimits:
    return replace(HlsLimits(), **kw)

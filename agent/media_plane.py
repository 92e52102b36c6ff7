"""The HTTP media plane: what this host holds, to players, by signed URL (a supervised component).

Why a listener of its own rather than a route of the API: the API's door wants a bearer token on
every request, and players (Roku's Video node, mpv, VLC) cannot send one — nor should a URL
handed to a TV open the fleet's controls. So the media plane listens on its own port
(``media_port``, default 4813) with its own door: no token, but a signed, expiring URL per item
(``media.signed_urls``), and the same Host and Origin rules as the API's door (a DNS-rebound name
or a foreign web page gets 403). It serves only GETs of ``/media/<item>`` and the item's HLS
resources, nothing else, through a small trio + h11 server with zero-copy file bodies
(``media.http_server``).

Where it listens: loopback, and this host's tva0 addresses once the fabric has them. A host
without tva0 (mesh-only) serves on its mesh's underlay addresses instead (``media_underlay``), so
members can still stream from it; every request needs a signed URL either way.

What it serves: the file of a library item — an item id, or a content id whose payload is here —
and only if its real path lies under a media root (a symlink out of the roots, a torrent that
planted one, or a path trick answers 404: never a byte outside the item). HLS resources are
generated names parsed strictly, never paths.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path

import trio

from agent.door import _host_forms, _own_origins
from agent.logs import RateLimit
from media import hls_plan, http_ranges, signed_urls
from media.hls_session import HlsLimits, HlsService
from media.http_server import HttpServer, Request, Response, ServerLimits, open_listeners, text_response
from tva.errors import MediaBusy, MediaUnavailable

log = logging.getLogger("tva.media.plane")

KEY_FILE = "media.key"
RESOLVE_CACHE_S = 5.0
REBIND_CHECK_S = 1.0
_KEY_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_SEGMENT_RE = re.compile(r"(\d{5})\.ts")
_SUB_RE = re.compile(r"(\d{1,3})\.(m3u8|vtt)")
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"


def load_media_key(state_dir: Path) -> bytes:
    """This host's URL-signing key (32 random bytes, 0600), made on first use."""
    path = Path(state_dir) / KEY_FILE
    try:
        data = path.read_bytes()
        if len(data) == signed_urls.KEY_BYTES:
            return data
        log.warning("media: %s is damaged: making a new key (URLs signed before stop working)", path)
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(signed_urls.KEY_BYTES)
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return key


class MediaPlane:
    def __init__(self, cfg, library, *, overlay_addrs: Callable[[], tuple[str, ...]] = tuple,
                 underlay_hosts: Callable[[], list[str]] = list,
                 on_health: Callable[[str, str], None] | None = None,
                 clock_s: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.library = library
        self._overlay_addrs = overlay_addrs
        self._underlay_hosts = underlay_hosts  # concrete IPs this host's mesh is dialled at
        self._on_health = on_health or (lambda _s, _r: None)
        self.clock_s = clock_s
        self.key = load_media_key(cfg.state_dir)
        self.hls = HlsService(Path(cfg.state_dir) / "cache" / "hls", HlsLimits(
            transcodes_max=cfg.hls_transcodes_max, cache_bytes_max=cfg.hls_cache_bytes_max,
            idle_stop_s=cfg.hls_idle_stop_ms / 1000))
        self.server = HttpServer(self.handle, ServerLimits())
        self.port = 0
        self.binds: tuple[str, ...] = ()
        self._resolved: dict[str, tuple[float, str | None]] = {}
        self._refusals = RateLimit(60.0)

    # --- the component ------------------------------------------------------------------------------

    def bind_hosts(self) -> tuple[str, ...]:
        """Loopback, tva0's addresses, or (mesh-only) the underlay the mesh listens on."""
        overlay = tuple(self._overlay_addrs())
        hosts = ["127.0.0.1", *overlay]
        if not overlay and self.cfg.media_underlay:
            for addr in self.cfg.listen:
                parts = addr.split("/")
                if len(parts) > 2 and parts[1] in ("ip4", "ip6"):
                    hosts.append(parts[2])
        if "0.0.0.0" in hosts:  # a wildcard covers loopback and every address (binding both would clash)
            hosts = ["0.0.0.0", *(h for h in hosts if ":" in h)]
        if "::" in hosts:
            hosts = [h for h in hosts if ":" not in h or h == "::"]
        return tuple(dict.fromkeys(hosts))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve, and bind again whenever the set of addresses changes (tva0 coming or going)."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.hls.run)
            started = False
            while True:
                hosts = self.bind_hosts()
                listeners = await self._listen(hosts)
                self.binds = hosts
                async with trio.open_nursery() as serving:
                    await serving.start(self.server.serve, listeners)
                    log.info("media plane on %s (port %d)", ", ".join(hosts), self.port)
                    self._on_health("ok", "")
                    if not started:
                        started = True
                        task_status.started()
                    while self.bind_hosts() == hosts:
                        await trio.sleep(REBIND_CHECK_S)
                    serving.cancel_scope.cancel()

    async def _listen(self, hosts: tuple[str, ...]) -> list[trio.SocketListener]:
        port = self.port or self.cfg.media_port
        try:
            listeners, self.port = await open_listeners(hosts, port)
        except OSError as exc:
            from agent.config import DEFAULT_MEDIA_PORT

            if exc.errno != errno.EADDRINUSE or port != DEFAULT_MEDIA_PORT or self.port:
                raise
            log.warning("media: port %d is taken (another agent on this host?): using a free port", port)
            listeners, self.port = await open_listeners(hosts, 0)
        return listeners

    def status(self) -> dict:
        return {"port": self.port, "binds": list(self.binds), "connections": self.server.connections,
                "requests": self.server.requests, "bytes_sent": self.server.bytes_sent, "hls": self.hls.status()}

    # --- URLs ---------------------------------------------------------------------------------------

    def urls_for(self, key: str, *, ttl_s: int, hls: bool = False) -> dict:
        """Signed URLs of ``key`` on every address this plane serves, the best for others first."""
        if self.resolve(key) is None:
            from tva.errors import NotFound

            raise NotFound(f"{key[:80]!r} is not held here", hint="`tva-agent library list --local` shows what is")
        expires = int(self.clock_s()) + signed_urls.clamp_ttl_s(ttl_s)
        query = signed_urls.sign(self.key, key, expires)
        path = f"/media/{key}" + ("/hls/index.m3u8" if hls else "")
        out = []
        for via, host in self._advertised():
            shown = f"[{host}]" if ":" in host else host
            out.append({"via": via, "url": f"http://{shown}:{self.port}{path}?{query}"})
        return {"item": key, "expires_s": expires, "urls": out}

    def _advertised(self) -> list[tuple[str, str]]:
        out = [("overlay", h) for h in self.binds if h in self._overlay_addrs()]
        wildcard = any(h in ("0.0.0.0", "::") for h in self.binds)
        if not out or wildcard:
            for h in self._underlay_hosts():
                if h not in ("127.0.0.1", "::1") and (wildcard or h in self.binds):
                    out.append(("underlay", h))
        out.append(("loopback", "127.0.0.1"))
        return list(dict.fromkeys(out))

    # --- resolving an item to a file ----------------------------------------------------------------

    def resolve(self, key: str) -> str | None:
        """The real path of ``key``'s file, if held here and inside a media root (cached briefly)."""
        now = time.monotonic()
        cached = self._resolved.get(key)
        if cached is not None and now - cached[0] < RESOLVE_CACHE_S:
            return cached[1]
        found = self.library.local_file_for(key)
        real = None
        if found is not None:
            candidate = os.path.realpath(found[0])
            if _inside(candidate, self._roots()):
                real = candidate
            else:
                self._refused("outside", f"{key}: {found[0]} resolves outside the media roots ({candidate}): refused")
        if len(self._resolved) > 4096:
            self._resolved.clear()
        self._resolved[key] = (now, real)
        return real

    def _roots(self) -> list[str]:
        roots = [*self.library.roots(), str(self.cfg.media_dir())]
        return [os.path.realpath(r) for r in dict.fromkeys(roots)]

    def _open(self, real: str) -> tuple[int, os.stat_result] | None:
        """Open the resolved file without following a symlink swapped in since, and check what was
        opened is that regular file under a root (Linux names the opened file in /proc)."""
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            opened = os.readlink(f"/proc/self/fd/{fd}") if os.path.isdir("/proc/self/fd") else real
            if not stat.S_ISREG(st.st_mode) or opened != real or not _inside(opened, self._roots()):
                os.close(fd)
                return None
            return fd, st
        except OSError:
            os.close(fd)
            return None

    # --- the handler --------------------------------------------------------------------------------

    async def handle(self, req: Request) -> Response:
        response = await self._answer(req)
        if response.status < 400 or response.status == 416:
            extra = f" range {req.headers['range'][:60]}" if "range" in req.headers else ""
            log.info("media: %d %s %s%s from %s", response.status, req.method, req.target.split("?")[0][:120],
                     extra, req.client)
        return response

    async def _answer(self, req: Request) -> Response:
        refusal = self._door(req)
        if refusal is not None:
            return refusal
        parts = req.path_parts
        if parts is None or len(parts) < 2 or parts[0] != "media" or not _KEY_RE.fullmatch(parts[1]):
            return self._not_found(req, "no such resource")
        if req.method not in ("GET", "HEAD"):
            return text_response(405, "only GET and HEAD\n", headers=[("allow", "GET, HEAD")])
        key = parts[1]
        why = signed_urls.check(self.key, key, req.query, int(self.clock_s()))
        if why is not None:
            self._refused(("sig", req.client), f"{req.client}: {req.target.split('?')[0][:100]}: {why}")
            return text_response(403, "forbidden: this URL is not signed for this item, or it expired\n")
        real = self.resolve(key)
        if real is None:
            return self._not_found(req, f"{key} is not held here")
        rest = parts[2:]
        if not rest:
            return self._file(req, real, http_ranges.content_type_for(real))
        if rest[0] != "hls" or len(rest) < 2:
            return self._not_found(req, "no such resource")
        try:
            return await self._hls(req, real, rest[1:])
        except MediaBusy as exc:
            return text_response(503, exc.message + "\n", headers=[("retry-after", "5")])
        except MediaUnavailable as exc:
            return text_response(502, exc.message + "\n")
        except trio.TooSlowError:
            return text_response(504, "the segment was not ready in time\n")

    def _door(self, req: Request) -> Response | None:
        if req.server is None:
            return None
        host = (req.headers.get("host") or "").strip().lower()
        if host not in _host_forms(req.server):
            self._refused(("host", req.client), f"{req.client}: Host {host[:60]!r} is not this address: refused")
            return text_response(403, "forbidden: Host is not this agent's address\n")
        origin = req.headers.get("origin")
        site = (req.headers.get("sec-fetch-site") or "").strip().lower()
        if (origin is not None and origin.strip().lower() not in _own_origins(req.server)) or site == "cross-site":
            self._refused(("origin", req.client), f"{req.client}: a request from another web site: refused")
            return text_response(403, "forbidden: requests from other web sites are refused\n")
        return None

    def _not_found(self, req: Request, why: str) -> Response:
        self._refused(("404", req.client), f"{req.client}: {req.target.split('?')[0][:100]}: {why}")
        return text_response(404, "not found\n")

    def _refused(self, kind: object, line: str) -> None:
        if self._refusals.allow(kind):
            log.info("media: refused %s", line)

    def _file(self, req: Request, path: str, content_type: str) -> Response:
        opened = self._open(path)
        if opened is None:
            return self._not_found(req, "the file is gone or not a regular file under a media root")
        fd, st = opened
        facts = http_ranges.FileFacts(st.st_size, http_ranges.etag_for(st.st_size, st.st_mtime_ns, st.st_ino),
                                      int(st.st_mtime), content_type)
        ans = http_ranges.answer(req.method, req.headers, facts, boundary=secrets.token_hex(16),
                                 now_s=int(self.clock_s()))
        return Response(ans.status, list(ans.headers), ans.body, fd=fd)

    async def _hls(self, req: Request, real: str, rest: tuple[str, ...]) -> Response:
        opened = self._open(real)
        if opened is None:
            return self._not_found(req, "the file is gone")
        fd, st = opened
        os.close(fd)
        source = await self.hls.source_for(real, st)
        plan = source.plan
        query = req.query
        name = rest[0]
        if rest == ("index.m3u8",):
            return text_response(200, hls_plan.master_playlist(plan, query), content_type=PLAYLIST_TYPE)
        if rest == ("video.m3u8",):
            return text_response(200, hls_plan.media_playlist(plan, query), content_type=PLAYLIST_TYPE)
        if name == "seg" and len(rest) == 2 and (m := _SEGMENT_RE.fullmatch(rest[1])):
            i = int(m.group(1))
            if i >= plan.segment_count:
                return self._not_found(req, f"segment {i} is past the end")
            return self._generated(req, await self.hls.segment(source, i), "video/mp2t")
        if name == "sub" and len(rest) == 2 and (m := _SUB_RE.fullmatch(rest[1])):
            n = int(m.group(1))
            if n >= len(plan.subtitles) or not plan.subtitles[n].available:
                return self._not_found(req, f"no text subtitle track {n}")
            if m.group(2) == "m3u8":
                return text_response(200, hls_plan.subtitle_playlist(plan, n, query), content_type=PLAYLIST_TYPE)
            return self._generated(req, await self.hls.subtitle(source, n), "text/vtt; charset=utf-8")
        return self._not_found(req, "no such HLS resource")

    def _generated(self, req: Request, path: Path, content_type: str) -> Response:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return text_response(503, "the segment was evicted; retry\n", headers=[("retry-after", "1")])
        st = os.fstat(fd)
        facts = http_ranges.FileFacts(st.st_size, http_ranges.etag_for(st.st_size, st.st_mtime_ns, st.st_ino),
                                      int(st.st_mtime), content_type)
        ans = http_ranges.answer(req.method, req.headers, facts, boundary=secrets.token_hex(16),
                                 now_s=int(self.clock_s()))
        return Response(ans.status, list(ans.headers), ans.body, fd=fd)


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

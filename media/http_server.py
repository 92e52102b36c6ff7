"""A small HTTP/1.1 server for the media plane: trio + h11, file bodies sent with ``sendfile``.

Why not the API's server: the media plane moves gigabytes to players, and every byte through a
Python buffer costs (FIELD-NOTES: bare trio + h11 is the fastest Python HTTP here; hypercorn's
trio worker is 4-6× slower per request). Here a response body is a list of pieces — literal
bytes, or spans of an open file that go from the page cache to the socket with ``os.sendfile``
(zero-copy) where the platform has it, ``pread`` + send elsewhere. h11 does the protocol
(keep-alive, HEAD, framing) and is handed the file spans through its data passthrough.

Limits: ``connections_max`` at once (the next gets a 503 and is closed), a request head within
``head_bytes_max`` and ``head_timeout_s``, ``idle_timeout_s`` between keep-alive requests, no
request bodies (the media plane has no writes: 413), and ``stall_timeout_s`` for a client that
stops reading (a paused player is let alone for that long, then closed; players reconnect).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import unquote

import h11
import trio

from media.http_ranges import FileSpan

log = logging.getLogger("tva.media.http")

SENDFILE_CHUNK_BYTES = 4 * 1024 * 1024
COPY_CHUNK_BYTES = 256 * 1024
HAS_SENDFILE = hasattr(os, "sendfile")
SERVER_NAME = b"tva-agent-media"


@dataclass(frozen=True)
class ServerLimits:
    connections_max: int = 64
    head_bytes_max: int = 16 * 1024
    head_timeout_s: float = 15.0
    idle_timeout_s: float = 60.0
    stall_timeout_s: float = 1800.0


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # as received (percent-encoded), path and query
    path_parts: tuple[str, ...] | None  # percent-decoded segments; None when the path cannot be decoded
    query: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    client: str
    server: tuple[str, int] | None  # the local address the connection arrived on


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: Sequence[bytes | FileSpan] = ()
    fd: int | None = None  # the file FileSpans read from; closed once the response is sent
    on_sent: Callable[[int], None] | None = None  # told how many body bytes went out
    extra: dict = field(default_factory=dict)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def text_response(status: int, text: str, *, content_type: str = "text/plain; charset=utf-8",
                  headers: Sequence[tuple[str, str]] = ()) -> Response:
    data = text.encode()
    return Response(status, [("content-type", content_type), ("content-length", str(len(data))),
                             ("cache-control", "no-store"), *headers], (data,))


Handler = Callable[[Request], Awaitable[Response]]


class _Span:
    """A file span that h11 can count (``len``) and pass through to our writer untouched."""

    __slots__ = ("length", "offset")

    def __init__(self, span: FileSpan) -> None:
        self.offset, self.length = span.offset, span.length

    def __len__(self) -> int:
        return self.length


def split_target(target: str) -> tuple[tuple[str, ...] | None, str]:
    """``/a/b%20c?x=1`` → (("a", "b c"), "x=1"); a segment that decodes to "/", NUL, "." or ".."
    (or bad UTF-8) makes the path undecodable (None) — the caller answers 404."""
    path, _, query = target.partition("?")
    if not path.startswith("/"):
        return None, query
    parts = []
    for raw in path[1:].split("/"):
        try:
            part = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            return None, query
        if "/" in part or "\x00" in part or "\\" in part or part in (".", ".."):
            return None, query
        parts.append(part)
    return tuple(parts), query


class HttpServer:
    def __init__(self, handler: Handler, limits: ServerLimits | None = None) -> None:
        self.handler = handler
        self.limits = limits or ServerLimits()
        self._slots = trio.Semaphore(self.limits.connections_max)
        self.connections = 0
        self.requests = 0
        self.bytes_sent = 0

    async def serve(self, listeners: list[trio.SocketListener], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, nursery)
            task_status.started()

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:  # EMFILE and friends: say so, back off, keep serving
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        log.warning("media: cannot accept a connection (%s); retrying", exc.strerror)
                        await trio.sleep(0.1)
                        continue
                    raise
                nursery.start_soon(self._connection, stream)

    async def _connection(self, stream: trio.SocketStream) -> None:
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            await self._refuse_busy(stream)
            return
        self.connections += 1
        try:
            await self._serve_connection(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError, trio.TooSlowError):
            pass  # the client went away or stalled: nothing to answer
        except h11.ProtocolError as exc:
            log.debug("media: protocol error from a client: %s", exc)
        except Exception:
            log.exception("media: a connection failed")
        finally:
            self.connections -= 1
            self._slots.release()
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                await stream.aclose()

    async def _refuse_busy(self, stream: trio.SocketStream) -> None:
        body = b"too many connections\n"
        head = (b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 2\r\nconnection: close\r\n"
                b"content-type: text/plain\r\ncontent-length: %d\r\n\r\n" % len(body))
        with trio.move_on_after(2):
            try:
                await stream.send_all(head + body)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        await stream.aclose()

    async def _next_event(self, conn: h11.Connection, stream: trio.SocketStream, timeout_s: float):
        with trio.fail_after(timeout_s):
            while True:
                event = conn.next_event()
                if event is not h11.NEED_DATA:
                    return event
                data = await stream.receive_some(65536)
                conn.receive_data(data)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.head_bytes_max)
        sock = stream.socket
        try:
            server = sock.getsockname()[:2]
            client = str(sock.getpeername()[0])
        except OSError:
            return
        first = True
        while True:
            try:
                event = await self._next_event(conn, stream, self.limits.head_timeout_s if first
                                               else self.limits.idle_timeout_s)
            except h11.RemoteProtocolError as exc:
                await self._send_error(conn, stream, exc.error_status_hint or 400)
                return
            except trio.TooSlowError:
                return
            first = False
            if isinstance(event, h11.ConnectionClosed):
                return
            if not isinstance(event, h11.Request):
                return
            self.requests += 1
            body_waiting = False
            for name, value in event.headers:
                if (name == b"content-length" and value.strip() != b"0") or name == b"transfer-encoding":
                    body_waiting = True
            if body_waiting:
                await self._send_error(conn, stream, 413)
                return
            if not isinstance(await self._next_event(conn, stream, self.limits.head_timeout_s), h11.EndOfMessage):
                return
            target = event.target.decode("latin-1")
            parts, query = split_target(target)
            headers: dict[str, str] = {}
            for name, value in event.headers:
                key = name.decode("latin-1")
                text = value.decode("latin-1")
                headers[key] = f"{headers[key]}, {text}" if key in headers else text
            req = Request(event.method.decode("latin-1").upper(), target, parts, query, headers, client,
                          (str(server[0]), int(server[1])))
            response = await self.handler(req)
            try:
                sent = await self._send_response(conn, stream, req, response)
            finally:
                response.close()
            if response.on_sent is not None:
                response.on_sent(sent)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _send_error(self, conn: h11.Connection, stream: trio.SocketStream, status: int) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = f"{status}\n".encode()
        try:
            data = conn.send(h11.Response(status_code=status, reason=_reason(status), headers=[
                ("content-type", "text/plain"), ("content-length", str(len(body))), ("connection", "close")]))
            data += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            return
        with trio.move_on_after(5):
            await stream.send_all(data)

    async def _send_response(self, conn: h11.Connection, stream: trio.SocketStream, req: Request,
                             response: Response) -> int:
        headers = [("server", SERVER_NAME), *((k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers)]
        head = conn.send(h11.Response(status_code=response.status, headers=headers, reason=_reason(response.status)))
        if req.method == "HEAD" or response.status in (204, 304):
            await stream.send_all(head + conn.send(h11.EndOfMessage()))
            return 0
        sent = 0
        pending = bytearray(head)
        for piece in response.body:
            if isinstance(piece, FileSpan):
                for chunk in conn.send_with_data_passthrough(h11.Data(data=_Span(piece))):
                    if isinstance(chunk, _Span):
                        if pending:
                            await self._send_stalling(stream, bytes(pending))
                            pending.clear()
                        await self._send_file(stream, response.fd, chunk.offset, chunk.length)
                        sent += chunk.length
                    else:
                        pending += chunk
            else:
                pending += conn.send(h11.Data(data=piece))
                sent += len(piece)
                if len(pending) >= COPY_CHUNK_BYTES:
                    await self._send_stalling(stream, bytes(pending))
                    pending.clear()
        pending += conn.send(h11.EndOfMessage())
        await self._send_stalling(stream, bytes(pending))
        self.bytes_sent += sent
        return sent

    async def _send_stalling(self, stream: trio.SocketStream, data: bytes) -> None:
        with trio.fail_after(self.limits.stall_timeout_s):
            await stream.send_all(data)

    async def _send_file(self, stream: trio.SocketStream, fd: int | None, offset: int, length: int) -> None:
        if fd is None:
            raise RuntimeError("a file span without a file")
        sock = stream.socket
        end = offset + length
        if HAS_SENDFILE:
            while offset < end:
                try:
                    n = os.sendfile(sock.fileno(), fd, offset, min(SENDFILE_CHUNK_BYTES, end - offset))
                except BlockingIOError:
                    with trio.fail_after(self.limits.stall_timeout_s):
                        await trio.lowlevel.wait_writable(sock)
                    continue
                except OSError as exc:
                    if exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        break  # not for this kind of file or socket: the copy below takes over
                    raise trio.BrokenResourceError(str(exc)) from exc
                if n == 0:
                    raise trio.BrokenResourceError("the file ended before its span (changed while served?)")
                offset += n
                await trio.lowlevel.checkpoint()  # other connections get their turn
        while offset < end:
            data = os.pread(fd, min(COPY_CHUNK_BYTES, end - offset), offset)
            if not data:
                raise trio.BrokenResourceError("the file ended before its span (changed while served?)")
            await self._send_stalling(stream, data)
            offset += len(data)


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


async def open_listeners(hosts: Sequence[str], port: int) -> tuple[list[trio.SocketListener], int]:
    """One listener per host, all on one port (the first bind picks it when ``port`` is 0)."""
    listeners: list[trio.SocketListener] = []
    try:
        for host in hosts:
            found = await trio.open_tcp_listeners(port, host=host)
            listeners.extend(found)
            if port == 0:
                port = found[0].socket.getsockname()[1]
    except BaseException:
        for listener in listeners:
            await listener.aclose()
        raise
    return listeners, port

"""A small HTTP/1.1 server for the agent's API: trio + h11, serving an ASGI app inside the daemon's
nursery, with an optional table of direct routes for the hottest reads.

Why not hypercorn: its trio worker opens ~7 cancel scopes and several tasks per request; the agent's
``/peers_for`` did 887 req/s on one core where a bare trio + h11 loop answering the same JSON did
7,447 (FIELD-NOTES). This server spends one task and one cancel scope per *connection*: the
connection's deadline is moved (idle keep-alive, slow request head, slow body) instead of opening
a scope per wait; a response goes out in one ``send_all`` when its body is complete.

Two paths per request, one door (``agent.door``):
- **direct**: a ``GET`` that a ``DirectRoutes`` table matches, carrying no body, that the door lets
  through, is answered by the table's function — the same function the FastAPI route calls, and
  the same JSON bytes (``agent.api_fast``) — without going through FastAPI's dependency injection
  and response validation.
- **ASGI**: everything else (writes, refusals, ``/openapi.json``, the library, errors), through the
  app with ``agent.http.DoorMiddleware`` in front. ``scope["server"]`` is the address the
  connection arrived on, which the door's Host check needs. ASGI spec 2.4: a disconnect during a
  streamed response is an ``OSError`` from ``send``.

Limits: connections at once (more wait in the kernel's backlog), request head bytes, idle
keep-alive, head and body read time-outs. A malformed request gets a 400 and the connection ends.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote

import h11
import trio

from agent import door
from agent.logs import RateLimit

log = logging.getLogger("tva.http")

CONNECTIONS_MAX = 256
HEAD_BYTES_MAX = 16 * 1024
RECEIVE_BYTES = 64 * 1024
KEEP_ALIVE_S = 30.0  # an idle keep-alive connection is closed after this
HEAD_TIMEOUT_S = 10.0  # a request head (or a body chunk) must arrive within this
DRAIN_BYTES_MAX = 64 * 1024  # an unread request body is drained up to this, else the connection ends
ACCEPT_RETRY_S = 0.1
SWEEP_INTERVAL_S = 0.5  # time-outs are enforced to within this
SERVER_HEADER = (b"server", b"tva-agent")
JSON_HEADERS = ((b"content-type", b"application/json"),)
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f]")


class DirectRoutes(Protocol):
    """The fast table: ``match(path)`` → (route template, a function answering (status, JSON
    bytes)), or None to let the ASGI app answer."""

    def match(self, path: str) -> tuple[str, Callable[[], tuple[int, bytes]]] | None: ...


class RequestObserver(Protocol):
    """Told about every answered request (metrics): its route template, method, status, seconds."""

    def __call__(self, route: str, method: str, status: int, seconds: float) -> None: ...


def _no_observer(route: str, method: str, status: int, seconds: float) -> None:
    return None


@dataclass
class ServerLimits:
    connections_max: int = CONNECTIONS_MAX
    head_bytes_max: int = HEAD_BYTES_MAX
    keep_alive_s: float = KEEP_ALIVE_S
    head_timeout_s: float = HEAD_TIMEOUT_S


class _Closed(Exception):
    """The peer went away (or timed out): end the connection quietly."""


class HttpServer:
    def __init__(self, asgi_app, *, token: str, direct: DirectRoutes | None = None,
                 observe: RequestObserver | None = None, limits: ServerLimits | None = None,
                 wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        """``asgi_app``: the app *behind the door* (``agent.http.door_app``); ``token``: the door's,
        for the direct routes' check."""
        self.app = asgi_app
        self.token = token
        self.direct = direct
        self.observe = observe or _no_observer
        self.limits = limits or ServerLimits()
        self.wall_ms = wall_ms
        self._slots = trio.Semaphore(self.limits.connections_max)
        self._conns: set[_Conn] = set()
        self._logged = RateLimit(60.0)

    async def serve(self, binds: list[tuple[str, int]], *,
                    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on every (host, port) — port 0 picks one — and serve until cancelled;
        ``started`` with the bound (host, port) pairs."""
        listeners = []
        try:
            for host, port in binds:
                listeners.extend(await trio.open_tcp_listeners(port, host=host))
            bound = [tuple(ln.socket.getsockname()[:2]) for ln in listeners]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._sweep)
                for listener in listeners:
                    nursery.start_soon(self._accept_loop, listener, nursery)
                task_status.started(bound)
        finally:
            for listener in listeners:
                with trio.CancelScope(shield=True):
                    await listener.aclose()

    async def _sweep(self) -> None:
        """Ends connections whose read waited past its time-out (idle keep-alive, slow head or body)."""
        while True:
            await trio.sleep(SWEEP_INTERVAL_S)
            now = trio.current_time()
            for conn in list(self._conns):
                if conn.read_deadline <= now and conn.scope is not None:
                    conn.scope.cancel()

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            await self._slots.acquire()
            try:
                stream = await listener.accept()
            except OSError as exc:  # out of file descriptors: wait, do not spin or die
                self._slots.release()
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise
                if self._logged.allow("accept"):
                    log.warning("api: cannot accept a connection (%s); retrying", exc.strerror)
                await trio.sleep(ACCEPT_RETRY_S)
                continue
            nursery.start_soon(self._connection, stream)

    async def _connection(self, stream: trio.SocketStream) -> None:
        try:
            sock = stream.socket
            try:
                server = tuple(sock.getsockname()[:2])
                client = tuple(sock.getpeername()[:2])
            except OSError:
                return
            conn = _Conn(self, stream, server, client)
            with trio.CancelScope() as scope:
                conn.scope = scope
                self._conns.add(conn)
                try:
                    await conn.run()
                finally:
                    self._conns.discard(conn)
        except (_Closed, trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass
        except OSError as exc:
            if self._logged.allow(("os", exc.errno)):
                log.info("api: connection ended: %s", exc)
        finally:
            self._slots.release()
            with trio.CancelScope(shield=True):
                await stream.aclose()


class _Conn:
    """One client connection: requests one after another (keep-alive), never in parallel."""

    def __init__(self, server: HttpServer, stream: trio.SocketStream, local: tuple, client: tuple) -> None:
        self.srv = server
        self.stream = stream
        self.local = local
        self.client = client
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=server.limits.head_bytes_max)
        self.scope: trio.CancelScope | None = None
        self.read_deadline = math.inf  # when the read under way times out (inf: not reading)

    async def _next_event(self, timeout_s: float):
        """The next h11 event, reading from the socket as needed; a read that waits longer than
        ``timeout_s`` ends the connection (the server's sweeper cancels it: cheaper than moving a
        cancel scope's deadline twice per read)."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.read_deadline = trio.current_time() + timeout_s
            data = await self.stream.receive_some(RECEIVE_BYTES)
            self.read_deadline = math.inf
            self.h11.receive_data(data)  # b"" marks the end of the peer's data

    async def run(self) -> None:
        limits = self.srv.limits
        while True:
            try:
                first = self.h11.their_state is h11.IDLE
                event = await self._next_event(limits.keep_alive_s if first else limits.head_timeout_s)
            except h11.RemoteProtocolError as exc:
                await self._bad_request(exc)
                return
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return
            if not isinstance(event, h11.Request):
                return
            await self._handle(event)
            if self.h11.our_state is not h11.DONE:
                return
            if self.h11.their_state is h11.SEND_BODY and not await self._drain():
                return
            if self.h11.their_state is not h11.DONE:
                return
            try:
                self.h11.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _drain(self) -> bool:
        """Read and drop what is left of a request body the handler did not read."""
        seen = 0
        while seen <= DRAIN_BYTES_MAX:
            try:
                event = await self._next_event(self.srv.limits.head_timeout_s)
            except h11.RemoteProtocolError:
                return False
            if isinstance(event, h11.EndOfMessage):
                return True
            if not isinstance(event, h11.Data):
                return False
            seen += len(event.data)
        return False

    async def _bad_request(self, exc: h11.RemoteProtocolError) -> None:
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        status = exc.error_status_hint or 400
        body = json.dumps({"error": f"malformed request: {exc}"[:200], "hint": "send HTTP/1.1"}).encode()
        try:
            out = self.h11.send(h11.Response(status_code=status, headers=[
                *JSON_HEADERS, (b"content-length", str(len(body)).encode()), (b"connection", b"close")]))
            out += self.h11.send(h11.Data(data=body)) + self.h11.send(h11.EndOfMessage())
            await self.stream.send_all(out)
        except (h11.LocalProtocolError, trio.BrokenResourceError, OSError):
            pass

    async def _handle(self, request: h11.Request) -> None:
        started = time.perf_counter()
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("latin-1")
        raw_path, _, query = target.partition("?")
        if "%" in raw_path and _CONTROL_CHARS.search(unquote(raw_path)):
            # No route takes them, and a router whose patterns end in `$` would match a path with a
            # final newline as the path without it (…/items/a%0A answered as …/items/a). Only a
            # percent-escape can carry one: h11 refuses raw control characters in the target, and
            # the hot reads (no "%") skip the decoding.
            await self._send_whole(400, json.dumps({"error": "control characters in the path",
                                                    "hint": "percent-encoded control characters (%00–%1F, %7F) "
                                                            "are never part of a route"}).encode())
            self.srv.observe("unmatched", method, 400, time.perf_counter() - started)
            return
        direct = self.srv.direct
        if direct is not None and method == "GET" and "%" not in raw_path and not query:
            found = direct.match(raw_path)
            if found is not None and self._door_lets_through(request, method, raw_path):
                try:
                    status, body = found[1]()
                except Exception:  # FastAPI's handlers give the error its status and JSON
                    pass
                else:
                    await self._send_whole(status, body)
                    self.srv.observe(found[0], method, status, time.perf_counter() - started)
                    return
        status, route = await self._asgi(request, method, raw_path, query)
        self.srv.observe(route, method, status, time.perf_counter() - started)

    def _door_lets_through(self, request: h11.Request, method: str, path: str) -> bool:
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers)
        if any(k in ("content-length", "transfer-encoding") and v.strip() not in ("", "0") for k, v in headers):
            return False  # a GET with a body: the ASGI path decides what that means
        req = door.Request(method, path, headers, (str(self.local[0]), int(self.local[1])))
        return door.check(req, token=self.srv.token, now_ms=self.srv.wall_ms()) is None

    async def _send_whole(self, status: int, body: bytes) -> None:
        out = self.h11.send(h11.Response(status_code=status, headers=[
            SERVER_HEADER, *JSON_HEADERS, (b"content-length", str(len(body)).encode())]))
        out += self.h11.send(h11.Data(data=body)) + self.h11.send(h11.EndOfMessage())
        await self.stream.send_all(out)

    async def _asgi(self, request: h11.Request, method: str, raw_path: str, query: str) -> tuple[int, str]:
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": request.http_version.decode("ascii", "replace"), "method": method,
            "scheme": "http", "path": unquote(raw_path), "raw_path": raw_path.encode("latin-1"),
            "query_string": query.encode("latin-1"), "root_path": "",
            "headers": [(bytes(k), bytes(v)) for k, v in request.headers],
            "client": self.client, "server": self.local,
        }
        state = {"status": 500, "head": None, "started": False, "body_done": False, "done": False}

        async def receive() -> dict:
            if state["body_done"]:
                # The request is read: nothing more comes until the response is over. ASGI 2.4
                # apps learn of a disconnect from send() raising instead.
                await trio.sleep_forever()
            if self.h11.they_are_waiting_for_100_continue:
                await self.stream.send_all(self.h11.send(h11.InformationalResponse(status_code=100, headers=[])))
            try:
                event = await self._next_event(self.srv.limits.head_timeout_s)
            except h11.RemoteProtocolError:
                state["body_done"] = True
                return {"type": "http.disconnect"}
            if isinstance(event, h11.Data):
                return {"type": "http.request", "body": bytes(event.data), "more_body": True}
            state["body_done"] = True
            if isinstance(event, h11.EndOfMessage):
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                if state["started"]:
                    raise RuntimeError("the response was already started")
                state["started"] = True
                state["status"] = int(message["status"])
                state["head"] = h11.Response(status_code=state["status"],
                                             headers=[SERVER_HEADER, *message.get("headers", ())])
            elif kind == "http.response.body":
                if not state["started"] or state["done"]:
                    raise RuntimeError("a body without a response start, or after its end")
                out = b""
                if state["head"] is not None:
                    out = self.h11.send(state["head"])
                    state["head"] = None
                body = message.get("body", b"")
                if body and method != "HEAD":
                    out += self.h11.send(h11.Data(data=body))
                if not message.get("more_body", False):
                    out += self.h11.send(h11.EndOfMessage())
                    state["done"] = True
                if out:
                    await self.stream.send_all(out)

        try:
            await self.srv.app(scope, receive, send)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            raise _Closed from None
        except Exception:
            log.exception("api: %s %s failed in the server", method, raw_path[:80])
            if not state["started"]:
                await self._send_whole(500, json.dumps(
                    {"error": "internal error", "hint": "the agent's log has the traceback"}).encode())
                return 500, _route_of(scope)
            raise _Closed from None
        if not state["done"]:
            if state["started"]:  # the app ended a response it never finished: the client cannot trust it
                raise _Closed
            await self._send_whole(500, json.dumps({"error": "internal error: no response", "hint": ""}).encode())
            return 500, _route_of(scope)
        return state["status"], _route_of(scope)


def _route_of(scope: dict) -> str:
    """The route template Starlette matched (bounded label values for metrics)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"

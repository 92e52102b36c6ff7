"""A transport whose private-network key changes while it runs (the fleet key rotates on revoke).

libp2p fixes a host's pre-shared key when the host is made, so a key change means a new host: this
wrapper runs one inner transport at a time and, on ``switch_psk``, closes it and starts the next on
the very addresses the first had bound (peers' cached addresses stay right), replaying what callers
told it (peer addresses, the peer filter, the request and version handlers). Callers see one
``Transport``: ``incoming()`` reads the running host's lanes and moves on to the next host's after a
switch; ``send`` returns False (as for any unreachable peer) in the moment between two hosts.
Shell; the seam is ``mesh.transport.Transport``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from mesh.transport import PeerFilter, PeerId, RequestHandler, Transport, VersionHandler
from tva.errors import InvalidInput, PeerUnavailable

log = logging.getLogger(__name__)

MakeTransport = Callable[[bytes, tuple[str, ...]], Transport]  # (psk, listen addrs) -> a fresh transport


class RekeyableTransport:
    def __init__(self, make: MakeTransport, psk: bytes, listen_addrs: tuple[str, ...]) -> None:
        self._make = make
        self._inner: Transport = make(psk, tuple(listen_addrs))
        self._next: Transport | None = None
        self.local_peer: PeerId = self._inner.local_peer
        self._addrs: dict[PeerId, list[str]] = {}
        self._filter: PeerFilter | None = None
        self._handler: RequestHandler | None = None
        self._on_version: VersionHandler | None = None
        self._running = False
        self._finished = False
        self._scope: trio.CancelScope | None = None
        self._swapped = trio.Event()  # set (and replaced) each time another inner host starts
        self.switches = 0

    @property
    def limits(self) -> Any:
        return getattr(self._inner, "limits", None)

    # --- lifecycle ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        try:
            while True:
                inner = self._inner
                with trio.CancelScope() as scope:
                    self._scope = scope
                    async with trio.open_nursery() as nursery:
                        await nursery.start(inner.run)
                        self._running = True
                        self._swapped.set()
                        self._swapped = trio.Event()
                        if not started:
                            started = True
                            task_status.started()
                        await trio.sleep_forever()
                self._running = False
                if self._next is None:  # cancelled from outside: we are done
                    return
                self._inner, self._next = self._next, None
                self._replay(self._inner)
                self.switches += 1
                log.info("fleet key switched: the transport listens again on %s", ", ".join(self._bound))
        finally:
            self._running = False
            self._finished = True
            self._swapped.set()

    def switch_psk(self, psk: bytes) -> None:
        """Start over with ``psk`` on the same addresses (takes effect at once, inside ``run``)."""
        if self._scope is None or not self._running:
            raise InvalidInput("switch_psk() needs the transport running")
        self._bound = tuple(_without_peer_suffix(a, self.local_peer) for a in self._inner.listen_addrs())
        self._next = self._make(psk, self._bound)
        self._scope.cancel()

    def _replay(self, inner: Transport) -> None:
        for peer, addrs in self._addrs.items():
            inner.add_peer_addrs(peer, addrs)
        if self._filter is not None:
            inner.set_peer_filter(self._filter)
        if self._handler is not None:
            inner.set_request_handler(self._handler)
        if self._on_version is not None:
            inner.set_version_handler(self._on_version)

    # --- the Transport seam -----------------------------------------------------------------------

    def listen_addrs(self) -> list[str]:
        return self._inner.listen_addrs() if self._running else []

    def add_peer_addrs(self, peer: PeerId, addrs: list[str]) -> None:
        self._inner.add_peer_addrs(peer, addrs)  # validates (raises before we remember anything)
        known = self._addrs.get(peer, [])
        self._addrs[peer] = (list(dict.fromkeys(addrs)) + [a for a in known if a not in addrs])[:8]

    def incoming(self) -> _Incoming:
        return _Incoming(self)

    def set_version_handler(self, handler: VersionHandler) -> None:
        self._on_version = handler
        self._inner.set_version_handler(handler)

    def wire_version(self, peer: PeerId) -> int | None:
        return self._inner.wire_version(peer) if self._running else None

    def set_peer_filter(self, allowed: PeerFilter) -> None:
        self._filter = allowed
        self._inner.set_peer_filter(allowed)

    def set_request_handler(self, handler: RequestHandler) -> None:
        self._handler = handler
        self._inner.set_request_handler(handler)

    async def send(self, peer: PeerId, frame: bytes, *, bulk: bool = False) -> bool:
        if not self._running:
            return False
        try:
            return await self._inner.send(peer, frame, bulk=bulk)
        except InvalidInput:
            if self._running:
                raise
            return False  # the host went away under us (a switch): like any unreachable peer

    async def request(self, peer: PeerId, payload: bytes, timeout_ms: int) -> bytes:
        if not self._running:
            raise PeerUnavailable("the transport is switching to a new fleet key")
        return await self._inner.request(peer, payload, timeout_ms)

    def is_connected(self, peer: PeerId) -> bool:
        return self._running and bool(getattr(self._inner, "is_connected", lambda _p: False)(peer))

    def stats(self) -> dict[str, int]:
        inner = getattr(self._inner, "stats", lambda: {})()
        return {**inner, "psk_switches": self.switches}


class _Incoming:
    """The running host's incoming lanes; when a switch closes them, the next host's."""

    def __init__(self, owner: RekeyableTransport) -> None:
        self._owner = owner

    def __aiter__(self) -> _Incoming:
        return self

    async def __anext__(self) -> tuple[PeerId, bytes]:
        owner = self._owner
        while True:
            swapped = owner._swapped
            if owner._running:
                try:
                    return await owner._inner.incoming().receive()
                except trio.EndOfChannel:
                    pass  # that host stopped: a switch (or the end)
            if owner._finished:
                raise StopAsyncIteration
            await swapped.wait()


def _without_peer_suffix(addr: str, peer: str) -> str:
    suffix = f"/p2p/{peer}"
    return addr[: -len(suffix)] if addr.endswith(suffix) else addr

"""``WgFabric``: what the agent daemon and CLI call to keep ``tva0`` equal to the desired config.

Shell. The runtime renders a :class:`~wg.plan.desired.DesiredInterface` from the replicated state
(:func:`wg.plan.desired.render_desired`) and calls :meth:`WgFabric.reconcile` every interval; only
the difference is applied, so calling it again with the same input does nothing.

Calls are synchronous and short (a UAPI round trip plus a few netlink messages, a few ms); the
trio runtime runs them with ``trio.to_thread.run_sync``. Nothing here raises on a backend
failure: the report carries the error and the fabric logs it once per distinct message.
Without a backend (no root, nothing installed, disabled) the fabric is "mesh-only": reconcile
does nothing and ``mesh_only_reason`` says why, logged once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tva.errors import WgBackendError
from wg.backend import IFNAME_DEFAULT, WgBackend
from wg.plan.desired import DesiredInterface
from wg.plan.diff import ActualInterface, Op, diff
from wg.select import select_backend

log = logging.getLogger("tva.wg")


@dataclass(frozen=True)
class ReconcileReport:
    ops: tuple[Op, ...]  # what was (or, on error, was to be) applied
    applied: bool
    mesh_only_reason: str | None = None
    error: str | None = None
    duration_ms: float = 0.0

    @property
    def changed(self) -> bool:
        return self.applied and bool(self.ops)


@dataclass(frozen=True)
class PeerStatus:
    public_key: str
    endpoint: str | None
    handshake_age_s: int | None  # None: no handshake yet
    rx_bytes: int
    tx_bytes: int
    allowed_ips: tuple[str, ...]  # the peer's overlay addresses


@dataclass(frozen=True)
class FabricStatus:
    ifname: str
    backend: str | None  # "kernel", "userspace", "memory", None (mesh-only)
    reason: str  # why this backend, or why mesh-only
    up: bool
    addresses: tuple[str, ...]
    listen_port: int | None
    peers: tuple[PeerStatus, ...]
    error: str | None = None  # the last reconcile error, if the last reconcile failed


class WgFabric:
    def __init__(
        self,
        backend: WgBackend | None,
        *,
        reason: str = "",
        clock_s: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.reason = reason or ("no WireGuard backend: mesh-only" if backend is None else backend.kind)
        self._clock_s = clock_s
        self._logged: set[str] = set()
        self._last_error: str | None = None
        # The daemon reconciles from a worker thread while the API thread may ask for status:
        # one pyroute2 socket and one UAPI conversation at a time.
        self._lock = threading.RLock()
        if backend is None:
            self._log_once(self.reason)

    @classmethod
    def auto(
        cls,
        preference: str = "auto",
        *,
        ifname: str = IFNAME_DEFAULT,
        netns: str | None = None,
        sock_dir: Path | None = None,
    ) -> WgFabric:
        backend, reason = select_backend(preference, ifname=ifname, netns=netns, sock_dir=sock_dir)
        return cls(backend, reason=reason)

    @property
    def mesh_only_reason(self) -> str | None:
        return self.reason if self.backend is None else None

    def _log_once(self, message: str) -> None:
        if message not in self._logged:
            self._logged.add(message)
            log.warning("tva0: %s", message)

    def reconcile(self, desired: DesiredInterface) -> ReconcileReport:
        with self._lock:
            return self._reconcile(desired)

    def _reconcile(self, desired: DesiredInterface) -> ReconcileReport:
        start = time.perf_counter()
        if self.backend is None:
            return ReconcileReport((), False, mesh_only_reason=self.reason)
        ops: list[Op] = []
        try:
            actual = self.backend.actual()
            if not actual.exists:
                self.backend.up()
                actual = self.backend.actual()
            ops = diff(actual, desired, now_unix_s=int(self._clock_s()))
            if ops:
                self.backend.apply(ops)
        except WgBackendError as e:
            self._last_error = e.message
            self._log_once(e.message + (f" ({e.hint})" if e.hint else ""))
            return ReconcileReport(tuple(ops), False, error=e.message, duration_ms=_ms(start))
        self._last_error = None
        return ReconcileReport(tuple(ops), True, duration_ms=_ms(start))

    def _actual(self) -> ActualInterface:
        if self.backend is None:
            return ActualInterface()
        try:
            with self._lock:
                return self.backend.actual()
        except WgBackendError as e:
            self._last_error = e.message
            return ActualInterface()

    def status(self) -> list[PeerStatus]:
        now_s = int(self._clock_s())
        out = []
        for p in self._actual().peers:
            hs = p.last_handshake_unix_s
            out.append(
                PeerStatus(
                    public_key=p.public_key,
                    endpoint=p.endpoint,
                    handshake_age_s=max(0, now_s - hs) if hs else None,
                    rx_bytes=p.rx_bytes,
                    tx_bytes=p.tx_bytes,
                    allowed_ips=p.allowed_ips,
                )
            )
        return out

    def interface_status(self) -> FabricStatus:
        actual = self._actual()
        return FabricStatus(
            ifname=self.backend.ifname if self.backend else IFNAME_DEFAULT,
            backend=self.backend.kind if self.backend else None,
            reason=self.reason,
            up=actual.up,
            addresses=actual.addresses,
            listen_port=actual.listen_port,
            peers=tuple(self.status()),
            error=self._last_error,
        )

    def down(self) -> None:
        """Remove ``tva0`` and stop what the backend started (``tva-agent wg down``). Idempotent."""
        if self.backend is not None:
            try:
                with self._lock:
                    self.backend.down()
            except WgBackendError as e:
                self._log_once(e.message)
                raise

    def close(self) -> None:
        """Daemon shutdown: same as :meth:`down` (wireguard-go is our child and must not outlive us)."""
        self.down()


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0

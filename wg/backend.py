"""The seam between the fabric and a WireGuard implementation, plus an in-memory one.

A backend owns one interface. ``up()`` makes it exist (idempotent), ``actual()`` reports what it
has, ``apply(ops)`` carries out :mod:`wg.plan.diff` operations, ``down()`` removes the interface
and anything the backend started (idempotent). Failures raise ``WgBackendError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tva.errors import WgBackendError
from wg.plan.diff import ActualInterface, Op, apply_ops

IFNAME_DEFAULT = "tva0"


class WgBackend(Protocol):
    kind: str  # "kernel", "userspace", "memory"
    ifname: str

    def up(self) -> None: ...

    def down(self) -> None: ...

    def actual(self) -> ActualInterface: ...

    def apply(self, ops: Sequence[Op]) -> None: ...


class MemoryBackend:
    """Keeps the interface as a value; applies ops with the reference semantics of ``apply_ops``.

    ``fail_next_apply`` lets reconcile tests see a backend error without a real failure mode.
    """

    kind = "memory"

    def __init__(self, ifname: str = IFNAME_DEFAULT) -> None:
        self.ifname = ifname
        self.state = ActualInterface()
        self.applied: list[list[Op]] = []
        self.fail_next_apply: str | None = None

    def up(self) -> None:
        if not self.state.exists:
            self.state = ActualInterface(exists=True)

    def down(self) -> None:
        self.state = ActualInterface()

    def actual(self) -> ActualInterface:
        return self.state

    def apply(self, ops: Sequence[Op]) -> None:
        if not self.state.exists:
            raise WgBackendError(f"{self.ifname} does not exist", hint="call up() first")
        if self.fail_next_apply is not None:
            why, self.fail_next_apply = self.fail_next_apply, None
            raise WgBackendError(why)
        self.applied.append(list(ops))
        self.state = apply_ops(self.state, ops)

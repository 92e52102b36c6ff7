"""The node's gate for signed records and its log of refusals.

``SignatureGate.verify`` is what the failure detector and the presence table check signatures
with. Per received frame it allows at most ``signature_checks_per_frame_max`` checks (~140 µs
each), and none after the frame carried one forgery — an honest relay only relays what it
verified, so a forgery marks its sender. A record that cannot be checked raises ``Unchecked``;
the node skips it (counted), and anti-entropy brings it again from an honest peer.

``refused`` logs a refusal (a forged record, a bad frame or delta) at most once per
``forgery_log_interval_ms`` per sender, saying how many were refused since: counters count every
one, but a rogue — or a broken peer — cannot flood the log.
"""

from __future__ import annotations

from collections.abc import Container

from .config import MeshConfig
from .outbox import Outbox
from .signing import Verifier

LOCAL = "(local)"  # refusals of what the shell handed in (e.g. remembered presence)
NON_MEMBERS = "(non-members)"  # one log budget for every sender we do not admit


class Unchecked(Exception):
    """This frame's signature budget is spent, or it already carried a forgery: skip the record."""


class SignatureGate:
    def __init__(self, verifier: Verifier, config: MeshConfig, out: Outbox) -> None:
        self._verifier, self.cfg, self.out = verifier, config, out
        self.sender = ""  # who sent the frame being handled ("" for local events)
        self._checks_left = 0
        self._frame_forged = False
        self._log: dict[str, tuple[int, int | None]] = {}  # sender -> (refused since last line, when)

    def begin(self, sender: str) -> None:
        """A new event: a frame from ``sender`` gets the per-frame budget, a local event (``""``)
        is not limited."""
        self.sender = sender
        self._checks_left = self.cfg.signature_checks_per_frame_max if sender else 1 << 30
        self._frame_forged = False

    def verify(self, peer: str, sig: bytes, message: bytes) -> bool:
        if self._frame_forged or self._checks_left <= 0:
            raise Unchecked
        self._checks_left -= 1
        return self._verifier(peer, sig, message)

    def forged(self, what: str, subject: str, now: int, members: Container[str]) -> None:
        """A record about ``subject`` failed its signature: count it, log it (rate-limited)."""
        self.out.count(f"{what}_forged", notable=True)
        self._frame_forged = bool(self.sender)
        self.refused(self.sender or LOCAL, "a forged record", f"{what.replace('_', ' ')} about {subject[:16]} "
                     "not signed by it", now, members)

    def refused(self, sender: str, what: str, detail: str, now: int, members: Container[str]) -> None:
        key = sender if sender in members or sender == LOCAL else NON_MEMBERS
        count, last = self._log.get(key, (0, None))
        count += 1
        if last is None or now - last >= self.cfg.forgery_log_interval_ms:
            since = f" ({count} refusals from it since the last such line)" if count > 1 else ""
            self.out.log("warning", f"refused {what} from {key[:16]}: {detail}{since}")
            self._log[key] = (0, now)
        else:
            self._log[key] = (count, last)

    def forget(self, members: Container[str]) -> None:
        """Drop the log state of senders that are no longer members."""
        for key in [k for k in self._log if k not in members and k not in (LOCAL, NON_MEMBERS)]:
            del self._log[key]

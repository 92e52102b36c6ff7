"""Peers' presence (disk free, uptime, endpoints, class) remembered across a restart.

Presence is soft state: it rides the mesh's keep-alives and lives ``presence_ttl_for(n)`` after
receipt. A restarted agent would otherwise know no peer's disk or uptime until each one refreshes
(up to ``presence_refresh_for(n)``, which grows with the fleet), so planning runs blind meanwhile.
So the agent writes what it holds about its peers (never itself: its own presence is re-issued at
start) to the ``presence`` state file, and on start hands it back to the mesh core as
``RestorePresence``.

The file is only a hint, so every problem with it ends the same way: one warning line here (plus
``agent.store``'s own when the envelope fails its checksum; a good ``.prev`` is then used) and
nothing restored. It is never fatal and never touches any other state file. Format (msgpack, inside
``agent.store``'s checksummed envelope)::

    [2, saved_wall_ms, [[body, sig, remaining_ms], ...]]

``body``/``sig`` are each record exactly as its owner signed it (``mesh.core.frames`` presence
body): the core takes a remembered record only with its owner's signature, like any other, and
the body's fields are checked by the same decoder the wire uses. (Version 1 files, unsigned, are
ignored with one warning: presence is only a hint.)

``remaining_ms`` is how long each record was still valid when saved: the core counts a restored
record as received now, so without it a record heard just before a stop — or one only ever
restored, never heard again — would be stretched to a full TTL on every restart, and a host that
crash-loops while its peers are down would keep their presence alive for ever.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import msgpack
import trio

from agent.store import StateStore
from mesh.core.frames import PRESENCE_BODY_BYTES_MAX, SIGNATURE_BYTES, presence_from_body
from mesh.core.presence import as_presence
from mesh.core.types import Presence
from tva.errors import DecodeError, RemoteDataError, TvaError, UnsupportedVersion

log = logging.getLogger("tva.agent.presence")

PRESENCE_FILE = "presence"
PRESENCE_FORMAT_VERSION = 2
PRESENCE_SAVE_INTERVAL_MS = 60_000
PRESENCE_RECORDS_MAX = 16_384  # far above any fleet this agent is meant for; bounds a hostile file
REMAINING_MS_MAX = 2**48
# A file "saved" further in the future than this is not trusted (a clock step or a forged time);
# NTP steps of a few seconds are normal and must not throw a good file away.
CLOCK_SKEW_MS_MAX = 60_000

_FIELDS = 3


@dataclass(frozen=True)
class Remembered:
    """One decoded presence file: when it was saved and each record with its validity left then."""

    saved_wall_ms: int
    records: tuple[tuple[Presence, int], ...]  # (presence, remaining_ms at save); expires_ms is 0


def encode_presence(presence: Mapping[str, Presence], *, self_id: str, saved_wall_ms: int,
                    now_mono_ms: int, caps_mono_ms: Mapping[str, tuple[tuple[int, int], int]] | None = None) -> bytes:
    """The file's payload for ``presence`` (as ``MeshNode.presence()`` returns it), this node left out.

    ``caps_mono_ms`` maps peer -> ((incarnation, pseq), expires_mono_ms): a record still at that
    order has not been heard since it was restored, so it keeps the expiry it had, not the fresh
    TTL the core gave it."""
    caps = caps_mono_ms or {}
    rows = []
    for peer, p in sorted(presence.items()):
        if peer == self_id:
            continue
        expires = p.expires_ms
        cap = caps.get(peer)
        if cap is not None and cap[0] == (p.incarnation, p.pseq):
            expires = min(expires, cap[1])
        remaining = expires - now_mono_ms
        if remaining <= 0 or not p.body:
            continue
        rows.append([p.body, p.sig, min(remaining, REMAINING_MS_MAX)])
    return msgpack.packb([PRESENCE_FORMAT_VERSION, saved_wall_ms, rows], use_bin_type=True)


def decode_presence(data: bytes) -> Remembered:
    """Parse a payload; DecodeError or UnsupportedVersion when it is not one this build wrote.

    Each body is checked by the wire's own presence decoder (one rule, one place); signatures are
    the mesh core's to check."""
    try:
        top = msgpack.unpackb(data, raw=False, strict_map_key=True, max_str_len=0,
                              max_bin_len=PRESENCE_BODY_BYTES_MAX, max_ext_len=0, max_map_len=0,
                              max_array_len=max(PRESENCE_RECORDS_MAX, _FIELDS))
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise DecodeError(f"presence file is not msgpack ({type(exc).__name__})") from None
    if not isinstance(top, list) or not top:
        raise DecodeError("presence file: expected a list")
    if type(top[0]) is not int or top[0] != PRESENCE_FORMAT_VERSION:
        raise UnsupportedVersion(f"presence file format {top[0]!r:.20}, this build reads "
                                 f"{PRESENCE_FORMAT_VERSION}")
    if len(top) != 3 or type(top[1]) is not int or top[1] < 0 or not isinstance(top[2], list):
        raise DecodeError("presence file: expected [version, saved_wall_ms, records]")
    records = []
    for row in top[2]:
        if not isinstance(row, list) or len(row) != _FIELDS:
            raise DecodeError(f"presence file: a record is not a list of {_FIELDS} fields")
        body, sig, remaining = row
        if type(sig) is not bytes or len(sig) != SIGNATURE_BYTES or type(remaining) is not int \
                or not 0 <= remaining <= REMAINING_MS_MAX:
            raise DecodeError("presence file: a record has a field of the wrong type")
        try:
            rec = presence_from_body(body, sig, 0)
        except DecodeError as exc:
            raise DecodeError(f"presence file: {exc.message}") from None
        records.append((as_presence(rec, 0), remaining))
    return Remembered(top[1], tuple(records))


def fresh_records(remembered: Remembered, *, now_wall_ms: int, ttl_ms: int) -> tuple[tuple[Presence, int], ...]:
    """The records still worth restoring, with the validity each has left now.

    A file older than the TTL gives () rather than an error: that is normal after a long stop (the
    caller logs it at info). A file saved in the future beyond the skew is refused (DecodeError)."""
    age_ms = now_wall_ms - remembered.saved_wall_ms
    if age_ms < -CLOCK_SKEW_MS_MAX:
        raise DecodeError(f"presence file saved {-age_ms // 1000} s in the future (clock step?)")
    age_ms = max(0, age_ms)
    if age_ms > ttl_ms:
        return ()
    return tuple((p, remaining - age_ms) for p, remaining in remembered.records if remaining > age_ms)


class PresenceMemory:
    """Loads and saves the ``presence`` file for one agent.

    ``presence`` returns the core's current view (``MeshNode.presence``); ``mono_ms`` is the clock
    the core's ``expires_ms`` values are on; ``wall_ms`` survives restarts (the file's age)."""

    def __init__(self, store: StateStore, *, self_id: str, presence: Callable[[], Mapping[str, Presence]],
                 wall_ms: Callable[[], int], mono_ms: Callable[[], int],
                 save_interval_ms: int = PRESENCE_SAVE_INTERVAL_MS) -> None:
        self.store = store
        self.self_id = self_id
        self._presence = presence
        self._wall_ms = wall_ms
        self._mono_ms = mono_ms
        self.save_interval_ms = save_interval_ms
        # Saving is armed only once restore has run: an agent failing during start-up must not
        # overwrite a good memory with the empty view of a core that has heard nothing yet.
        self._armed = False
        self._caps: dict[str, tuple[tuple[int, int], int]] = {}  # restored peer -> (order, true expiry, mono)
        self._saved_key: dict[str, tuple[int, int]] | None = None
        self.saves = 0

    # --- restore --------------------------------------------------------------------------------

    def load(self, *, ttl_ms: int) -> tuple[Presence, ...]:
        """Records to submit as ``RestorePresence``; () when there is no file, or it is stale or bad
        (one log line). Never raises. Arms saving."""
        self._armed = True
        try:
            raw = self.store.read(PRESENCE_FILE)
            if raw is None:
                return ()
            remembered = decode_presence(raw)
            now_wall = self._wall_ms()
            fresh = fresh_records(remembered, now_wall_ms=now_wall, ttl_ms=ttl_ms)
        except (OSError, RemoteDataError) as exc:
            message = exc.message if isinstance(exc, TvaError) else str(exc)
            log.warning("ignoring the remembered presence in %s: %s", self.store.state_dir, message)
            return ()
        if not fresh:
            if remembered.records:
                log.info("remembered presence saved %d s ago has expired: not restored",
                         max(0, now_wall - remembered.saved_wall_ms) // 1000)
            return ()
        now_mono = self._mono_ms()
        self._caps = {p.peer: ((p.incarnation, p.pseq), now_mono + left) for p, left in fresh}
        return tuple(p for p, _ in fresh)

    def refused(self, exc: TvaError) -> None:
        """The core refused the records (a value out of its range): nothing was restored."""
        self._caps = {}
        log.warning("ignoring the remembered presence in %s: %s", self.store.state_dir, exc.message)

    # --- save -----------------------------------------------------------------------------------

    def _key(self, presence: Mapping[str, Presence]) -> dict[str, tuple[int, int]]:
        """What a save is compared by: each peer's presence order (incarnation, sequence)."""
        return {peer: (p.incarnation, p.pseq) for peer, p in presence.items() if peer != self.self_id}

    def _encode(self, presence: Mapping[str, Presence]) -> bytes:
        return encode_presence(presence, self_id=self.self_id, saved_wall_ms=self._wall_ms(),
                               now_mono_ms=self._mono_ms(), caps_mono_ms=self._caps)

    def save(self) -> bool:
        """Write now (graceful shutdown). False when not armed or the write failed (logged)."""
        if not self._armed:
            return False
        presence = self._presence()
        return self._saved(self._write(self._encode(presence)), self._key(presence))

    def _write(self, data: bytes) -> bool:
        """Blocking (fsync); may run in a worker thread, so it changes nothing here but the file."""
        try:
            self.store.write(PRESENCE_FILE, data)
        except (OSError, TvaError) as exc:
            message = exc.message if isinstance(exc, TvaError) else str(exc)
            log.warning("could not save the remembered presence: %s (will retry)", message)
            return False
        return True

    def _saved(self, ok: bool, key: dict[str, int]) -> bool:
        if ok:
            self._saved_key = key
            self.saves += 1
        return ok

    async def run(self) -> None:
        """Every ``save_interval_ms``: write if any peer's presence changed (a new pseq, or a peer
        gained or lost). Encoding 1000 records (~260 KB) takes ~2 ms, so it happens here (it needs a
        consistent view of the core); the write and its fsyncs (~10 ms) go to a worker thread."""
        while True:
            await trio.sleep(self.save_interval_ms / 1000)
            if not self._armed:
                continue
            presence = self._presence()  # one read: the key and the file describe the same view
            key = self._key(presence)
            if key == self._saved_key:
                continue
            self._saved(await trio.to_thread.run_sync(self._write, self._encode(presence)), key)


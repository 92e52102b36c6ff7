"""Atomic, checksummed state files under the node's state directory.

Every file is ``header + payload`` where the header is magic ``TVA\\x01``, a format version, the
payload length and the payload's SHA-256, so a truncated, torn or bit-rotted file is *detected*
instead of being parsed into nonsense.

A write never modifies a file in place:
  1. the new generation goes to a temp file in the same directory, which is fsynced;
  2. the current generation (if it verifies) is hard-linked to ``<name>.prev``;
  3. the temp file is renamed over ``<name>`` (atomic) and the directory is fsynced.
A process killed at any point therefore leaves ``<name>`` holding either the old or the new
generation, complete; leftover temp files are removed when the store is next opened.

Reading verifies the file. When ``<name>`` is corrupt, the store keeps the evidence (renames it
to ``<name>.corrupt-<n>``, never overwrites it), falls back to ``<name>.prev`` if that verifies,
puts that generation back as ``<name>``, and reports what happened in ``last_problem`` (and the
log). With no good previous generation it raises ``StateCorrupt`` and leaves the file in place.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crdt.identity import SEED_BYTES, NodeKey
from tva.errors import InvalidInput, StateCorrupt, UnsupportedVersion

log = logging.getLogger("tva.store")

MAGIC = b"TVA\x01"
FORMAT_VERSION = 1
HEADER = struct.Struct(">4sBQ32s")  # magic, format version, payload length, sha256(payload)
FILE_BYTES_MAX = 256 * 1024 * 1024
CORRUPT_COPIES_MAX = 100
IDENTITY_FILE = "identity"
_IDENTITY_TAG = b"ed25519-seed\x00"
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_TEMP = re.compile(r"\.[a-z][a-z0-9_-]{0,63}\.(tmp|prev-tmp|restore-tmp)-\d+-\d+")


@dataclass(frozen=True)
class Problem:
    """What went wrong with a state file and what the store did about it."""

    name: str
    reason: str
    recovered: bool  # True: the previous good generation is in use again
    moved_to: Path | None  # where the corrupt file was kept for inspection


class _Bad(Exception):
    """Internal: a file failed verification (converted to a Problem or StateCorrupt)."""


class StateStore:
    """Named, atomically replaced, checksummed files in one private directory (mode 0700)."""

    def __init__(self, state_dir: Path, *, file_bytes_max: int = FILE_BYTES_MAX) -> None:
        self.state_dir = Path(state_dir)
        self.file_bytes_max = file_bytes_max
        self.last_problem: Problem | None = None
        self._counter = 0
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)  # mkdir's mode is masked by umask; an old dir may be wider
        for leftover in self.state_dir.iterdir():
            if _TEMP.fullmatch(leftover.name):
                leftover.unlink(missing_ok=True)  # from a writer killed mid-write

    # --- paths ----------------------------------------------------------------------------------

    def path(self, name: str) -> Path:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidInput(f"state file name {name!r:.40} is not allowed",
                               hint=f"use a name matching {_NAME.pattern}")
        return self.state_dir / name

    def _temp(self, name: str, kind: str) -> Path:
        self._counter += 1
        return self.state_dir / f".{name}.{kind}-{os.getpid()}-{self._counter}"

    # --- writing --------------------------------------------------------------------------------

    def write(self, name: str, data: bytes, *, secret: bool = False) -> None:
        """Atomically replace ``name`` with ``data``; the previous good generation becomes
        ``name.prev``. Every file is created 0600 (``secret`` documents the caller's intent: the
        directory is 0700 and no state file is ever readable by others)."""
        current = self.path(name)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidInput(f"state file {name}: data must be bytes", hint=type(data).__name__)
        data = bytes(data)
        if len(data) > self.file_bytes_max:
            raise InvalidInput(f"state file {name}: {len(data)} bytes exceeds file_bytes_max "
                               f"{self.file_bytes_max}", hint="raise file_bytes_max or store less")
        temp = self._temp(name, "tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb", closefd=True) as f:
                f.write(HEADER.pack(MAGIC, FORMAT_VERSION, len(data), hashlib.sha256(data).digest()))
                f.write(data)
                f.flush()
                os.fsync(f.fileno())  # the data is durable before any name points at it
            self._keep_previous(name, current)
            os.replace(temp, current)
            self._fsync_dir()
        finally:
            temp.unlink(missing_ok=True)

    def _keep_previous(self, name: str, current: Path) -> None:
        if not current.exists():
            return
        try:
            # Verified every time (a read and a hash): a generation that rotted on disk since it
            # was written must not become the fallback.
            self._check(current)
        except (_Bad, UnsupportedVersion) as exc:
            moved = self._move_aside(name, current)
            self._report(Problem(name, f"overwrote a corrupt file ({exc})", False, moved))
            return
        link = self._temp(name, "prev-tmp")
        try:
            os.link(current, link)
            os.replace(link, self.state_dir / f"{name}.prev")
        finally:
            link.unlink(missing_ok=True)

    # --- reading --------------------------------------------------------------------------------

    def read(self, name: str, *, fallback: bool = True) -> bytes | None:
        """The payload of ``name``; None if it was never written. A corrupt file falls back to the
        previous generation (``last_problem`` says so) unless ``fallback`` is False; with no good
        generation left, StateCorrupt."""
        current = self.path(name)
        prev = self.state_dir / f"{name}.prev"
        if not current.exists():
            if fallback and prev.exists():
                return self._recover(name, current, prev, "the current file is missing")
            return None
        try:
            return self._check(current)
        except _Bad as exc:
            reason = str(exc)
        log.warning("state file %s is corrupt: %s", current, reason)
        if not fallback:
            self._report(Problem(name, reason, False, None))
            raise StateCorrupt(f"{current}: {reason}",
                               hint="the file is left in place for inspection")
        return self._recover(name, current, prev, reason)

    def _recover(self, name: str, current: Path, prev: Path, reason: str) -> bytes:
        try:
            payload = self._check(prev) if prev.exists() else None
        except _Bad as exc:
            reason += f"; the previous generation is corrupt too ({exc})"
            payload = None
        if payload is None:
            self._report(Problem(name, reason, False, None))
            raise StateCorrupt(f"{current}: {reason}; no good previous generation",
                               hint="the file is left in place for inspection; restore it from a "
                                    "backup or move it away to start that state afresh")
        moved = self._move_aside(name, current) if current.exists() else None
        restore = self._temp(name, "restore-tmp")
        try:
            os.link(prev, restore)
            os.replace(restore, current)
            self._fsync_dir()
        finally:
            restore.unlink(missing_ok=True)
        self._report(Problem(name, reason, True, moved))
        return payload

    def _check(self, path: Path) -> bytes:
        """Read and verify one file (bounded); _Bad with the reason when it does not verify."""
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > self.file_bytes_max + HEADER.size:
                raise _Bad(f"{size} bytes is more than file_bytes_max {self.file_bytes_max}")
            header = f.read(HEADER.size)
            if len(header) < HEADER.size:
                raise _Bad(f"truncated header ({len(header)} of {HEADER.size} bytes)")
            magic, version, length, digest = HEADER.unpack(header)
            if magic != MAGIC:
                raise _Bad("not a tva state file (bad magic)")
            if version != FORMAT_VERSION:
                raise UnsupportedVersion(f"{path}: state format {version}, this build reads "
                                         f"{FORMAT_VERSION}", hint="run a newer tva-agent")
            if length != size - HEADER.size:
                raise _Bad(f"payload length {length} but {size - HEADER.size} bytes on disk "
                           f"({'truncated' if length > size - HEADER.size else 'trailing bytes'})")
            payload = f.read(length)
        if len(payload) != length or hashlib.sha256(payload).digest() != digest:
            raise _Bad("checksum mismatch")
        return payload

    # --- bookkeeping ----------------------------------------------------------------------------

    def _move_aside(self, name: str, path: Path) -> Path:
        for n in range(1, CORRUPT_COPIES_MAX + 1):
            target = self.state_dir / f"{name}.corrupt-{n}"
            if not target.exists():
                os.rename(path, target)
                self._fsync_dir()
                log.warning("kept corrupt state file %s as %s", path, target)
                return target
        raise StateCorrupt(f"{path}: {CORRUPT_COPIES_MAX} corrupt copies already kept",
                           hint=f"inspect and remove {name}.corrupt-* in {self.state_dir}")

    def _report(self, problem: Problem) -> None:
        self.last_problem = problem
        if problem.recovered:
            log.warning("state file %s: %s; using the previous generation", problem.name, problem.reason)

    def _fsync_dir(self) -> None:
        fd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load_or_create_identity(store: StateStore,
                            seed_source: Callable[[int], bytes] = os.urandom) -> NodeKey:
    """The node's key from ``identity`` (0600), created on first use. A corrupt identity file is
    an error, never silently replaced: a new key would be a new peer id, a stranger to its fleet."""
    path = store.path(IDENTITY_FILE)
    try:
        raw = store.read(IDENTITY_FILE, fallback=False)
    except StateCorrupt as exc:
        raise StateCorrupt(f"identity file is corrupt: {exc.message}",
                           hint=f"restore {path} from a backup; deleting it gives this node a new "
                                "peer id, which the fleet must then admit again") from None
    if raw is None:
        leftovers = sorted(p.name for p in store.state_dir.glob(f"{IDENTITY_FILE}.*"))
        if leftovers:
            raise StateCorrupt(f"{path} is missing but {', '.join(leftovers)} exist",
                               hint="restore the identity file; it is never recreated over traces "
                                    "of an old one")
        seed = seed_source(SEED_BYTES)
        if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
            raise InvalidInput(f"seed_source must return {SEED_BYTES} bytes", hint="use os.urandom")
        key = NodeKey(seed)
        store.write(IDENTITY_FILE, _IDENTITY_TAG + seed, secret=True)
        return key
    if len(raw) != len(_IDENTITY_TAG) + SEED_BYTES or not raw.startswith(_IDENTITY_TAG):
        raise StateCorrupt(f"{path} does not hold an Ed25519 seed",
                           hint=f"restore {path} from a backup")
    return NodeKey(raw[len(_IDENTITY_TAG):])

"""The torrent engine seam: what the agent asks of a torrent client, and what it hears back.

Two implementations: ``media.lt_engine`` (an embedded libtorrent session the agent owns) and
``media.transmission_engine`` (an existing transmission-daemon over its RPC). Both report
``TorrentSample``s; ``watch_completed`` turns samples into completed-item events, identically
for both, so the agent can publish holdings without knowing which engine runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from media.torrent_input import content_id_for

# Engine-neutral states. 'stalled' is deliberately absent: whether a torrent is stalled is the
# reaper's judgement over a run of samples, not a state the client reports.
STATES = frozenset(
    {"checking", "downloading_metadata", "downloading", "seeding", "paused", "queued", "error"}
)


@dataclass(frozen=True)
class TorrentSample:
    infohash: str  # v1, 40 lowercase hex
    name: str
    at_ms: int  # wall clock (ms since the epoch) when the sample was taken
    progress: float  # 0..1 of the wanted bytes
    bytes_done: int  # verified bytes held
    size_bytes: int  # 0 while the metadata is unknown
    peers: int  # connected peers, seeds included
    seeds: int  # connected peers that have everything
    rate_down_bps: int  # payload bytes/s
    rate_up_bps: int
    state: str  # one of STATES
    error: str | None  # the client's own error (disk, missing files…); None when fine
    tracker_ok: bool | None  # last announce succeeded? None: no tracker or not announced yet
    tracker_message: str | None  # the tracker's failure reason / warning, if any
    save_path: str
    # Distributed copies in the swarm this client sees (libtorrent); None when unknown.
    availability: float | None = None


@dataclass(frozen=True)
class CompletedItem:
    """A torrent whose data is complete and verified here: a holding to publish."""

    content_id: str
    infohash: str
    name: str
    size_bytes: int
    save_path: str


# Whether a torrent may meet the public swarm (agent.policy.swarm): a bool, or — for a path
# hashed into a torrent inside the engine — a function of (infohash, private flag) asked before
# the torrent is added.
PublicChoice = bool | Callable[[str, bool], bool]


def decide_public(choice: PublicChoice, infohash: str, private: bool) -> bool:
    if private:
        return False  # BEP 27: never, whatever was asked
    return bool(choice(infohash, private)) if callable(choice) else bool(choice)


class TorrentEngine(Protocol):
    """Every add is *closed* by default (BEP 27 isolation: no DHT, PEX or LSD for the torrent);
    ``public=True`` opens it, and ``set_public`` changes it later. A torrent carrying the private
    flag is never opened."""

    async def add_torrent(
        self, torrent_bytes: bytes, save_dir: str | None = None, peers: tuple[tuple[str, int], ...] = (),
        *, public: bool = False,
    ) -> str:
        """Validate and add .torrent bytes (download into ``save_dir``, default the media root)."""
        ...

    async def add_magnet(self, magnet: str, save_dir: str | None = None, *, hold: bool = False,
                         public: bool = False) -> str:
        """Add by magnet. ``hold``: fetch only the metadata (the .torrent), no data until
        ``release`` — so a caller can check the real size before a byte lands on its disk."""
        ...

    async def set_public(self, infohash: str, public: bool) -> None:
        """Open a torrent to the public swarm's discovery, or close it (refused where the engine
        cannot keep a closed torrent off the DHT)."""
        ...

    async def release(self, infohash: str) -> None:
        """Let a torrent added with ``hold`` fetch its data."""
        ...

    async def seed_path(self, path: str, trackers: tuple[str, ...] = (),
                        progress: Callable[[int, int], None] | None = None, *,
                        public: PublicChoice = False) -> tuple[str, bytes]:
        """Make a v1 torrent of a file/dir under the media root and seed it: (infohash, bytes).
        ``progress(bytes_hashed, bytes_total)`` is called from the hashing worker thread."""
        ...

    async def connect_peers(self, infohash: str, peers: tuple[tuple[str, int], ...]) -> int:
        """Dial these peers for the torrent; returns how many dials were started (0 if unsupported)."""
        ...

    async def samples(self) -> list[TorrentSample]: ...

    async def reannounce(self, infohash: str) -> bool:
        """Announce now to trackers (and the DHT, for a public torrent only); False when the client
        refuses to yet."""
        ...

    async def verify(self, infohash: str) -> None: ...

    async def remove(self, infohash: str, delete_files: bool = False) -> None: ...

    async def torrent_file(self, infohash: str) -> bytes | None:
        """The .torrent bytes to share with the fleet (None when the metadata is not known)."""
        ...

    async def dht_peers(self, infohash: str, timeout_ms: int) -> list[tuple[str, int]]:
        """Peers the DHT knows for this infohash; [] when this engine runs no DHT."""
        ...

    def listen_port(self) -> int: ...

    async def close(self) -> None: ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def completed_item(sample: TorrentSample) -> CompletedItem:
    return CompletedItem(
        content_id=content_id_for(sample.name, sample.infohash),
        infohash=sample.infohash,
        name=sample.name,
        size_bytes=sample.size_bytes,
        save_path=sample.save_path,
    )


def is_complete(sample: TorrentSample) -> bool:
    return sample.state == "seeding" and sample.progress >= 1.0 and sample.error is None


class CompletionTracker:
    """Turns successive sample lists into "newly complete" events (pure: samples in, items out).

    An item that is complete, then incomplete again (a failed verify, a removal), fires again
    when it completes once more: a holding lost and regained is news to the feed.
    """

    def __init__(self) -> None:
        self._complete: set[str] = set()

    def update(self, samples: list[TorrentSample]) -> list[CompletedItem]:
        now_complete = {s.infohash: s for s in samples if is_complete(s)}
        fresh = [completed_item(s) for ih, s in now_complete.items() if ih not in self._complete]
        self._complete = set(now_complete)
        return fresh

    def complete_infohashes(self) -> frozenset[str]:
        return frozenset(self._complete)


async def completed_items(engine: TorrentEngine) -> list[CompletedItem]:
    """The listing: every item complete and verified right now."""
    return [completed_item(s) for s in await engine.samples() if is_complete(s)]


async def watch_completed(
    engine: TorrentEngine,
    send: trio.MemorySendChannel[CompletedItem],
    *,
    interval_ms: int = 1000,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Send a ``CompletedItem`` for every torrent that becomes complete (run it in a nursery)."""
    tracker = CompletionTracker()
    task_status.started()
    async with send:
        while True:
            for item in tracker.update(await engine.samples()):
                await send.send(item)
            await trio.sleep(interval_ms / 1000)

"""Watch state: where a player host stopped in an item, in its own signed feed (pure).

Key ``w/<item>`` (the item's content id when it has one — the same on every host, so a film
stopped on the TV resumes on the laptop — else the host-local item id). Value: a positional
msgpack array ``[format, position_ms, duration_ms, watched, updated_ms]``; like every record,
a newer minor version only appends fields, which this one ignores, and an older reader skips a
host's feed entries under prefixes it does not know, so the record is invisible to builds from
before it (they never read ``w/`` keys).

Only the host that played writes its record; readers take, per item, the record updated last
across every host's feed (ties: the larger peer id, so every replica picks the same one).
"""

from __future__ import annotations

from dataclasses import dataclass

from crdt.codec import expect_bool, expect_int, pack
from crdt.feedset import FeedSet
from crdt.identity import peer_id_from_public
from crdt.records import RECORD_FORMAT, _build, _fields, check_content_id
from tva.errors import InvalidInput, RemoteDataError

WATCH_PREFIX = "w/"
WATCHED_FRACTION = 0.90
POSITION_MS_MAX = 7 * 24 * 3600 * 1000
UPDATED_MS_MAX = (1 << 53) - 1
RESUME_MIN_S = 30.0  # below this (or 2 % of the item) a stop is not worth resuming
RESUME_MIN_FRACTION = 0.02


@dataclass(frozen=True)
class WatchState:
    position_ms: int
    duration_ms: int  # 0: unknown
    watched: bool
    updated_ms: int

    def __post_init__(self) -> None:
        for name, hi in (("position_ms", POSITION_MS_MAX), ("duration_ms", POSITION_MS_MAX),
                         ("updated_ms", UPDATED_MS_MAX)):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= hi:
                raise InvalidInput(f"watch state {name} out of range")
        if type(self.watched) is not bool:
            raise InvalidInput("watch state watched must be a bool")

    @classmethod
    def at(cls, position_s: float, duration_s: float | None, now_ms: int, *, ended: bool = False) -> WatchState:
        """The state after stopping at ``position_s``: watched at ≥ 90 % (or when playback reached the end)."""
        duration_ms = round((duration_s or 0) * 1000)
        position_ms = max(0, round(position_s * 1000))
        if duration_ms:
            position_ms = min(position_ms, duration_ms)
        watched = ended or (duration_ms > 0 and position_ms >= WATCHED_FRACTION * duration_ms)
        return cls(min(position_ms, POSITION_MS_MAX), min(duration_ms, POSITION_MS_MAX), watched, now_ms)

    @property
    def position_s(self) -> float:
        return self.position_ms / 1000

    @property
    def resumable(self) -> bool:
        """In progress: far enough in to resume, not watched."""
        if self.watched:
            return False
        floor_s = RESUME_MIN_S if not self.duration_ms else min(RESUME_MIN_S, self.duration_ms / 1000 * RESUME_MIN_FRACTION)
        return self.position_s >= floor_s

    def to_json(self, host: str | None = None) -> dict:
        duration_s = self.duration_ms / 1000 if self.duration_ms else None
        return {"position_s": self.position_s, "duration_s": duration_s, "watched": self.watched,
                "progress": round(self.position_ms / self.duration_ms, 4) if self.duration_ms else None,
                "resumable": self.resumable, "updated_ms": self.updated_ms, "host": host}


def watch_key(item: str) -> str:
    return WATCH_PREFIX + check_content_id(item)


def encode_watch(w: WatchState) -> bytes:
    return pack([RECORD_FORMAT, w.position_ms, w.duration_ms, w.watched, w.updated_ms])


def decode_watch(data: bytes) -> WatchState:
    f = _fields(data, "watch state", 5)
    return _build(WatchState, "watch state", expect_int(f[1], "position_ms", 0, POSITION_MS_MAX),
                  expect_int(f[2], "duration_ms", 0, POSITION_MS_MAX), expect_bool(f[3], "watched"),
                  expect_int(f[4], "updated_ms", 0, UPDATED_MS_MAX))


def watch_states_of(feed) -> dict[str, WatchState]:
    """item → watch state in one feed (malformed values skipped)."""
    out = {}
    for key, raw in feed.live_items():
        if key.startswith(WATCH_PREFIX):
            try:
                check_content_id(key[len(WATCH_PREFIX):])
                out[key[len(WATCH_PREFIX):]] = decode_watch(raw)
            except (RemoteDataError, InvalidInput):
                continue
    return out


def latest_watch_states(feedset: FeedSet) -> dict[str, tuple[str, WatchState]]:
    """item → (peer id, state) of the record updated last across the fleet."""
    best: dict[str, tuple[str, WatchState]] = {}
    for owner in feedset.owners():
        feed = feedset.feed(owner)
        peer = peer_id_from_public(owner)
        for item, w in watch_states_of(feed).items():
            held = best.get(item)
            if held is None or (w.updated_ms, peer) > (held[1].updated_ms, held[0]):
                best[item] = (peer, w)
    return best


def oldest_first(states: dict[str, WatchState]) -> list[str]:
    """Items of one feed, least recently updated first (what a host drops at its record limit)."""
    return sorted(states, key=lambda k: (states[k].updated_ms, k))

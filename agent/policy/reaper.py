"""Reaper: is a torrent healthy, stalled or dead, and how do we bring it back — mesh first.

Classification, from the status samples the torrent client reported (oldest first):

* **healthy** — complete and error-free, or it *moved* within ``stalled_after_ms`` (its progress
  rose since the previous sample or it downloaded at ≥ ``rate_floor_bps``), or it is younger
  than ``stalled_after_ms``.
* **dead** — nothing moved for ``dead_after_ms`` and no source was there for it: in that window
  peers/seeds were present in fewer than ``peers_presence_min`` of the samples (absent, or
  flapping), or the swarm never had a complete copy (availability < 1 throughout); or it has
  reported an error for ``dead_after_ms`` without a break.
* **stalled** — anything else (not moving, but peers are there, or not long enough to be dead).

Flapping peers do not make the verdict flap: the verdict follows movement, and presence is a
fraction over the whole window, not the last sample.

Actions: the only automatic ones are safe, idempotent nudges — ``reannounce`` for stalled and
dead torrents, plus ``verify`` when the error looks like local data trouble. Recovery is a plan
for the reaper duty, in order: connect the fleet's and friends' holders as peers, copy over the
fabric from a fleet custodian, and only then re-search (publicly only for a public item).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from . import checks
from .canonical import JsonOutput
from .classes import FLEET, FRIEND, PUBLIC, SEEDBOX_SRC
from .peers import Custodians, Peer, PeerAnswer

HEALTHY, STALLED, DEAD = "healthy", "stalled", "dead"
REANNOUNCE, VERIFY = "reannounce", "verify"
SAMPLES_MAX = 10_000
ERROR_CHARS_MAX = 512
# Words in a client error that point at local data (a recheck may fix it) rather than the swarm.
_DATA_ERROR_WORDS = ("hash", "piece", "verify", "missing", "no such file", "i/o", "file")


@dataclass(frozen=True, slots=True)
class TorrentSample:
    at_ms: int
    progress: float  # 0.0 … 1.0
    peers: int = 0
    seeds: int = 0
    down_rate_bps: int = 0  # bytes per second
    up_rate_bps: int = 0
    error: str | None = None
    tracker_ok: bool | None = None  # None: no tracker, or not announced yet
    availability: float | None = None  # distributed copies in the swarm, when the client knows

    def __post_init__(self) -> None:
        checks.integer(self.at_ms, "TorrentSample.at_ms")
        object.__setattr__(self, "progress", checks.fraction(self.progress, "TorrentSample.progress"))
        checks.integer(self.peers, "TorrentSample.peers", maximum=1_000_000)
        checks.integer(self.seeds, "TorrentSample.seeds", maximum=1_000_000)
        checks.integer(self.down_rate_bps, "TorrentSample.down_rate_bps")
        checks.integer(self.up_rate_bps, "TorrentSample.up_rate_bps")
        if self.error is not None:
            checks.text(self.error, "TorrentSample.error", chars_max=ERROR_CHARS_MAX)
        if self.tracker_ok is not None:
            checks.boolean(self.tracker_ok, "TorrentSample.tracker_ok")
        if self.availability is not None:
            object.__setattr__(self, "availability", checks.non_negative(self.availability, "TorrentSample.availability"))


@dataclass(frozen=True, slots=True)
class ReaperThresholds:
    stalled_after_ms: int = 30 * 60 * 1000
    dead_after_ms: int = 6 * 3600 * 1000
    rate_floor_bps: int = 1024
    peers_presence_min: float = 0.5

    def __post_init__(self) -> None:
        checks.integer(self.stalled_after_ms, "stalled_after_ms", minimum=1)
        checks.integer(self.dead_after_ms, "dead_after_ms", minimum=1)
        if self.dead_after_ms < self.stalled_after_ms:
            raise checks.fail(f"dead_after_ms {self.dead_after_ms} < stalled_after_ms {self.stalled_after_ms}",
                              "a torrent is stalled before it is dead: raise dead_after_ms")
        checks.integer(self.rate_floor_bps, "rate_floor_bps")
        object.__setattr__(self, "peers_presence_min", checks.fraction(self.peers_presence_min, "peers_presence_min"))


@dataclass(frozen=True, slots=True)
class RecoveryStep(JsonOutput):
    kind: str  # connect_peers | copy_over_fabric | research
    peers: tuple[Peer, ...] = ()
    scope: str | None = None  # for research: public | friends


@dataclass(frozen=True, slots=True)
class ReaperVerdict(JsonOutput):
    infohash: str
    state: str
    reasons: tuple[str, ...]
    actions: tuple[str, ...]  # automatic, safe, idempotent nudges only
    recovery: tuple[RecoveryStep, ...]  # a plan for the reaper duty; nothing here runs by itself


def reap(
    infohash: str,
    samples: Iterable[TorrentSample],
    now_ms: int,
    thresholds: ReaperThresholds = ReaperThresholds(),
    *,
    mesh: PeerAnswer | None = None,
    custodians: Custodians | None = None,
) -> ReaperVerdict:
    """Classify one torrent and plan its recovery.

    ``mesh`` is the ``peers_for`` answer for the infohash (its policy gates the re-search scope);
    ``custodians`` the ``custodians_of`` answer (fleet copies reachable over the fabric).
    """
    infohash = checks.infohash(infohash)
    seq = checks.instances(samples, "samples", TorrentSample)
    checks.integer(now_ms, "now_ms")
    checks.instance(thresholds, "thresholds", ReaperThresholds)
    if mesh is not None:
        checks.instance(mesh, "mesh", PeerAnswer)
        if mesh.infohash != infohash:
            raise checks.fail("mesh answer is for another infohash", "pass peers_for(infohash) of this torrent")
    if custodians is not None:
        checks.instance(custodians, "custodians", Custodians)
    if not seq:
        raise checks.fail("no samples", "sample the torrent at least once before reaping it")
    if len(seq) > SAMPLES_MAX:
        raise checks.fail(f"{len(seq)} samples (max {SAMPLES_MAX})", "keep a bounded window of recent samples")
    for a, b in itertools.pairwise(seq):
        if b.at_ms <= a.at_ms:
            raise checks.fail(f"samples out of order at {b.at_ms} ms", "pass samples oldest first, one per instant")
    if now_ms < seq[-1].at_ms:
        raise checks.fail(f"now_ms {now_ms} is before the last sample ({seq[-1].at_ms})", "pass the current time")

    state, reasons = _classify(seq, now_ms, thresholds)
    last = seq[-1]
    actions: tuple[str, ...] = ()
    if state != HEALTHY:
        data_trouble = last.error is not None and any(w in last.error.lower() for w in _DATA_ERROR_WORDS)
        actions = (REANNOUNCE, VERIFY) if data_trouble else (REANNOUNCE,)
    recovery = _recovery(state, mesh, custodians)
    return ReaperVerdict(infohash, state, tuple(reasons), actions, recovery)


def _classify(seq: tuple[TorrentSample, ...], now_ms: int, t: ReaperThresholds) -> tuple[str, list[str]]:
    last = seq[-1]
    if last.progress >= 1.0 and last.error is None:
        return HEALTHY, ["complete"]
    moved_ms = seq[0].at_ms  # the torrent's start counts as its last movement
    for prev, cur in itertools.pairwise(seq):
        if cur.progress > prev.progress or cur.down_rate_bps >= t.rate_floor_bps:
            moved_ms = cur.at_ms
    if len(seq) == 1 and seq[0].down_rate_bps >= t.rate_floor_bps:
        moved_ms = seq[0].at_ms
    idle_ms = now_ms - moved_ms
    error_since = None
    for s in reversed(seq):
        if s.error is None:
            break
        error_since = s.at_ms
    if error_since is not None and now_ms - error_since >= t.dead_after_ms:
        return DEAD, [f"error for {now_ms - error_since} ms: {last.error}"]
    if idle_ms < t.stalled_after_ms:
        if error_since is not None:
            return STALLED, [f"error: {last.error}"]
        return HEALTHY, ["moving" if moved_ms != seq[0].at_ms else "young"]
    reasons = [f"no progress for {idle_ms} ms"]
    if error_since is not None:
        reasons.append(f"error: {last.error}")
    # No sample in the window (sampling stopped): judge by the last one we have.
    window = [s for s in seq if s.at_ms >= now_ms - t.dead_after_ms] or [last]
    if idle_ms >= t.dead_after_ms:
        present = sum(1 for s in window if s.peers > 0 or s.seeds > 0) / len(window)
        no_copy = all(s.availability is not None and s.availability < 1.0 for s in window)
        if all(s.tracker_ok is False for s in window):
            reasons.append("trackers failing")
        if present < t.peers_presence_min:
            reasons.append("no peers" if present == 0 else f"peers flapping (present in {present:.0%} of samples)")
            return DEAD, reasons
        if no_copy:
            reasons.append("no complete copy in the swarm")
            return DEAD, reasons
        reasons.append("peers present but not delivering")
    return STALLED, reasons


def _recovery(state: str, mesh: PeerAnswer | None, custodians: Custodians | None) -> tuple[RecoveryStep, ...]:
    if state == HEALTHY:
        return ()
    steps = []
    mesh_peers = tuple(p for p in mesh.peers if p.source in (FLEET, SEEDBOX_SRC, FRIEND)) if mesh else ()
    if mesh_peers:
        steps.append(RecoveryStep("connect_peers", mesh_peers))
    if custodians is not None and custodians.peers:
        steps.append(RecoveryStep("copy_over_fabric", custodians.peers))
    if state == DEAD:
        # Without the item's policy in hand we cannot know it is public: stay closed.
        public = mesh is not None and mesh.policy == PUBLIC
        steps.append(RecoveryStep("research", scope="public" if public else "friends"))
    return tuple(steps)

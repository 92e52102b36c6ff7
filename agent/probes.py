"""Local soft-state probes: disk free under the media root and an uptime score.

The uptime score is an exponentially weighted moving average of "was this agent running",
sampled once per probe interval. Time the agent was down (between the last persisted sample
and now) counts as that many zero samples, so a machine that is often off scores low even
though every sample it takes while running is a one — which is exactly what custody needs to
know when it ranks repair targets.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

UPTIME_HALF_LIFE_MS = 7 * 24 * 3600 * 1000  # a week of history dominates the score


@dataclass(frozen=True)
class UptimeScore:
    score: float = 0.5  # no history: neither trusted nor distrusted
    last_sample_ms: int = 0

    def sample(self, now_ms: int, running: bool = True) -> UptimeScore:
        """Fold in the time since the last sample: the gap at score 0 (down), then one sample."""
        if self.last_sample_ms <= 0 or now_ms <= self.last_sample_ms:
            return UptimeScore(self.score, now_ms)
        gap_ms = now_ms - self.last_sample_ms
        decay = math.exp(-math.log(2) * gap_ms / UPTIME_HALF_LIFE_MS)
        # While running, the gap was spent up; a restart after downtime folds the gap in as down.
        target = 1.0 if running else 0.0
        return UptimeScore(min(1.0, max(0.0, self.score * decay + target * (1 - decay))), now_ms)

    def after_downtime(self, now_ms: int) -> UptimeScore:
        """At start-up: everything since the last persisted sample was downtime."""
        return self.sample(now_ms, running=False)


def disk_free_bytes(path: Path) -> int | None:
    """Free bytes for an unprivileged writer at ``path`` (its nearest existing parent); None if unknown."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


DISK_FREE_CHANGE_BYTES_MIN = 256 * 1024**2  # and at least 1 % of the last value sent
UPTIME_CHANGE_MIN = 0.02  # the policy quantises uptime into quarters anyway


def soft_state_moved(last, new) -> bool:
    """Whether ``new`` soft state (mesh.core.types.SetSoftState) differs from ``last`` sent enough to
    matter to planning: every submission becomes a presence record rumoured to the whole fleet."""
    if last is None or last.endpoints != new.endpoints or last.host_class != new.host_class:
        return True
    disk_step = max(DISK_FREE_CHANGE_BYTES_MIN, last.disk_free_bytes // 100)
    return (abs(new.disk_free_bytes - last.disk_free_bytes) >= disk_step
            or abs(new.uptime_score - last.uptime_score) >= UPTIME_CHANGE_MIN)

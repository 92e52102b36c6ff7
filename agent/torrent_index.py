"""The torrent manager's values and pure helpers: tuning, the persistent index, endpoints.

Split from ``agent.torrents`` (size limit). The index is what this host added to its engine and
why (content id, policy, .torrent bytes or magnet), kept in the state file ``torrents`` so a
restart re-adds every torrent: a seed keeps seeding, a partial copy resumes after a re-check.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import msgpack

from agent.policy import reaper as reaper_policy
from crdt import records
from media.engine import TorrentSample
from media.lt_settings import SwarmFlags
from media.torrent_input import TORRENT_BYTES_MAX, parse_torrent, validate_infohash
from tva.errors import InvalidInput, RemoteDataError, TvaError

log = logging.getLogger("tva.torrents")

INDEX_FILE = "torrents"
# seed and download: added by a user; repair: a custody copy in flight; custody: a finished one
# (only these last two may ever be deleted by the fleet).
KINDS = ("seed", "download", "repair", "custody")
CUSTODY_KINDS = ("repair", "custody")
INDEX_FORMAT = 1
ENTRIES_MAX = 10_000


@dataclass(frozen=True)
class TorrentTuning:
    sample_interval_ms: int = 1000
    progress_interval_ms: int = 2000  # partial-holding updates are throttled to this
    samples_max: int = 720  # reaper window per torrent (12 min at 1 s)
    redial_interval_ms: int = 5000  # a fetch with no peer re-dials the holders this often
    nudge_interval_ms: int = 5 * 60 * 1000  # the reaper duty nudges one torrent at most this often
    auto_reaper: bool = True
    reaper: reaper_policy.ReaperThresholds = field(default_factory=reaper_policy.ReaperThresholds)
    dht_refresh_ms: int = 30_000
    dht_timeout_ms: int = 2000
    # A template: listen addresses and port come from the config, the face from the duty (the
    # outward features — DHT, UPnP, NAT-PMP — only ever run while this host holds that duty).
    swarm: SwarmFlags = field(default_factory=SwarmFlags)


def tuning_from_config(cfg) -> TorrentTuning:
    """Reaper thresholds and swarm limits from ``agent.config.Config`` (already validated there)."""
    from agent.config import parse_host_port

    t = TorrentTuning()
    thresholds = reaper_policy.ReaperThresholds(stalled_after_ms=cfg.reaper_stalled_after_ms,
                                                dead_after_ms=cfg.reaper_dead_after_ms)
    swarm = replace(t.swarm, upload_rate_limit_bps=cfg.torrent_upload_rate_bps,
                    download_rate_limit_bps=cfg.torrent_download_rate_bps, utp=cfg.torrent_utp,
                    dht_bootstrap_nodes=tuple(parse_host_port(n, "dht_bootstrap_nodes")
                                              for n in cfg.dht_bootstrap_nodes))
    return replace(t, reaper=thresholds, swarm=swarm)


@dataclass(frozen=True)
class Entry:
    """What this host added and why: enough to re-add it after a restart and publish it."""

    infohash: str
    content_id: str
    policy: str
    source: str  # a records.SOURCES value
    kind: str  # one of KINDS
    torrent: bytes | None  # None until the metadata is known (magnet)
    save_dir: str | None = None  # relative to the media root; None: the root itself
    size_bytes: int = 0  # known size (from the fleet's holdings, for a repair before metadata)
    lease_until_ms: int = 0  # repair: the intent's lease (0 otherwise)


def encode_index(entries: dict[str, Entry]) -> bytes:
    rows = [[e.infohash, e.content_id, e.policy, e.source, e.kind, e.torrent, e.save_dir, e.size_bytes,
             e.lease_until_ms] for e in entries.values()]
    return msgpack.packb([INDEX_FORMAT, rows], use_bin_type=True)


def decode_index(data: bytes) -> dict[str, Entry]:
    """The state file back into entries; a bad row is skipped (one bad entry must not lose all)."""
    try:
        obj = msgpack.unpackb(data, raw=False, max_bin_len=TORRENT_BYTES_MAX, max_array_len=ENTRIES_MAX)
    except Exception:
        raise RemoteDataError("torrent index does not decode") from None
    if not isinstance(obj, list) or len(obj) != 2 or obj[0] != INDEX_FORMAT or not isinstance(obj[1], list):
        raise RemoteDataError("torrent index has an unknown format")
    out: dict[str, Entry] = {}
    for row in obj[1]:
        try:
            e = Entry(*row)
            validate_infohash(e.infohash)
            records.check_content_id(e.content_id)
            records.Holding(e.content_id, e.infohash, e.size_bytes, "partial", e.policy, e.source)
            if e.kind not in KINDS or (e.torrent is not None and not isinstance(e.torrent, bytes)):
                raise InvalidInput("bad kind or torrent")
            if e.save_dir is not None and not isinstance(e.save_dir, str):
                raise InvalidInput("bad save dir")
            if e.torrent is not None and parse_torrent(e.torrent).infohash != e.infohash:
                raise InvalidInput("torrent bytes of another infohash")
            out[e.infohash] = e
        except (TypeError, TvaError) as exc:
            log.warning("torrent index: skipping a bad entry (%s)", getattr(exc, "message", exc))
    return out


def repair_progress(snapshot, plan) -> list[dict]:
    """Copies in flight for a custody plan: each pending target's bytes done / total."""
    out = []
    for target in plan.pending:
        h = snapshot.holdings.get(target, {})
        held = [x for x in h.values() if x.content_id == plan.content or x.infohash == plan.content
                or (plan.infohash is not None and x.infohash == plan.infohash)]
        done = max((x.bytes_done for x in held), default=0)
        out.append({"target": target, "bytes_done": done, "size_bytes": plan.size_bytes})
    return out


def policy_sample(s: TorrentSample) -> reaper_policy.TorrentSample:
    return reaper_policy.TorrentSample(
        at_ms=s.at_ms, progress=min(1.0, max(0.0, s.progress)), peers=s.peers, seeds=s.seeds,
        down_rate_bps=s.rate_down_bps, up_rate_bps=s.rate_up_bps,
        error=s.error[: reaper_policy.ERROR_CHARS_MAX] if s.error else None, tracker_ok=s.tracker_ok,
        availability=s.availability)


def listen_ips(listen: tuple[str, ...]) -> tuple[str, ...]:
    ips = [ma.split("/")[2] for ma in listen if ma.count("/") >= 2 and ma.split("/")[1] in ("ip4", "ip6")]
    return tuple(dict.fromkeys(ips)) or ("127.0.0.1",)



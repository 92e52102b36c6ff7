"""On-demand HLS (trio shell): shared ffmpeg runs, a size-bounded segment cache, idle stops.

One ``Source`` per file version (path, size, mtime, inode) holds the plan (``media.hls_plan``)
and the segments made so far. A segment request is served from the cache when it is there;
otherwise it waits for a *run* (one ffmpeg process) that will make it soon — any client's run:
four players of one film share one transcode — or starts a run at that segment (a seek, or a
segment evicted from the cache). A run writes into its own directory and each segment is renamed
into the source's directory the moment ffmpeg reports it complete (its segment list is our
stdout pipe), so a half-written segment is never served and two runs never collide.

Bounds: ``transcodes_max`` runs at once (an idle run gives way to a new one, else the client
gets 503 + Retry-After); a run more than ``ahead_segments_max`` past the furthest request is
paused (SIGSTOP) until players catch up; a run no client has asked anything of for
``idle_stop_s`` is stopped — that is how a player going away stops its transcode (HLS clients
only ever make short requests); the cache is evicted least-recently-used past
``cache_bytes_max``.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import trio

from media.hls_plan import (
    SAMPLED_TARGETS_PER_CALL,
    VIDEO_COPY,
    HlsPlan,
    keyframe_targets,
    keyframes_argv,
    parse_keyframes,
    parse_streams,
    plan_hls,
    probe_argv,
    sample_keyframes_argv,
    sampled_keyframes,
    segment_name,
    subtitle_argv,
    transcode_argv,
    with_timestamp_map,
)
from tva.errors import DecodeError, MediaBusy, MediaUnavailable

log = logging.getLogger("tva.media.hls")

STDERR_TAIL_BYTES = 2048
FAILURE_MEMORY_S = 30.0
HOUSEKEEPING_S = 0.25
VTT_BYTES_MAX = 32 * 1024 * 1024


@dataclass(frozen=True)
class HlsLimits:
    transcodes_max: int = 2
    cache_bytes_max: int = 2 * 1024**3
    idle_stop_s: float = 30.0
    ahead_segments_max: int = 30
    seek_ahead_segments: int = 3  # a request this close past a run's position waits for it
    segment_wait_s: float = 120.0
    probe_timeout_s: float = 120.0  # the keyframe scan reads the whole file's packet headers
    sources_max: int = 64


@dataclass(eq=False)
class Run:
    source: Source
    first: int
    number: int
    dir: Path
    next: int  # the first segment this run has not finished yet
    started_mono: float
    process: trio.Process | None = None
    paused: bool = False
    waiters: int = 0
    done: bool = False
    cancel: trio.CancelScope = field(default_factory=trio.CancelScope)

    def covers(self, i: int, ahead: int) -> bool:
        return not self.done and self.first <= i < self.next + ahead


@dataclass(eq=False)
class Source:
    id: str
    path: str
    plan: HlsPlan
    dir: Path
    segments: dict[int, int] = field(default_factory=dict)  # complete segment → size in bytes
    runs: list[Run] = field(default_factory=list)
    last_request_mono: float = 0.0
    furthest: int = 0  # the furthest segment any client asked for lately
    failed: tuple[float, str] | None = None
    changed: trio.Event = field(default_factory=trio.Event)
    subtitle_lock: trio.Lock = field(default_factory=trio.Lock)

    def notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


def source_id(path: str, size: int, mtime_ns: int, inode: int) -> str:
    return hashlib.sha256(f"{path}\0{size}\0{mtime_ns}\0{inode}".encode("utf-8", "surrogateescape")).hexdigest()[:20]


class HlsService:
    def __init__(self, cache_dir: Path, limits: HlsLimits | None = None, *, ffmpeg: str = "ffmpeg",
                 ffprobe: str = "ffprobe") -> None:
        self.cache_dir = cache_dir
        self.limits = limits or HlsLimits()
        self.ffmpeg, self.ffprobe = ffmpeg, ffprobe
        self.sources: collections.OrderedDict[str, Source] = collections.OrderedDict()
        self._planning: dict[str, trio.Event] = {}
        self._access: dict[tuple[str, int], float] = {}  # (source, segment) → last use (LRU)
        self._probe_limiter = trio.CapacityLimiter(2)
        self._nursery: trio.Nursery | None = None
        self._run_numbers = 0
        self.counters = collections.Counter()

    # --- the component ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the runs and the housekeeping; the cache starts empty (it is a cache, of one run)."""
        await trio.to_thread.run_sync(self._wipe_cache)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._housekeeping)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for source in self.sources.values():
                source.runs.clear()
            self.sources.clear()
            self._access.clear()

    def _wipe_cache(self) -> None:
        shutil.rmtree(self.cache_dir, ignore_errors=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def running(self) -> list[Run]:
        """Every run whose ffmpeg may still be alive (one being stopped included: it holds its slot
        until its process is gone)."""
        return [r for s in self.sources.values() for r in s.runs]

    def status(self) -> dict:
        return {"transcodes": [{"source": r.source.id, "path": r.source.path, "first": r.first, "next": r.next,
                                "paused": r.paused, "waiters": r.waiters} for r in self.running()],
                "cached_bytes": sum(sum(s.segments.values()) for s in self.sources.values()),
                "cache_bytes_max": self.limits.cache_bytes_max, "transcodes_max": self.limits.transcodes_max,
                **dict(self.counters)}

    # --- sources and plans ----------------------------------------------------------------------

    async def source_for(self, path: str, st: os.stat_result) -> Source:
        sid = source_id(path, st.st_size, st.st_mtime_ns, st.st_ino)
        while True:
            found = self.sources.get(sid)
            if found is not None:
                self.sources.move_to_end(sid)
                if found.failed and found.failed[1].startswith("plan:"):
                    raise MediaUnavailable(found.failed[1][5:])
                return found
            pending = self._planning.get(sid)
            if pending is None:
                break
            await pending.wait()  # another request is probing this file: share its answer
            if sid not in self.sources:
                raise MediaUnavailable("the file could not be read for HLS")
        self._planning[sid] = done = trio.Event()
        try:
            plan = await self._plan(path)
            source = Source(sid, path, plan, self.cache_dir / sid)
            source.dir.mkdir(parents=True, exist_ok=True)
            self.sources[sid] = source
            self._drop_sources_over_limit()
            log.info("hls: %s — %s", path, plan.describe())
            return source
        finally:
            done.set()
            del self._planning[sid]

    async def _plan(self, path: str) -> HlsPlan:
        out = await self._capture(probe_argv(path, ffprobe=self.ffprobe), "ffprobe")
        try:
            facts = parse_streams(out)
            video = next((s for s in facts.streams if s.kind == "video" and not s.cover), None)
            keyframes: tuple[float, ...] = ()
            sampled = False
            if video is not None and video.codec in VIDEO_COPY:
                targets = keyframe_targets(facts)
                found: list[float] = []
                for i in range(0, len(targets), SAMPLED_TARGETS_PER_CALL):
                    argv = sample_keyframes_argv(path, video.index, targets[i:i + SAMPLED_TARGETS_PER_CALL],
                                                 ffprobe=self.ffprobe)
                    got = sampled_keyframes((await self._capture(argv, "the keyframe lookup")).decode("ascii", "replace"))
                    if got is None:
                        break
                    found.extend(got)
                else:
                    keyframes, sampled = tuple(sorted(set(found))), True
                if not sampled:  # no index to seek by (MPEG-TS, AVI): read every packet's flags
                    raw = await self._capture(keyframes_argv(path, video.index, ffprobe=self.ffprobe), "the keyframe scan")
                    keyframes = parse_keyframes(raw.decode("ascii", "replace"))
                self.counters["keyframes_sampled" if sampled else "keyframes_scanned"] += 1
            return plan_hls(facts, keyframes, sampled=sampled)
        except DecodeError as exc:
            raise MediaUnavailable(f"cannot stream this file as HLS: {exc.message}") from None

    async def _capture(self, argv: list[str], what: str) -> bytes:
        async with self._probe_limiter:
            with trio.move_on_after(self.limits.probe_timeout_s):
                try:
                    done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False,
                                                  stdin=subprocess.DEVNULL)
                except OSError as exc:
                    raise MediaUnavailable(f"cannot run {argv[0]} ({exc.strerror}): install ffmpeg") from None
                if done.returncode != 0:
                    tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
                    raise MediaUnavailable(f"{what} failed: {tail[0][:200]}")
                return done.stdout
            raise MediaUnavailable(f"{what} took longer than {self.limits.probe_timeout_s:g} s")

    def _drop_sources_over_limit(self) -> None:
        while len(self.sources) > self.limits.sources_max:
            victim = next((s for s in self.sources.values() if not any(not r.done for r in s.runs)), None)
            if victim is None:
                return
            self._forget(victim)

    def _forget(self, source: Source) -> None:
        self.sources.pop(source.id, None)
        for i in list(source.segments):
            self._access.pop((source.id, i), None)
        shutil.rmtree(source.dir, ignore_errors=True)

    # --- segments ---------------------------------------------------------------------------------

    async def segment(self, source: Source, i: int) -> Path:
        """The path of complete segment ``i`` (waiting for a run to make it, starting one if none will)."""
        if not 0 <= i < source.plan.segment_count:
            raise IndexError(i)
        now = trio.current_time()
        # After a quiet spell the furthest request starts over (the old client may be gone).
        source.furthest = i if now - source.last_request_mono > self.limits.idle_stop_s else max(source.furthest, i)
        source.last_request_mono = now
        with trio.fail_after(self.limits.segment_wait_s):
            while True:
                if i in source.segments:
                    self._access[(source.id, i)] = trio.current_time()
                    self.counters["segments_served"] += 1
                    return source.dir / segment_name(i)
                if source.failed and trio.current_time() - source.failed[0] < FAILURE_MEMORY_S:
                    raise MediaUnavailable(source.failed[1])
                run = next((r for r in source.runs if r.covers(i, self.limits.seek_ahead_segments)), None)
                if run is None:
                    run = self._start_run(source, i)
                run.waiters += 1
                self._resume(run)
                try:
                    await source.changed.wait()
                finally:
                    run.waiters -= 1
                    source.last_request_mono = trio.current_time()

    def _start_run(self, source: Source, first: int) -> Run:
        if self._nursery is None:
            raise MediaBusy("the HLS service is not running")
        active = [r for r in self.running() if not r.done]  # one being stopped frees its slot in a moment
        if len(active) >= self.limits.transcodes_max:
            # An idle run (nobody waiting on it) gives way, the least recently asked first.
            idle = sorted((r for r in active if r.waiters == 0), key=lambda r: r.source.last_request_mono)
            if not idle:
                self.counters["busy_refusals"] += 1
                raise MediaBusy(f"all {self.limits.transcodes_max} transcode slots are in use")
            self._stop(idle[0], "its slot went to another stream")
        self._run_numbers += 1
        run = Run(source, first, self._run_numbers, source.dir / f"run-{self._run_numbers}", first,
                  trio.current_time())
        run.dir.mkdir(parents=True, exist_ok=True)
        source.runs.append(run)
        self.counters["transcodes_started"] += 1
        self._nursery.start_soon(self._run_ffmpeg, run)
        return run

    async def _run_ffmpeg(self, run: Run) -> None:
        source, plan = run.source, run.source.plan
        argv = transcode_argv(plan, source.path, str(run.dir), run.first, ffmpeg=self.ffmpeg)
        stderr_tail = bytearray()
        why = "finished"
        try:
            with run.cancel:
                try:
                    run.process = await trio.lowlevel.open_process(argv, stdin=subprocess.DEVNULL,
                                                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                except OSError as exc:
                    raise MediaUnavailable(f"cannot run ffmpeg ({exc.strerror})") from None
                log.info("hls: transcode %d of %s from segment %d (%s)", run.number, source.path, run.first,
                         "remux" if not plan.transcodes else "audio → aac" if plan.video_copy else "video → h264")
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_drain, run.process.stderr, stderr_tail)
                    await self._follow(run)
                code = await run.process.wait()
                if code != 0 and run.next < plan.segment_count:
                    text = stderr_tail.decode("utf-8", "replace").strip().splitlines()
                    raise MediaUnavailable(f"ffmpeg failed (exit {code}): {(text[-1] if text else '')[:200]}")
            if run.cancel.cancelled_caught:
                why = "stopped"
        except MediaUnavailable as exc:
            why = exc.message
            source.failed = (trio.current_time(), exc.message)
            self.counters["transcodes_failed"] += 1
            log.warning("hls: transcode %d of %s failed: %s", run.number, source.path, exc.message)
        finally:
            run.done = True
            with trio.CancelScope(shield=True):
                await _end_process(run.process)
            if run in source.runs:
                source.runs.remove(run)
            shutil.rmtree(run.dir, ignore_errors=True)
            source.notify()
            self.counters["transcodes_ended"] += 1
            log.info("hls: transcode %d of %s %s at segment %d", run.number, source.path, why, run.next)

    async def _follow(self, run: Run) -> None:
        """Read ffmpeg's segment list (stdout): publish each segment as it is complete."""
        source = run.source
        assert run.process is not None and run.process.stdout is not None
        buffered = b""
        while True:
            chunk = await run.process.stdout.receive_some(4096)
            if not chunk:
                return
            buffered += chunk
            *lines, buffered = buffered.split(b"\n")
            for line in lines:
                name = line.split(b",", 1)[0].decode("ascii", "replace").strip()
                if not (name.endswith(".ts") and name[:-3].isdigit()):
                    continue
                i = int(name[:-3])
                try:
                    size = os.stat(run.dir / name).st_size
                    os.replace(run.dir / name, source.dir / name)
                except OSError as exc:
                    raise MediaUnavailable(f"segment {name} vanished: {exc.strerror}") from None
                fresh = i not in source.segments
                source.segments[i] = size
                self._access[(source.id, i)] = trio.current_time()
                run.next = i + 1
                self.counters["segments_made"] += 1
                source.notify()
                self._evict()
                if not fresh and (i + 1) in source.segments:
                    run.cancel.cancel()  # another run is ahead of this one: no need to make the same twice
                    return

    def _resume(self, run: Run) -> None:
        if run.paused and run.process is not None and run.process.returncode is None:
            run.process.send_signal(signal.SIGCONT)
            run.paused = False

    def _stop(self, run: Run, why: str) -> None:
        if not run.done:
            log.info("hls: stopping transcode %d of %s: %s", run.number, run.source.path, why)
            self.counters["transcodes_stopped"] += 1
            run.cancel.cancel()

    async def _housekeeping(self) -> None:
        while True:
            await trio.sleep(HOUSEKEEPING_S)
            now = trio.current_time()
            for run in self.running():
                if run.done:
                    continue
                source = run.source
                if run.waiters == 0 and now - source.last_request_mono > self.limits.idle_stop_s:
                    self._stop(run, f"no client asked for a segment in {self.limits.idle_stop_s:g} s")
                elif run.waiters == 0 and not run.paused and run.next - source.furthest > self.limits.ahead_segments_max:
                    if run.process is not None and run.process.returncode is None:
                        run.process.send_signal(signal.SIGSTOP)
                        run.paused = True
                        self.counters["transcodes_paused"] += 1
                elif run.paused and run.next - source.furthest <= self.limits.ahead_segments_max // 2:
                    self._resume(run)

    def _evict(self) -> None:
        total = sum(sum(s.segments.values()) for s in self.sources.values())
        if total <= self.limits.cache_bytes_max:
            return
        for (sid, i), _used in sorted(self._access.items(), key=lambda kv: kv[1]):
            if total <= self.limits.cache_bytes_max:
                break
            source = self.sources.get(sid)
            if source is None or i not in source.segments:
                self._access.pop((sid, i), None)
                continue
            if any(not r.done and r.next - 1 == i for r in source.runs):
                continue  # the newest segment of a running run: someone is about to want it
            with contextlib.suppress(OSError):
                os.unlink(source.dir / segment_name(i))
            total -= source.segments.pop(i)
            self._access.pop((sid, i), None)
            self.counters["segments_evicted"] += 1

    # --- subtitles ----------------------------------------------------------------------------------

    async def subtitle(self, source: Source, n: int) -> Path:
        """WebVTT of the plan's subtitle track ``n`` (extracted once, on first request)."""
        subs = source.plan.subtitles
        if not 0 <= n < len(subs) or not subs[n].available:
            raise IndexError(n)
        out = source.dir / f"sub-{n}.vtt"
        async with source.subtitle_lock:
            if out.exists():
                return out
            tmp = source.dir / f".sub-{n}.vtt"
            await self._capture(subtitle_argv(source.path, subs[n].stream_index, str(tmp), ffmpeg=self.ffmpeg),
                                "subtitle extraction")
            text = tmp.read_bytes()[:VTT_BYTES_MAX].decode("utf-8", "replace")
            out.write_text(with_timestamp_map(text))
            tmp.unlink(missing_ok=True)
            return out


async def _drain(stream, tail: bytearray) -> None:
    while chunk := await stream.receive_some(4096):
        tail += chunk
        del tail[:-STDERR_TAIL_BYTES]


async def _end_process(process: trio.Process | None) -> None:
    if process is None:
        return
    if process.returncode is None:
        with contextlib.suppress(OSError):
            process.kill()
            process.send_signal(signal.SIGCONT)  # a paused process dies only once continued
    with trio.move_on_after(5):
        await process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            with contextlib.suppress(trio.ClosedResourceError, OSError):
                await stream.aclose()

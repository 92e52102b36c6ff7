"""On-demand HLS for one file (pure): what to copy, what to transcode, where segments start, the
playlists, and the ffmpeg command of a run that starts at any segment.

The shell (``media.hls_session``) probes the file (streams and the video's keyframes), asks this
module for a ``HlsPlan``, serves the playlists it writes, and runs the commands it builds.

Why segment boundaries are computed up front: a VOD playlist must list every segment before the
first one exists (a "live" playlist makes players start near its end), and with the video copied
ffmpeg can only cut at keyframes. So the boundaries are keyframes ~``SEGMENT_S_TARGET`` apart —
found cheaply by seeking (``sample_keyframes_argv``: the container's index answers "the keyframe
at or before t" for MKV and MP4 without reading the file) or, for containers without an index
(MPEG-TS, AVI), by a scan of every packet — ffmpeg's segment muxer is told to cut exactly there (``-segment_times``), and a run can
start at any boundary (``-ss`` to that keyframe, ``-segment_start_number``) when a player seeks
ahead or a segment was evicted from the cache. ``-copyts`` keeps the source's timestamps, so
segments of different runs join seamlessly and WebVTT cues line up with the video.

Codecs (HLS in MPEG-TS, as Roku and Apple players take it): H.264/HEVC video is copied, anything
else is encoded with libx264 (keyframes forced at the boundaries); AAC, MP3, AC-3 and E-AC-3 audio
is copied, anything else — FLAC, Opus, DTS, TrueHD, Vorbis, PCM — is encoded to AAC (FLAC cannot
go in HLS segments at all). Text subtitles become WebVTT renditions; image subtitles (PGS, DVD,
DVB) cannot, and are listed in the master playlist as unavailable with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from media.probe_parse import DURATION_S_MAX, _text, probe_json
from tva.errors import DecodeError

SEGMENT_S_TARGET = 6.0
SEGMENTS_MAX = 20_000
KEYFRAMES_MAX = 2_000_000
KEYFRAME_TEXT_BYTES_MAX = 64 * 1024 * 1024
SAMPLED_GAP_S_MIN = 1.0  # sampled keyframes closer than this merge (no sliver segments)
SAMPLED_TARGETS_PER_CALL = 4000  # one argument stays well under the kernel's 128 KiB per argument
SEGMENT_TIME_DELTA_S = 0.002  # keyframe times are printed to the microsecond: cut at the keyframe, not the next
VIDEO_COPY = frozenset({"h264", "hevc"})
AUDIO_COPY = frozenset({"aac", "mp3", "ac3", "eac3"})
TEXT_SUBTITLES = frozenset({"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"})
AUDIO_CHANNELS_MAX = 6  # AAC 5.1 at most: what HLS clients decode
AAC_BITRATE_PER_CHANNEL = 64_000


@dataclass(frozen=True)
class Stream:
    index: int
    kind: str  # video | audio | subtitle
    codec: str
    channels: int = 0
    language: str | None = None
    title: str | None = None
    default: bool = False
    cover: bool = False  # attached picture (cover art), never a video track


@dataclass(frozen=True)
class MediaFacts:
    duration_s: float
    start_s: float
    streams: tuple[Stream, ...]


@dataclass(frozen=True)
class Subtitle:
    n: int  # its number among the plan's subtitle tracks (the URL says sub/<n>.m3u8)
    stream_index: int
    codec: str
    language: str | None
    title: str | None
    available: bool
    why: str = ""


@dataclass(frozen=True)
class HlsPlan:
    video: Stream | None
    video_copy: bool
    audio: Stream | None
    audio_copy: bool
    boundaries: tuple[float, ...]  # start of each segment (source timestamps)
    end_s: float
    subtitles: tuple[Subtitle, ...]

    @property
    def segment_count(self) -> int:
        return len(self.boundaries)

    def duration_of(self, i: int) -> float:
        end = self.boundaries[i + 1] if i + 1 < len(self.boundaries) else self.end_s
        return max(0.001, end - self.boundaries[i])

    @property
    def transcodes(self) -> bool:
        return not self.video_copy or not self.audio_copy

    def describe(self) -> dict:
        return {"video": None if self.video is None else {"codec": self.video.codec,
                                                          "action": "copy" if self.video_copy else "h264"},
                "audio": None if self.audio is None else {"codec": self.audio.codec,
                                                          "action": "copy" if self.audio_copy else "aac"},
                "segments": self.segment_count, "duration_s": round(self.end_s - self.boundaries[0], 3),
                "subtitles": [{"n": s.n, "codec": s.codec, "language": s.language, "available": s.available,
                               "why": s.why} for s in self.subtitles]}


# --- reading ffprobe -------------------------------------------------------------------------------


def _float(value: object) -> float | None:
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def parse_streams(raw: bytes | str) -> MediaFacts:
    """``ffprobe -show_format -show_streams -of json`` → the facts a plan needs (``DecodeError``)."""
    fmt, raw_streams = probe_json(raw)
    streams = []
    for s in raw_streams:
        kind, codec, index = s.get("codec_type"), _text(s.get("codec_name")), s.get("index")
        if kind not in ("video", "audio", "subtitle") or codec is None or type(index) is not int or index < 0:
            continue
        disp = s.get("disposition") if isinstance(s.get("disposition"), Mapping) else {}
        tags = s.get("tags") if isinstance(s.get("tags"), Mapping) else {}
        channels = s.get("channels")
        streams.append(Stream(
            index=index, kind=kind, codec=codec.lower(),
            channels=channels if type(channels) is int and 0 < channels <= 64 else 0,
            language=_text(tags.get("language"), 16), title=_text(tags.get("title"), 80),
            default=disp.get("default") == 1, cover=disp.get("attached_pic") == 1))
    duration = _float(fmt.get("duration"))
    if duration is None or not 0 < duration <= DURATION_S_MAX:
        raise DecodeError("the file has no usable duration")
    start = _float(fmt.get("start_time")) or 0.0
    if not 0 <= start <= DURATION_S_MAX:
        start = 0.0
    return MediaFacts(duration_s=duration, start_s=start, streams=tuple(streams))


def parse_keyframes(text: str) -> tuple[float, ...]:
    """``ffprobe -select_streams v:0 -show_entries packet=pts_time,flags -of csv=p=0`` → keyframe
    times, sorted and unique (packets arrive in decode order; B-frames reorder pts)."""
    if len(text) > KEYFRAME_TEXT_BYTES_MAX:
        raise DecodeError("keyframe list is too large")
    out = set()
    for line in text.splitlines():
        pts, _, flags = line.partition(",")
        if "K" not in flags:
            continue
        t = _float(pts)
        if t is not None and 0 <= t <= DURATION_S_MAX:
            out.add(round(t, 6))
            if len(out) > KEYFRAMES_MAX:
                raise DecodeError("too many keyframes")
    return tuple(sorted(out))


# --- the plan --------------------------------------------------------------------------------------


def _pick(streams: tuple[Stream, ...], kind: str) -> Stream | None:
    of_kind = [s for s in streams if s.kind == kind and not s.cover]
    return next((s for s in of_kind if s.default), of_kind[0] if of_kind else None)


def keyframe_targets(facts: MediaFacts, *, segment_s: float = SEGMENT_S_TARGET) -> tuple[float, ...]:
    """Where to ask for "the keyframe at or before t": every ``segment_s`` from the start."""
    segment_s = max(segment_s, facts.duration_s / SEGMENTS_MAX)
    count = max(1, math.ceil(facts.duration_s / segment_s - 0.5))  # the last segment: at least half as long
    return tuple(round(facts.start_s + i * segment_s, 6) for i in range(count))


def sampled_keyframes(text: str) -> tuple[float, ...] | None:
    """The answer to ``sample_keyframes_argv``: keyframe times, or None when some seek did not land on
    a keyframe (no usable index: the caller scans every packet instead)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or any("K" not in ln.partition(",")[2] for ln in lines):
        return None
    return parse_keyframes(text)


def plan_hls(facts: MediaFacts, keyframes: tuple[float, ...], *, segment_s: float = SEGMENT_S_TARGET,
             sampled: bool = False) -> HlsPlan:
    """The plan for ``facts``; ``DecodeError`` when there is nothing HLS can carry. ``keyframes``: every
    keyframe (a scan), or with ``sampled`` the keyframe at or before each ``keyframe_targets`` time."""
    video, audio = _pick(facts.streams, "video"), _pick(facts.streams, "audio")
    if video is None and audio is None:
        raise DecodeError("no audio or video stream to stream")
    start, end = facts.start_s, facts.start_s + facts.duration_s
    segment_s = max(segment_s, facts.duration_s / SEGMENTS_MAX)
    usable = [k for k in keyframes if start - 0.5 <= k < end]
    video_copy = video is not None and video.codec in VIDEO_COPY and bool(usable)
    if video_copy:
        gap_s = SAMPLED_GAP_S_MIN if sampled else segment_s - 1e-6
        boundaries = [usable[0]]
        for k in usable[1:]:
            if k - boundaries[-1] >= gap_s:
                boundaries.append(k)
    else:  # encoded video (keyframes forced at the boundaries) or audio only: even steps
        count = max(1, math.ceil(facts.duration_s / segment_s - 1e-9))
        boundaries = [round(start + i * segment_s, 6) for i in range(count)]
        if len(boundaries) > 1 and end - boundaries[-1] < 0.5:
            boundaries.pop()  # no sliver of a last segment
    subs = []
    for n, s in enumerate(x for x in facts.streams if x.kind == "subtitle"):
        text = s.codec in TEXT_SUBTITLES
        subs.append(Subtitle(n, s.index, s.codec, s.language, s.title, text,
                             "" if text else f"{s.codec} is an image subtitle format: it cannot become WebVTT"))
    return HlsPlan(video=video, video_copy=video_copy, audio=audio,
                   audio_copy=audio is None or audio.codec in AUDIO_COPY, boundaries=tuple(boundaries),
                   end_s=end, subtitles=tuple(subs))


# --- playlists -------------------------------------------------------------------------------------


def _q(query: str) -> str:
    return f"?{query}" if query else ""


def _attr(text: str) -> str:
    return "".join(ch for ch in text if ch.isprintable() and ch not in '"\r\n,')[:64]


def master_playlist(plan: HlsPlan, query: str) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    available = [s for s in plan.subtitles if s.available]
    for s in plan.subtitles:
        if not s.available:
            lines.append(f"# subtitle track {s.n} ({_attr(s.language or 'und')}, {_attr(s.codec)}) unavailable: "
                         f"{_attr(s.why)}")
    for s in available:
        name = _attr(s.title or s.language or f"Subtitles {s.n}")
        lang = f',LANGUAGE="{_attr(s.language)}"' if s.language else ""
        default = "YES" if s.n == available[0].n else "NO"
        lines.append(f'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="{name} {s.n}"{lang},DEFAULT={default},'
                     f'AUTOSELECT=YES,URI="sub/{s.n}.m3u8{_q(query)}"')
    codecs = []
    if plan.video is not None:
        codecs.append("hvc1.1.6.L120.90" if plan.video_copy and plan.video.codec == "hevc" else "avc1.640028")
    if plan.audio is not None:
        copied = plan.audio.codec if plan.audio_copy else "aac"
        codecs.append({"mp3": "mp4a.40.34", "ac3": "ac-3", "eac3": "ec-3"}.get(copied, "mp4a.40.2"))
    subs = ',SUBTITLES="subs"' if available else ""
    lines.append(f'#EXT-X-STREAM-INF:BANDWIDTH=8000000,CODECS="{",".join(codecs)}"{subs}')
    lines.append(f"video.m3u8{_q(query)}")
    return "\n".join(lines) + "\n"


def media_playlist(plan: HlsPlan, query: str) -> str:
    target = max(1, math.ceil(max(plan.duration_of(i) for i in range(plan.segment_count))))
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}", "#EXT-X-MEDIA-SEQUENCE:0",
             "#EXT-X-PLAYLIST-TYPE:VOD"]
    for i in range(plan.segment_count):
        lines += [f"#EXTINF:{plan.duration_of(i):.6f},", f"seg/{i:05d}.ts{_q(query)}"]
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def subtitle_playlist(plan: HlsPlan, n: int, query: str) -> str:
    """One WebVTT file for the whole track: a valid (and the simplest) subtitle rendition."""
    duration = plan.end_s - plan.boundaries[0]
    return "\n".join(["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{max(1, math.ceil(duration))}",
                      "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD", f"#EXTINF:{duration:.6f},",
                      f"{n}.vtt{_q(query)}", "#EXT-X-ENDLIST"]) + "\n"


def with_timestamp_map(vtt: str) -> str:
    """WebVTT cues carry source time (``-copyts``), as do the segments' MPEG-TS timestamps: say so."""
    head, sep, rest = vtt.partition("\n")
    if not head.startswith("WEBVTT"):
        head, sep, rest = "WEBVTT", "\n", vtt
    return f"{head}{sep}X-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000\n{rest}"


# --- ffmpeg commands -------------------------------------------------------------------------------


def segment_name(i: int) -> str:
    return f"{i:05d}.ts"


def transcode_argv(plan: HlsPlan, src: str, out_dir: str, first: int, *, ffmpeg: str = "ffmpeg",
                   segment_list: str = "pipe:1") -> list[str]:
    """The command producing segments ``first``… into ``out_dir``; ``segment_list`` (standard output
    by default) gets a line ``NNNNN.ts,start,end`` the moment each one is complete."""
    if not 0 <= first < plan.segment_count:
        raise ValueError(f"segment {first} is outside the plan")
    argv = [ffmpeg, "-nostdin", "-hide_banner", "-v", "error"]
    if first > 0:
        # Just past the boundary: input seeking lands on the keyframe at or before it, i.e. on it.
        argv += ["-ss", f"{plan.boundaries[first] + 0.001:.6f}"]
    argv += ["-i", src]
    if plan.video is not None:
        argv += ["-map", f"0:{plan.video.index}"]
    if plan.audio is not None:
        argv += ["-map", f"0:{plan.audio.index}"]
    later = [f"{b:.6f}" for b in plan.boundaries[first + 1:]]
    if plan.video is not None:
        if plan.video_copy:
            argv += ["-c:v", "copy"]
        else:
            argv += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "21", "-pix_fmt", "yuv420p",
                     "-sc_threshold", "0"]
            if later:
                argv += ["-force_key_frames", ",".join(later)]
    if plan.audio is not None:
        if plan.audio_copy:
            argv += ["-c:a", "copy"]
        else:
            channels = min(plan.audio.channels or 2, AUDIO_CHANNELS_MAX)
            argv += ["-c:a", "aac", "-ac", str(channels), "-b:a", str(AAC_BITRATE_PER_CHANNEL * channels)]
    argv += ["-sn", "-dn", "-copyts", "-muxdelay", "0", "-muxpreload", "0", "-max_muxing_queue_size", "4096",
             "-f", "segment", "-segment_format", "mpegts", "-segment_start_number", str(first),
             "-segment_list", segment_list, "-segment_list_type", "csv",
             "-segment_time_delta", f"{SEGMENT_TIME_DELTA_S}"]
    if later:
        argv += ["-segment_times", ",".join(later)]
    else:
        argv += ["-segment_time", "1000000000"]  # one segment: the rest of the file
    return [*argv, f"{out_dir}/%05d.ts"]


def subtitle_argv(src: str, stream_index: int, out: str, *, ffmpeg: str = "ffmpeg") -> list[str]:
    return [ffmpeg, "-nostdin", "-hide_banner", "-v", "error", "-y", "-i", src, "-map", f"0:{stream_index}",
            "-copyts", "-c:s", "webvtt", "-f", "webvtt", out]


def probe_argv(src: str, *, ffprobe: str = "ffprobe") -> list[str]:
    return [ffprobe, "-v", "error", "-show_format", "-show_streams", "-of", "json", src]


def sample_keyframes_argv(src: str, stream_index: int, targets: tuple[float, ...], *,
                          ffprobe: str = "ffprobe") -> list[str]:
    """One packet after a seek to each target: with an index, the keyframe at or before it."""
    intervals = ",".join(f"{t:.6f}%+#1" for t in targets)
    return [ffprobe, "-v", "error", "-select_streams", str(stream_index), "-read_intervals", intervals,
            "-show_entries", "packet=pts_time,flags", "-of", "csv=p=0", src]


def keyframes_argv(src: str, stream_index: int, *, ffprobe: str = "ffprobe") -> list[str]:
    return [ffprobe, "-v", "error", "-select_streams", str(stream_index), "-show_entries", "packet=pts_time,flags",
            "-of", "csv=p=0", src]

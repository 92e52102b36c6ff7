"""ffprobe's JSON → what an item says about its streams (pure).

The JSON comes from a file we do not control (any bytes can sit behind a ``.mkv`` name), so it
is read defensively: every field is checked for its type and range, and anything odd is left out
rather than trusted. ``artwork_at_s`` places the frame grab at ~10 % of the duration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from tva.errors import DecodeError

PROBE_JSON_BYTES_MAX = 4 * 1024 * 1024
STREAMS_MAX = 256
CODEC_CHARS_MAX = 32
DURATION_S_MAX = 7 * 24 * 3600.0
DIMENSION_MAX = 16_384
ARTWORK_FRACTION = 0.10
ARTWORK_AT_S_MAX = 600.0  # a 3-hour film: 10 minutes in, not 18


@dataclass(frozen=True)
class ProbeInfo:
    duration_s: float | None
    format_name: str | None
    video_codec: str | None
    audio_codecs: tuple[str, ...]
    subtitle_codecs: tuple[str, ...]
    width: int | None
    height: int | None
    embedded_title: str | None  # the container's own title tag, if any
    has_picture: bool  # a video stream to grab a frame from (cover art included)
    cover_only: bool  # the only picture is attached cover art (grab it, not a frame at 10 %)

    @property
    def resolution(self) -> str | None:
        return f"{self.width}x{self.height}" if self.width and self.height else None


def _text(value: object, chars_max: int = CODEC_CHARS_MAX) -> str | None:
    if not isinstance(value, str):
        return None
    text = "".join(ch for ch in value if ch.isprintable()).strip()[:chars_max]
    return text or None


def _duration(value: object) -> float | None:
    try:
        d = round(float(value), 3)  # ffprobe prints durations as strings
    except (TypeError, ValueError, OverflowError):
        return None
    return d if 0 < d <= DURATION_S_MAX else None


def _dimension(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= DIMENSION_MAX else None


def _tag(tags: object, key: str) -> str | None:
    if not isinstance(tags, Mapping):
        return None
    for k, v in tags.items():
        if isinstance(k, str) and k.lower() == key:
            return _text(v, 200)
    return None


def probe_json(raw: bytes | str) -> tuple[Mapping, list[Mapping]]:
    """ffprobe ``-show_format -show_streams -of json`` output → (its format, its first STREAMS_MAX
    streams that are objects); ``DecodeError`` when it is too large, not JSON or not an object."""
    if len(raw) > PROBE_JSON_BYTES_MAX:
        raise DecodeError("ffprobe output is too large")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise DecodeError("ffprobe output is not JSON") from None
    if not isinstance(data, Mapping):
        raise DecodeError("ffprobe output is not a JSON object")
    fmt = data.get("format")
    streams = data.get("streams")
    return (fmt if isinstance(fmt, Mapping) else {},
            [s for s in streams[:STREAMS_MAX] if isinstance(s, Mapping)] if isinstance(streams, list) else [])


def parse_probe(raw: bytes | str) -> ProbeInfo:
    """ffprobe ``-show_format -show_streams -of json`` output → ``ProbeInfo`` (``DecodeError`` if unusable)."""
    fmt, streams = probe_json(raw)
    if not streams and not fmt:
        raise DecodeError("ffprobe found neither a container nor streams")
    video: Mapping | None = None
    cover: Mapping | None = None
    audio: list[str] = []
    subs: list[str] = []
    durations = [_duration(fmt.get("duration"))]
    for s in streams:
        kind, codec = s.get("codec_type"), _text(s.get("codec_name"))
        disposition = s.get("disposition") if isinstance(s.get("disposition"), Mapping) else {}
        if kind == "video":
            if disposition.get("attached_pic") == 1:
                cover = cover or s
            elif video is None:
                video = s
        elif kind == "audio" and codec:
            audio.append(codec)
        elif kind == "subtitle" and codec:
            subs.append(codec)
        if kind in ("video", "audio") and disposition.get("attached_pic") != 1:
            durations.append(_duration(s.get("duration")))
    picture = video or cover
    known = [d for d in durations if d is not None]
    return ProbeInfo(
        duration_s=known[0] if known else None,
        format_name=_text(fmt.get("format_name"), 64),
        video_codec=_text(video.get("codec_name")) if video else None,
        audio_codecs=tuple(dict.fromkeys(audio)), subtitle_codecs=tuple(dict.fromkeys(subs)),
        width=_dimension(video.get("width")) if video else None,
        height=_dimension(video.get("height")) if video else None,
        embedded_title=_tag(fmt.get("tags"), "title"),
        has_picture=picture is not None, cover_only=video is None and cover is not None)


def artwork_at_s(duration_s: float | None) -> float:
    """Where to grab the frame: ~10 % in (past titles and cold opens), never past the end."""
    if not duration_s or duration_s <= 0:
        return 0.0
    return round(min(duration_s * ARTWORK_FRACTION, ARTWORK_AT_S_MAX), 3)


def probe_failure_note(stderr: bytes | str, returncode: int | None) -> str:
    """One readable line out of ffprobe's complaint (its last non-empty line, bounded)."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else str(stderr)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    why = lines[-1] if lines else f"exit status {returncode}"
    if ": " in why and why.startswith("/"):
        why = why.split(": ", 1)[1]  # "/path/to/file: Invalid data…": the path is on the item already
    return "ffprobe could not read it: " + "".join(ch for ch in why if ch.isprintable())[:200]

"""Real media for library tests: tiny clips made by ffmpeg with chosen codecs and containers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from agent.config import Config
from agent.library_service import LibraryService

SRT = "1\n00:00:00,000 --> 00:00:01,000\nHello\n\n2\n00:00:01,000 --> 00:00:02,000\nAgain\n"
VIDEO = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=2"]
TONE = ["-f", "lavfi", "-i", "sine=frequency=440:duration=2"]

# base name → (ffmpeg arguments after the inputs' set-up, what ffprobe must then report)
BASES: dict[str, tuple[list[str], dict]] = {
    "h264_aac.mp4": ([*VIDEO, *TONE, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                      "-c:a", "aac"],
                     {"video_codec": "h264", "audio_codecs": ["aac"], "subtitle_codecs": [], "resolution": "64x48"}),
    "hevc_flac.mkv": ([*VIDEO, *TONE, "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error",
                       "-c:a", "flac"],
                      {"video_codec": "hevc", "audio_codecs": ["flac"], "subtitle_codecs": [], "resolution": "64x48"}),
    "h264_srt.mkv": ([*VIDEO, *TONE, "-i", "{srt}", "-map", "0:v", "-map", "1:a", "-map", "2:s", "-c:v", "libx264",
                      "-preset", "ultrafast", "-c:a", "aac", "-c:s", "srt"],
                     {"video_codec": "h264", "audio_codecs": ["aac"], "subtitle_codecs": ["subrip"],
                      "resolution": "64x48"}),
    "mpeg4_mp3.avi": ([*VIDEO, *TONE, "-c:v", "mpeg4", "-c:a", "libmp3lame"],
                      {"video_codec": "mpeg4", "audio_codecs": ["mp3"], "subtitle_codecs": [], "resolution": "64x48"}),
    "tagged.flac": ([*TONE, "-c:a", "flac", "-metadata", "title=Time", "-metadata", "artist=Pink Floyd"],
                    {"video_codec": None, "audio_codecs": ["flac"], "subtitle_codecs": [], "resolution": None}),
    "aac_only.m4a": ([*TONE, "-c:a", "aac"],
                     {"video_codec": None, "audio_codecs": ["aac"], "subtitle_codecs": [], "resolution": None}),
}


def require_ffmpeg() -> None:
    missing = [t for t in ("ffmpeg", "ffprobe") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing {missing}: ./setup.sh installs ffmpeg (Debian package)")


def make_clip(base: str, out: Path) -> Path:
    """Encode one base clip (2 s, 64x48) into ``out``."""
    require_ffmpeg()
    args, _ = BASES[base]
    out.parent.mkdir(parents=True, exist_ok=True)
    srt = out.parent / f".{out.name}.srt"
    srt.write_text(SRT)
    args = [a.replace("{srt}", str(srt)) for a in args]
    # Encoded under a hidden name, then renamed: a scan never sees a half-written clip.
    tmp = out.parent / f".{out.name}.part{out.suffix}"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args, str(tmp)], check=True, timeout=60)
    srt.unlink()
    tmp.replace(out)
    return out


def make_bases(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    return {base: make_clip(base, directory / base) for base in BASES}


def place(bases: dict[str, Path], base: str, root: Path, rel: str) -> Path:
    """A copy of a base clip under a release name (a real, separate file)."""
    target = root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bases[base], target)
    return target


def library_config(tmp: Path, **overrides) -> Config:
    media = tmp / "media"
    media.mkdir(parents=True, exist_ok=True)
    return Config(state_dir=tmp / "state", media_root=media, host_name="lib", **overrides)


def make_library(tmp: Path, **overrides) -> LibraryService:
    return LibraryService(library_config(tmp, **overrides))

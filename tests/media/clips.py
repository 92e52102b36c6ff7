"""Real clips for media plane and playback tests, made by ffmpeg with chosen codecs and length."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.media.library_support import require_ffmpeg

SRT = "".join(f"{i + 1}\n00:00:{i:02d},000 --> 00:00:{i:02d},900\nLine {i + 1}\n\n" for i in range(0, 8))


def make_clip(out: Path, *, seconds: float = 8, size: str = "160x120", rate: int = 25, gop: int = 25,
              video: str = "h264", audio: str = "aac", subtitles: str | None = None) -> Path:
    """``video``: h264 | hevc | mpeg4; ``audio``: aac | flac | opus | ac3; ``subtitles``: None | srt.
    A keyframe every ``gop`` frames (1 s by default) so HLS can cut every 6 s."""
    require_ffmpeg()
    out.parent.mkdir(parents=True, exist_ok=True)
    args = ["-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    maps = ["-map", "0:v", "-map", "1:a"]
    if subtitles:
        srt = out.parent / f".{out.name}.srt"
        srt.write_text(SRT)
        args += ["-i", str(srt)]
        maps += ["-map", "2:s", "-c:s", "srt" if out.suffix == ".mkv" else "mov_text", "-metadata:s:s:0", "language=eng"]
    vcodec = {"h264": ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
              "hevc": ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"],
              "mpeg4": ["-c:v", "mpeg4", "-q:v", "5"]}[video]
    acodec = {"aac": ["-c:a", "aac"], "flac": ["-c:a", "flac"], "opus": ["-c:a", "libopus"],
              "ac3": ["-c:a", "ac3"]}[audio]
    tmp = out.parent / f".{out.name}.part{out.suffix}"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args, *maps, *vcodec, "-g", str(gop), *acodec,
                    str(tmp)], check=True, timeout=120)
    if subtitles:
        (out.parent / f".{out.name}.srt").unlink()
    tmp.replace(out)
    return out


def probe(url_or_path: str) -> dict:
    """ffprobe's JSON (format and streams) of a file or URL."""
    import json

    done = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", url_or_path],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)

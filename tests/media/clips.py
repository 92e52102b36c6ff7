"""Real clips for media plane and playback tests, made by ffmpeg with chosen codecs and length."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.media.library_support import require_ffmpeg

SRT = "".join(f"{i + 1}\n00:00:{i:02d},000 --> 00:00:{i:02d},900\nLine {i + 1}\n\n" for i in range(0, 8))


def make_clip(out: Path, *, seconds: float = 8, size: str = "160x120", rate: int = 25, gop: int = 25,
              video: str = "h264", audio: str = "aac", subtitles: str | None = None) -> Path:
    """``video``: h264 | hevc | mpeg4; ``audio``: aac | flac | opus | ac3; ``subtitles``: None | srt | pgs (Blu-ray image subtitles, written by ``pgs_sup``).
    A keyframe every ``gop`` frames (1 s by default) so HLS can cut every 6 s."""
    require_ffmpeg()
    out.parent.mkdir(parents=True, exist_ok=True)
    args = ["-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    maps = ["-map", "0:v", "-map", "1:a"]
    if subtitles:
        srt = out.parent / f".{out.name}.srt"
        if subtitles == "pgs":
            srt.write_bytes(pgs_sup())
            args += ["-f", "sup", "-i", str(srt)]
        else:
            srt.write_text(SRT)
            args += ["-i", str(srt)]
        codec = {"srt": "srt" if out.suffix == ".mkv" else "mov_text", "pgs": "copy"}[subtitles]
        maps += ["-map", "2:s", "-c:s", codec, "-metadata:s:s:0", "language=eng"]
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


def pgs_sup(width: int = 160, height: int = 120) -> bytes:
    """A minimal, valid PGS (.sup) stream: one 8x4 bitmap shown at 0.5 s and cleared at 1.5 s.
    ffmpeg has no PGS encoder (nor text → bitmap conversion), so tests write the segments by hand."""
    import struct

    def segment(pts_s: float, kind: int, data: bytes) -> bytes:
        return b"PG" + struct.pack(">IIBH", int(pts_s * 90000), 0, kind, len(data)) + data

    def display_set(pts_s: float, show: bool) -> bytes:
        objects = struct.pack(">HBBHH", 0, 0, 0, 10, 10) if show else b""
        pcs = struct.pack(">HHBHBBBB", width, height, 0x10, 1 if show else 2, 0x80 if show else 0, 0, 0,
                          1 if show else 0) + objects
        out = segment(pts_s, 0x16, pcs)
        out += segment(pts_s, 0x17, struct.pack(">BBHHHH", 1, 0, 10, 10, 8, 4))
        if show:
            out += segment(pts_s, 0x14, struct.pack(">BB", 0, 0) + bytes([1, 235, 128, 128, 255]))
            rle = (bytes([1]) * 8 + b"\x00\x00") * 4  # each line: 8 pixels of colour 1, then end of line
            ods = struct.pack(">HBB", 0, 0, 0xC0) + (len(rle) + 4).to_bytes(3, "big") + struct.pack(">HH", 8, 4) + rle
            out += segment(pts_s, 0x15, ods)
        return out + segment(pts_s, 0x80, b"")

    return display_set(0.5, True) + display_set(1.5, False)

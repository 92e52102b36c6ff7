"""Probe and artwork with ffmpeg (trio shell): ffprobe JSON for duration and streams, a JPEG frame
grab at ~10 % of the duration.

Commands are built with ffmpeg-python and run with ``trio.run_process``, so each one can be
cancelled: a time-out kills the process (a damaged file can make ffmpeg hang or crawl). A
``CapacityLimiter`` bounds how many ffmpeg processes run at once, whatever the caller asks. A
file ffmpeg cannot read raises ``MediaUnreadable`` with a one-line note for its item; nothing
here raises anything else for a bad file.
"""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import trio

from media.probe_parse import ProbeInfo, artwork_at_s, parse_probe, probe_failure_note
from tva.errors import DecodeError

log = logging.getLogger("tva.media.ffmpeg")


class MediaUnreadable(Exception):
    """ffprobe/ffmpeg could not read the file; ``note`` is the line its item shows."""

    def __init__(self, note: str) -> None:
        super().__init__(note)
        self.note = note


@dataclass(frozen=True)
class FfmpegLimits:
    concurrency_max: int = 2  # ffmpeg processes at once (probes and grabs together)
    probe_timeout_s: float = 20.0
    grab_timeout_s: float = 30.0
    artwork_width_max: int = 320
    artwork_bytes_max: int = 256 * 1024


class MediaProber:
    def __init__(self, artwork_dir: Path, limits: FfmpegLimits | None = None, *, ffprobe: str = "ffprobe",
                 ffmpeg: str = "ffmpeg") -> None:
        self.artwork_dir = artwork_dir
        self.limits = limits or FfmpegLimits()
        self.ffprobe = ffprobe
        self.ffmpeg = ffmpeg
        self.limiter = trio.CapacityLimiter(max(1, self.limits.concurrency_max))
        self.running = 0
        self.running_max = 0  # the most ffmpeg processes seen at once (the bound's test reads it)
        self.probes = 0
        self.grabs = 0

    def probe_argv(self, path: str) -> list[str]:
        # What ffmpeg.probe() runs; built here because ffmpeg-python's probe cannot be cancelled.
        return [self.ffprobe, "-v", "error", "-show_format", "-show_streams", "-of", "json", path]

    def grab_argv(self, path: str, out: str, info: ProbeInfo) -> list[str]:
        import ffmpeg  # ffmpeg-python: only command building (lazy: not needed by the CLI's fast path)

        width = self.limits.artwork_width_max
        if info.cover_only:  # audio with embedded cover art: that picture, not a frame
            stream = ffmpeg.input(path)["v:0"]
        else:
            stream = ffmpeg.input(path, ss=artwork_at_s(info.duration_s))["v:0"]
        stream = stream.filter("scale", f"min({width},iw)", -2)
        return (ffmpeg.output(stream, out, vframes=1, format="image2", vcodec="mjpeg", **{"q:v": 5})
                .global_args("-nostdin", "-v", "error", "-y").compile(cmd=self.ffmpeg))

    async def _run(self, argv: list[str], timeout_s: float) -> subprocess.CompletedProcess | None:
        async with self.limiter:
            self.running += 1
            self.running_max = max(self.running_max, self.running)
            try:
                with trio.move_on_after(timeout_s):
                    return await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False,
                                                  stdin=subprocess.DEVNULL)
                return None
            finally:
                self.running -= 1

    async def probe(self, path: str) -> ProbeInfo:
        self.probes += 1
        try:
            done = await self._run(self.probe_argv(path), self.limits.probe_timeout_s)
        except OSError as exc:  # ffprobe itself missing: every item would say so
            raise MediaUnreadable(f"cannot run ffprobe ({exc.strerror}): install ffmpeg") from None
        if done is None:
            raise MediaUnreadable(f"ffprobe gave no answer within {self.limits.probe_timeout_s:g} s")
        if done.returncode != 0:
            raise MediaUnreadable(probe_failure_note(done.stderr, done.returncode))
        try:
            info = parse_probe(done.stdout)
        except DecodeError as exc:
            raise MediaUnreadable(f"ffprobe could not read it: {exc.message}") from None
        if not info.has_picture and not info.audio_codecs and not info.subtitle_codecs:
            raise MediaUnreadable("ffprobe found no audio, video or subtitle stream")
        return info

    async def artwork(self, path: str, info: ProbeInfo, item_id: str) -> str:
        """The frame grab's path (a JPEG in the artwork dir); ``MediaUnreadable`` when there is none."""
        self.grabs += 1
        self.artwork_dir.mkdir(parents=True, exist_ok=True)
        final = self.artwork_dir / f"{item_id}.jpg"
        tmp = self.artwork_dir / f".{item_id}.{os.getpid()}.jpg"
        try:
            done = await self._run(self.grab_argv(path, str(tmp), info), self.limits.grab_timeout_s)
            if done is None:
                raise MediaUnreadable(f"no frame within {self.limits.grab_timeout_s:g} s")
            size = tmp.stat().st_size if tmp.exists() else 0
            if done.returncode != 0 or size == 0:
                raise MediaUnreadable("no frame: " + probe_failure_note(done.stderr, done.returncode)
                                      .removeprefix("ffprobe could not read it: "))
            if size > self.limits.artwork_bytes_max:
                raise MediaUnreadable(f"frame grab larger than {self.limits.artwork_bytes_max} bytes: dropped")
            os.replace(tmp, final)
            return str(final)
        except OSError as exc:
            raise MediaUnreadable(f"no artwork: {exc.strerror}") from None
        finally:
            tmp.unlink(missing_ok=True)

    def forget_artwork(self, item_id: str) -> None:
        (self.artwork_dir / f"{item_id}.jpg").unlink(missing_ok=True)

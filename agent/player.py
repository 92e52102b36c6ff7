"""This host's player: libmpv through python-mpv, driven from the daemon (a supervised component).

The player lives in the daemon, not in the command that asked for it, so a remote (another
member's ``play --on``, the companion app, an ECP-style remote) can drive the screen this host
shows, and so the position is observed for as long as something plays. One mpv instance per
playback: ``--headless`` gets ``vo=null, ao=null`` (FIELD-NOTES), otherwise mpv's own window and
audio output.

libmpv calls are quick and thread-safe; the few that may block (creating and terminating an
instance) run in a worker thread. Positions are read by polling every ``POLL_S`` (mpv's event
thread is not a trio task): the loop reports the position to ``on_watch`` on pause, seek, stop,
at the end, and every ``save_interval_s`` while playing — that is the watch state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import trio

from tva.errors import Conflict, InvalidInput, MediaUnavailable

log = logging.getLogger("tva.player")

POLL_S = 0.25
START_TIMEOUT_S = 20.0
SEEK_SAVE_DELAY_S = 1.0


@dataclass(frozen=True)
class Playing:
    """What is playing: the watch-state key (content id, or this host's item id) and how it is reached."""

    key: str
    item: str
    title: str | None
    source: str  # a local path or a media URL
    via: str  # "local" or the holder's host name
    duration_s: float | None = None


WatchHook = Callable[[Playing, float, float | None, bool], None]  # (playing, position_s, duration_s, ended)


class Player:
    def __init__(self, *, on_watch: WatchHook, save_interval_s: float = 10.0) -> None:
        self.on_watch = on_watch
        self.save_interval_s = save_interval_s
        self._mpv = None
        self.playing: Playing | None = None
        self.state = "idle"  # idle | loading | playing | paused | ended | error
        self.position_s: float | None = None
        self.headless = True
        self.error: str | None = None
        self._end_reason: str | None = None
        self._last_save = 0.0
        self._seeked_at: float | None = None
        self._loaded = trio.Event()
        self._lock = trio.Lock()
        self._session: object | None = None  # which instance's events count (an old one's are ignored)

    # --- the component ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                await trio.sleep(POLL_S)
                self._poll()
        finally:
            with trio.CancelScope(shield=True):
                await self._close("the agent stopped")

    def _poll(self) -> None:
        m = self._mpv
        if m is None or self.playing is None:
            return
        now = trio.current_time()
        try:
            pos, duration, paused, idle = m.time_pos, m.duration, m.pause, m.idle_active
        except Exception as exc:  # a dead instance: report it, keep the daemon
            self._fail(f"mpv stopped answering: {exc}")
            return
        if duration and not self.playing.duration_s:
            self.playing = replace(self.playing, duration_s=float(duration))
        if self.state == "loading":
            if pos is not None:
                self.state = "paused" if paused else "playing"
                self._loaded.set()
            elif idle and self._end_reason is not None:
                self._fail(f"mpv could not play it ({self._end_reason})")
            return
        if pos is not None:
            self.position_s = float(pos)
        if idle or (self._end_reason is not None and pos is None):
            ended = self._end_reason in (None, "eof")
            self.state = "ended" if ended else "error"
            if not ended:
                self.error = f"playback stopped: {self._end_reason}"
            self._save(ended=ended)
            self._mpv = None
            self._terminate_later(m)
            return
        was = self.state
        self.state = "paused" if paused else "playing"
        if self.state == "paused" and was == "playing":
            self._save()
        elif self._seeked_at is not None and now - self._seeked_at >= SEEK_SAVE_DELAY_S:
            self._seeked_at = None
            self._save()
        elif self.state == "playing" and now - self._last_save >= self.save_interval_s:
            self._save()

    def _save(self, *, ended: bool = False) -> None:
        self._last_save = trio.current_time()
        if self.playing is None or self.position_s is None:
            return
        try:
            self.on_watch(self.playing, self.position_s, self.playing.duration_s, ended)
        except Exception:
            log.exception("player: saving the watch state failed")

    def _fail(self, why: str) -> None:
        log.warning("player: %s", why)
        self.state, self.error = "error", why
        self._loaded.set()
        m, self._mpv = self._mpv, None
        if m is not None:
            self._terminate_later(m)

    def _terminate_later(self, m) -> None:
        trio.lowlevel.spawn_system_task(trio.to_thread.run_sync, m.terminate)

    # --- commands -----------------------------------------------------------------------------------

    async def play(self, playing: Playing, *, start_s: float, headless: bool) -> dict:
        """Play ``playing.source`` from ``start_s``; returns once mpv plays (or could not)."""
        async with self._lock:
            await self._close("another playback started")
            self._session = None
            try:
                import mpv  # python-mpv: libmpv2 is a Debian package (setup.sh installs it)
            except (ImportError, OSError) as exc:
                raise MediaUnavailable(f"cannot load libmpv ({exc})",
                                       hint="install Debian's libmpv2 (./setup.sh run does)") from None
            opts = {"vo": "null", "ao": "null"} if headless else {"input_default_bindings": True,
                                                                  "input_vo_keyboard": True, "osc": True}

            session = self._session = object()

            def create():
                m = mpv.MPV(idle=True, keep_open="no", network_timeout=15, **opts)

                @m.event_callback("end-file")
                def _ended(event) -> None:  # on mpv's event thread: only a plain assignment here
                    if self._session is session:
                        self._end_reason = _reason_name(getattr(getattr(event, "data", None), "reason", None))
                return m

            self._end_reason, self.error, self.position_s = None, None, start_s
            self._loaded = trio.Event()
            self.headless = headless
            self._mpv = await trio.to_thread.run_sync(create)
            self.playing, self.state = playing, "loading"
            self._last_save = trio.current_time()
            self._mpv.loadfile(playing.source, start=f"{max(0.0, start_s):.3f}")
            log.info("player: playing %s from %s (%s) at %.1f s%s", playing.title or playing.item, playing.via,
                     playing.source if playing.via == "local" else playing.source.split("?")[0], start_s,
                     " headless" if headless else "")
        with trio.move_on_after(START_TIMEOUT_S):
            await self._loaded.wait()
        if self.state == "loading":
            self._fail(f"nothing played within {START_TIMEOUT_S:g} s")
        if self.state == "error":
            raise MediaUnavailable(self.error or "playback failed", hint="the agent's log has mpv's reason")
        return self.status()

    def _need(self):
        if self._mpv is None or self.state not in ("playing", "paused", "loading"):
            raise Conflict("nothing is playing here", hint="start something with `tva-agent play ITEM`")
        return self._mpv

    def pause(self) -> dict:
        self._need().pause = True
        self.state = "paused" if self.state == "playing" else self.state
        self._save()
        return self.status()

    def resume(self) -> dict:
        self._need().pause = False
        self.state = "playing" if self.state == "paused" else self.state
        return self.status()

    def seek(self, position_s: float) -> dict:
        if not isinstance(position_s, int | float) or position_s < 0 or position_s != position_s:
            raise InvalidInput("a position is a number of seconds, 0 or more")
        m = self._need()
        duration = self.playing.duration_s if self.playing else None
        if duration and position_s > duration:
            raise InvalidInput(f"position {position_s:g} s is past the end ({duration:.0f} s)")
        m.seek(position_s, reference="absolute", precision="exact")
        self.position_s = float(position_s)
        self._seeked_at = trio.current_time()
        return self.status()

    async def stop(self) -> dict:
        if self._mpv is None:
            raise Conflict("nothing is playing here", hint="start something with `tva-agent play ITEM`")
        async with self._lock:
            await self._close("stopped")
        return self.status()

    async def _close(self, why: str) -> None:
        m, self._mpv = self._mpv, None
        if m is None:
            return
        if self.playing is not None and self.state in ("playing", "paused"):
            try:
                pos = m.time_pos
                if pos is not None:
                    self.position_s = float(pos)
            except Exception:
                pass
            self._save()
            log.info("player: %s at %.1f s: %s", self.playing.title or self.playing.item, self.position_s or 0, why)
        self.state = "idle"
        await trio.to_thread.run_sync(m.terminate)

    def status(self) -> dict:
        p = self.playing
        return {"state": self.state, "paused": self.state == "paused", "position_s": self.position_s,
                "duration_s": p.duration_s if p else None, "item": p.item if p else None,
                "key": p.key if p else None, "title": p.title if p else None, "via": p.via if p else None,
                "headless": self.headless, "problem": self.error}


def _reason_name(reason: object) -> str | None:
    """mpv's end-file reason as a name (python-mpv gives an int code or, for some builds, bytes)."""
    names = {0: "eof", 2: "stop", 3: "quit", 4: "error", 5: "redirect"}
    if isinstance(reason, bytes):
        reason = reason.decode("ascii", "replace")
    if isinstance(reason, int):
        return names.get(reason, str(reason))
    return str(reason).lower() if reason is not None else None

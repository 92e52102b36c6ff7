"""The MLX title refiner: a small local model names files that guessit cannot (trio shell).

Only degenerate guessit results come here (``media.title_parse.is_degenerate``), so a scan of
well-named files never starts it. Each answer is cached on disk (SQLite, keyed by the model and
the prompt), so a file is refined once per model, ever. The model runs in a worker process
(``media.refiner_worker``) started on first need and kept for the session; every call is bounded
in time (the first one also covers loading the model) and a call that overruns kills the worker.

The refiner turns itself off for the session — and the scan carries on with guessit's answer or
the file name — when no ``title_model_dir`` is configured, when mlx / mlx-lm are not installed
(or do not import: plain ``mlx`` on Linux), or after ``failures_max`` consecutive failures
(time-outs, crashes, unusable answers). ``status()`` says which, for ``library scan``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import trio

from media.title_parse import REFINER_SYSTEM, parse_refiner_answer, refiner_prompt

log = logging.getLogger("tva.refiner")

WORKER_SCRIPT = str(Path(__file__).with_name("refiner_worker.py"))
LINE_BYTES_MAX = 64 * 1024
CACHE_ROWS_MAX = 200_000

OFF, IDLE, READY, DISABLED = "off", "idle", "ready", "disabled"


class WorkerFailed(Exception):
    """One failed call (time-out, crash, bad answer); counted toward the self-disable."""


class Refiner:
    def __init__(self, model_dir: Path | None, cache_path: Path | None, *, call_timeout_s: float = 15.0,
                 start_timeout_s: float = 90.0, max_tokens: int = 32, failures_max: int = 2,
                 worker_argv: list[str] | None = None) -> None:
        self.model_dir = model_dir
        self.call_timeout_s = call_timeout_s
        self.start_timeout_s = start_timeout_s
        self.max_tokens = max_tokens
        self.failures_max = failures_max
        self._argv = worker_argv or [sys.executable, WORKER_SCRIPT]
        self._proc: trio.Process | None = None
        self._buffer = b""
        self._lock = trio.Lock()
        self.state, self.reason = IDLE, ""
        self.calls = self.cache_hits = self.failures_total = 0
        self._consecutive = 0
        self._model_key = ""
        self._cache: sqlite3.Connection | None = None
        self._log_path = cache_path.with_name("refiner.log") if cache_path is not None else None
        if model_dir is None:
            self.state, self.reason = OFF, "no title_model_dir configured"
        elif not model_dir.is_dir():
            self.state, self.reason = OFF, f"title_model_dir {model_dir} is not a directory"
        elif worker_argv is None and importlib.util.find_spec("mlx_lm") is None:
            self.state, self.reason = OFF, "mlx-lm is not installed (pip install 'tva-agent[refiner]')"
        else:
            self._model_key = _model_key(model_dir)
            if cache_path is not None:
                self._cache = _open_cache(cache_path)

    @property
    def enabled(self) -> bool:
        return self.state in (IDLE, READY)

    def status(self) -> dict:
        return {"state": self.state, "reason": self.reason, "calls": self.calls, "cache_hits": self.cache_hits,
                "failures": self.failures_total}

    # --- the one operation ----------------------------------------------------------------------

    async def refine(self, rel_path: str, embedded_title: str | None) -> str | None:
        """A title for a degenerate name, or None (refiner off, or this call failed)."""
        prompt = refiner_prompt(rel_path, embedded_title)
        key = hashlib.sha256(f"{self._model_key}\0{prompt}".encode()).hexdigest()
        cached = self._cached(key)
        if cached is not None:
            self.cache_hits += 1
            return cached
        if not self.enabled:
            return None
        async with self._lock:
            if not self.enabled:
                return None
            self.calls += 1
            try:
                title = await self._ask(prompt)
            except WorkerFailed as exc:
                await self._failed(str(exc))
                return None
        self._consecutive = 0
        self._store(key, title)
        return title

    async def _ask(self, prompt: str) -> str:
        if self._proc is None:  # loading the model has its own, longer bound
            with trio.move_on_after(self.start_timeout_s) as start:
                await self._start()
            if start.cancelled_caught:
                raise WorkerFailed(f"the model did not load within {self.start_timeout_s:.0f} s")
        with trio.move_on_after(self.call_timeout_s) as scope:
            assert self._proc is not None and self._proc.stdin is not None
            request = {"prompt": prompt, "system": REFINER_SYSTEM, "max_tokens": self.max_tokens}
            try:
                await self._proc.stdin.send_all((json.dumps(request) + "\n").encode())
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                raise WorkerFailed("the refiner worker is gone") from None
            answer = await self._read_message()
        if scope.cancelled_caught:
            raise WorkerFailed(f"no answer within {self.call_timeout_s:.1f} s")
        if "text" not in answer:
            raise WorkerFailed(str(answer.get("error", "the worker answered nonsense"))[:200])
        title = parse_refiner_answer(answer["text"])
        if title is None:
            raise WorkerFailed(f"unusable answer {str(answer['text'])[:60]!r}")
        return title

    async def _start(self) -> None:
        assert self.model_dir is not None
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self._buffer = b""
        # The worker's own chatter (mlx, transformers) goes to a log file beside the cache.
        err = open(self._log_path, "wb") if self._log_path is not None else subprocess.DEVNULL
        try:
            self._proc = await trio.lowlevel.open_process([*self._argv, str(self.model_dir)], stdin=subprocess.PIPE,
                                                          stdout=subprocess.PIPE, stderr=err, env=env)
        except OSError as exc:
            raise WorkerFailed(f"cannot start the refiner worker: {exc}") from None
        finally:
            if not isinstance(err, int):
                err.close()
        hello = await self._read_message()
        if "unavailable" in hello:
            self.state, self.reason = DISABLED, f"mlx is not usable here: {hello['unavailable']}"[:300]
            log.warning("title refiner off for this session: %s", self.reason)
            await self._kill()
            raise WorkerFailed(self.reason)
        if not hello.get("ready"):
            raise WorkerFailed(str(hello.get("error", "the worker did not start"))[:300])
        self.state = READY
        log.info("title refiner ready (model %s)", self.model_dir)

    async def _read_message(self) -> dict:
        assert self._proc is not None and self._proc.stdout is not None
        while b"\n" not in self._buffer:
            if len(self._buffer) > LINE_BYTES_MAX:
                raise WorkerFailed("the worker's answer is too long")
            chunk = await self._proc.stdout.receive_some(65536)
            if not chunk:
                raise WorkerFailed("the refiner worker exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            msg = json.loads(line)
        except ValueError:
            raise WorkerFailed(f"the worker said {line[:60]!r}, not JSON") from None
        if not isinstance(msg, dict):
            raise WorkerFailed("the worker's answer is not a JSON object")
        return msg

    async def _failed(self, why: str) -> None:
        self.failures_total += 1
        await self._kill()  # a worker that failed once is not trusted with the next call
        if self.state == DISABLED:
            return
        self._consecutive += 1
        log.info("title refiner call failed (%d in a row): %s", self._consecutive, why)
        if self._consecutive >= self.failures_max:
            self.state = DISABLED
            self.reason = f"{self._consecutive} consecutive failures, the last: {why}"[:300]
            log.warning("title refiner off for this session: %s", self.reason)
        else:
            self.state = IDLE

    async def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    await stream.aclose()

    async def aclose(self) -> None:
        await self._kill()
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    # --- the disk cache ---------------------------------------------------------------------------

    def _cached(self, key: str) -> str | None:
        if self._cache is None:
            return None
        try:
            row = self._cache.execute("SELECT title FROM refined WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            log.warning("refiner cache unreadable (%s): not using it", exc)
            self._cache = None
            return None
        return row[0] if row else None

    def _store(self, key: str, title: str) -> None:
        if self._cache is None:
            return
        try:
            with self._cache:
                self._cache.execute("INSERT OR REPLACE INTO refined (key, title, at_s) VALUES (?, ?, ?)",
                                    (key, title, int(time.time())))
                self._cache.execute("DELETE FROM refined WHERE rowid IN (SELECT rowid FROM refined ORDER BY at_s"
                                    " LIMIT max(0, (SELECT count(*) FROM refined) - ?))", (CACHE_ROWS_MAX,))
        except sqlite3.Error as exc:
            log.warning("could not cache a refined title: %s", exc)


def _model_key(model_dir: Path) -> str:
    """The model's identity for the cache: its directory and when its files last changed."""
    stamps = []
    for name in sorted(os.listdir(model_dir))[:64]:
        try:
            stamps.append(f"{name}:{(model_dir / name).stat().st_mtime_ns}")
        except OSError:
            continue
    return f"{model_dir.resolve()}|{'|'.join(stamps)}"


def _connect_cache(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False)
    with db:
        db.execute("CREATE TABLE IF NOT EXISTS refined (key TEXT PRIMARY KEY, title TEXT NOT NULL, at_s INTEGER)")
    return db


def _open_cache(path: Path) -> sqlite3.Connection | None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return _connect_cache(path)
    except sqlite3.Error as exc:  # a damaged cache: start a new one, it is only a cache
        log.warning("refiner cache %s unusable (%s): starting a new one", path, exc)
        try:
            path.unlink()
            return _connect_cache(path)
        except (OSError, sqlite3.Error):
            return None
    except OSError as exc:
        log.warning("refiner cache %s unusable (%s): refining without a cache", path, exc)
        return None

"""Long work as jobs: the request that starts it returns at once; ``GET /jobs/{id}`` shows progress.

Why: hashing a large directory for ``torrent add`` takes minutes, longer than any sensible HTTP
time-out, and a client that gives up must not be told "cannot reach the daemon" while the work
goes on. A job runs in this component's nursery; its function reports progress (bytes done of
total) from the trio thread (a worker thread posts it with ``trio.from_thread``), and ends with a
result or an error ``{error, hint}``. Finished jobs are kept for ``job_keep_ms`` so a client that
polls late still learns how it ended; at most ``jobs_kept_max`` are kept.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from tva.errors import Conflict, NotFound, TvaError

log = logging.getLogger("tva.jobs")

JOBS_RUNNING_MAX = 8
JOBS_KEPT_MAX = 100
JOB_KEEP_MS = 3_600_000
PROGRESS_POST_INTERVAL_S = 0.25  # how often a worker thread posts progress to the trio thread

Progress = Callable[[int, int], None]  # (bytes_done, bytes_total), called on the trio thread
JobFn = Callable[[Progress], Awaitable[dict[str, Any]]]


@dataclass
class Job:
    id: str
    kind: str
    created_ms: int
    state: str = "running"  # running | done | failed
    bytes_done: int = 0
    bytes_total: int = 0
    finished_ms: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = field(default=None)  # {error, hint, status}

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "state": self.state, "created_ms": self.created_ms,
                "finished_ms": self.finished_ms,
                "progress": {"bytes_done": self.bytes_done, "bytes_total": self.bytes_total},
                "result": self.result, "error": self.error}


class Jobs:
    def __init__(self, *, clock_ms: Callable[[], int], job_keep_ms: int = JOB_KEEP_MS,
                 jobs_kept_max: int = JOBS_KEPT_MAX) -> None:
        self.clock_ms = clock_ms
        self.job_keep_ms = job_keep_ms
        self.jobs_kept_max = jobs_kept_max
        self._jobs: dict[str, Job] = {}
        self._nursery: trio.Nursery | None = None
        self._ids = itertools.count(1)
        self._prefix = os.urandom(3).hex()  # ids from an earlier run of the daemon never match

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for job in self._jobs.values():
                if job.state == "running":  # the component stopped under it
                    self._finish(job, error={"error": "the daemon stopped this job", "hint": "start it again",
                                             "status": 503})

    def start(self, kind: str, fn: JobFn) -> Job:
        if self._nursery is None:
            raise Conflict("jobs are not running right now", hint="tva-agent status shows the jobs component")
        if sum(j.state == "running" for j in self._jobs.values()) >= JOBS_RUNNING_MAX:
            raise Conflict(f"{JOBS_RUNNING_MAX} jobs are already running", hint="wait for one to finish")
        self._forget_old()
        job = Job(f"{self._prefix}-{next(self._ids)}", kind, self.clock_ms())
        self._jobs[job.id] = job
        self._nursery.start_soon(self._run, job, fn)
        return job

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}", hint="jobs are kept for an hour after they end")
        return job

    def listing(self) -> list[Job]:
        return sorted(self._jobs.values(), key=lambda j: j.created_ms)

    async def _run(self, job: Job, fn: JobFn) -> None:
        def progress(done: int, total: int) -> None:
            job.bytes_done, job.bytes_total = max(0, int(done)), max(0, int(total))

        try:
            result = await fn(progress)
        except TvaError as exc:
            from agent.api import status_for

            self._finish(job, error={"error": exc.message, "hint": exc.hint, "status": status_for(exc)})
        except Exception as exc:  # a bug in the job: the job fails, the daemon stays up
            log.error("job %s (%s) failed", job.id, job.kind, exc_info=exc)
            self._finish(job, error={"error": f"internal error: {type(exc).__name__}",
                                     "hint": "the agent's log has the traceback", "status": 500})
        else:
            job.bytes_done = max(job.bytes_done, job.bytes_total)
            self._finish(job, result=result)

    def _finish(self, job: Job, *, result: dict | None = None, error: dict | None = None) -> None:
        job.state = "failed" if error is not None else "done"
        job.result, job.error, job.finished_ms = result, error, self.clock_ms()

    def _forget_old(self) -> None:
        now = self.clock_ms()
        for job in list(self._jobs.values()):
            if job.finished_ms is not None and now - job.finished_ms > self.job_keep_ms:
                del self._jobs[job.id]
        finished = [j for j in self.listing() if j.finished_ms is not None]
        for job in finished[: max(0, len(self._jobs) - self.jobs_kept_max + 1)]:
            del self._jobs[job.id]


def thread_progress(progress: Progress) -> Progress:
    """For a worker thread started by trio: a (done, total) callback that hands progress to the trio
    thread (which owns the job), at most every ``PROGRESS_POST_INTERVAL_S`` and always at the end."""
    import time

    last = [0.0]

    def post(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_POST_INTERVAL_S or done >= total:
            last[0] = now
            trio.from_thread.run_sync(progress, done, total)

    return post

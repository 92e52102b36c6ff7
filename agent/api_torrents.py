"""Routes of the daemon's torrent engine and of long-running jobs (see ``agent.api``).

``POST /torrents`` answers 202 at once with a job (``agent.jobs``): seeding a large path means
hashing it first, which can take minutes. ``GET /jobs/{id}`` shows bytes hashed of the total and,
once done, the result (or the error) that the synchronous answer used to carry.
"""

from __future__ import annotations

from fastapi import APIRouter, Body, Path
from pydantic import Field

from agent.api import BODY_LIMIT_KEY, Ctx
from agent.api_core import JsonBody
from tva.errors import Conflict, InvalidInput

router = APIRouter()

TORRENT_B64_BYTES_MAX = 23 * 1024 * 1024
JOB_ID_PATTERN = r"^[0-9a-f]{6}-[0-9]{1,12}$"


class TorrentIn(JsonBody):  # exactly one of source (magnet or path) and torrent_b64
    source: str | None = Field(default=None, min_length=1, max_length=8192)
    torrent_b64: str | None = Field(default=None, min_length=1, max_length=TORRENT_B64_BYTES_MAX)
    policy: str | None = Field(default=None, pattern="^(public|f2f_only|search_only)$")


def _engine(ctx):
    ctx.need_daemon("torrent commands (the daemon owns the torrent engine)")
    if ctx.torrents is None:
        raise Conflict("this agent runs no torrent engine", hint="start the daemon: tva-agent run")
    return ctx.torrents


@router.get("/torrents")
async def torrents_list(ctx: Ctx) -> list[dict]:
    return await _engine(ctx).listing()


@router.post("/torrents", status_code=202,
             openapi_extra={BODY_LIMIT_KEY: TORRENT_B64_BYTES_MAX + 64 * 1024})
async def torrents_add(ctx: Ctx, body: TorrentIn = Body()) -> dict:
    manager = _engine(ctx)
    if manager.engine is None:
        raise Conflict("the torrent engine is not running", hint="tva-agent status shows why (components)")
    if (body.source is None) == (body.torrent_b64 is None):
        raise InvalidInput("give exactly one of a magnet/path and .torrent bytes")

    async def work(progress) -> dict:
        return await manager.add(body.source, body.torrent_b64, body.policy, progress=progress)

    return {"job": ctx.jobs.start("torrent add", work).to_json()}


@router.post("/reaper/apply")
async def reaper_apply(ctx: Ctx) -> dict:
    ctx.need_daemon("reaper --apply (the daemon owns the torrent engine)")
    return await _engine(ctx).apply_reaper()


@router.get("/jobs")
async def jobs_list(ctx: Ctx) -> list[dict]:
    ctx.need_daemon("jobs")
    return [j.to_json() for j in ctx.jobs.listing()]


@router.get("/jobs/{job_id}")
async def job(ctx: Ctx, job_id: str = Path(pattern=JOB_ID_PATTERN)) -> dict:
    ctx.need_daemon("jobs")
    return ctx.jobs.get(job_id).to_json()

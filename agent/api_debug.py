"""Test-only routes: fault injection into the daemon's components (``TVA_FAULT_INJECTION=1``).

Served only when the daemon was started with fault injection enabled; absent otherwise (and never
in the OpenAPI document). The fault-injection tests and the opt-in soak use them against real
daemon processes: the named component gets the exception raised inside its nursery, exactly as if
one of its own tasks had raised it.
"""

from __future__ import annotations

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from agent.api import Ctx
from agent.supervisor import FaultInjected, FaultInjectedBase
from tva.errors import NotFound

router = APIRouter(include_in_schema=False)


class FaultIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    component: str = Field(pattern=r"^[a-z_]{1,32}$")
    kind: str = Field(default="error", pattern="^(error|base)$")  # base: a BaseException subclass


@router.post("/debug/faults")
async def inject(ctx: Ctx, body: FaultIn = Body()) -> dict:
    ctx.need_daemon("fault injection")
    exc = (FaultInjectedBase if body.kind == "base" else FaultInjected)(f"injected into {body.component}")
    try:
        ctx.supervisor.inject(body.component, exc)
    except KeyError:
        raise NotFound(f"no component {body.component!r}",
                       hint="components: " + ", ".join(ctx.supervisor.components)) from None
    return {"message": f"fault injected into {body.component}", "component": body.component, "kind": body.kind}


@router.get("/debug/components")
async def components(ctx: Ctx) -> dict:
    ctx.need_daemon("components")
    return ctx.supervisor.status()

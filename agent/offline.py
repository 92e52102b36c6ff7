"""A command on a state dir with no daemon: load, run the route's handler in-process, save.

The caller holds the state dir's writer lock (``agent.discovery.StateLock``). The handler is the
daemon's own (``agent.api`` via ``agent.inproc``), so the answer — status, message, hint — is
what the daemon would have given; only a route that needs the daemon answers 503.
"""

from __future__ import annotations

from typing import Any


def call(cfg, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    import trio

    from agent.api import ApiContext, build_app
    from agent.inproc import call_app
    from agent.policy.custody import CustodyConfig
    from agent.service import Service
    from agent.state import NodeState
    from agent.store import StateStore

    state = NodeState.load(StateStore(cfg.state_dir))
    changed: list[bool] = []
    service = Service(state, media_dir=cfg.media_dir(), on_change=lambda _d, _c: changed.append(True),
                      custody_config=CustodyConfig(lease_ms_max=cfg.repair_lease_ms_max))
    app = build_app(ApiContext(service=service, daemon=False))
    status, raw = trio.run(call_app, app, method, path, body)
    if changed:
        state.save()
    return status, raw
